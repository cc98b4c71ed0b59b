//! [`Enforcer::decide`], the enforcement function, as its steps: the policy
//! input (`input_for`), the evaluation — static rules, then the server's
//! policy (`evaluate`) — the charge of rate limits and budget (`charge`),
//! the decision record (`record`) and the metrics (`count`). Each step
//! reads the one policy loaded at the start, so a decision never mixes two
//! policies.

use std::time::Instant;

use serde_json::Value;

use super::active::Policy;
use super::codes::ReasonCode;
use super::engine::{EngineError, PolicyEngine};
use super::{
    Action, ActionType, Decision, DecisionContext, Enforcer, ServerPolicy, Verdict, input, paths,
    record,
};
use crate::audit::record::Bundles;
use crate::config::Identity;
use crate::state::limits::Limit;

impl Enforcer {
    /// The enforcement function. Synchronous: it runs on every request before
    /// any byte is written upstream, and writes the decision record first.
    /// The steps: the policy input, the evaluation (static rules, then the
    /// server's policy), the charge of limits and budget, the record, the
    /// metrics.
    pub fn decide(&self, action: &Action, ctx: &DecisionContext) -> Verdict {
        // Store calls may wait here, so every attempt ends in a verdict; the
        // fallback is only the type's (fail closed).
        self.decide_steps(action, ctx, false).unwrap_or_else(|| {
            Verdict::Deny(Decision::deny(
                ReasonCode::StateUnavailable,
                "gavel could not reach its state store for this request; it is refused.",
            ))
        })
    }

    /// [`Enforcer::decide`] on a thread that must not wait for the state
    /// store (the event loop, `crate::state::wait`). `None`: a lock of the
    /// store is held elsewhere — nothing was charged, recorded or counted,
    /// and the caller decides again where waiting is allowed.
    pub fn try_decide(&self, action: &Action, ctx: &DecisionContext) -> Option<Verdict> {
        self.decide_steps(action, ctx, true)
    }

    /// The steps of [`Enforcer::decide`]; with `no_wait`, the steps that
    /// touch the store (the input's budget, the charge) give up rather than
    /// wait, before anything is recorded.
    fn decide_steps(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        no_wait: bool,
    ) -> Option<Verdict> {
        let start = Instant::now();
        let now = self.now_rfc3339();
        let sp = self.servers.get(&action.server);
        let (pick, active) = self.policy_for(action, ctx, sp);
        let policy = active.as_ref().map(|a| &a.policy);
        let engine = engine_of(policy);
        // Read before the policy only when a live rule may read it; the
        // record — and a shadow whose rules read it — gets the charge's own
        // view of it otherwise (a shadow never adds a read to the call).
        let budget_first = engine.is_some_and(PolicyEngine::reads_budget);
        let stored = || {
            let mut input = self.input_for(action, ctx, sp, engine, &now, budget_first);
            let (mut ev, mut shadow) = match pick.refusal() {
                // Refused by persona before any policy: nothing to shadow.
                Some(d) => (Evaluated::by_gavel(d, "persona"), None),
                None => {
                    let shadow = shadow_engine(active.as_deref());
                    let keep = shadow.is_some_and(|e| e.borrows());
                    let mut ev = self.evaluate(action, sp, policy, &input, keep);
                    // The shadow's job, taken before the input goes into
                    // the record and before gavel-side steps change the
                    // policy's outcome.
                    let shadow = self.shadow_job(action, shadow, &mut ev, &input, &now);
                    (ev, shadow)
                }
            };
            let charged = self.charge(action, ctx, sp, engine, &mut ev.decision);
            if !budget_first && !input.is_null() {
                self.budget_after(action, ctx, charged.seen, &mut input, shadow.as_mut());
            }
            (input, ev, shadow, charged)
        };
        let (input, mut ev, shadow, mut charged) = if no_wait {
            match crate::state::wait::no_wait(stored) {
                (_, true) => return None,
                (done, false) => done,
            }
        } else {
            stored()
        };
        let data_classes = referenced_classes(&input, action);
        ev.decision.decision_id = Some(next_decision_id());
        // Only with a result rule is the result decided, with the input of
        // this decision: asked once, before the record is written, so the
        // record keeps its input as written only then.
        let result_active = active
            .as_ref()
            .filter(|a| ev.decision.allow && super::result::ResultContext::wanted(action, a));
        let record = record::Record {
            engine,
            input: &input,
            path: &ev.path,
            bundles: ev.bundles,
            policy: ev.policy,
            fail_open: ev.fail_open,
            eval_ns: ev.eval_ns,
            start,
            now: &now,
            upstream_classes: (action.kind == ActionType::ToolCall)
                .then_some(action.upstream_data_classes.as_slice()),
            trace: action.trace.as_ref(),
            persona: pick.label(),
            keep_input: result_active.is_some(),
        };
        let mut decision = ev.decision;
        let written = self.record(action, ctx, &mut decision, record, &mut charged);
        // The input its result is decided with — the record's, moved in once
        // the record is written (it borrowed it: no copy) — and that input
        // as the record wrote it. Not when the record failed (now denied).
        let result = result_active
            .filter(|_| decision.allow)
            .map(|a| super::result::ResultContext::keep(action, a, input, written));
        self.count(action, &decision, engine, start);
        if let Some(mut job) = shadow {
            job.decision_id = decision.decision_id.clone().unwrap_or_default();
            self.shadow_queue.submit(job);
        }
        Some(Verdict::of(
            action,
            engine,
            decision,
            charged.receipt,
            data_classes,
            result,
        ))
    }

