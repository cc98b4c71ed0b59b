//! How gavel combines the decisions of a server's policy layers (identity,
//! resource, workflow, compliance, override). Pure and exhaustively tested;
//! docs/policy.md states the same rules:
//!
//! 1. Default deny: without at least one non-override layer, deny (`no_policy`).
//! 2. Every non-override layer must allow; any deny wins.
//! 3. An override layer answers `waive: [codes]`. It may waive only reason
//!    codes raised by **resource** or **workflow** layers — never identity or
//!    compliance. The override's own `allow` is ignored.
//! 4. A denying layer whose every reason is waived counts as allowing; a deny
//!    with no reason code cannot be waived.
//! 5. Each waiver appears in `matched_rules` as `override:<bundle>:waived:<code>`.
//! 6. Approval applies only to an allowing decision. When several allowing
//!    layers ask for it, one request is made that is as strict as each: the
//!    smallest `remember_seconds` (absent, "do not remember", wins), the
//!    narrowest scope (`call` < `tool` < `server`), and every reason.

use super::codes::{self, ReasonCode};
use super::contract::{Approval, PolicyMetadata};

/// The layer names live in config, which validates them; the combining
/// rules (which layers an override may waive) live here.
pub use crate::config::Layer;

impl Layer {
    fn waivable(self) -> bool {
        matches!(self, Layer::Resource | Layer::Workflow)
    }
}

