//! Reason codes gavel itself produces, as a type: every gavel-side denial
//! names a [`ReasonCode`], so a new code is a new variant and the compiler
//! finds every `match` that must learn about it. Read by the metrics (a gavel
//! code always gets its own `reason` label, never `other`) and by replay (a
//! logged deny gavel made after the policy stands whatever the candidate
//! says).
//!
//! The strings are part of gavel's interface: they appear in the decision
//! log, in answers to the agent and in metrics labels, so [`ReasonCode::as_str`]
//! must never change for an existing variant (the unit test below pins them).
//! A decision's `reasons` stay strings because a bundle's own codes are
//! open-ended; the free functions [`is_gavel_code`] and [`is_after_policy`]
//! classify such strings (read from a decision or from a log).

use std::fmt;

/// The prefix of the layer combination's code for a deny that gave no
/// reason: `denied_by_<layer>` (`decision::layers`).
pub const DENIED_BY: &str = "denied_by_";

/// When gavel decides a code: on the policy path, or after the policy allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Static rules, layer combination and every fail-closed case of the
    /// engine.
    Policy,
    /// Limits, budget, the state store, the decision record and human
    /// approval: a candidate policy replayed over the log cannot undo them.
    AfterPolicy,
}

/// One table declares every code: its variant, its string and its stage.
/// The enum, [`ReasonCode::ALL`], [`ReasonCode::as_str`],
/// [`ReasonCode::parse`] and [`ReasonCode::stage`] are generated from it, so
/// they cannot disagree.
macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident => $text:literal, $stage:ident;)*) => {
        /// A reason code gavel produces (not a bundle).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ReasonCode {
            $($(#[$doc])* $name,)*
        }

        impl ReasonCode {
            /// Every code, in the order of the table.
            pub const ALL: &[ReasonCode] = &[$(ReasonCode::$name),*];

            /// The code as the decision log, the agent and the metrics see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ReasonCode::$name => $text,)*
                }
            }

            /// The code a string names, if gavel produces it
            /// (`denied_by_<layer>` is not a variant: see [`is_gavel_code`]).
            pub fn parse(s: &str) -> Option<ReasonCode> {
                match s {
                    $($text => Some(ReasonCode::$name),)*
                    _ => None,
                }
            }

            /// When gavel decides this code.
            pub fn stage(self) -> Stage {
                match self {
                    $(ReasonCode::$name => Stage::$stage,)*
                }
            }
        }
    };
}

reason_codes! {
    /// `servers.NAME.tools` refused the tool.
    StaticRule => "static_rule", Policy;
    /// The decision rule was undefined for this request.
    NoDecision => "no_decision", Policy;
    /// No non-override layer decides the server.
    NoPolicy => "no_policy", Policy;
    /// The server's policy could not be loaded (or the server is unknown).
    PolicyUnavailable => "policy_unavailable", Policy;
    /// The evaluation failed.
    PolicyError => "policy_error", Policy;
    /// The evaluation ran past `[policy] eval_timeout`.
    PolicyTimeout => "policy_timeout", Policy;
    /// The decision did not have the contract's shape.
    PolicyBadDecision => "policy_bad_decision", Policy;
    /// The agent matches no persona and `[policy] unmatched_persona = "deny"`.
    PersonaUnmatched => "persona_unmatched", Policy;
    /// The agent's persona does not list the server (`personas.NAME.servers`).
    PersonaServerDenied => "persona_server_denied", Policy;
    /// A rate limit refused the call.
    RateLimited => "rate_limited", AfterPolicy;
    /// The budget is spent.
    BudgetExceeded => "budget_exceeded", AfterPolicy;
    /// The state store that keeps the call's limits or budget cannot be used.
    StateUnavailable => "state_unavailable", AfterPolicy;
    /// The decision record could not be written.
    AuditUnavailable => "audit_unavailable", AfterPolicy;
    /// The host cannot ask a human for the approval the policy requires.
    ApprovalRequired => "approval_required", AfterPolicy;
    /// The user declined.
    ApprovalDeclined => "approval_declined", AfterPolicy;
    /// The user dismissed the question.
    ApprovalCancelled => "approval_cancelled", AfterPolicy;
    /// No one answered in time.
    ApprovalTimeout => "approval_timeout", AfterPolicy;
    /// The approval request itself failed.
    ApprovalFailed => "approval_failed", AfterPolicy;
    /// A result rule denied a result without naming a reason.
    ResultDenied => "result_denied", Policy;
    /// A result asked to be filtered has more items than gavel evaluates.
    ResultTooManyItems => "result_too_many_items", Policy;
}

