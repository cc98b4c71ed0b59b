//! Shadow bundles: a candidate policy run beside the live one on every
//! request (as AWS AgentCore's LOG_ONLY mode or agentgate's shadow mode do),
//! so a team sees what it *would* have decided before switching to it.
//!
//! A server's shadow engine is its live layers with each shadow bundle in
//! place of the live bundle of the same name, or beside them when no live
//! bundle has that name; it is built, verified, pinned and hot-reloaded by
//! the same path as the live policy (`policy/build.rs`), and lives in the
//! server's [`Active`](super::Active) so the two always swap together.
//!
//! A shadow **never** changes a decision and never holds a request: after
//! the live decision is recorded and counted, the request's input goes on a
//! bounded side queue ([`QUEUE_CAPACITY`]) that one dedicated thread drains.
//! A full queue drops the job, counts it (`gavel_shadow_dropped_total`) and
//! logs at most once per [`DROP_LOG_INTERVAL`]. The shadow outcome is
//! compared with the live *policy* outcome (before rate limits, budget and
//! approval, which a shadow does not charge): when `allow` or the set of
//! reasons differs, it is a divergence — counted by server, direction and
//! reason (`gavel_shadow_divergences_total`) and written as its own record,
//! `path: "gavel/shadow"`, with the live decision's `decision_id`. Agreeing
//! outcomes write nothing.
//!
//! A shadow evaluates only what it changes: the live evaluation keeps each
//! layer's value, and the shadow takes the values of the layers both engines
//! share unchanged (`engine::lend`: same bundle, reading nothing of the
//! others, same library), evaluating only its own bundles — on two cores the
//! shadow's CPU is the forwarded path's.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::engine::PolicyEngine;
use crate::audit::DecisionLog;
use crate::sync::Recover;

/// Requests waiting for their shadow evaluation, all servers together.
pub const QUEUE_CAPACITY: usize = 1024;
/// How long the worker rests after draining the queue (see `worker`). At
/// [`QUEUE_CAPACITY`] jobs per pause, that is up to ~100k requests a second
/// before jobs are dropped.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Divergence records written together at most (one `write(2)` each).
pub const MAX_BATCH_RECORDS: usize = 256;
/// At most one "shadow queue full" log line per interval.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A server's shadow policy, built beside its live one.
pub(crate) enum ShadowPolicy {
    Rego(Arc<PolicyEngine>),
    /// The shadow bundles could not be built: no shadow evaluation (the
    /// live policy is untouched), the reason shown by `gavel status`.
    Unavailable(String),
}

impl ShadowPolicy {
    /// `gavel status`: the shadow's version, or why it is unavailable.
    pub(crate) fn status(&self) -> Value {
        match self {
            ShadowPolicy::Rego(e) => json!({"policy": "rego", "version": e.policy_version()}),
            ShadowPolicy::Unavailable(why) => {
                json!({"policy": "unavailable", "last_error": why})
            }
        }
    }
}

/// The live outcome a shadow is compared with.
pub(crate) struct Live {
    pub allow: bool,
    pub reasons: Vec<String>,
    /// The live evaluation's layer values, when the shadow borrows some
    /// (`engine::lend`): the shadow then evaluates only its own layers.
    pub layers: Option<super::engine::LayerValues>,
}

/// One request to evaluate in the shadow.
pub(crate) struct Job {
    pub server: String,
    pub kind: &'static str,
    pub tool: String,
    pub decision_id: String,
    pub timestamp: String,
    pub engine: Arc<PolicyEngine>,
    pub input: Value,
    pub live: Live,
    pub log: Option<Arc<DecisionLog>>,
    pub labels: serde_json::Map<String, Value>,
}

/// The bounded side queue and its one worker thread, started on first use.
#[derive(Default)]
pub(crate) struct ShadowQueue {
    tx: OnceLock<SyncSender<Job>>,
    last_drop_log: Mutex<Option<Instant>>,
}

impl ShadowQueue {
    /// Queues `job` without waiting: a full queue drops it (counted; logged
    /// at most once per [`DROP_LOG_INTERVAL`]).
    pub(crate) fn submit(&self, job: Job) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE_CAPACITY);
            // An evaluator of its own: its evaluations run on it, not handed
            // to the engine's pool (no wake-ups per job on the machine the
            // forwarded calls run on; nobody waits for it).
            let spawned = super::engine::spawn_evaluator("gavel-shadow", move || worker(rx));
            if let Err(e) = spawned {
                tracing::error!("the shadow evaluation thread did not start ({e}); shadow bundles are not evaluated");
            }
            tx
        });
        let server = job.server.clone();
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                crate::audit::metrics::global().shadow_dropped(&server, true);
                let mut last = self.last_drop_log.lock().recover();
                if last.is_none_or(|t| t.elapsed() >= DROP_LOG_INTERVAL) {
                    *last = Some(Instant::now());
                    tracing::warn!(server = %server, "shadow evaluation queue full ({QUEUE_CAPACITY}): shadow evaluations dropped (gavel_shadow_dropped_total counts them); the live decisions are not affected");
                }
            }
        }
    }
}

