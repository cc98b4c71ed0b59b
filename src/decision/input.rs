//! Builds the policy input (contract `schemas/input.v1.json`, printed by
//! `gavel schema input`) for one request.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Action;
use crate::config::Identity;
use crate::sync::Recover;

/// The host session as the policy sees it, snapshotted under the session's
/// counter lock so that counts are exact even with concurrent calls.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SessionCounters {
    pub turn_count: u64,
    pub denied_count: u64,
    pub tool_calls: BTreeMap<String, BTreeMap<String, u64>>,
    pub cumulative_tokens: u64,
    /// tools/call requests immediately before this one, in an unbroken run,
    /// to the same server and tool (the first call of a run sees 0).
    pub consecutive_same_tool: u64,
    /// tools/call requests decided in the 60 s before this one.
    pub calls_last_minute: u64,
    /// Data classes the answers forwarded to the host carried
    /// (`input.context.data_classes_seen`, `decision::seen`).
    #[serde(skip)]
    pub data_classes_seen: super::seen::DataClassesSeen,
    #[serde(skip)]
    last_tool: Option<(String, String)>,
    #[serde(skip)]
    run_length: u64,
    /// Seconds (session clock) of recent calls, pruned to the last minute.
    #[serde(skip)]
    recent: std::collections::VecDeque<f64>,
}

/// Bound on the remembered call times (a minute of calls at 100/s).
const MAX_RECENT: usize = 6000;

impl SessionCounters {
    /// Fills the per-call views (`consecutive_same_tool`, `calls_last_minute`)
    /// for a call to `server`/`tool` at session time `now_s`.
    pub fn prepare(&mut self, server: &str, tool: &str, now_s: f64) {
        while self.recent.front().is_some_and(|t| now_s - *t > 60.0) {
            self.recent.pop_front();
        }
        self.calls_last_minute = self.recent.len() as u64;
        let same = self
            .last_tool
            .as_ref()
            .is_some_and(|(s, t)| s == server && t == tool);
        self.consecutive_same_tool = if same { self.run_length } else { 0 };
    }

    /// What a decision sees of the counters: every field the policy input
    /// reads, without the bookkeeping behind the per-call views (`recent`,
    /// up to [`MAX_RECENT`] call times, was copied on every decision).
    pub fn snapshot(&self) -> SessionCounters {
        SessionCounters {
            turn_count: self.turn_count,
            denied_count: self.denied_count,
            tool_calls: self.tool_calls.clone(),
            cumulative_tokens: self.cumulative_tokens,
            consecutive_same_tool: self.consecutive_same_tool,
            calls_last_minute: self.calls_last_minute,
            data_classes_seen: self.data_classes_seen.clone(),
            last_tool: None,
            run_length: 0,
            recent: Default::default(),
        }
    }

    /// A host may report its own token count (`_meta["dev.gavel/cumulative_tokens"]`):
    /// it can only raise gavel's figure, never lower it.
    pub fn raise_tokens(&mut self, reported: u64) {
        self.cumulative_tokens = self.cumulative_tokens.max(reported);
    }

    /// The token count a host reports, as a raise: a non-negative integer
    /// as is, a non-negative float rounded down (one too large for u64
    /// saturates); a negative number, a string or anything else is not a
    /// count and raises nothing (`None`). An agent-controlled value can only
    /// ever push a counter up.
    pub fn reported_tokens(v: &Value) -> Option<u64> {
        if let Some(n) = v.as_u64() {
            return Some(n);
        }
        // `as` saturates: 1e300 is u64::MAX; NaN cannot come from JSON.
        v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)
    }

    /// Counts one decided `tools/call` (and only those: never protocol chatter).
    pub fn record_tool_call(&mut self, server: &str, tool: &str, allowed: bool, arg_bytes: usize) {
        self.record_tool_call_at(
            server,
            tool,
            allowed,
            arg_bytes,
            self.recent.back().copied().unwrap_or(0.0),
        );
    }

    pub fn record_tool_call_at(
        &mut self,
        server: &str,
        tool: &str,
        allowed: bool,
        arg_bytes: usize,
        now_s: f64,
    ) {
        let same = self
            .last_tool
            .as_ref()
            .is_some_and(|(s, t)| s == server && t == tool);
        // Every counter saturates: a host-reported token count may already
        // sit at u64::MAX, and a wrapped counter would switch the brakes off.
        self.run_length = if same {
            self.run_length.saturating_add(1)
        } else {
            1
        };
        self.last_tool = Some((server.to_string(), tool.to_string()));
        if self.recent.len() >= MAX_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(now_s);
        self.turn_count = self.turn_count.saturating_add(1);
        if !allowed {
            self.denied_count = self.denied_count.saturating_add(1);
        }
        let per_tool = self
            .tool_calls
            .entry(server.into())
            .or_default()
            .entry(tool.into())
            .or_default();
        *per_tool = per_tool.saturating_add(1);
        self.add_tokens(arg_bytes);
    }

    /// A call allowed but not made (its approval refused).
    pub fn count_denied(&mut self) {
        self.denied_count = self.denied_count.saturating_add(1);
    }

    /// Documented estimate: one token per 4 bytes of UTF-8, rounded up.
    pub fn add_tokens(&mut self, bytes: usize) {
        self.cumulative_tokens = self
            .cumulative_tokens
            .saturating_add(bytes.div_ceil(4) as u64);
    }
}

