//! Decision contract v1: what a policy (or gavel's own static rules) answers for
//! one request, and what gavel adds to it.
//!
//! The JSON shape is versioned (`schemas/decision.v1.json`). Policy sets
//! `allow`, `reasons`, `remediation`, `appeal_path`, `audit_required`;
//! gavel adds `policy_version` and `matched_rules` (and, with the workflow layer,
//! `rate_limit_remaining` / `retry_after_seconds`).
//!
//! A policy may also answer in the shape the production pattern documents,
//! with `appeal_path`, `audit_required`, `policy_version`, `matched_rules`
//! and `rate_limit_remaining` nested under `metadata`. gavel reads both; what
//! the policy says about itself (its own version, its own matched rules) is
//! kept in `policy_metadata`, beside gavel's bundle revisions and rule paths,
//! because an auditor needs both: which artefact ran, and which of its rules
//! the author meant to fire.

use serde::{Deserialize, Serialize};

use super::codes::ReasonCode;

/// Version of the decision contract carried in every decision.
pub const DECISION_CONTRACT_VERSION: &str = "gavel.decision/v1";

/// Whether the agent may see why it was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Disclosure {
    /// The agent sees reasons, remediation and appeal path.
    #[default]
    Explain,
    /// The agent sees a generic denial (SEP-2643 `remediation: undisclosed`);
    /// the decision log keeps the full decision.
    Withhold,
}

/// One decision. Default is deny: a decision that was never filled in refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Decision {
    pub allow: bool,
    /// Set by gavel: unique id of this decision (decision log `decision_id`,
    /// SEP-2643 `authorizationContextId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// Short reason codes, e.g. `static_rule`, `data_class_unauthorized_for_user`.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Human text for each reason code when the bundle ships a reason catalog.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reason_texts: std::collections::BTreeMap<String, String>,
    /// What the agent (or its user) can do to get this allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// Where to appeal (URL, ticket queue, team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeal_path: Option<String>,
    #[serde(default)]
    pub audit_required: bool,
    /// Set by gavel: bundle revision(s) or `static` / `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Set by gavel: which rules (or static globs, or override waivers) decided.
    #[serde(default)]
    pub matched_rules: Vec<String>,
    #[serde(default)]
    pub disclosure: Disclosure,
    /// Set by gavel when rate limits apply to the call: requests still
    /// allowed right now under the tightest limit (0 when refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_remaining: Option<u64>,
    /// Set by gavel when a rate limit refused the call: seconds to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<f64>,
    /// Set by a policy layer that allows only with a human's approval: gavel
    /// asks the user (elicitation) before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<Approval>,
    /// What the deciding layers said about themselves (their own
    /// `policy_version`, `matched_rules`, `rate_limit_remaining`), one entry
    /// per layer that said anything: the denying layers of a denial, every
    /// layer of an allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_metadata: Vec<PolicyMetadata>,
}

/// One layer's own account of itself, from its decision's `metadata` (or
/// the same keys at the top level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PolicyMetadata {
    /// The bundle whose decision said it.
    pub bundle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_rules: Vec<String>,
    /// The policy's own count; gavel's `rate_limit_remaining` (from
    /// `[limits]` and the bundles' limits) is the enforced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_remaining: Option<u64>,
}

impl PolicyMetadata {
    pub fn is_empty(&self) -> bool {
        self.policy_version.is_none()
            && self.matched_rules.is_empty()
            && self.rate_limit_remaining.is_none()
    }
}

/// `require_approval{reason, remember_seconds?, scope?}` of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Why a human must approve: shown to the user.
    pub reason: String,
    /// How long an approval is remembered (absent: asked every time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_seconds: Option<u64>,
    /// What a remembered approval covers: `call` (default: this tool with
    /// these exact arguments), `tool` (any arguments), `server` (any tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Decision {
    pub fn allow(policy_version: impl Into<String>) -> Self {
        Decision {
            allow: true,
            policy_version: Some(policy_version.into()),
            ..Default::default()
        }
    }

    /// A denial by gavel itself (a bundle's denials come from its decision):
    /// one of gavel's own codes and what to do about it.
    pub fn deny(reason: ReasonCode, remediation: impl Into<String>) -> Self {
        Decision {
            allow: false,
            reasons: vec![reason.into()],
            remediation: Some(remediation.into()),
            ..Default::default()
        }
    }
}