    /// The policy `action` is decided with: the agent's persona (when
    /// personas are configured) picks it, then one load — the whole decision
    /// uses this policy even if a new one is activated meanwhile. Shared by
    /// [`Enforcer::decide`] and the policy query, so that a prediction is
    /// made by the very policy the call would meet.
    pub(super) fn policy_for(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        sp: Option<&ServerPolicy>,
    ) -> (
        super::persona::Pick<'_>,
        Option<std::sync::Arc<super::active::Active>>,
    ) {
        let pick = self.pick_persona(&action.server, ctx);
        let active = sp.map(|s| self.active_for(s, &action.server, &pick));
        (pick, active)
    }

    /// The policy input of `action` (contract `input.v1`), with the data
    /// classes the policy and the upstream give it, the canonical path
    /// arguments and — with `budget` — the budget (a read of the store).
    /// Built only when something reads it (a Rego policy or the decision
    /// log): static-only servers stay on the fast path, with `Null`.
    pub(super) fn input_for(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        sp: Option<&ServerPolicy>,
        engine: Option<&PolicyEngine>,
        now: &str,
        budget: bool,
    ) -> Value {
        if self.log.is_none() && engine.is_none() {
            return Value::Null;
        }
        let root = sp.and_then(|s| s.path_root.as_ref());
        let mut classes = match engine {
            Some(engine) => engine.classify(&action.tool, &action.args, root),
            None => Vec::new(),
        };
        for c in &action.upstream_data_classes {
            if !classes.contains(c) {
                classes.push(c.clone());
            }
        }
        let mut input = input::build(self.identity(ctx), action, ctx, &classes, now);
        paths::annotate(&mut input, &action.args, root);
        if budget && let Some(b) = self.guard.budget_view(&self.who(action, ctx)) {
            input["context"]["budget"] = b;
        }
        input
    }

    /// The record's `input.context.budget` when the policy did not read it
    /// first: the totals the charge found (read here only when the call was
    /// not charged), given to a shadow job too when its rules read it.
    fn budget_after(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        seen: Option<crate::state::Usage>,
        input: &mut Value,
        shadow: Option<&mut super::shadow::Job>,
    ) {
        let who = self.who(action, ctx);
        if let Some(b) = self.guard.budget_view_from(&who, seen) {
            if let Some(job) = shadow.filter(|j| j.engine.reads_budget()) {
                job.input["context"]["budget"] = b.clone();
            }
            input["context"]["budget"] = b;
        }
    }