#[derive(Debug, Clone, Default)]
pub struct DecisionContext {
    pub session_id: String,
    pub client: Option<(String, String)>,
    pub session_age_seconds: f64,
    pub counters: SessionCounters,
    /// The session's verified identity (a bearer token on HTTP); None: the
    /// configured identity (stdio).
    pub identity: Option<std::sync::Arc<Identity>>,
}

pub fn build(
    identity: &Identity,
    action: &Action,
    ctx: &DecisionContext,
    data_classes: &[String],
    now_rfc3339: &str,
) -> Value {
    let client = action
        .era
        .client(&ctx.client)
        .as_ref()
        .map(|(n, v)| json!({"name": n, "version": v}));
    json!({
        "agent": {
            "id": identity.agent.id,
            "scope": identity.agent.scope,
            "owner_team": identity.agent.owner_team,
            "client": client.unwrap_or_else(|| json!({})),
        },
        "user": {
            "id": identity.user.id,
            "groups": identity.user.groups,
            "data_classifications_authorized": identity.user.data_classifications_authorized,
        },
        "action": {
            "type": action.kind.as_str(),
            "server": action.server,
            "tool": action.tool,
            "args": action.args,
            "annotations": action.annotations,
            "annotations_trusted": action.annotations_trusted,
            "tool_digest": action.tool_digest,
            "data_classes_referenced": data_classes,
        },
        "context": {
            "session_id": ctx.session_id,
            "turn_count": ctx.counters.turn_count,
            "denied_count": ctx.counters.denied_count,
            "tool_calls": ctx.counters.tool_calls,
            "cumulative_tokens": ctx.counters.cumulative_tokens,
            "consecutive_same_tool": ctx.counters.consecutive_same_tool,
            "calls_last_minute": ctx.counters.calls_last_minute,
            "data_classes_seen": ctx.counters.data_classes_seen.entries(),
            "session_age_seconds": ctx.session_age_seconds,
            "protocol_version": action.era.protocol_version,
        },
        "environment": {
            "region": identity.environment.region,
            "time": now_rfc3339,
            "is_production": identity.environment.is_production,
            "labels": identity.environment.labels,
        },
    })
}

/// One host session's policy-relevant state. Decisions of a session are taken
/// under its counter lock, so `turn_count` is exact under concurrent calls.
pub struct SessionState {
    pub id: String,
    /// The gateway's clock: `calls_last_minute` and `session_age_seconds`
    /// follow the same (injectable) time as limits and budgets.
    clock: std::sync::Arc<dyn crate::state::clock::Clock>,
    /// When the session started, on `clock` (Unix seconds).
    started: f64,
    client: std::sync::OnceLock<(String, String)>,
    counters: std::sync::Mutex<SessionCounters>,
    /// Set once, from the token that opened the session (HTTP with auth).
    pub identity: std::sync::OnceLock<std::sync::Arc<Identity>>,
    /// Decisions handed to the blocking pool ([`SessionState::decide_async`]).
    pooled: std::sync::atomic::AtomicU64,
}

/// A session on the system clock (unit tests).
impl Default for SessionState {
    fn default() -> Self {
        Self::new(std::sync::Arc::new(crate::state::clock::SystemClock))
    }
}