/// One layer's answer.
#[derive(Debug, Clone, Default)]
pub struct LayerDecision {
    pub bundle: String,
    pub rule: String,
    pub allow: bool,
    pub reasons: Vec<String>,
    pub remediation: Option<String>,
    pub appeal_path: Option<String>,
    pub audit_required: bool,
    pub waive: Vec<String>,
    pub withhold: bool,
    pub require_approval: Option<Approval>,
    /// What the policy said about itself (its own version, matched rules).
    pub own: PolicyMetadata,
    /// Keys of the answer gavel does not understand (logged, never silent).
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Combined {
    pub allow: bool,
    pub reasons: Vec<String>,
    pub remediation: Option<String>,
    pub appeal_path: Option<String>,
    pub audit_required: bool,
    pub matched_rules: Vec<String>,
    pub withhold: bool,
    /// An allowing decision that some layer allows only with approval.
    pub require_approval: Option<Approval>,
    /// The deciding layers' own metadata: every layer's for an allow, the
    /// denying layers' for a deny (the ones whose `matched_rules` show).
    pub policy_metadata: Vec<PolicyMetadata>,
}

/// How wide a remembered approval's scope is (`call` < `tool` < `server`;
/// absent is `call`).
fn scope_width(scope: Option<&str>) -> u8 {
    match scope {
        Some("server") => 2,
        Some("tool") => 1,
        _ => 0,
    }
}

/// Two allowing layers that each ask for approval: one question that is at
/// least as strict as each of them, so adding a layer can never weaken
/// another's approval. The shortest `remember_seconds` wins (absent — do not
/// remember — beats any number), the narrowest scope wins, and every reason
/// is shown to the user.
fn merge_approvals(a: Approval, b: &Approval) -> Approval {
    let remember_seconds = match (a.remember_seconds, b.remember_seconds) {
        (Some(x), Some(y)) => Some(x.min(y)),
        _ => None,
    };
    let scope = if scope_width(b.scope.as_deref()) < scope_width(a.scope.as_deref()) {
        b.scope.clone()
    } else {
        a.scope
    };
    let mut reason = a.reason;
    if !reason.split("; ").any(|r| r == b.reason) {
        reason = format!("{reason}; {}", b.reason);
    }
    Approval {
        reason,
        remember_seconds,
        scope,
    }
}

/// What the deciding layers said about themselves: every layer's for an
/// allow, the denying layers' (their rule is in `matched`) for a deny.
fn own_metadata(
    layers: &[(Layer, LayerDecision)],
    allow: bool,
    matched: &[String],
) -> Vec<PolicyMetadata> {
    layers
        .iter()
        .filter(|(l, d)| *l != Layer::Override && !d.own.is_empty())
        .filter(|(_, d)| allow || matched.contains(&d.rule))
        .map(|(_, d)| d.own.clone())
        .collect()
}

pub fn combine(layers: &[(Layer, LayerDecision)]) -> Combined {
    let mut out = Combined::default();
    if !layers.iter().any(|(l, _)| *l != Layer::Override) {
        out.reasons.push(ReasonCode::NoPolicy.into());
        out.remediation = Some(
            "No policy layer decides this server; ask the gavel administrator to configure one."
                .into(),
        );
        return out;
    }
    let waivers: Vec<(&str, &str)> = layers
        .iter()
        .filter(|(l, _)| *l == Layer::Override)
        .flat_map(|(_, d)| d.waive.iter().map(move |c| (d.bundle.as_str(), c.as_str())))
        .collect();
    let mut allow = true;
    let mut approval_appeal = None;
    for (layer, d) in layers.iter().filter(|(l, _)| *l != Layer::Override) {
        out.audit_required |= d.audit_required;
        if d.allow {
            if let Some(a) = &d.require_approval {
                out.require_approval = Some(match out.require_approval.take() {
                    None => a.clone(),
                    Some(prev) => merge_approvals(prev, a),
                });
                approval_appeal = approval_appeal.or_else(|| d.appeal_path.clone());
                out.matched_rules
                    .push(format!("{}:require_approval", d.rule));
            }
            continue;
        }
        let (waived, kept): (Vec<&String>, Vec<&String>) = d
            .reasons
            .iter()
            .partition(|r| layer.waivable() && waivers.iter().any(|(_, c)| c == r));
        if !d.reasons.is_empty() && kept.is_empty() {
            for code in waived {
                let (bundle, _) = waivers
                    .iter()
                    .find(|(_, c)| *c == code.as_str())
                    .copied()
                    .unwrap_or(("?", ""));
                out.matched_rules
                    .push(format!("override:{bundle}:waived:{code}"));
            }
            continue;
        }
        allow = false;
        out.matched_rules.push(d.rule.clone());
        if d.reasons.is_empty() {
            out.reasons.push(codes::denied_by(layer.as_str()));
        }
        for r in kept {
            if !out.reasons.contains(r) {
                out.reasons.push(r.clone());
            }
        }
        out.remediation = out.remediation.or_else(|| d.remediation.clone());
        out.appeal_path = out.appeal_path.or_else(|| d.appeal_path.clone());
        out.withhold |= d.withhold;
    }
    out.allow = allow;
    out.policy_metadata = own_metadata(layers, allow, &out.matched_rules);
    if allow {
        out.reasons.clear();
        // Where to ask when the approval cannot be had here.
        if out.require_approval.is_some() {
            out.appeal_path = approval_appeal;
        }
    } else {
        // Approval only ever relaxes nothing: a deny stays a deny.
        out.require_approval = None;
        out.matched_rules
            .retain(|r| !r.ends_with(":require_approval"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bundle: &str, allow: bool, reasons: &[&str]) -> LayerDecision {
        LayerDecision {
            bundle: bundle.into(),
            rule: format!("data.{bundle}.decision"),
            allow,
            reasons: reasons.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn waive(codes: &[&str]) -> LayerDecision {
        LayerDecision {
            bundle: "org".into(),
            rule: "data.org.decision".into(),
            allow: false,
            waive: codes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn clause1_default_deny_without_layers() {
        assert!(!combine(&[]).allow);
        assert_eq!(
            combine(&[(Layer::Override, waive(&["x"]))]).reasons,
            vec!["no_policy"]
        );
    }

    #[test]
    fn clause2_every_layer_must_allow_any_deny_wins() {
        assert!(
            combine(&[
                (Layer::Identity, d("id", true, &[])),
                (Layer::Resource, d("fs", true, &[]))
            ])
            .allow
        );
        let c = combine(&[
            (Layer::Identity, d("id", true, &[])),
            (Layer::Compliance, d("comp", false, &["region"])),
        ]);
        assert!(!c.allow);
        assert_eq!(c.reasons, vec!["region"]);
        assert_eq!(c.matched_rules, vec!["data.comp.decision"]);
    }

    #[test]
    fn clause3_override_waives_resource_and_workflow_only() {
        let c = combine(&[
            (Layer::Resource, d("fs", false, &["path_outside_scope"])),
            (Layer::Override, waive(&["path_outside_scope"])),
        ]);
        assert!(c.allow, "{c:?}");
        let c = combine(&[
            (Layer::Workflow, d("wf", false, &["too_many_calls"])),
            (Layer::Override, waive(&["too_many_calls"])),
        ]);
        assert!(c.allow);
        for l in [Layer::Identity, Layer::Compliance] {
            let c = combine(&[
                (l, d("x", false, &["code"])),
                (Layer::Override, waive(&["code"])),
            ]);
            assert!(!c.allow, "{l:?} must not be waivable");
        }
        // The override's own allow is ignored: it cannot allow on its own.
        let mut o = waive(&[]);
        o.allow = true;
        assert!(
            !combine(&[
                (Layer::Resource, d("fs", false, &["r"])),
                (Layer::Override, o)
            ])
            .allow
        );
    }

    #[test]
    fn clause4_partial_waivers_and_codeless_denies() {
        let c = combine(&[
            (Layer::Resource, d("fs", false, &["a", "b"])),
            (Layer::Override, waive(&["a"])),
        ]);
        assert!(!c.allow);
        assert_eq!(c.reasons, vec!["b"]);
        let c = combine(&[
            (Layer::Resource, d("fs", false, &[])),
            (Layer::Override, waive(&["a"])),
        ]);
        assert!(!c.allow);
        assert_eq!(c.reasons, vec!["denied_by_resource"]);
    }

    #[test]
    fn clause5_waivers_are_in_matched_rules() {
        let c = combine(&[
            (Layer::Resource, d("fs", false, &["a"])),
            (Layer::Override, waive(&["a"])),
        ]);
        assert_eq!(c.matched_rules, vec!["override:org:waived:a"]);
    }

    #[test]
    fn waivers_never_reach_identity_or_compliance_even_alongside_a_waived_layer() {
        let c = combine(&[
            (Layer::Identity, d("id", false, &["blocked"])),
            (Layer::Resource, d("fs", false, &["blocked"])),
            (Layer::Override, waive(&["blocked"])),
        ]);
        assert!(!c.allow);
        assert_eq!(c.reasons, vec!["blocked"]);
        assert_eq!(
            c.matched_rules,
            vec!["data.id.decision", "override:org:waived:blocked"]
        );
    }

    #[test]
    fn withhold_remediation_and_audit() {
        let mut deny = d("fs", false, &["r"]);
        deny.withhold = true;
        deny.remediation = Some("first".into());
        let mut allow = d("id", true, &[]);
        allow.withhold = true;
        allow.audit_required = true;
        let mut second = d("wf", false, &["s"]);
        second.remediation = Some("second".into());
        let c = combine(&[
            (Layer::Identity, allow.clone()),
            (Layer::Resource, deny),
            (Layer::Workflow, second.clone()),
        ]);
        assert!(c.withhold && c.audit_required);
        assert_eq!(c.remediation.as_deref(), Some("first"));
        assert_eq!(c.reasons, vec!["r", "s"]);
        // An allowing layer's withhold does not matter.
        let c = combine(&[(Layer::Identity, allow), (Layer::Workflow, second)]);
        assert!(!c.withhold);
        // An allow carries no reasons.
        let c = combine(&[(Layer::Resource, d("fs", true, &["ignored"]))]);
        assert!(c.allow && c.reasons.is_empty());
    }

    #[test]
    fn several_overrides_and_several_waived_codes() {
        let mut o2 = waive(&["b"]);
        o2.bundle = "team".into();
        let c = combine(&[
            (Layer::Resource, d("fs", false, &["a", "b"])),
            (Layer::Override, waive(&["a"])),
            (Layer::Override, o2),
        ]);
        assert!(c.allow, "{c:?}");
        assert_eq!(
            c.matched_rules,
            vec!["override:org:waived:a", "override:team:waived:b"]
        );
    }

    #[test]
    fn approval_comes_from_an_allowing_layer_and_never_survives_a_deny() {
        let approval = Approval {
            reason: "r".into(),
            remember_seconds: None,
            scope: None,
        };
        let mut needs = d("res", true, &[]);
        needs.require_approval = Some(approval.clone());
        needs.appeal_path = Some("https://ask".into());
        let c = combine(&[
            (Layer::Resource, needs.clone()),
            (Layer::Identity, d("id", true, &[])),
        ]);
        assert!(c.allow);
        assert_eq!(c.require_approval, Some(approval));
        assert_eq!(c.appeal_path.as_deref(), Some("https://ask"));
        let c = combine(&[
            (Layer::Resource, needs),
            (Layer::Identity, d("id", false, &["no"])),
        ]);
        assert!(!c.allow);
        assert_eq!(c.require_approval, None);
        assert!(
            !c.matched_rules
                .iter()
                .any(|r| r.ends_with(":require_approval"))
        );
    }

    fn asks(rule: &str, reason: &str, remember: Option<u64>, scope: Option<&str>) -> LayerDecision {
        let mut l = d(rule, true, &[]);
        l.require_approval = Some(Approval {
            reason: reason.into(),
            remember_seconds: remember,
            scope: scope.map(String::from),
        });
        l
    }

    fn merged(layers: &[LayerDecision]) -> Approval {
        let ls: Vec<(Layer, LayerDecision)> = layers
            .iter()
            .map(|l| (Layer::Resource, l.clone()))
            .collect();
        let c = combine(&ls);
        assert!(c.allow);
        c.require_approval.expect("approval kept")
    }

    #[test]
    fn approvals_of_several_layers_take_the_smallest_remember_seconds() {
        let a = merged(&[
            asks("a", "r", Some(600), None),
            asks("b", "r", Some(60), None),
        ]);
        assert_eq!(a.remember_seconds, Some(60));
        // Either order.
        let a = merged(&[
            asks("a", "r", Some(60), None),
            asks("b", "r", Some(600), None),
        ]);
        assert_eq!(a.remember_seconds, Some(60));
    }

    #[test]
    fn approvals_absent_remember_seconds_means_do_not_remember_and_wins() {
        for layers in [
            [asks("a", "r", None, None), asks("b", "r", Some(600), None)],
            [asks("a", "r", Some(600), None), asks("b", "r", None, None)],
        ] {
            assert_eq!(merged(&layers).remember_seconds, None);
        }
    }

    #[test]
    fn approvals_take_the_narrowest_scope() {
        let cases = [
            (Some("server"), Some("tool"), Some("tool")),
            (Some("tool"), Some("server"), Some("tool")),
            (Some("server"), None, None),
            (None, Some("server"), None),
            (Some("call"), Some("tool"), Some("call")),
            (Some("tool"), Some("call"), Some("call")),
            (Some("server"), Some("server"), Some("server")),
        ];
        for (x, y, want) in cases {
            let a = merged(&[asks("a", "r", Some(1), x), asks("b", "r", Some(1), y)]);
            assert_eq!(a.scope.as_deref(), want, "{x:?} + {y:?}");
        }
    }

    #[test]
    fn approvals_show_every_reason_once() {
        let a = merged(&[
            asks("a", "deleting needs a human", None, None),
            asks("b", "production data", None, None),
            asks("c", "deleting needs a human", None, None),
        ]);
        assert_eq!(a.reason, "deleting needs a human; production data");
        let ls: Vec<(Layer, LayerDecision)> =
            [asks("a", "x", None, None), asks("b", "y", None, None)]
                .into_iter()
                .map(|l| (Layer::Resource, l))
                .collect();
        assert_eq!(
            combine(&ls).matched_rules,
            vec![
                "data.a.decision:require_approval",
                "data.b.decision:require_approval"
            ],
            "every asking layer is named"
        );
    }
}
