//! Personas at the enforcement point: which persona a request's agent is,
//! what it may reach, and the policy it is decided with.
//!
//! The agent id comes from the session's identity only — the verified token
//! over HTTP, `[identity] agent.id` over stdio — never from anything the host
//! sends in a request. With personas configured, each server keeps one
//! compiled policy per persona that reaches it (the server's bundles, the
//! persona's, the shared ones) beside its base policy (without any
//! persona's); a decision loads the one its agent's persona picks, once,
//! as it loads the base policy otherwise. An agent of no persona gets
//! `[policy] unmatched_persona`: a denial (`persona_unmatched`) or the base
//! policy. A persona's request to a server it does not list is denied
//! (`persona_server_denied`) before any policy runs.
//!
//! The policy lifecycle (`crate::policy`) builds, verifies and hot-reloads a
//! persona's policy with the same code as a server's; it names it by a
//! *target*, `SERVER@PERSONA` ([`target`]), wherever it names a server's
//! (`Enforcer::build_server`, `activate`, `active`).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use super::active::Policy;
use super::codes::ReasonCode;
use super::{Active, Decision, DecisionContext, Enforcer, ServerPolicy};
use crate::config::{Persona, UnmatchedPersona};

/// Separates a server and a persona in a target (`fs@hr`): neither a
/// server nor a persona name may hold it.
pub const TARGET_SEP: char = '@';

/// The target naming `persona`'s policy for `server`.
pub fn target(server: &str, persona: &str) -> String {
    format!("{server}{TARGET_SEP}{persona}")
}

/// `(server, persona)` of a persona target; `None` for a plain server name.
pub fn split_target(t: &str) -> Option<(&str, &str)> {
    t.split_once(TARGET_SEP)
}

/// Every persona's policy, per server.
#[derive(Default)]
pub(crate) struct PersonaPolicies {
    /// server → persona → the policy it decides with now.
    by_server: HashMap<String, HashMap<String, ArcSwap<Active>>>,
}

impl PersonaPolicies {
    /// Adds the policy of `persona` for `server` (built by the lifecycle).
    pub(crate) fn insert(&mut self, server: &str, persona: &str, active: Active) {
        self.by_server
            .entry(server.to_string())
            .or_default()
            .insert(persona.to_string(), ArcSwap::from_pointee(active));
    }

    fn get(&self, server: &str, persona: &str) -> Option<&ArcSwap<Active>> {
        self.by_server.get(server).and_then(|m| m.get(persona))
    }

    /// Whether a persona's policy reads limits (the state store is needed).
    pub(crate) fn has_limits(&self) -> bool {
        self.by_server
            .values()
            .flat_map(|m| m.values())
            .any(|a| matches!(&a.load().policy, Policy::Rego(e) if e.limits().next().is_some()))
    }
}

/// The persona a request is decided as.
pub(crate) enum Pick<'c> {
    /// No persona is configured: the server's policy, as always.
    Off,
    /// An agent of no persona, `unmatched_persona = "base"`.
    Base,
    Persona(&'c Persona),
    /// Denied before any policy: the agent matches no persona
    /// (`unmatched_persona = "deny"`), or its persona does not list the
    /// server.
    Refused(Option<&'c Persona>, Box<Decision>),
}

impl Pick<'_> {
    /// `labels.persona` of the decision record (a matched persona only).
    pub(crate) fn label(&self) -> Option<&str> {
        match self {
            Pick::Persona(p) | Pick::Refused(Some(p), _) => Some(p.name.as_str()),
            _ => None,
        }
    }

    /// The denial, when the persona refuses the request outright.
    pub(crate) fn refusal(&self) -> Option<Decision> {
        match self {
            Pick::Refused(_, d) => Some(d.as_ref().clone()),
            _ => None,
        }
    }
}

impl Enforcer {
    /// Installs the personas' policies (the lifecycle builds them beside
    /// the servers').
    pub(crate) fn with_personas(mut self, p: PersonaPolicies) -> Self {
        self.personas = p;
        self
    }

