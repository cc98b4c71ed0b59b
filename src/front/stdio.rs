//! The stdio front: the host launched gavel and speaks MCP on its stdin and
//! stdout. stdout carries only protocol messages; logs go to stderr or a file.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::service::RoleServer;

use super::era::{EraFront, StdioFront};
use super::lifecycle::{FrontLifecycle, shutdown_signal};
use super::session::Session;
use crate::gateway::Gateway;
use crate::transport::LineTransport;
use crate::transport::line::LinkLabel;

/// Serves one host session on stdin/stdout until the host closes stdin or
/// gavel is signalled, then stops every upstream ([`FrontLifecycle`]).
pub async fn serve_stdio(gw: Arc<Gateway>) -> anyhow::Result<()> {
    let session = super::session::Session::new(gw.clone());
    let lifecycle = FrontLifecycle::start(&gw, {
        let session = session.clone();
        Box::new(move || {
            let mut fields = serde_json::Map::new();
            fields.insert("session".into(), session.status_json());
            fields
        })
    });
    let result = serve(&gw, &session).await;
    lifecycle.finish().await;
    result
}

/// The session's life: handshake, then serving until the host goes or a
/// signal comes; its upstreams are stopped on every way out.
async fn serve(gw: &Gateway, session: &Session) -> anyhow::Result<()> {
    let transport = LineTransport::<RoleServer, _, _>::new(
        stdin_reader(),
        stdout_writer(),
        gw.config.limits.max_message_bytes,
        LinkLabel {
            name: "host".into(),
            answer_garbage: true,
            refuse_modern_ping: true,
        },
    );
    let outcome = tokio::select! {
        r = StdioFront(EraFront::stdio(session.clone())).serve(transport) => r,
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
                "the agent host's first MCP message could not open a session: {e}"
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