impl ReasonCode {
    /// Whether gavel decides this code after the policy allowed.
    pub fn is_after_policy(self) -> bool {
        self.stage() == Stage::AfterPolicy
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision's `reasons` are strings (a bundle's codes are its own).
impl From<ReasonCode> for String {
    fn from(c: ReasonCode) -> String {
        c.as_str().to_string()
    }
}

/// Lets a test or a log reader compare a code with the string it expects.
impl PartialEq<&str> for ReasonCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The layer combination's code for a deny without a reason.
pub fn denied_by(layer: &str) -> String {
    format!("{DENIED_BY}{layer}")
}

/// Whether gavel (not a bundle) produces `code`: a [`ReasonCode`], or the
/// layer combination's `denied_by_<layer>`.
pub fn is_gavel_code(code: &str) -> bool {
    ReasonCode::parse(code).is_some() || code.starts_with(DENIED_BY)
}

/// Whether gavel decided `code` after the policy.
pub fn is_after_policy(code: &str) -> bool {
    ReasonCode::parse(code).is_some_and(ReasonCode::is_after_policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings are an interface (decision log, answers, metrics): the
    /// list is pinned here, so renaming a variant's string fails.
    #[test]
    fn the_codes_and_their_strings_are_fixed() {
        let strings: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings,
            [
                "static_rule",
                "no_decision",
                "no_policy",
                "policy_unavailable",
                "policy_error",
                "policy_timeout",
                "policy_bad_decision",
                "persona_unmatched",
                "persona_server_denied",
                "rate_limited",
                "budget_exceeded",
                "state_unavailable",
                "audit_unavailable",
                "approval_required",
                "approval_declined",
                "approval_cancelled",
                "approval_timeout",
                "approval_failed",
                "result_denied",
                "result_too_many_items",
            ]
        );
        let after: Vec<&str> = ReasonCode::ALL
            .iter()
            .filter(|c| c.is_after_policy())
            .map(|c| c.as_str())
            .collect();
        assert_eq!(
            after,
            [
                "rate_limited",
                "budget_exceeded",
                "state_unavailable",
                "audit_unavailable",
                "approval_required",
                "approval_declined",
                "approval_cancelled",
                "approval_timeout",
                "approval_failed",
            ]
        );
    }

    #[test]
    fn every_code_parses_back_and_nothing_else_does() {
        for &c in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
            assert_eq!(String::from(c), c.as_str());
            assert!(is_gavel_code(c.as_str()));
            assert_eq!(is_after_policy(c.as_str()), c.is_after_policy());
        }
        assert_eq!(ReasonCode::parse("Static_Rule"), None);
        assert_eq!(ReasonCode::parse(""), None);
    }

    #[test]
    fn log_strings_are_classified() {
        assert!(is_gavel_code("denied_by_identity"));
        assert_eq!(denied_by("resource"), "denied_by_resource");
        assert!(!is_gavel_code("path_outside_scope"));
        assert!(is_after_policy("state_unavailable") && !is_after_policy("policy_error"));
        assert!(!is_after_policy("denied_by_workflow"));
        assert!(!is_after_policy("not_a_code"));
    }
}