    /// The persona `ctx`'s agent is, for a request to `server`.
    pub(crate) fn pick_persona(&self, server: &str, ctx: &DecisionContext) -> Pick<'_> {
        let personas = &self.config.personas;
        if !personas.enabled() {
            return Pick::Off;
        }
        let agent = &self.identity(ctx).agent.id;
        match personas.of(agent) {
            Some(p) if p.reaches(server) => Pick::Persona(p),
            Some(p) => Pick::Refused(
                Some(p),
                Box::new(Decision::deny(
                    ReasonCode::PersonaServerDenied,
                    format!(
                        "Agent {agent:?} (persona {:?}) may not use server {server:?}: the persona reaches only {}. Ask the operator to add the server to personas.{}.servers if this agent needs it.",
                        p.name,
                        p.servers.as_deref().unwrap_or_default().join(", "),
                        p.name
                    ),
                )),
            ),
            None => match personas.unmatched {
                UnmatchedPersona::Base => Pick::Base,
                UnmatchedPersona::Deny => Pick::Refused(
                    None,
                    Box::new(Decision::deny(
                        ReasonCode::PersonaUnmatched,
                        format!(
                            "Agent {agent:?} matches no persona, and [policy] unmatched_persona = \"deny\": every request is refused. Ask the operator to add the agent id to a persona's agents."
                        ),
                    )),
                ),
            },
        }
    }

    /// The persona of a session whose verified identity is `identity`
    /// (`None`: the configured one), for the `labels.persona` of the
    /// records written outside `decide` (approval steps).
    pub fn persona_of(&self, identity: Option<&crate::config::Identity>) -> Option<&str> {
        let id = identity.unwrap_or(&self.config.identity);
        self.config
            .personas
            .of(&id.agent.id)
            .map(|p| p.name.as_str())
    }

    /// The policy a request to `server` is decided with under `pick`. A
    /// persona whose policy was never built for the server (cannot happen
    /// for a configured pair) fails closed.
    pub(super) fn active_for(&self, sp: &ServerPolicy, server: &str, pick: &Pick) -> Arc<Active> {
        match pick {
            Pick::Persona(p) => self.persona_active(server, &p.name).unwrap_or_else(|| {
                Arc::new(Active {
                    policy: Policy::Unavailable(format!(
                        "no policy was built for persona {:?} on server {server:?}",
                        p.name
                    )),
                    signers: vec![],
                    shadow: None,
                })
            }),
            _ => sp.active.load_full(),
        }
    }

    /// The active policy of `persona` for `server`.
    pub fn persona_active(&self, server: &str, persona: &str) -> Option<Arc<Active>> {
        self.personas.get(server, persona).map(|a| a.load_full())
    }

    /// Swaps in a persona's new policy for `server` (the counterpart of
    /// [`Enforcer::activate`] for a target `SERVER@PERSONA`).
    pub(super) fn activate_persona(&self, server: &str, persona: &str, active: Active) {
        let Some(slot) = self.personas.get(server, persona) else {
            return;
        };
        let t = target(server, persona);
        if let Policy::Rego(e) = &active.policy {
            tracing::info!(server = %server, persona = %persona, policy = %e.policy_version(), "policy activated");
        }
        let previous = slot.swap(Arc::new(active));
        slot.load().publish(&t, Some(&previous));
        self.generation.send_modify(|g| *g += 1);
        // The persona's new bundles against the tools already known.
        self.relint();
    }

    /// Per persona target (`SERVER@PERSONA`, sorted): its policy version, or
    /// why it is unavailable — what `gavel config check` reports beside the
    /// servers' own ([`Enforcer::policy_status`]).
    pub fn persona_policy_status(&self) -> Vec<(String, Result<String, String>)> {
        let mut v: Vec<_> = self
            .personas
            .by_server
            .iter()
            .flat_map(|(server, m)| {
                m.iter().map(move |(persona, slot)| {
                    let st = match &slot.load().policy {
                        Policy::None => Ok("none (static rules only)".to_string()),
                        Policy::Rego(e) => Ok(e.policy_version().to_string()),
                        Policy::Unavailable(why) => Err(why.clone()),
                    };
                    (target(server, persona), st)
                })
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every persona's Rego policy, by the server it is for (the schema
    /// lint checks them against that server's tools).
    pub(super) fn persona_engines(&self) -> Vec<(&str, Arc<super::engine::PolicyEngine>)> {
        self.personas
            .by_server
            .iter()
            .flat_map(|(server, m)| {
                m.values()
                    .filter_map(move |slot| match &slot.load().policy {
                        Policy::Rego(e) => Some((server.as_str(), e.clone())),
                        _ => None,
                    })
            })
            .collect()
    }

    /// `gavel status`: each persona's policy for `server` (its bundles and
    /// their revisions), under the server's entry.
    pub(super) fn persona_status(&self, server: &str) -> Option<Value> {
        let m = self.personas.by_server.get(server)?;
        let mut out = serde_json::Map::new();
        for (persona, slot) in m {
            let active = slot.load();
            out.insert(persona.clone(), active_json(&active));
        }
        Some(Value::Object(out))
    }
}

/// One policy as `gavel status` shows it.
pub(super) fn active_json(active: &Active) -> Value {
    match &active.policy {
        Policy::None => json!({"policy": "none"}),
        Policy::Unavailable(why) => json!({"policy": "unavailable", "last_error": why}),
        Policy::Rego(e) => {
            let bundles: Vec<Value> = e
                .bundle_info()
                .into_iter()
                .map(|b| {
                    let signer = active.signer(&b.name);
                    json!({"name": b.name, "active_revision": b.revision, "digest": b.digest, "layer": b.layer, "signer_keyid": signer})
                })
                .collect();
            json!({"policy": "rego", "version": e.policy_version(), "bundles": bundles})
        }
    }
}

#[cfg(test)]
#[path = "persona_tests.rs"]
mod tests;