    /// A shadow evaluation of this request, when the server has a shadow
    /// policy and the live one decided with Rego (static rules and an
    /// unavailable policy decide the same for both: nothing to compare).
    fn shadow_job(
        &self,
        action: &Action,
        engine: Option<&std::sync::Arc<PolicyEngine>>,
        ev: &mut Evaluated<'_>,
        input: &Value,
        now: &str,
    ) -> Option<super::shadow::Job> {
        let engine = engine?;
        if ev.policy != "rego" {
            return None;
        }
        Some(super::shadow::Job {
            server: action.server.clone(),
            kind: action.kind.as_str(),
            tool: action.tool.clone(),
            decision_id: String::new(),
            timestamp: now.to_string(),
            engine: engine.clone(),
            // Only what the shadow's own layers read when it borrows the
            // rest (`engine::lend`): the copy is made on the forwarded path.
            input: engine.shadow_input(input),
            live: super::shadow::Live {
                allow: ev.decision.allow,
                reasons: ev.decision.reasons.clone(),
                layers: ev.layers.take(),
            },
            log: self.log.clone(),
            labels: self.labels(),
        })
    }

    /// The decision of the policy path: an unknown server is refused, then
    /// the static rules, then the server's policy (none, unavailable —
    /// failing closed unless `fail_open` — or its Rego engine). The decision
    /// carries its `policy_version` (the bundles', else how it was decided);
    /// with `keep_layers`, a Rego evaluation keeps each layer's value for the
    /// server's shadow to borrow (`engine::lend`).
    pub(super) fn evaluate<'e>(
        &self,
        action: &Action,
        sp: Option<&ServerPolicy>,
        policy: Option<&'e Policy>,
        input: &Value,
        keep_layers: bool,
    ) -> Evaluated<'e> {
        let Some(sp) = sp else {
            return Evaluated::by_gavel(
                Decision::deny(
                    ReasonCode::PolicyUnavailable,
                    format!(
                        "gavel has no policy for server {:?}; check servers.toml",
                        action.server
                    ),
                ),
                "none",
            );
        };
        let d = sp.static_rules.decide(action);
        if !d.allow {
            return Evaluated::by_gavel(d, "static");
        }
        match policy.unwrap_or(&Policy::None) {
            Policy::None => Evaluated::by_gavel(d, "none"),
            Policy::Unavailable(why) => {
                let (d, fail_open) = sp.fail(
                    ReasonCode::PolicyUnavailable,
                    format!(
                        "The policy for server {:?} could not be loaded ({why}); every request is refused until it is fixed.",
                        action.server
                    ),
                );
                Evaluated {
                    fail_open,
                    ..Evaluated::by_gavel(d, "unavailable")
                }
            }
            Policy::Rego(engine) => self.evaluate_rego(sp, engine, input, keep_layers),
        }
    }

    /// The server's Rego policy on `input`; an engine error fails closed
    /// (unless `fail_open`) with its own reason code.
    fn evaluate_rego<'e>(
        &self,
        sp: &ServerPolicy,
        engine: &'e PolicyEngine,
        input: &Value,
        keep_layers: bool,
    ) -> Evaluated<'e> {
        let outcome = if keep_layers {
            engine.decide_keeping(input).map(|(o, l)| (o, Some(l)))
        } else {
            engine.decide(input).map(|o| (o, None))
        };
        let (decision, fail_open, eval_ns, layers) = match outcome {
            Ok((out, layers)) => (out.decision, false, out.eval_ns, layers),
            Err(e) => {
                let (mut d, fail_open) = sp.fail(e.reason_code(), fail_text(&e));
                d.policy_version = Some(engine.policy_version().to_string());
                (d, fail_open, 0, None)
            }
        };
        // The record's `path` and `bundles`: only a record reads them.
        let (path, bundles) = if self.log.is_some() {
            (engine.record_path(&decision), engine.record_bundles())
        } else {
            ("gavel/static".to_string(), Bundles::none())
        };
        Evaluated {
            decision,
            policy: "rego",
            path,
            bundles,
            fail_open,
            eval_ns,
            layers,
        }
    }

    /// Rate limits then budget, charged for a `tools/call` the policy
    /// allowed ([`crate::decision::guard::Guard::check`]: one atomic charge, a
    /// refusal turns `d` into a denial). Other requests are not counted.
    fn charge<'a>(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        sp: Option<&'a ServerPolicy>,
        engine: Option<&'a PolicyEngine>,
        d: &mut Decision,
    ) -> Charged<'a> {
        if action.kind != ActionType::ToolCall {
            return Charged::default();
        }
        let limits = limits_for(action, sp, engine);
        let (receipt, seen) =
            self.guard
                .check_seen(&self.who(action, ctx), &limits, arg_tokens(action), d);
        Charged {
            limits,
            receipt,
            seen,
        }
    }

    /// Writes the decision record (ARCHITECTURE.md, invariant 4). A record
    /// that cannot be written turns an allowed decision into a denial
    /// ([`Enforcer::unrecorded`]), and everything it charged is given back.
    /// Returns the record's `input` as written, when it kept it.
    fn record(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        decision: &mut Decision,
        record: record::Record,
        charged: &mut Charged,
    ) -> Option<crate::audit::record::WrittenInput> {
        let e = match self.log_decision(decision, record) {
            Ok(written) => return written,
            Err(e) => e,
        };
        if self.unrecorded(decision, &e) {
            // The call will not be made, through no doing of the agent's:
            // give back everything its decision charged.
            self.guard
                .refund_limits(&self.who(action, ctx), &charged.limits);
            if let Some(r) = charged.receipt.take() {
                self.guard.refund_budget(&r);
            }
        }
        None
    }

    /// The decision's latency and outcome metrics. A call that waits for a
    /// human is counted when the approval settles (`count_outcome`), with
    /// the outcome it then has.
    fn count(&self, action: &Action, d: &Decision, engine: Option<&PolicyEngine>, start: Instant) {
        crate::audit::metrics::global().latency(&action.server, start.elapsed().as_secs_f64());
        if !(d.allow && d.require_approval.is_some()) {
            count_decision(action, d, engine);
        }
    }

    /// Who is asking: the session's verified token identity (HTTP), else the
    /// configured one (stdio).
    pub(super) fn identity<'a>(&'a self, ctx: &'a DecisionContext) -> &'a Identity {
        ctx.identity.as_deref().unwrap_or(&self.config.identity)
    }

    pub(super) fn who<'a>(
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
}

