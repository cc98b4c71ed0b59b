//! The enforcement point: every request that can reach an upstream is decided
//! here first (see ARCHITECTURE.md, invariant 1).
//!
//! `Enforcer::decide` is the one function that decides. Forwarding code needs a
//! [`Permit`] to send anything to an upstream, and only an allowing decision
//! produces one, so a path that forgets to decide does not compile. Order:
//! static rules → the server's Rego engine (fail closed on any error) → log.
//! The decision record reaches the log before `decide` returns, so before the
//! request is forwarded or the denial answered.

mod action;
mod active;
pub mod codes;
pub mod contract;
pub mod deny;
pub mod engine;
pub mod guard;
pub mod input;
pub mod layers;
mod memo;
pub mod paths;
mod pool;
mod record;
pub mod remembered;
pub mod static_rules;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

pub use action::{Action, ActionType, Permit, Verdict};
pub use active::Active;
pub(crate) use active::Policy;
pub use contract::{Decision, Disclosure};
pub use input::{DecisionContext, SessionCounters, SessionState};

use crate::audit::DecisionLog;

use crate::config::{Config, Identity};
use engine::{EngineError, EngineOptions};
use static_rules::StaticRules;

/// One server's part of the enforcer, built by `crate::policy` (the
/// lifecycle) and handed over whole to [`Enforcer::assemble`].
pub(crate) struct ServerPolicy {
    pub(crate) static_rules: StaticRules,
    pub(crate) active: arc_swap::ArcSwap<Active>,
    pub(crate) fail_open: bool,
    pub(crate) annotations_trusted: bool,
    /// `[[servers.NAME.limits]]`, applied with the bundle's own.
    pub(crate) config_limits: Vec<crate::state::limits::Limit>,
    /// `servers.NAME.path_root`: what relative path arguments are resolved
    /// against (classification and `input.action.canonical_args`).
    pub(crate) path_root: Option<paths::PathRoot>,
}

