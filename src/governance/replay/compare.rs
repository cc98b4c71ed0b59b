//! Comparing one logged decision with the candidate's: flips, approval and
//! reason changes — and the decisions that waited for a human, held until
//! their final approval step says how they ended.

use serde_json::Value;

use super::{MAX_PENDING_APPROVALS, Replayer, add, reasons_of};

/// What the log says of one decision.
pub(super) struct Logged {
    pub(super) server: String,
    pub(super) tool: String,
    pub(super) id: String,
    pub(super) allow: bool,
    pub(super) reasons: Vec<String>,
    pub(super) approval: bool,
    /// Denied after the policy (limit, budget, approval): the candidate's
    /// reasons are not compared with the logged ones.
    pub(super) gavel_denied: bool,
}

/// The candidate's decision of the same input.
pub(super) struct Replayed {
    pub(super) allow: bool,
    pub(super) reasons: Vec<String>,
    pub(super) approval: bool,
}

impl Logged {
    /// What the decision record `rec` (of `server`, `allow`ed or not) says.
    pub(super) fn of(rec: &Value, server: &str, allow: bool) -> Logged {
        let reasons = reasons_of(rec);
        let gavel_denied = !allow
            && reasons
                .iter()
                .any(|r| crate::decision::codes::is_after_policy(r));
        Logged {
            server: server.to_string(),
            tool: rec
                .pointer("/input/action/tool")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            id: rec["decision_id"].as_str().unwrap_or("").to_string(),
            allow,
            reasons,
            approval: rec
                .pointer("/result/require_approval")
                .is_some_and(|v| !v.is_null()),
            gavel_denied,
        }
    }
}

impl Replayer {
    /// Holds a decision that allowed only with a human's approval until its
    /// final approval step (same decision id) says how it ended.
    pub(super) fn defer(&mut self, logged: Logged, now: Replayed) {
        if logged.id.is_empty() || self.pending.len() >= MAX_PENDING_APPROVALS {
            self.unsettled(1);
            return;
        }
        if self
            .pending
            .insert(logged.id.clone(), (logged, now))
            .is_some()
        {
            // Two records with one decision id: the log is damaged, and the
            // earlier one will never be settled.
            self.unsettled(1);
        }
    }

    pub(super) fn unsettled(&mut self, n: u64) {
        if n > 0 {
            self.summary.unreplayable("approval_unsettled", n);
        }
    }

    /// The final approval step of a deferred decision: the logged outcome is
    /// the step's result; where the candidate asks for approval too, the
    /// human's (or host's) logged answer stands for it as well.
    pub(super) fn settle(&mut self, rec: &Value) {
        let Some((mut logged, mut now)) = rec["decision_id"]
            .as_str()
            .and_then(|id| self.pending.remove(id))
        else {
            return;
        };
        logged.allow = rec.pointer("/result/allow").and_then(Value::as_bool) == Some(true);
        logged.reasons = reasons_of(rec);
        // A declined, timed-out or unavailable approval is a gavel-side
        // denial: the candidate's own reasons are not compared with it.
        logged.gavel_denied = !logged.allow;
        if now.approval && !logged.allow {
            now.allow = false;
            now.reasons = logged.reasons.clone();
        }
        self.compare(logged, now);
    }

    /// Counts one re-decided record: unchanged, a flip (grouped by tool and
    /// by the deny side's reasons), an approval change or a reason change.
    pub(super) fn compare(&mut self, logged: Logged, now: Replayed) {
        let Logged {
            server,
            tool,
            id,
            allow,
            reasons: logged_reasons,
            approval: logged_approval,
            gavel_denied,
        } = logged;
        let s = &mut self.summary;
        let dir = match (allow, now.allow) {
            (true, false) => {
                s.allow_to_deny += 1;
                "allow→deny"
            }
            (false, true) => {
                s.deny_to_allow += 1;
                "deny→allow"
            }
            _ => {
                s.unchanged += 1;
                if allow && now.allow && logged_approval != now.approval {
                    let what = if now.approval {
                        s.approval_added += 1;
                        "approval added"
                    } else {
                        s.approval_removed += 1;
                        "approval removed"
                    };
                    add(&mut s.by_approval, format!("{what} {server}/{tool}"), &id);
                }
                let (mut a, mut b) = (logged_reasons, now.reasons);
                a.sort();
                b.sort();
                if !allow && a != b && !gavel_denied {
                    s.reasons_changed += 1;
                }
                return;
            }
        };
        add(&mut s.by_tool, format!("{dir} {server}/{tool}"), &id);
        let deny_reasons = if now.allow {
            &logged_reasons
        } else {
            &now.reasons
        };
        if deny_reasons.is_empty() {
            add(&mut s.by_reason, format!("{dir} (no reason code)"), &id);
        }
        for r in deny_reasons {
            add(&mut s.by_reason, format!("{dir} {r}"), &id);
        }
    }
}
