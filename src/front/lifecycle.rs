//! What every front does around its sessions, whichever transport it
//! serves: publish this process in `gavel status` while it runs, stop on
//! SIGINT/SIGTERM, and end with the same epilogue. The stdio front and
//! `gavel serve` differ in what they serve, not in how a gavel process
//! starts, shows itself and stops, so that lives here once.
//!
//! The epilogue's order matters: a front first stops its own sessions
//! (their upstreams), then [`FrontLifecycle::finish`] stops the shared
//! upstreams, stops the status writer *before* removing the status file (a
//! late write would bring a dead process back into `gavel status`), and
//! makes the decision log's last fsync batch durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio_util::task::AbortOnDropHandle;

use crate::gateway::Gateway;

/// How often the status file is rewritten (`gavel status` shows `updated`).
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// A front's fields of the status file (the stdio session's upstreams, the
/// HTTP address and open sessions), read at every rewrite.
pub type FrontFields = Box<dyn Fn() -> Map<String, Value> + Send + Sync>;

/// One running front: its status writer and what it must undo at exit.
pub struct FrontLifecycle {
    gw: Arc<Gateway>,
    status_dir: PathBuf,
    status_task: AbortOnDropHandle<()>,
}

impl FrontLifecycle {
    /// Starts writing `<state_dir>/instances/<pid>.json` every
    /// `STATUS_EVERY`: what every front writes (pid, start time, config,
    /// per-server policies) plus `front_fields()`.
    pub fn start(gw: &Arc<Gateway>, front_fields: FrontFields) -> Self {
        let status_dir = crate::status::state_dir();
        let task = tokio::spawn(write_status(gw.clone(), status_dir.clone(), front_fields));
        Self {
            gw: gw.clone(),
            status_dir,
            status_task: AbortOnDropHandle::new(task),
        }
    }

    /// The epilogue, once the front's own sessions have stopped: the shared
    /// upstreams stop (bounded wait), the status file goes, result tokens
    /// kept in memory reach the budget's store, the decision log's batched
    /// fsync is made durable, and queued spans are sent.
    pub async fn finish(self) {
        self.gw.stop_shared().await;
        // Waited for, not only aborted: a write already under way must not
        // land after the file is removed.
        self.status_task.abort();
        let _ = self.status_task.await;
        crate::status::remove_instance(&self.status_dir);
        // Result tokens not yet in the budget's store.
        self.gw.enforcer.flush_budget();
        if let Some(log) = self.gw.enforcer.decision_log() {
            log.sync();
        }
        // Spans still queued are sent, within [telemetry] shutdown_timeout.
        if let Some(tracer) = self.gw.enforcer.tracer() {
            tracer.shutdown().await;
        }
    }
}

/// The status writer: rewrites the file until aborted. A failed write is
/// logged at debug and retried at the next tick (the status file is a view,
/// never a reason to stop serving).
async fn write_status(gw: Arc<Gateway>, dir: PathBuf, front_fields: FrontFields) {
    let started = rfc3339(SystemTime::now());
    loop {
        let mut status = json!({
            "pid": std::process::id(),
            "started": started,
            "updated": rfc3339(SystemTime::now()),
            "config": gw.config.source,
            "policies": gw.policy_status_json(),
        });
        if let Value::Object(all) = &mut status {
            all.extend(front_fields());
        }
        // The write syncs the file (atomic_file): on the blocking pool, never
        // on the event loop that answers requests.
        let d = dir.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::status::write_instance(&d, &status)).await;
        if let Ok(Err(e)) = written {
            tracing::debug!("cannot write status to {}: {e}", dir.display());
        }
        tokio::time::sleep(STATUS_EVERY).await;
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// SIGINT or SIGTERM, whichever comes first: its name, also recorded as
/// the process's stop reason ([`crate::status::stop_reason`]) before the
/// caller cancels anything. (SIGHUP reopens the decision log instead — the
/// gateway watches it for every front; a stdio host that goes away closes
/// stdin, which ends the session.)
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    let sig = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    };
    crate::status::set_stop_reason(sig);
    sig
}