/// What the evaluation step yields: the decision and how it was reached, as
/// the record tells it.
pub(super) struct Evaluated<'e> {
    pub(super) decision: Decision,
    /// `labels.policy`: `none`, `static`, `unavailable`, `persona` or `rego`.
    pub(super) policy: &'static str,
    /// The record's `path`: the deciding layer's rule as OPA writes a path
    /// (`PolicyEngine::record_path`), else `gavel/static`.
    pub(super) path: String,
    /// The record's `bundles` (`{}` unless a Rego policy decided).
    pub(super) bundles: &'e Bundles,
    /// Whether `fail_open` let a failed policy allow.
    pub(super) fail_open: bool,
    /// `metrics.timer_rego_query_eval_ns`.
    pub(super) eval_ns: u64,
    /// Each layer's value, kept for the shadow when it borrows them.
    pub(super) layers: Option<super::engine::LayerValues>,
}

impl Evaluated<'_> {
    /// A decision made without the Rego engine; its `policy_version` is
    /// `policy` unless the decision names one (static rules: `static`).
    pub(super) fn by_gavel(mut decision: Decision, policy: &'static str) -> Self {
        if decision.policy_version.is_none() {
            decision.policy_version = Some(policy.to_string());
        }
        Evaluated {
            decision,
            policy,
            path: "gavel/static".to_string(),
            bundles: Bundles::none(),
            fail_open: false,
            eval_ns: 0,
            layers: None,
        }
    }
}

