//! Result records in `gavel report` (docs/decision-log.md, "Result
//! records"): counted apart from request decisions — by outcome, the
//! redactions by rule and tool (what was redacted: a pattern or a pointer,
//! and how many matches), the items filtered by rule and tool, and the
//! results denied or withheld by tool and reason. Bounded like the other
//! tables.

use std::fmt::Write;

use serde_json::Value;

use super::report::{Capped, MAX_KEYS, OTHER};
use super::report_html::esc;

#[derive(Debug, Clone)]
pub struct ResultStats {
    pub records: u64,
    /// pass, modified, deny, error → records.
    pub by_outcome: Capped<String, u64>,
    /// (rule, pattern or pointer, server/tool) → matches redacted.
    pub redactions: Capped<(String, String, String), u64>,
    /// (rule, server/tool) → items dropped.
    pub filtered: Capped<(String, String), u64>,
    /// (server/tool, outcome, reasons) → results denied or withheld.
    pub denials: Capped<(String, String, String), u64>,
}

impl Default for ResultStats {
    fn default() -> Self {
        ResultStats {
            records: 0,
            by_outcome: Capped::new(MAX_KEYS),
            redactions: Capped::new(MAX_KEYS),
            filtered: Capped::new(MAX_KEYS),
            denials: Capped::new(MAX_KEYS),
        }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("?")
}

impl ResultStats {
    /// Adds one result record.
    pub fn add(&mut self, r: &Value) {
        self.records += 1;
        let result = &r["result"];
        let outcome = s(result, "outcome").to_string();
        *self.by_outcome.entry(outcome.clone(), OTHER.into()) += 1;
        let action = &r["input"]["action"];
        let at = format!("{}/{}", s(action, "server"), s(action, "tool"));
        for red in result["redactions"].as_array().into_iter().flatten() {
            let n = red["count"].as_u64().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let what = red
                .get("pattern")
                .or(red.get("pointer"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            let key = (s(red, "rule").to_string(), what.to_string(), at.clone());
            let other = (OTHER.to_string(), String::new(), String::new());
            *self.redactions.entry(key, other) += n;
        }
        for f in result["filtered"].as_array().into_iter().flatten() {
            let n = f["dropped"].as_u64().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let key = (s(f, "rule").to_string(), at.clone());
            *self.filtered.entry(key, (OTHER.to_string(), String::new())) += n;
        }
        if matches!(outcome.as_str(), "deny" | "error") {
            let reasons: Vec<&str> = result["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let key = (at, outcome, reasons.join(","));
            let other = (OTHER.to_string(), String::new(), String::new());
            *self.denials.entry(key, other) += 1;
        }
    }

    /// The report page's section (empty without result records).
    pub fn html(&self) -> String {
        let mut h = String::new();
        if self.records == 0 {
            return h;
        }
        let outcomes: Vec<String> = self
            .by_outcome
            .map
            .iter()
            .map(|(k, n)| {
                format!(
                    "<span data-outcome=\"{}\" data-count=\"{n}\">{} {n}</span>",
                    esc(k),
                    esc(k)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<h2>Results</h2><p class=\"muted\" id=\"results\" data-value=\"{n}\">{n} result decision(s) (each linked to its request by <code>result_of</code>): {}.</p>",
            outcomes.join(", "),
            n = self.records
        );
        let mut table = |id: &str, head: &str, rows: Vec<String>| {
            if rows.is_empty() {
                return;
            }
            let _ = write!(
                h,
                "<table id=\"{id}\"><tr>{head}</tr>{}</table>",
                rows.join("")
            );
        };
        table(
            "result-redactions",
            "<th>rule</th><th>redacted</th><th>tool</th><th>matches</th>",
            self.redactions
                .map
                .iter()
                .map(|((rule, what, at), n)| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                        esc(rule),
                        esc(what),
                        esc(at)
                    )
                })
                .collect(),
        );
        table(
            "result-filtered",
            "<th>rule</th><th>tool</th><th>items dropped</th>",
            self.filtered
                .map
                .iter()
                .map(|((rule, at), n)| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                        esc(rule),
                        esc(at)
                    )
                })
                .collect(),
        );
        table(
            "result-denials",
            "<th>tool</th><th>outcome</th><th>reasons</th><th>results</th>",
            self.denials
                .map
                .iter()
                .map(|((at, o, reasons), n)| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                        esc(at),
                        esc(o),
                        esc(reasons)
                    )
                })
                .collect(),
        );
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_records_are_counted_by_rule_tool_and_outcome() {
        let mut st = ResultStats::default();
        let action = json!({"server": "fs", "tool": "search_files"});
        st.add(
            &json!({"input": {"action": action}, "result": {"outcome": "modified",
            "redactions": [{"rule": "data.p.result", "pattern": "email", "count": 2},
                           {"rule": "data.p.result", "pointer": "/x", "count": 0}],
            "filtered": [{"rule": "data.p.result_item", "dropped": 3}]}}),
        );
        st.add(&json!({"input": {"action": action}, "result": {"outcome": "deny", "reasons": ["secret"]}}));
        assert_eq!(st.records, 2);
        assert_eq!(st.by_outcome.map["modified"], 1);
        let key = (
            "data.p.result".to_string(),
            "email".to_string(),
            "fs/search_files".to_string(),
        );
        assert_eq!(st.redactions.map[&key], 2);
        assert_eq!(
            st.redactions.map.len(),
            1,
            "nothing redacted, nothing counted"
        );
        assert_eq!(
            st.filtered.map[&(
                "data.p.result_item".to_string(),
                "fs/search_files".to_string()
            )],
            3
        );
        let h = st.html();
        assert!(h.contains("id=\"result-denials\"") && h.contains("secret"));
    }
}
