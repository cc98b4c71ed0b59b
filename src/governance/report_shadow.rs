//! `gavel report`'s "shadow would have…" section: the shadow records
//! (`path: "gavel/shadow"`, `decision::shadow`), each a request a server's
//! shadow bundles decided otherwise than its live policy — counted by
//! server, direction and the shadow's reasons, with the latest decision ids
//! behind each row (bounded like every report table).

use std::fmt::Write;

use serde_json::Value;

use super::report::{Capped, MAX_KEYS, OTHER};
use super::report_html::esc;

/// Decision ids kept per row (the latest).
const IDS: usize = 5;

/// One row: how many, and the latest decision ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Row {
    pub count: u64,
    pub ids: Vec<String>,
}

/// The shadow records of a log.
#[derive(Debug, Clone)]
pub struct ShadowReport {
    /// Shadow records (divergences) in all.
    pub total: u64,
    /// (server, direction, shadow reasons joined, shadow policy version).
    pub rows: Capped<(String, String, String, String), Row>,
}

impl Default for ShadowReport {
    fn default() -> Self {
        ShadowReport {
            total: 0,
            rows: Capped::new(MAX_KEYS),
        }
    }
}

impl ShadowReport {
    /// Adds one shadow record (`shadow` is its `shadow` object).
    pub fn add(&mut self, r: &Value, shadow: &Value) {
        self.total += 1;
        let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
        let reasons: Vec<String> = r["result"]["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let key = (
            s(&shadow["server"]),
            s(&shadow["diverged"]),
            reasons.join(", "),
            s(&r["result"]["policy_version"]),
        );
        let other = (
            OTHER.to_string(),
            String::new(),
            String::new(),
            String::new(),
        );
        let row = self.rows.entry(key, other);
        row.count += 1;
        if row.ids.len() == IDS {
            row.ids.remove(0);
        }
        row.ids.push(s(&r["decision_id"]));
    }

    /// The HTML section (empty when the log has no shadow records).
    pub fn html(&self) -> String {
        if self.total == 0 {
            return String::new();
        }
        let mut h = String::new();
        let _ = write!(
            h,
            "<section id=\"shadow\"><h2>Shadow would have…</h2><p class=\"muted\">\
<span id=\"shadow-total\" data-value=\"{n}\">{n}</span> request(s) the shadow bundles decided \
otherwise than the live policy (the live decision stood; the decision ids are the live records').</p>\
<table><tr><th>server</th><th>shadow would have</th><th>shadow reasons</th><th>shadow policy</th>\
<th>requests</th><th>latest decision ids</th></tr>",
            n = self.total
        );
        let mut rows: Vec<_> = self.rows.map.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for ((server, direction, reasons, version), row) in rows {
            let _ = write!(
                h,
                "<tr class=\"shadow-row\" data-server=\"{}\" data-direction=\"{}\"><td>{}</td><td>{}</td>\
<td><code>{}</code></td><td><code>{}</code></td><td data-value=\"{c}\">{c}</td><td><code>{}</code></td></tr>",
                esc(server),
                esc(direction),
                esc(server),
                esc(&direction.replace('_', " ")),
                esc(reasons),
                esc(version),
                esc(&row.ids.join(" ")),
                c = row.count,
            );
        }
        h.push_str("</table></section>");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn divergences_are_counted_by_server_direction_and_reasons() {
        let rec = |id: &str, reasons: &[&str]| {
            json!({"decision_id": id, "path": "gavel/shadow",
                   "shadow": {"server": "fs", "diverged": "allow_to_deny", "type": "tool_call", "tool": "write_file"},
                   "result": {"allow": false, "reasons": reasons, "policy_version": "strict@2"}})
        };
        let mut s = ShadowReport::default();
        assert_eq!(s.html(), "", "no section without shadow records");
        for i in 0..7 {
            s.add(
                &rec(&format!("d{i}"), &["no_writes"]),
                &rec("", &[])["shadow"],
            );
        }
        s.add(&rec("e", &["other"]), &rec("", &[])["shadow"]);
        assert_eq!(s.total, 8);
        let row = &s.rows.map[&(
            "fs".to_string(),
            "allow_to_deny".to_string(),
            "no_writes".to_string(),
            "strict@2".to_string(),
        )];
        assert_eq!(row.count, 7);
        assert_eq!(row.ids, ["d2", "d3", "d4", "d5", "d6"], "the latest ids");
        let h = s.html();
        assert!(
            h.contains("Shadow would have") && h.contains("allow to deny"),
            "{h}"
        );
        assert!(h.contains("data-value=\"8\""), "{h}");
    }
}