/// `active`'s shadow engine, when it has one that can be evaluated.
fn shadow_engine(active: Option<&super::Active>) -> Option<&std::sync::Arc<PolicyEngine>> {
    match active.and_then(|a| a.shadow.as_ref()) {
        Some(super::ShadowPolicy::Rego(e)) => Some(e),
        _ => None,
    }
}

/// What a `tools/call` was charged: the limits (given back with the budget
/// if the record cannot be written) and the budget's receipt.
#[derive(Default)]
struct Charged<'a> {
    limits: Vec<&'a Limit>,
    receipt: Option<crate::decision::guard::Receipt>,
    /// The budget's totals before the call, as the charge found them.
    seen: Option<crate::state::Usage>,
}

impl ServerPolicy {
    /// A denial for a policy that cannot decide, allowed instead when the
    /// server is `fail_open` (then `matched_rules` says so, and the second
    /// value is true: the record's `labels.fail_open`).
    fn fail(&self, code: ReasonCode, text: String) -> (Decision, bool) {
        let mut d = Decision::deny(code, text);
        if self.fail_open {
            d.allow = true;
            d.matched_rules.push("fail_open".into());
        }
        (d, self.fail_open)
    }
}

/// Every rate limit that applies to a tools/call: config's and the
/// bundles'.
pub(super) fn limits_for<'a>(
    action: &Action,
    sp: Option<&'a ServerPolicy>,
    engine: Option<&'a PolicyEngine>,
) -> Vec<&'a Limit> {
    let Some(sp) = sp else {
        return vec![];
    };
    let mut limits: Vec<&Limit> = sp.config_limits.iter().collect();
    if let Some(e) = engine {
        limits.extend(e.limits());
    }
    limits.retain(|l| l.applies(&action.tool));
    limits
}

/// The outcome metrics of a decision: allowed or denied, and by which
/// reasons (a code outside gavel's and the bundles' catalogs counts as
/// `other`).
pub(super) fn count_decision(action: &Action, d: &Decision, engine: Option<&PolicyEngine>) {
    crate::audit::metrics::global().outcome(
        &action.server,
        (action.kind == ActionType::ToolCall).then_some(action.tool.as_str()),
        d.allow,
        &d.reasons,
        |c| super::record::reason_is_label(engine, c),
    );
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
    // OPA's decision ids are random UUIDv4s: unguessable, and unique across
    // processes sharing a log or a receiver (the idempotency key of a
    // shipped event, docs/decision-log.md).
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// The classes the request referenced, as its input lists them (the
/// upstream's own when no input was built: no policy, no log).
fn referenced_classes(input: &Value, action: &Action) -> Vec<String> {
    match input.pointer("/action/data_classes_referenced") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|c| c.as_str().map(String::from))
            .collect(),
        _ => action.upstream_data_classes.clone(),
    }
}

/// Tokens of a call's arguments (estimate: 4 bytes a token).
pub(super) fn arg_tokens(action: &Action) -> u64 {
    serde_json::to_vec(&action.args)
        .map(|v| v.len().div_ceil(4) as u64)
        .unwrap_or(0)
}

/// The Rego engine of a policy, if it has one.
pub(super) fn engine_of(policy: Option<&Policy>) -> Option<&PolicyEngine> {
    match policy {
        Some(Policy::Rego(e)) => Some(e.as_ref()),
        _ => None,
    }
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn decision_ids_are_unique_and_uuid_shaped() {
        let a = super::next_decision_id();
        let b = super::next_decision_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        // Random, not a process prefix and a counter (the old scheme shared
        // the first 64 bits within a process).
        assert_ne!(a[..18], b[..18]);
    }
}
