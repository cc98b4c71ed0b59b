//! The enforcement point: every request that can reach an upstream is decided
//! here first (see ARCHITECTURE.md, invariant 1).
//!
//! `Enforcer::decide` is the one function that decides. Forwarding code needs a
//! [`Permit`] to send anything to an upstream, and only an allowing decision
//! produces one, so a path that forgets to decide does not compile. Order:
//! static rules → the server's Rego engine (fail closed on any error) →
//! limits and budget → log (the steps are in `decide`). The decision record
//! reaches the log before `decide` returns, so before the request is
//! forwarded or the denial answered. This file holds the [`Enforcer`] and
//! what the rest of gavel asks of it.

mod action;
mod active;
pub mod codes;
pub mod contract;
mod decide;
pub mod deny;
pub mod engine;
pub mod guard;
pub mod input;
pub mod layers;
mod memo;
pub mod output_paths;
mod owed;
pub mod paths;
pub mod persona;
mod pool;
mod query;
mod record;
pub mod remembered;
pub mod seen;
mod shadow;
pub(crate) use shadow::ShadowPolicy;
pub mod result;
pub mod static_rules;
pub mod tool_lint;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

pub use action::{Action, ActionType, Permit, RequestEra, Verdict};
pub use active::Active;
pub(crate) use active::Policy;
pub use contract::{Decision, Disclosure};
pub use input::{DecisionContext, SessionCounters, SessionState};
pub use query::Prediction;

use crate::audit::DecisionLog;

use crate::config::{Config, Identity};
use crate::state::limits::Limit;
use static_rules::StaticRules;

/// One server's part of the enforcer, built by `crate::policy` (the
/// lifecycle) and handed over whole to [`Enforcer::assemble`].
pub(crate) struct ServerPolicy {
    pub(crate) static_rules: StaticRules,
    pub(crate) active: arc_swap::ArcSwap<Active>,
    pub(crate) fail_open: bool,
    pub(crate) annotations_trusted: bool,
    /// `[[servers.NAME.limits]]`, applied with the bundle's own.
    pub(crate) config_limits: Vec<Limit>,
    /// `servers.NAME.path_root`: what relative path arguments are resolved
    /// against (classification and `input.action.canonical_args`).
    pub(crate) path_root: Option<paths::PathRoot>,
}

/// Decides every request for every server of one gavel process.
///
/// Configuration is read from `config` where it is needed (identity, log
/// masking, timeouts), never copied into fields of its own.
pub struct Enforcer {
    servers: HashMap<String, ServerPolicy>,
    log: Option<Arc<DecisionLog>>,
    /// Rate limits and budgets, after the policy.
    guard: crate::decision::guard::Guard,
    /// Bumped on every activation; sessions re-evaluate what they list.
    generation: tokio::sync::watch::Sender<u64>,
    config: Arc<Config>,
    /// Every clock read of a decision (environment.time, counters, limits,
    /// budgets, approvals) — the test clock when `GAVEL_TEST_CLOCK_FILE` is set.
    clock: Arc<dyn crate::state::clock::Clock>,
    /// Human approvals remembered by this process (`host::approval`).
    approvals: crate::decision::remembered::Remembered,
    /// The servers' tool lists and the schema lint's last findings.
    tool_lint: tool_lint::ToolLint,
    /// `[telemetry]`: the span exporter, set once by the gateway (it needs
    /// the runtime the enforcer is built before).
    tracer: std::sync::OnceLock<crate::telemetry::Tracer>,
    /// Each persona's policy per server (`persona.rs`; empty without personas).
    personas: persona::PersonaPolicies,
    /// Shadow evaluations waiting for their thread (`decision::shadow`).
    shadow_queue: shadow::ShadowQueue,
    /// [`Enforcer::labels`], made once: every part is fixed for the
    /// process (its instance id, the version, the clock), and every record
    /// carries them — two records a call.
    labels: serde_json::Map<String, Value>,
}

impl Enforcer {
    /// Puts together an enforcer from parts the policy lifecycle built
    /// (`crate::policy`: `Enforcer::from_config` and friends live there,
    /// because building means resolving and verifying bundles, which the
    /// enforcement point must not depend on).
    pub(crate) fn assemble(
        config: &Config,
        servers: HashMap<String, ServerPolicy>,
        log: Option<Arc<DecisionLog>>,
        guard: guard::Guard,
        clock: Arc<dyn crate::state::clock::Clock>,
    ) -> Self {
        Self {
            labels: Self::make_labels(clock.as_ref()),
            approvals: remembered::Remembered::new(clock.clone()),
            clock,
            servers,
            log,
            guard,
            generation: tokio::sync::watch::channel(0).0,
            config: Arc::new(config.clone()),
            tool_lint: Default::default(),
            tracer: Default::default(),
            personas: Default::default(),
            shadow_queue: Default::default(),
        }
    }

