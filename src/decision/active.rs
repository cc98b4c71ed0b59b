//! What one server decides with right now: its policy (none, a Rego engine,
//! or unavailable — fail closed), swapped whole on activation.

use std::sync::Arc;

use super::engine::PolicyEngine;

/// The policy of one server.
pub(crate) enum Policy {
    /// No bundle configured: static rules only (`policy: "none"`).
    None,
    Rego(Arc<PolicyEngine>),
    /// Configured but not usable: every request fails closed.
    Unavailable(String),
}

/// What a server decides with right now. Replaced whole and atomically when a
/// new bundle is activated; a decision loads it once, so in-flight decisions
/// finish on the engine they started with and none sees a half-built one.
pub struct Active {
    pub(crate) policy: Policy,
    /// (bundle name, signer key id) for each signed bundle that verified.
    pub(crate) signers: Vec<(String, String)>,
    /// The shadow policy (`shadow_bundles`), built with the live one and
    /// swapped with it (`decision::shadow`); never decides.
    pub(crate) shadow: Option<super::shadow::ShadowPolicy>,
}

impl Active {
    /// Publishes this policy in the metrics as the one deciding for `server`
    /// (`previous`: the one it replaces, whose revisions stop reading 1).
    pub(crate) fn publish(&self, server: &str, previous: Option<&Active>) {
        let m = crate::audit::metrics::global();
        let revisions = |a: &Active| match &a.policy {
            Policy::Rego(e) => e
                .bundle_info()
                .into_iter()
                .map(|b| (b.name.clone(), b.revision.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let now = revisions(self);
        for (bundle, revision) in previous.map(revisions).unwrap_or_default() {
            if !now.contains(&(bundle.clone(), revision.clone())) {
                m.bundle_inactive(server, &bundle, &revision);
            }
        }
        for (bundle, revision) in &now {
            m.bundle_active(server, bundle, revision);
        }
        m.policy_available(server, self.unavailable().is_none());
        if self.shadow.is_some() {
            m.shadow_dropped(server, false);
        }
    }

    /// Whether this is a usable Rego policy (not `none`, not unavailable).
    pub fn is_rego(&self) -> bool {
        matches!(self.policy, Policy::Rego(_))
    }

    /// Why the policy is unavailable, if it is.
    pub fn unavailable(&self) -> Option<&str> {
        match &self.policy {
            Policy::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    /// The revision of the active bundle named `name`.
    pub fn bundle_revision(&self, name: &str) -> Option<String> {
        match &self.policy {
            Policy::Rego(e) => e
                .bundle_info()
                .into_iter()
                .find(|b| b.name == name)
                .map(|b| b.revision.clone()),
            _ => None,
        }
    }

    /// `name@revision` of every active bundle (for logs and status).
    pub fn version(&self) -> Option<String> {
        match &self.policy {
            Policy::Rego(e) => Some(e.policy_version().to_string()),
            _ => None,
        }
    }
}