impl SessionState {
    /// A new session whose counters read `clock` (the enforcer's).
    pub fn new(clock: std::sync::Arc<dyn crate::state::clock::Clock>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            started: clock.now(),
            clock,
            client: Default::default(),
            counters: Default::default(),
            identity: Default::default(),
            pooled: Default::default(),
        }
    }

    pub fn set_client(&self, name: String, version: String) {
        let _ = self.client.set((name, version));
    }

    /// Seconds since the session started (a clock stepped back reads 0),
    /// with `counters` prepared for `action` when it is a `tools/call`.
    fn prepare(&self, counters: &mut SessionCounters, action: &Action) -> f64 {
        let now_s = (self.clock.now() - self.started).max(0.0);
        if action.kind == super::ActionType::ToolCall {
            counters.prepare(&action.server, &action.tool, now_s);
        }
        now_s
    }

    /// The context a decision of this session is made in.
    fn context_with(&self, counters: SessionCounters, now_s: f64) -> DecisionContext {
        DecisionContext {
            session_id: self.id.clone(),
            client: self.client.get().cloned(),
            session_age_seconds: now_s,
            counters,
            identity: self.identity.get().cloned(),
        }
    }

    /// [`Self::context_with`] for `action`: a 2026-07-28 request's own
    /// verified identity, when it has one, is the one it is decided as.
    fn context_for(
        &self,
        counters: SessionCounters,
        now_s: f64,
        action: &Action,
    ) -> DecisionContext {
        let mut ctx = self.context_with(counters, now_s);
        if let Some(id) = &action.era.identity {
            ctx.identity = Some(id.clone());
        }
        ctx
    }

    /// Decides `action` with this session's context; counts it if it is a
    /// `tools/call`.
    pub fn decide(&self, enforcer: &super::Enforcer, action: &Action) -> super::Verdict {
        let mut counters = self.counters.lock().recover();
        let now_s = self.prepare(&mut counters, action);
        let ctx = self.context_for(counters.snapshot(), now_s, action);
        let verdict = enforcer.decide(action, &ctx);
        Self::count(&mut counters, action, &verdict, now_s);
        verdict
    }

    /// [`SessionState::decide`] where nothing may wait (the event loop):
    /// `None` when this session's counters are held by a decision on
    /// another thread, or the state store's locks are held elsewhere
    /// ([`super::Enforcer::try_decide`]); then nothing was counted.
    fn try_decide(&self, enforcer: &super::Enforcer, action: &Action) -> Option<super::Verdict> {
        let mut counters = match self.counters.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let now_s = self.prepare(&mut counters, action);
        let ctx = self.context_for(counters.snapshot(), now_s, action);
        let verdict = enforcer.try_decide(action, &ctx)?;
        Self::count(&mut counters, action, &verdict, now_s);
        Some(verdict)
    }

    /// Counts a decided `tools/call` in the session's counters.
    fn count(
        counters: &mut SessionCounters,
        action: &Action,
        verdict: &super::Verdict,
        now_s: f64,
    ) {
        if action.kind == super::ActionType::ToolCall {
            let bytes = serde_json::to_vec(&action.args)
                .map(|v| v.len())
                .unwrap_or(0);
            counters.record_tool_call_at(
                &action.server,
                &action.tool,
                verdict.decision().allow,
                bytes,
                now_s,
            );
        }
    }

    /// [`SessionState::decide`] for a front on an event loop. A decision
    /// that uses no store runs inline. One that uses the embedded store is
    /// tried inline with every wait forbidden (`crate::state::wait`): its
    /// locks are nearly always free, and a thread hop per call cost more
    /// than the decision. Only when a lock is held elsewhere (another
    /// process's SQLite transaction or rate-table lock, this session's
    /// counters) — or the store is a network one (Redis) — does the
    /// decision run on the blocking pool, with the store's bounded waits
    /// (2 s, then fail closed), so one waiting decision never stalls every
    /// other session and transfer of this single-threaded process.
    pub async fn decide_async(
        self: &std::sync::Arc<Self>,
        enforcer: &std::sync::Arc<super::Enforcer>,
        action: &Action,
    ) -> super::Verdict {
        if !enforcer.uses_store() {
            return self.decide(enforcer, action);
        }
        if enforcer.can_try_inline()
            && let Some(v) = self.try_decide(enforcer, action)
        {
            return v;
        }
        self.pooled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (state, enforcer, owned) = (self.clone(), enforcer.clone(), action.clone());
        match tokio::task::spawn_blocking(move || state.decide(&enforcer, &owned)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(server = %action.server, tool = %action.tool, "the decision did not finish: {e}");
                super::Verdict::Deny(super::Decision::deny(
                    super::codes::ReasonCode::StateUnavailable,
                    format!("gavel could not finish deciding this request ({e}); it is refused."),
                ))
            }
        }
    }

    /// How many of this session's decisions ran on the blocking pool
    /// because the store would have made them wait (or is a network store).
    pub fn pooled_decisions(&self) -> u64 {
        self.pooled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What [`SessionState::decide`] would make of `action` now, with its
    /// effects off ([`super::Enforcer::query`]): the context the call would
    /// be decided in (counters prepared on a copy; the session's own are
    /// untouched), `kind` naming the query in its record.
    pub fn query(
        &self,
        enforcer: &super::Enforcer,
        action: &Action,
        kind: &str,
    ) -> super::Prediction {
        let mut counters = self.counters.lock().recover().clone();
        let now_s = self.prepare(&mut counters, action);
        let ctx = self.context_for(counters, now_s, action);
        enforcer.query(action, &ctx, kind)
    }

    /// [`SessionState::query`] off the event loop when it reads the state
    /// store (as [`SessionState::decide_async`]).
    pub async fn query_async(
        self: &std::sync::Arc<Self>,
        enforcer: &std::sync::Arc<super::Enforcer>,
        action: &Action,
        kind: &'static str,
    ) -> Result<super::Prediction, String> {
        if !enforcer.uses_store() {
            return Ok(self.query(enforcer, action, kind));
        }
        let (state, enforcer, owned) = (self.clone(), enforcer.clone(), action.clone());
        tokio::task::spawn_blocking(move || state.query(&enforcer, &owned, kind))
            .await
            .map_err(|e| format!("gavel could not finish the query ({e})"))
    }

    /// The session's counters now and the context its decisions see (for
    /// `gavel__limits`: what the policy's `input.context` holds).
    pub fn context(&self) -> DecisionContext {
        let counters = self.counters.lock().recover().snapshot();
        self.context_with(counters, (self.clock.now() - self.started).max(0.0))
    }

    /// A host-reported token count (can only raise gavel's own).
    pub fn raise_tokens(&self, reported: u64) {
        self.counters.lock().recover().raise_tokens(reported);
    }

    /// A `tools/call` that was allowed but then not made because its
    /// approval was refused (declined, cancelled, timed out, unavailable):
    /// `denied_count` counts it, as the policy's next decisions should see.
    pub fn count_denied(&self) {
        self.counters.lock().recover().count_denied();
    }

    /// An answer the host gets (a result that is not an error, and that no
    /// result policy withheld) to the request `permit` allowed: the classes
    /// the request referenced ([`super::Permit::data_classes`]) and those
    /// the paths the answer names carry ([`super::Enforcer::output_classes`])
    /// join the session's `data_classes_seen`, which every later decision of
    /// the session reads. `output` is the answer as JSON, `None` when the
    /// server's policy does not classify by path
    /// ([`super::Enforcer::classifies_output`]).
    pub fn saw(
        &self,
        enforcer: &super::Enforcer,
        (server, tool): (&str, &str),
        permit: &super::Permit,
        output: Option<&Value>,
    ) {
        let mut all = permit.data_classes().to_vec();
        for c in output
            .map(|o| enforcer.output_classes(server, permit.request_paths(), o))
            .unwrap_or_default()
        {
            if !all.contains(&c) {
                all.push(c);
            }
        }
        if all.is_empty() {
            return;
        }
        let mut counters = self.counters.lock().recover();
        if counters.data_classes_seen.add(server, tool, &all) {
            tracing::info!(
                session = %self.id, server, tool = %crate::text::escape_controls(tool),
                "the session has seen data classed {all:?}"
            );
        }
    }

    /// Counts the tokens of a tool result.
    pub fn add_result_bytes(&self, bytes: usize) {
        self.counters.lock().recover().add_tokens(bytes);
    }
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