    /// Installs the span exporter (once; a second call is ignored).
    pub fn set_tracer(&self, tracer: crate::telemetry::Tracer) {
        let _ = self.tracer.set(tracer);
    }

    /// The span exporter, when `[telemetry]` is on.
    pub fn tracer(&self) -> Option<&crate::telemetry::Tracer> {
        self.tracer.get()
    }

    /// The configuration this enforcer was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The active policy of `server` (or of a persona target `SERVER@PERSONA`).
    pub fn active(&self, server: &str) -> Option<Arc<Active>> {
        if let Some((s, p)) = persona::split_target(server) {
            return self.persona_active(s, p);
        }
        self.servers.get(server).map(|s| s.active.load_full())
    }

    /// Swaps in a new policy for `server` atomically and tells every session
    /// (which re-evaluates its lists and announces changes).
    pub fn activate(&self, server: &str, active: Active) {
        if let Some((s, p)) = persona::split_target(server) {
            return self.activate_persona(s, p, active);
        }
        let Some(sp) = self.servers.get(server) else {
            return;
        };
        if let Policy::Rego(e) = &active.policy {
            tracing::info!(server = %server, policy = %e.policy_version(), "policy activated");
        }
        let previous = sp.active.swap(Arc::new(active));
        sp.active.load().publish(server, Some(&previous));
        self.generation.send_modify(|g| *g += 1);
        // The new bundles against the tools already known.
        self.relint();
    }

