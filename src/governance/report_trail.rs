//! The parts of `gavel report` a compliance officer reads first: who was
//! denied (users and agents), how many decisions asked for an audit or were
//! let through by `fail_open`, what each reason code means, and — for every
//! figure about denials — the decisions behind it, so that any number on
//! the page leads to `gavel explain --decision ID`.
//!
//! Bounded like the rest of the report: capped tables (overflow under
//! `(other)`) and at most [`MAX_IDS`] decision ids per reason and per tool,
//! the latest ones.

use std::collections::VecDeque;

use serde_json::Value;

use super::report::{Capped, MAX_KEYS, OTHER, Split};

/// Decision ids kept per reason code and per tool.
pub const MAX_IDS: usize = 10;

/// The latest decision ids of one figure, and how many there were in all.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    pub ids: VecDeque<String>,
    pub total: u64,
}

impl Recent {
    fn push(&mut self, id: &str) {
        self.total += 1;
        if self.ids.len() == MAX_IDS {
            self.ids.pop_front();
        }
        self.ids.push_back(id.to_string());
    }
}

#[derive(Debug, Clone)]
pub struct Trail {
    /// Decisions by the user (`input.user.id`) and agent they were made for.
    pub users: Capped<String, Split>,
    pub agents: Capped<String, Split>,
    /// Decisions whose policy set `audit_required`.
    pub audit_required: u64,
    /// Decisions let through by a server's `fail_open` (policy unavailable).
    pub fail_open: u64,
    /// Each reason code's text from the bundles' reason catalogs, as logged.
    pub reason_texts: Capped<String, String>,
    /// The denials behind each reason code, and behind each tool's denials.
    pub by_reason: Capped<String, Recent>,
    pub by_tool: Capped<(String, String, String), Recent>,
}

impl Default for Trail {
    fn default() -> Self {
        Trail {
            users: Capped::new(MAX_KEYS),
            agents: Capped::new(MAX_KEYS),
            audit_required: 0,
            fail_open: 0,
            reason_texts: Capped::new(MAX_KEYS),
            by_reason: Capped::new(MAX_KEYS),
            by_tool: Capped::new(MAX_KEYS),
        }
    }
}

fn text(v: &Value, fallback: &str) -> String {
    v.as_str().unwrap_or(fallback).to_string()
}

impl Trail {
    /// One decision's outcome: `r` the record, `result` its decision, `tool`
    /// the (server, type, tool) key of the report's tool table.
    pub fn add(&mut self, r: &Value, result: &Value, tool: &(String, String, String)) {
        let allow = result["allow"].as_bool().unwrap_or(false);
        let input = &r["input"];
        let user = text(&input["user"]["id"], "(not logged)");
        let agent = text(&input["agent"]["id"], "(not logged)");
        self.users.entry(user, OTHER.into()).add(allow);
        self.agents.entry(agent, OTHER.into()).add(allow);
        self.audit_required += u64::from(result["audit_required"] == true);
        let matched = result["matched_rules"].as_array();
        if matched.is_some_and(|m| m.iter().any(|x| x == "fail_open")) {
            self.fail_open += 1;
        }
        if allow {
            return;
        }
        let id = r["decision_id"].as_str().unwrap_or("?");
        for code in result["reasons"].as_array().into_iter().flatten() {
            let code = text(code, "?");
            if let Some(t) = result["reason_texts"][&code].as_str() {
                let slot = self.reason_texts.entry(code.clone(), OTHER.into());
                if slot.is_empty() {
                    *slot = t.to_string();
                }
            }
            self.by_reason.entry(code, OTHER.into()).push(id);
        }
        let other = (OTHER.to_string(), String::new(), String::new());
        self.by_tool.entry(tool.clone(), other).push(id);
    }

    /// Users (or agents) by denials, most first (ties by allowed, then name).
    pub fn top(table: &Capped<String, Split>) -> Vec<(&str, &Split)> {
        let mut v: Vec<(&str, &Split)> = table.map.iter().map(|(k, s)| (k.as_str(), s)).collect();
        v.sort_by(|a, b| {
            b.1.denied
                .cmp(&a.1.denied)
                .then(b.1.total().cmp(&a.1.total()))
                .then(a.0.cmp(b.0))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_bounded_to_the_latest_and_counted_in_all() {
        let mut t = Trail::default();
        let key = ("fs".to_string(), "tool_call".to_string(), "w".to_string());
        for i in 0..25 {
            let r = json!({"decision_id": format!("d{i}"), "input": {"user": {"id": "ada"}}});
            let result = json!({"allow": false, "reasons": ["x"], "reason_texts": {"x": "why"},
                "audit_required": i % 5 == 0, "matched_rules": []});
            t.add(&r, &result, &key);
        }
        let r = &t.by_reason.map["x"];
        assert_eq!(r.total, 25);
        assert_eq!(r.ids.len(), MAX_IDS);
        assert_eq!(r.ids.back().unwrap(), "d24");
        assert_eq!(t.by_tool.map[&key].total, 25);
        assert_eq!(t.reason_texts.map["x"], "why");
        assert_eq!(t.audit_required, 5);
        assert_eq!(t.users.map["ada"].denied, 25);
        assert_eq!(t.agents.map["(not logged)"].denied, 25);
    }
}
