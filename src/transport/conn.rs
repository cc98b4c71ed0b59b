//! The connection layer of `gavel serve`, plain HTTP and TLS alike: one
//! accept loop that bounds what a client can hold before any request is
//! decided.
//!
//! - **Connection cap** (`[serve] max_connections`): every connection holds
//!   a slot until it closes. One over the cap is refused at once — plain
//!   HTTP gets a 503 naming the key, TLS is closed before the handshake (a
//!   refusal costs no handshake) — so half-open or idle connections cannot
//!   grow without bound (file descriptors, tasks, buffers).
//! - **Header timeout** (`[serve] header_timeout`): hyper's header read
//!   timeout, which runs from the first byte of a request head, and also
//!   while a kept-alive connection waits for its next request: a client
//!   that sends half a request, or nothing, is disconnected. (axum's own
//!   `serve` sets no timer, so plain HTTP had no such bound.) The TLS
//!   handshake, which comes before any head, is bounded by it too.
//! - **`TCP_NODELAY`** on every accepted socket: MCP answers are small
//!   writes; with Nagle's algorithm on, each answer on a kept-alive
//!   connection waits for the client's delayed ACK (~40 ms).
//!
//! The body read timeout is applied where the body is read (`http.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Refusals being written at once; beyond it a refused connection is
/// closed without an answer (the refusal itself must stay bounded).
const REFUSING_AT_ONCE: usize = 64;

/// How long a refusal may take to write its answer and read what the
/// client had sent (so closing does not reset the connection under the
/// answer).
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// The limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From the first byte of a request head (or the end of the previous
    /// response) to its end; bounds the TLS handshake too (what comes
    /// before the first request).
    pub header_timeout: Duration,
}

/// Serves `app` on `port` (over TLS when it has a TLS config) until
/// `shutdown` is cancelled, then closes the listener (new connections are
/// refused) and lets the open connections finish their requests until they
/// are done or `give_up` resolves.
pub async fn serve(
    port: Port,
    app: axum::Router,
    shutdown: CancellationToken,
    give_up: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Port {
        listener,
        tls,
        limits,
    } = port;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let refused = Arc::new(AtomicU64::new(0));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = accept(&listener) => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let n = refused.fetch_add(1, Ordering::Relaxed);
            // A flood must not flood the log too: the first, then every 100th.
            if n.is_multiple_of(100) {
                tracing::warn!(
                    %peer,
                    max = limits.max_connections,
                    refused = n + 1,
                    "refusing a connection: [serve] max_connections reached"
                );
            }
            refuse(tcp, acceptor.is_some(), &refusing, limits.max_connections);
            continue;
        };
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                return serve_connection(tcp, app, limits, watcher, peer).await;
            };
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve_connection(tls, app, limits, watcher, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = give_up => tracing::warn!("some connections were still open after the drain; closing them"),
    }
    Ok(())
}

/// A bound port and how its connections are taken: plain or TLS, and the
/// bounds every connection is held to.
pub struct Port {
    pub listener: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: ConnLimits,
}

/// Accepts one connection and turns Nagle's algorithm off on it.
pub(crate) async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (tcp, peer) = listener.accept().await?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
    }
    Ok((tcp, peer))
}

/// One HTTP/1.1 connection, with the header timeout; tracked by the
/// graceful shutdown.
async fn serve_connection<I>(
    io: I,
    app: axum::Router,
    limits: ConnLimits,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// The answer to a connection over the cap: plain HTTP gets a 503 (written,
/// then what the client sent is read and dropped, so closing does not
/// reset the answer away); TLS is closed at once.
fn refuse(tcp: TcpStream, tls: bool, refusing: &Arc<Semaphore>, max: usize) {
    if tls {
        return;
    }
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSAL_GRACE, write_refusal(tcp, max)).await;
    });
}

async fn write_refusal(mut tcp: TcpStream, max: usize) -> std::io::Result<()> {
    let body = format!(
        "gavel has its maximum of {max} connections open ([serve] max_connections, --max-connections); retry later\n"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(answer.as_bytes()).await?;
    tcp.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut read = 0;
    while read < (1 << 20) {
        match tcp.read(&mut sink).await? {
            0 => break,
            n => read += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accept path itself sets TCP_NODELAY on the server side of the
    /// connection (the client's own setting says nothing about it).
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (server_side, _) = accept(&listener).await.unwrap();
        let _client = client.await.unwrap();
        assert!(server_side.nodelay().unwrap());
    }
}