    /// Changes whenever a policy is activated.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Per server: `none`, the loaded policy version, or why it is unavailable.
    pub fn policy_status(&self) -> Vec<(String, Result<String, String>)> {
        let mut v: Vec<_> = self
            .servers
            .iter()
            .map(|(n, s)| {
                let active = s.active.load();
                let st = match &active.policy {
                    Policy::None => Ok("none (static rules only)".to_string()),
                    Policy::Rego(e) => Ok(e.policy_version().to_string()),
                    Policy::Unavailable(why) => Err(why.clone()),
                };
                (n.clone(), st)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Per-server policy state for `gavel status` (OPA's bundle status in spirit).
    pub fn status_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, sp) in &self.servers {
            let active = sp.active.load();
            let mut v = persona::active_json(&active);
            if let Some(shadow) = &active.shadow {
                v["shadow"] = shadow.status();
            }
            v["lint"] = self.lint_status(name);
            if let Some(p) = self.persona_status(name) {
                v["personas"] = p;
            }
            out.insert(name.clone(), v);
        }
        Value::Object(out)
    }

    pub fn decision_log(&self) -> Option<&Arc<DecisionLog>> {
        self.log.as_ref()
    }

    /// Whether decisions may read or write the state store (limits, budgets).
    pub fn uses_store(&self) -> bool {
        self.guard.uses_store()
    }

    /// Whether a decision may first be tried on the event loop
    /// ([`Enforcer::try_decide`]; not with a network store).
    pub fn can_try_inline(&self) -> bool {
        self.guard.can_try_inline()
    }

    /// The clock every decision reads.
    pub fn clock(&self) -> &Arc<dyn crate::state::clock::Clock> {
        &self.clock
    }

    /// Now, as RFC 3339 with nanoseconds, on the decision clock.
    pub fn now_rfc3339(&self) -> String {
        humantime::format_rfc3339_nanos(crate::state::clock::system_time(self.clock.now()))
            .to_string()
    }

    /// The `labels` of every record gavel writes to the decision log: OPA's
    /// `id` (this process's instance) and `version`, then gavel's. A test
    /// clock is named in each, so a log made with one can never pass for a
    /// production log.
    pub fn labels(&self) -> serde_json::Map<String, Value> {
        self.labels.clone()
    }

    /// [`Enforcer::labels`]' value, made once by [`Enforcer::assemble`].
    fn make_labels(clock: &dyn crate::state::clock::Clock) -> serde_json::Map<String, Value> {
        let mut l = serde_json::Map::new();
        l.insert("id".into(), json!(crate::audit::record::instance_id()));
        l.insert("app".into(), json!("gavel"));
        l.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        if let Some(file) = clock.test_clock() {
            l.insert("test_clock".into(), json!(file));
        }
        l
    }

    /// Remembered human approvals and how long to wait for one.
    pub fn approvals(&self) -> &crate::decision::remembered::Remembered {
        &self.approvals
    }

    pub fn approval_timeout(&self) -> std::time::Duration {
        self.config.policy.approval_timeout
    }

    /// The configured identity (stdio; an HTTP session may carry its own).
    pub fn configured_identity(&self) -> &Identity {
        &self.config.identity
    }

    pub fn annotations_trusted(&self, server: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|s| s.annotations_trusted)
    }

    /// Gives back the budget charged for an allowed call that was then not
    /// made (its approval was declined, cancelled or timed out), into the
    /// period it was charged to. Rate limits keep the charge
    /// ([`crate::decision::guard::Guard::refund_budget`] says why).
    pub fn refund(&self, permit: &Permit) {
        if let Some(r) = &permit.receipt {
            self.guard.refund_budget(r);
        }
    }

    /// Counts a tool result's tokens in the budget the call was charged to
    /// (estimate: 4 bytes a token).
    pub fn charge_result_tokens(&self, permit: &Permit, bytes: usize) {
        if let Some(r) = &permit.receipt {
            self.guard.charge_result_tokens(r, bytes.div_ceil(4) as u64);
        }
    }

    /// [`Self::charge_result_tokens`] for an input round's text, to the
    /// budget its request was charged.
    pub fn charge_round_tokens(&self, gate: &result::RoundGate, bytes: usize) {
        if let Some(r) = &gate.receipt {
            self.guard.charge_result_tokens(r, bytes.div_ceil(4) as u64);
        }
    }

    /// How many times a decision or query read the budget from the store
    /// for `input.context.budget` (a charge's own view is not a read).
    pub fn budget_reads(&self) -> u64 {
        self.guard.budget_reads()
    }

    /// Writes the budget's result tokens still kept in memory (shutdown:
    /// `front::lifecycle`; `decision::guard` says why they wait).
    pub fn flush_budget(&self) {
        self.guard.flush();
    }

    /// Counts the outcome of a decision whose approval just settled (see
    /// [`Enforcer::decide`]: such decisions are not counted there).
    pub fn count_outcome(&self, action: &Action, d: &Decision) {
        let active = self.active(&action.server);
        let engine = match active.as_deref().map(|a| &a.policy) {
            Some(Policy::Rego(e)) => Some(e.as_ref()),
            _ => None,
        };
        decide::count_decision(action, d, engine);
    }

    /// Whether a tool appears in `tools/list`: not statically denied, and the
    /// bundles' `visible` rule (if any) holds. An error in the list rule
    /// hides the tool (fail closed: a rule that exists to hide tools must not
    /// reveal them when it breaks) and is logged as an error naming the server
    /// and tool — a list emptied by a broken rule is never silent.
    /// `visible` sees the session's identity (a token user on HTTP) and id,
    /// so two users of one `gavel serve` can be shown different tools.
    /// Whether `ctx`'s session is shown anything of `server` besides its
    /// tools (prompts, resources, templates): not when its persona may not
    /// reach the server, nor when the policy that would decide its requests
    /// is unavailable (fail closed — a request to it would be denied
    /// anyway). Their routes stay, so a request still gets the denial that
    /// says why.
    pub fn server_listed(&self, server: &str, ctx: &DecisionContext) -> bool {
        let Some(sp) = self.servers.get(server) else {
            return false;
        };
        let pick = self.pick_persona(server, ctx);
        if pick.refusal().is_some() {
            return false;
        }
        !matches!(
            self.active_for(sp, server, &pick).policy,
            Policy::Unavailable(_)
        )
    }

    pub fn tool_listed(
        &self,
        server: &str,
        tool: &str,
        annotations: &Value,
        ctx: &DecisionContext,
    ) -> bool {
        let Some(sp) = self.servers.get(server) else {
            return false;
        };
        if sp.static_rules.tool_allowed(tool).is_err() {
            return false;
        }
        // A persona sees only the servers it may reach, decided by its policy.
        let pick = self.pick_persona(server, ctx);
        if pick.refusal().is_some() {
            return false;
        }
        let active = self.active_for(sp, server, &pick);
        let engine = match &active.policy {
            Policy::Rego(engine) => engine,
            Policy::None => return true,
            // Nothing can be decided: nothing is shown (a call still gets
            // the structured denial that says why).
            Policy::Unavailable(_) => return false,
        };
        let mut action = Action::new(ActionType::ToolCall, server, tool, json!({}));
        action.annotations = annotations.clone();
        action.annotations_trusted = sp.annotations_trusted;
        let now =
            humantime::format_rfc3339_seconds(crate::state::clock::system_time(self.clock.now()))
                .to_string();
        let input = input::build(self.identity(ctx), &action, ctx, &[], &now);
        match engine.visible(&input) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(server = %server, tool = %tool, "the visible rule failed ({e}); the tool is not listed until the policy is fixed (a call to it is still decided by the decision rule)");
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "budget_read_tests.rs"]
mod budget_read_tests;
#[cfg(test)]
#[path = "enforcer_tests.rs"]
mod enforcer_tests;
#[cfg(test)]
#[path = "inline_tests.rs"]
mod inline_tests;
