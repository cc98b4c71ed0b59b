//! Remembered human approvals.
//!
//! An approval is remembered only when the decision says for how long
//! (`remember_seconds`), and covers exactly what its scope names: by default
//! one request — (user, agent, action type, server, name, sha256 of the
//! canonical arguments) — so an approval of `delete("/tmp/x")` never covers
//! `delete("/")`; `tool` widens it to any arguments, `server` to any name of
//! the server. Every scope keeps the action type: approving the prompt
//! `deploy` never lets the tool `deploy` through, nor a resource read a
//! tool call (names are per type in MCP, so the same name is another thing).
//! Kept in memory by the gavel process that asked (bounded; expired entries
//! are dropped as they are met).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::decision::contract::Approval;
use crate::state::clock::Clock;
use crate::sync::Recover;

const MAX_REMEMBERED: usize = 10_000;

pub struct Remembered {
    clock: Arc<dyn Clock>,
    until: Mutex<HashMap<String, f64>>,
}

pub struct Subject<'a> {
    pub user: &'a str,
    pub agent: &'a str,
    /// The action type (`tool_call`, `prompt_get`, …: `ActionType::as_str`).
    pub kind: &'a str,
    pub server: &'a str,
    /// The tool or prompt name, resource URI, or upstream→host method.
    pub tool: &'a str,
    pub args: &'a Value,
}

/// sha256 of the arguments as canonical JSON (sorted keys, no spaces), so
/// key order in the request does not matter.
pub fn args_digest(args: &Value) -> String {
    let text = args.to_string();
    let canon =
        crate::bundle::canonical::canonical_json(&text).unwrap_or_else(|_| text.into_bytes());
    crate::bundle::canonical::sha256_hex(&canon)
}

/// The parts as a JSON array (no separator a name could contain and forge):
/// user, agent, action type, server, then the name and the arguments'
/// digest as wide as the scope says (`null` where any goes).
fn key(a: &Approval, s: &Subject) -> String {
    let (name, args) = match a.scope.as_deref() {
        Some("server") => (None, None),
        Some("tool") => (Some(s.tool), None),
        _ => (Some(s.tool), Some(args_digest(s.args))),
    };
    serde_json::json!([s.user, s.agent, s.kind, s.server, name, args]).to_string()
}

impl Remembered {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Remembered {
            clock,
            until: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a live remembered approval covers this call.
    pub fn covers(&self, a: &Approval, s: &Subject) -> bool {
        let now = self.clock.now();
        let mut m = self.until.lock().recover();
        let k = key(a, s);
        match m.get(&k) {
            Some(t) if *t > now => true,
            Some(_) => {
                m.remove(&k);
                false
            }
            None => false,
        }
    }

    /// Remembers an explicit approval for `remember_seconds`, if set.
    pub fn remember(&self, a: &Approval, s: &Subject) {
        let Some(secs) = a.remember_seconds.filter(|s| *s > 0) else {
            return;
        };
        let now = self.clock.now();
        let mut m = self.until.lock().recover();
        if m.len() >= MAX_REMEMBERED {
            m.retain(|_, t| *t > now);
            if m.len() >= MAX_REMEMBERED {
                return; // full of live approvals: ask again rather than grow
            }
        }
        m.insert(key(a, s), now + secs as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::clock::ManualClock;
    use serde_json::json;

    fn subject<'a>(tool: &'a str, args: &'a Value) -> Subject<'a> {
        Subject {
            user: "ada",
            agent: "a1",
            kind: "tool_call",
            server: "fs",
            tool,
            args,
        }
    }

    #[test]
    fn scope_arguments_and_expiry() {
        let clock = ManualClock::new(1000.0);
        let r = Remembered::new(Arc::new(clock.clone()));
        let call = Approval {
            reason: "r".into(),
            remember_seconds: Some(60),
            scope: None,
        };
        let a = json!({"path": "/tmp/x", "force": true});
        let same_reordered = json!({"force": true, "path": "/tmp/x"});
        let other = json!({"path": "/"});
        assert!(!r.covers(&call, &subject("delete", &a)));
        r.remember(&call, &subject("delete", &a));
        assert!(r.covers(&call, &subject("delete", &same_reordered)));
        assert!(
            !r.covers(&call, &subject("delete", &other)),
            "other arguments"
        );
        assert!(!r.covers(&call, &subject("move", &a)), "other tool");
        clock.advance(61.0);
        assert!(!r.covers(&call, &subject("delete", &a)), "expired");

        let tool = Approval {
            scope: Some("tool".into()),
            ..call.clone()
        };
        r.remember(&tool, &subject("delete", &a));
        assert!(r.covers(&tool, &subject("delete", &other)));
        assert!(!r.covers(&tool, &subject("move", &other)));
        let server = Approval {
            scope: Some("server".into()),
            ..call.clone()
        };
        r.remember(&server, &subject("delete", &a));
        assert!(r.covers(&server, &subject("move", &other)));

        let once = Approval {
            remember_seconds: None,
            ..call
        };
        r.remember(&once, &subject("x", &a));
        assert!(
            !r.covers(&once, &subject("x", &a)),
            "not remembered without remember_seconds"
        );
    }

    /// Approving the prompt `deploy {}` covers that prompt, never the tool
    /// `deploy {}` (nor another type of the same name), in every scope.
    #[test]
    fn an_approval_covers_its_action_type_only() {
        let r = Remembered::new(Arc::new(ManualClock::new(1000.0)));
        let args = json!({});
        let of = |kind| Subject {
            kind,
            ..subject("deploy", &args)
        };
        for scope in [None, Some("tool"), Some("server")] {
            let a = Approval {
                reason: "r".into(),
                remember_seconds: Some(60),
                scope: scope.map(String::from),
            };
            r.remember(&a, &of("prompt_get"));
            assert!(r.covers(&a, &of("prompt_get")), "{scope:?}");
            for other in ["tool_call", "resource_read", "completion"] {
                assert!(!r.covers(&a, &of(other)), "{scope:?}: {other}");
            }
        }
    }
}
