//! The stdio front: the host launched gavel and speaks MCP on its stdin and
//! stdout. stdout carries only protocol messages; logs go to stderr or a file.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::service::RoleServer;

use crate::gateway::Gateway;
use crate::transport::LineTransport;
use crate::transport::line::LinkLabel;

/// Serves one host session on stdin/stdout until the host closes stdin or
/// gavel is signalled, then stops every upstream.
pub async fn serve_stdio(gw: Arc<Gateway>) -> anyhow::Result<()> {
    let result = serve(gw.clone()).await;
    gw.stop_shared().await;
    crate::status::remove_instance(&crate::status::state_dir());
    // The decision log's fsync is batched: make the last batch durable.
    if let Some(log) = gw.enforcer.decision_log() {
        log.sync();
    }
    result
}

async fn serve(gw: Arc<Gateway>) -> anyhow::Result<()> {
    let session = super::session::Session::new(gw.clone());
    let status_dir = crate::status::state_dir();
    // Aborted when `serve` returns, before the status file is removed.
    let _status_task = tokio_util::task::AbortOnDropHandle::new({
        let (gw, session, dir) = (gw.clone(), session.clone(), status_dir.clone());
        let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        tokio::spawn(async move {
            loop {
                let status = serde_json::json!({
                    "pid": std::process::id(),
                    "started": started,
                    "updated": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    "config": gw.config.source,
                    "policies": gw.policy_status_json(),
                    "session": session.status_json(),
                });
                if let Err(e) = crate::status::write_instance(&dir, &status) {
                    tracing::debug!("cannot write status to {}: {e}", dir.display());
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        })
    });
    let transport = LineTransport::<RoleServer, _, _>::new(
        stdin_reader(),
        stdout_writer(),
        gw.config.limits.max_message_bytes,
        LinkLabel {
            name: "host".into(),
            answer_garbage: true,
            refuse_discover: true,
        },
    );
    let outcome = tokio::select! {
        r = session.clone().serve(transport) => r,
        _ = shutdown_signal() => {
            session.shutdown().await;
            return Ok(());
        }
    };
    let running = match outcome {
        Ok(r) => r,
        Err(e) => {
            session.shutdown().await;
            return Err(anyhow::anyhow!(
                "MCP handshake with the agent host failed: {e}"
            ));
        }
    };
    tracing::info!(session = %session.id(), "host connected");
    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        r = &mut waiting => tracing::info!("host session ended: {:?}", r.map_err(|e| e.to_string())),
        sig = shutdown_signal() => {
            tracing::info!("stopped by {sig}; shutting down");
            ct.cancel();
            let _ = (&mut waiting).await;
        }
    }
    session.shutdown().await;
    Ok(())
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// A duplicate of fd 0 or 1 as a `File` (the original stays open for the
/// process; the duplicate is what tokio owns).
fn dup_fd(fd: i32) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: dup returns a new descriptor we own, or -1.
    let new = unsafe { libc::dup(fd) };
    (new >= 0).then(|| unsafe { std::fs::File::from_raw_fd(new) })
}

/// stdin as an event-driven pipe when it is one (the usual case: a host
/// spawned gavel), which avoids a blocking-thread hop per read; tokio's
/// blocking stdin otherwise (a file or a terminal).
fn stdin_reader() -> Reader {
    if let Some(f) = dup_fd(0)
        && let Ok(r) = tokio::net::unix::pipe::Receiver::from_file(f)
    {
        return Box::new(r);
    }
    Box::new(tokio::io::stdin())
}

fn stdout_writer() -> Writer {
    if let Some(f) = dup_fd(1)
        && let Ok(w) = tokio::net::unix::pipe::Sender::from_file(f)
    {
        return Box::new(w);
    }
    Box::new(tokio::io::stdout())
}

/// SIGINT or SIGTERM, whichever comes first: its name, also recorded as
/// the process's stop reason ([`crate::status::stop_reason`]) before the
/// caller cancels anything. (SIGHUP reopens the decision log instead — the
/// gateway watches it for every front; a host that goes away closes stdin,
/// which ends the session.)
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
