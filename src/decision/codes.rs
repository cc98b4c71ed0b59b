//! Reason codes gavel itself produces — one list, read by the metrics (a
//! gavel code always gets its own `reason` label, never `other`) and by
//! replay (a logged deny gavel made after the policy stands whatever the
//! candidate says). A new gavel-side code goes here, or it would count as
//! `other` and replay would treat it as the policy's; the unit test below
//! scans the producers for codes missing from these lists.

/// Codes of the policy path itself: static rules, layer combination and
/// every fail-closed case of the engine.
pub const POLICY_PATH: &[&str] = &[
    "static_rule",
    "no_decision",
    "no_policy",
    "policy_unavailable",
    "policy_error",
    "policy_timeout",
    "policy_bad_decision",
];

/// Codes gavel decides after the policy allowed: limits, budget, the
/// state store, the decision record and human approval. A replayed allow
/// cannot undo them.
pub const AFTER_POLICY: &[&str] = &[
    "rate_limited",
    "budget_exceeded",
    "state_unavailable",
    "audit_unavailable",
    "approval_required",
    "approval_declined",
    "approval_cancelled",
    "approval_timeout",
    "approval_failed",
];

/// Whether gavel (not a bundle) produces `code`; `denied_by_<layer>` is
/// the layer combination's code for a deny without a reason.
pub fn is_gavel_code(code: &str) -> bool {
    POLICY_PATH.contains(&code) || AFTER_POLICY.contains(&code) || code.starts_with("denied_by_")
}

/// Whether gavel decided `code` after the policy.
pub fn is_after_policy(code: &str) -> bool {
    AFTER_POLICY.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// String literals right after `marker` (whitespace and a leading `d,`
    /// argument skipped).
    fn literals_after(src: &str, marker: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, _) in src.match_indices(marker) {
            let rest = src[i + marker.len()..].trim_start();
            let rest = rest.strip_prefix("d,").map_or(rest, str::trim_start);
            if let Some(lit) = rest.strip_prefix('"') {
                out.push(lit.split('"').next().unwrap_or("").to_string());
            }
        }
        out
    }

    #[test]
    fn every_code_gavel_produces_is_listed() {
        let producers: &[(&str, &str, &[&str])] = &[
            (
                "decision/guard.rs",
                include_str!("guard.rs"),
                &["reasons: vec!["],
            ),
            (
                "host/approval.rs",
                include_str!("../host/approval.rs"),
                &[
                    "denied(",
                    "\"declined\",",
                    "\"cancelled\",",
                    "\"timeout\",",
                    "\"failed\",",
                ],
            ),
            (
                "decision/record.rs",
                include_str!("record.rs"),
                &["Decision::deny("],
            ),
            (
                "decision/mod.rs",
                include_str!("mod.rs"),
                &["Decision::deny(", "self.fail(sp,"],
            ),
            (
                "decision/static_rules.rs",
                include_str!("static_rules.rs"),
                &["reasons: vec!["],
            ),
            (
                "decision/layers.rs",
                include_str!("layers.rs"),
                &["out.reasons.push("],
            ),
            (
                "decision/engine/mod.rs",
                include_str!("engine/mod.rs"),
                &[".. } => ", "(_) => ", "d.reasons = vec!["],
            ),
        ];
        for (file, src, markers) in producers {
            let found: Vec<String> = markers
                .iter()
                .flat_map(|m| literals_after(src, m))
                .filter(|c| c.contains('_') && !c.contains(' '))
                .collect();
            assert!(!found.is_empty(), "{file}: the scan found no code");
            for code in found {
                assert!(
                    is_gavel_code(&code),
                    "{file} produces {code:?}, missing from decision::codes"
                );
            }
        }
        assert!(is_gavel_code("denied_by_identity"));
        assert!(!is_gavel_code("path_outside_scope"));
        assert!(is_after_policy("state_unavailable") && !is_after_policy("policy_error"));
    }
}