/// Decides every request for every server of one gavel process.
pub struct Enforcer {
    servers: HashMap<String, ServerPolicy>,
    identity: Identity,
    log: Option<Arc<DecisionLog>>,
    secret_fields: Vec<String>,
    max_arg_bytes: usize,
    /// Rate limits and budgets, after the policy.
    guard: crate::decision::guard::Guard,
    /// Bumped on every activation; sessions re-evaluate what they list.
    generation: tokio::sync::watch::Sender<u64>,
    config: Arc<Config>,
    engine_options: EngineOptions,
    /// Every clock read of a decision (environment.time, counters, limits,
    /// budgets, approvals) — the test clock when `GAVEL_TEST_CLOCK_FILE` is set.
    clock: Arc<dyn crate::state::clock::Clock>,
    /// Human approvals remembered by this process (`host::approval`).
    approvals: crate::decision::remembered::Remembered,
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
        engine_options: EngineOptions,
    ) -> Self {
        Self {
            approvals: remembered::Remembered::new(clock.clone()),
            clock,
            servers,
            identity: config.identity.clone(),
            log,
            secret_fields: config.log.secret_fields.clone(),
            max_arg_bytes: config.log.max_arg_bytes,
            guard,
            generation: tokio::sync::watch::channel(0).0,
            config: Arc::new(config.clone()),
            engine_options,
        }
    }

    /// The configuration this enforcer was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// How this enforcer's engines are built (a rebuild uses the same).
    pub(crate) fn engine_options(&self) -> &EngineOptions {
        &self.engine_options
    }

    /// The active policy of `server`.
    pub fn active(&self, server: &str) -> Option<Arc<Active>> {
        self.servers.get(server).map(|s| s.active.load_full())
    }

    /// Swaps in a new policy for `server` atomically and tells every session
    /// (which re-evaluates its lists and announces changes).
    pub fn activate(&self, server: &str, active: Active) {
        let Some(sp) = self.servers.get(server) else {
            return;
        };
        if let Policy::Rego(e) = &active.policy {
            tracing::info!(server = %server, policy = %e.policy_version(), "policy activated");
        }
        let previous = sp.active.swap(Arc::new(active));
        sp.active.load().publish(server, Some(&previous));
        self.generation.send_modify(|g| *g += 1);
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
            let v = match &active.policy {
                Policy::None => json!({"policy": "none"}),
                Policy::Unavailable(why) => json!({"policy": "unavailable", "last_error": why}),
                Policy::Rego(e) => {
                    let bundles: Vec<Value> = e
                        .bundle_info()
                        .into_iter()
                        .map(|b| {
                            let signer = active.signers.iter().find(|(n, _)| *n == b.name).map(|(_, k)| k.clone());
                            json!({"name": b.name, "active_revision": b.revision, "digest": b.digest, "layer": b.layer, "signer_keyid": signer})
                        })
                        .collect();
                    json!({"policy": "rego", "version": e.policy_version(), "bundles": bundles})
                }
            };
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

    /// The clock every decision reads.
    pub fn clock(&self) -> &Arc<dyn crate::state::clock::Clock> {
        &self.clock
    }

    /// Now, as RFC 3339 with nanoseconds, on the decision clock.
    pub fn now_rfc3339(&self) -> String {
        humantime::format_rfc3339_nanos(crate::state::clock::system_time(self.clock.now()))
            .to_string()
    }

    /// The `labels` of every record gavel writes to the decision log. A test
    /// clock is named in each, so a log made with one can never pass for a
    /// production log.
    pub fn labels(&self) -> serde_json::Map<String, Value> {
        let mut l = serde_json::Map::new();
        l.insert("app".into(), json!("gavel"));
        l.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        if let Some(file) = self.clock.test_clock() {
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
        &self.identity
    }

    pub fn annotations_trusted(&self, server: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|s| s.annotations_trusted)
    }

    /// The enforcement function. Synchronous: it runs on every request before
    /// any byte is written upstream, and writes the decision record first.
    pub fn decide(&self, action: &Action, ctx: &DecisionContext) -> Verdict {
        let start = Instant::now();
        let now = self.now_rfc3339();
        // One load per decision: the whole decision uses this policy even if
        // a new one is activated meanwhile.
        let active = self
            .servers
            .get(&action.server)
            .map(|s| s.active.load_full());
        let policy = active.as_ref().map(|a| &a.policy);
        // The input is only built when something reads it (a Rego policy or
        // the decision log): static-only servers stay on the fast path.
        let needs_input = self.log.is_some() || matches!(policy, Some(Policy::Rego(_)));
        let input = if needs_input {
            let root = self
                .servers
                .get(&action.server)
                .and_then(|s| s.path_root.as_ref());
            let mut classes = match policy {
                Some(Policy::Rego(engine)) => engine.classify(&action.tool, &action.args, root),
                _ => Vec::new(),
            };
            for c in &action.upstream_data_classes {
                if !classes.contains(c) {
                    classes.push(c.clone());
                }
            }
            let mut input = input::build(self.identity(ctx), action, ctx, &classes, &now);
            paths::annotate(&mut input, &action.args, root);
            if let Some(b) = self.guard.budget_view(&self.who(action, ctx)) {
                input["context"]["budget"] = b;
            }
            input
        } else {
            Value::Null
        };
        let mut eval_ns = 0u64;
        let mut path = "gavel/static".to_string();
        let mut policy_label = "none";
        let mut bundles = json!({});
        let mut fail_open_used = false;
        let mut decision = match self.servers.get(&action.server) {
            None => Decision::deny(
                "policy_unavailable",
                format!(
                    "gavel has no policy for server {:?}; check servers.toml",
                    action.server
                ),
            ),
            Some(sp) => {
                let d = sp.static_rules.decide(action);
                if !d.allow {
                    policy_label = "static";
                    d
                } else {
                    match policy.unwrap_or(&Policy::None) {
                        Policy::None => d,
                        Policy::Unavailable(why) => {
                            policy_label = "unavailable";
                            self.fail(sp, "policy_unavailable", format!("The policy for server {:?} could not be loaded ({why}); every request is refused until it is fixed.", action.server), &mut fail_open_used)
                        }
                        Policy::Rego(engine) => {
                            policy_label = "rego";
                            if self.log.is_some() {
                                path = engine
                                    .bundle_info()
                                    .first()
                                    .map(|b| b.name.clone())
                                    .unwrap_or_default();
                                bundles = engine.bundles_json().clone();
                            }
                            match engine.decide(&input) {
                                Ok(out) => {
                                    eval_ns = out.eval_ns;
                                    let c = out.combined;
                                    Decision {
                                        allow: c.allow,
                                        reasons: c.reasons,
                                        reason_texts: out.reason_texts,
                                        remediation: c.remediation,
                                        appeal_path: c.appeal_path,
                                        audit_required: c.audit_required,
                                        policy_version: Some(engine.policy_version().to_string()),
                                        matched_rules: c.matched_rules,
                                        require_approval: c.require_approval,
                                        disclosure: if c.withhold {
                                            Disclosure::Withhold
                                        } else {
                                            Disclosure::Explain
                                        },
                                        ..Default::default()
                                    }
                                }
                                Err(e) => {
                                    let mut d = self.fail(
                                        sp,
                                        e.reason_code(),
                                        fail_text(&e),
                                        &mut fail_open_used,
                                    );
                                    d.policy_version = Some(engine.policy_version().to_string());
                                    d
                                }
                            }
                        }
                    }
                }
            }
        };
        let limits = if action.kind == ActionType::ToolCall {
            self.limits_for(action, active.as_deref())
        } else {
            vec![]
        };
        let mut receipt = if action.kind == ActionType::ToolCall {
            self.guard.check(
                &self.who(action, ctx),
                &limits,
                arg_tokens(action),
                &mut decision,
            )
        } else {
            None
        };
        decision.decision_id = Some(next_decision_id());
        if decision.policy_version.is_none() {
            decision.policy_version = Some(policy_label.to_string());
        }
        let engine = match policy {
            Some(Policy::Rego(e)) => Some(e.as_ref()),
            _ => None,
        };
        let recorded = self.log_decision(
            &decision,
            record::Record {
                engine,
                input,
                path: &path,
                bundles,
                policy: policy_label,
                fail_open: fail_open_used,
                eval_ns,
                start,
                now: &now,
                upstream_classes: (action.kind == ActionType::ToolCall)
                    .then_some(action.upstream_data_classes.as_slice()),
            },
        );
        if let Err(e) = recorded
            && self.unrecorded(&mut decision, &e)
        {
            // The call will not be made, through no doing of the agent's:
            // give back everything its decision charged.
            self.guard.refund_limits(&self.who(action, ctx), &limits);
            if let Some(r) = receipt.take() {
                self.guard.refund_budget(&r);
            }
        }
        let metrics = crate::audit::metrics::global();
        metrics.latency(&action.server, start.elapsed().as_secs_f64());
        // A call that waits for a human is counted when the approval settles
        // (`count_outcome`), with the outcome it then has.
        if !(decision.allow && decision.require_approval.is_some()) {
            metrics.outcome(
                &action.server,
                (action.kind == ActionType::ToolCall).then_some(action.tool.as_str()),
                decision.allow,
                &decision.reasons,
                |c| record::reason_is_label(engine, c),
            );
        }
        if decision.allow {
            Verdict::Allow(Permit {
                decision,
                receipt,
                _private: (),
            })
        } else {
            Verdict::Deny(decision)
        }
    }

    /// Who is asking: the session's verified token identity (HTTP), else the
    /// configured one (stdio).
    fn identity<'a>(&'a self, ctx: &'a DecisionContext) -> &'a Identity {
        ctx.identity.as_deref().unwrap_or(&self.identity)
    }

    fn who<'a>(
        &'a self,
        action: &'a Action,
        ctx: &'a DecisionContext,
    ) -> crate::decision::guard::Who<'a> {
        let id = self.identity(ctx);
        crate::decision::guard::Who {
            server: &action.server,
            tool: &action.tool,
            user: &id.user.id,
            agent: &id.agent.id,
        }
    }

    /// Every rate limit that applies to a tools/call: config's and the
    /// bundles'.
    fn limits_for<'a>(
        &'a self,
        action: &Action,
        active: Option<&'a Active>,
    ) -> Vec<&'a crate::state::limits::Limit> {
        let Some(sp) = self.servers.get(&action.server) else {
            return vec![];
        };
        let mut limits: Vec<&crate::state::limits::Limit> = sp.config_limits.iter().collect();
        if let Some(Policy::Rego(e)) = active.map(|a| &a.policy) {
            limits.extend(e.limits());
        }
        limits.retain(|l| l.applies(&action.tool));
        limits
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

    /// Counts the outcome of a decision whose approval just settled (see
    /// [`Enforcer::decide`]: such decisions are not counted there).
    pub fn count_outcome(&self, action: &Action, d: &Decision) {
        let active = self.active(&action.server);
        let engine = match active.as_deref().map(|a| &a.policy) {
            Some(Policy::Rego(e)) => Some(e.clone()),
            _ => None,
        };
        crate::audit::metrics::global().outcome(
            &action.server,
            (action.kind == ActionType::ToolCall).then_some(action.tool.as_str()),
            d.allow,
            &d.reasons,
            |c| record::reason_is_label(engine.as_deref(), c),
        );
    }

    fn fail(
        &self,
        sp: &ServerPolicy,
        code: &str,
        text: String,
        fail_open_used: &mut bool,
    ) -> Decision {
        let mut d = Decision::deny(code, text);
        if sp.fail_open {
            *fail_open_used = true;
            d.allow = true;
            d.matched_rules.push("fail_open".into());
        }
        d
    }

    /// Whether a tool appears in `tools/list`: not statically denied, and the
    /// bundles' `visible` rule (if any) holds. An error in the list rule is
    /// logged and the tool stays visible — never a silently empty list.
    /// `visible` sees the session's identity (a token user on HTTP) and id,
    /// so two users of one `gavel serve` can be shown different tools.
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
        let active = sp.active.load();
        let Policy::Rego(engine) = &active.policy else {
            return true;
        };
        let action = Action {
            kind: ActionType::ToolCall,
            server: server.into(),
            tool: tool.into(),
            args: json!({}),
            annotations: annotations.clone(),
            annotations_trusted: sp.annotations_trusted,
            tool_digest: None,
            upstream_data_classes: vec![],
        };
        let now =
            humantime::format_rfc3339_seconds(crate::state::clock::system_time(self.clock.now()))
                .to_string();
        let input = input::build(self.identity(ctx), &action, ctx, &[], &now);
        match engine.visible(&input) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(server = %server, tool = %tool, "the visible rule failed ({e}); listing the tool");
                true
            }
        }
    }
}