/// Drains the queue in batches: after a batch it rests [`BATCH_PAUSE`]
/// before waiting again, so jobs queued meanwhile cost their submitter no
/// wake-up (a send wakes the worker only when it is blocked in `recv`) and
/// the shadow's work comes in bursts between forwarded calls rather than
/// beside each one. It runs at normal priority on purpose: it takes locks
/// the forwarded path takes too (the decision log's writer, the evaluation
/// memory scope), and a thread at idle priority preempted while holding one
/// would stall live decisions behind it on a busy machine.
/// The divergence records of a batch are written together
/// ([`DecisionLog::write_batch`], up to [`MAX_BATCH_RECORDS`]): one lock and
/// one system call for many, where the forwarded path's records wait.
fn worker(rx: Receiver<Job>) {
    let mut records = Records::default();
    while let Ok(job) = rx.recv() {
        let mut next = Some(job);
        while let Some(job) = next {
            if let Some((log, event)) = evaluate(job) {
                records.push(log, event);
            }
            next = rx.try_recv().ok();
        }
        records.flush();
        std::thread::sleep(BATCH_PAUSE);
    }
}

/// Divergence records waiting to be written, all for one decision log.
#[derive(Default)]
struct Records {
    log: Option<Arc<DecisionLog>>,
    events: Vec<Value>,
}

impl Records {
    fn push(&mut self, log: Arc<DecisionLog>, event: Value) {
        if self.log.as_ref().is_some_and(|l| !Arc::ptr_eq(l, &log)) {
            self.flush();
        }
        self.log = Some(log);
        self.events.push(event);
        if self.events.len() >= MAX_BATCH_RECORDS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let Some(log) = self.log.take() else { return };
        if let Err(e) = log.write_batch(&self.events) {
            let ids: Vec<&str> = self
                .events
                .iter()
                .filter_map(|e| e["decision_id"].as_str())
                .collect();
            tracing::error!(decisions = ?ids, "{} shadow records could not be written: {e}", ids.len());
        }
        self.events.clear();
    }
}

/// The shadow's outcome of one job; a divergence is counted, and its record
/// returned for the log it goes to.
fn evaluate(mut job: Job) -> Option<(Arc<DecisionLog>, Value)> {
    let decided = match job.live.layers.take() {
        Some(live) => job.engine.decide_lent(&job.input, live),
        None => job.engine.decide(&job.input),
    };
    let shadow = match decided {
        Ok(out) => out.decision,
        // A shadow that fails fails closed, as it would live.
        Err(e) => super::Decision::deny(e.reason_code(), e.to_string()),
    };
    let direction = divergence(&job.live, shadow.allow, &shadow.reasons)?;
    let engine = &job.engine;
    crate::audit::metrics::global().shadow_divergence(
        &job.server,
        direction,
        &shadow.reasons,
        |c| super::record::reason_is_label(Some(engine), c),
    );
    let log = job.log.take()?;
    let mut result = json!(shadow);
    result["policy_version"] = json!(engine.policy_version());
    let event = json!({
        "decision_id": job.decision_id,
        "timestamp": job.timestamp,
        "path": "gavel/shadow",
        "shadow": {
            "server": job.server,
            "type": job.kind,
            "tool": job.tool,
            "diverged": direction,
            "live": {"allow": job.live.allow, "reasons": job.live.reasons},
            "bundles": engine.bundles_json(),
        },
        "result": result,
        "labels": job.labels,
    });
    Some((log, event))
}

/// How the shadow's outcome differs from the live one: `allow_to_deny`,
/// `deny_to_allow`, `reasons_changed` (both deny, other reasons), or `None`.
pub(crate) fn divergence(live: &Live, allow: bool, reasons: &[String]) -> Option<&'static str> {
    match (live.allow, allow) {
        (true, false) => Some("allow_to_deny"),
        (false, true) => Some("deny_to_allow"),
        (true, true) => None,
        (false, false) => {
            let set = |r: &[String]| r.iter().cloned().collect::<std::collections::BTreeSet<_>>();
            (set(&live.reasons) != set(reasons)).then_some("reasons_changed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(allow: bool, reasons: &[&str]) -> Live {
        Live {
            allow,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            layers: None,
        }
    }

    #[test]
    fn divergence_is_allow_or_the_set_of_reasons() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(divergence(&live(true, &[]), true, &[]), None);
        assert_eq!(
            divergence(&live(true, &[]), false, &r(&["x"])),
            Some("allow_to_deny")
        );
        assert_eq!(
            divergence(&live(false, &["x"]), true, &[]),
            Some("deny_to_allow")
        );
        assert_eq!(
            divergence(&live(false, &["a", "b"]), false, &r(&["b", "a"])),
            None
        );
        assert_eq!(
            divergence(&live(false, &["a"]), false, &r(&["a", "b"])),
            Some("reasons_changed")
        );
    }

    /// A full queue never waits: the job is dropped and counted per server
    /// (the queue here has room for one and nobody drains it).
    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        use crate::bundle::{BundleLimits, load_bundle};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/time");
        let b = load_bundle(&root, &BundleLimits::default()).unwrap();
        let opts = crate::decision::engine::EngineOptions {
            eval_timeout: Duration::from_secs(2),
            strict_input: false,
        };
        let engine = Arc::new(PolicyEngine::build("t", vec![Arc::new(b)], &opts).unwrap());
        let job = || Job {
            server: "shadow-full-queue".into(),
            kind: "tool_call",
            tool: "t".into(),
            decision_id: "d".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            engine: engine.clone(),
            input: json!({}),
            live: live(true, &[]),
            log: None,
            labels: Default::default(),
        };
        let q = ShadowQueue::default();
        let (tx, rx) = sync_channel(1);
        assert!(q.tx.set(tx).is_ok());
        q.submit(job());
        q.submit(job());
        q.submit(job());
        let text = crate::audit::metrics::global().encode(false);
        assert!(
            text.contains("gavel_shadow_dropped_total{server=\"shadow-full-queue\"} 2"),
            "{text}"
        );
        assert_eq!(rx.try_iter().count(), 1, "the first job was queued");
    }
}