fn fail_text(e: &EngineError) -> String {
    match e {
        EngineError::Timeout { .. } => format!(
            "The policy took too long to decide ({e}); the request is refused. Try again; if it persists, report it to the policy owners."
        ),
        EngineError::Eval { .. } => format!(
            "The policy failed while deciding ({e}); the request is refused. Report it to the policy owners."
        ),
        EngineError::BadDecision { .. } => format!(
            "The policy answered in a shape gavel does not understand ({e}); the request is refused. Report it to the policy owners."
        ),
        EngineError::Load(_) => format!("The policy is unavailable ({e}); the request is refused."),
    }
}

/// Decision ids: a random 64-bit prefix per process (so ids from several gavel
/// processes never collide) and a counter — unique without a random-number
/// syscall on every decision. UUID-shaped for tools that expect one.
fn next_decision_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    uuid::Uuid::from_u64_pair(prefix, n)
        .hyphenated()
        .to_string()
}

/// Tokens of a call's arguments (estimate: 4 bytes a token).
fn arg_tokens(action: &Action) -> u64 {
    serde_json::to_vec(&action.args)
        .map(|v| v.len().div_ceil(4) as u64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "enforcer_tests.rs"]
mod enforcer_tests;

#[cfg(test)]
mod id_tests {
    #[test]
    fn decision_ids_are_unique_and_uuid_shaped() {
        let a = super::next_decision_id();
        let b = super::next_decision_id();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        assert_eq!(a[..18], b[..18], "same process prefix");
    }
}
