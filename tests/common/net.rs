//! HTTP-side helpers: the fixture over streamable HTTP, `gavel serve`
//! started and awaited, raw requests (what a real client would not send),
//! bearer tokens, a test PKI, an rmcp client over HTTP(S).

use std::path::Path;

use serde_json::Value;

use super::*;

/// The fixture serving streamable HTTP on a free port; returns it and its
/// `/mcp` URL.
pub async fn fixture_over_http(name: &str, record: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut fixture = tokio::process::Command::new(FIXTURE)
        .args(["--name", name, "--http", "127.0.0.1:0", "--record"])
        .arg(record)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(fixture.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("fixture announces its address");
        if let Some(u) = line.strip_prefix("FIXTURE_LISTENING ") {
            return (fixture, u.to_string());
        }
    }
}

/// Sends one raw HTTP request (with `Connection: close`) and returns the
/// whole response: for what a real client would not send (rebinding,
/// foreign origins, other users' tokens, caps).
pub async fn raw_request(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A raw `POST /mcp` of `body` with this `Host` (and `Origin`).
pub async fn raw_post(port: u16, host: &str, origin: Option<&str>, body: &Value) -> String {
    let body = body.to_string();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    raw_request(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// A raw `initialize` on 127.0.0.1:`port`, with this bearer token if any.
pub async fn post_init(port: u16, bearer: Option<&str>) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw_request(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// `gavel serve` on this setup's config, on a port the OS picked, once it
/// listens: the process and its port.
pub async fn gavel_serve(s: &Setup, env: &[(&str, &str)]) -> (tokio::process::Child, u16) {
    gavel_serve_with(s, env, &[]).await
}

/// `gavel serve` with extra arguments (TLS, allowed hosts…).
pub async fn gavel_serve_with(
    s: &Setup,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (tokio::process::Child, u16) {
    gavel_serve_logged(&s.config(), &s.log(), "127.0.0.1:0", env, extra).await
}

/// `gavel serve` on 127.0.0.1:`port`, for a config that names its own URL
/// (a bearer-token audience is the URL hosts connect to), so the port is
/// chosen before gavel starts: [`free_port`]'s race, where nothing else
/// will do.
pub async fn gavel_serve_at(
    s: &Setup,
    port: u16,
    env: &[(&str, &str)],
    extra: &[&str],
) -> tokio::process::Child {
    let listen = format!("127.0.0.1:{port}");
    gavel_serve_logged(&s.config(), &s.log(), &listen, env, extra)
        .await
        .0
}

/// `gavel serve --listen <listen>` of `config` logging to `log` (several
/// instances of one config each need their own log to tell when each
/// listens, and where), once it listens: the process and the port it
/// reports. With port 0 the OS picks it as gavel binds, so no other
/// process can take it first (as it can a port picked beforehand).
pub async fn gavel_serve_logged(
    config: &Path,
    log: &Path,
    listen: &str,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (tokio::process::Child, u16) {
    let child = tokio::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", listen, "--log-file"])
        .arg(log)
        .args(extra)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = serving_address(log).await;
    (child, addr.port())
}

/// The address a `gavel serve` logging to `log` reports it serves at (the
/// bound one, never `:0`), once it listens.
pub async fn serving_address(log: &Path) -> std::net::SocketAddr {
    const SERVING: &str = "serving MCP over streamable HTTP at ";
    let mut found = None;
    eventually("gavel listens", || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        found = text.lines().find_map(|l| {
            let url = &l[l.find(SERVING)? + SERVING.len()..];
            let authority = url.split_once("://")?.1.split_once("/mcp")?.0;
            authority.parse().ok()
        });
        found.is_some()
    })
    .await;
    found.unwrap()
}

/// The HS256 secret of the bearer-token tests; gavel reads it from the
/// environment variable the [`hs256_auth`] table names.
pub const JWT_SECRET: &str = "e2e-secret-for-hs256-tokens-only";

/// An `[auth]` table accepting HS256 tokens from `https://idp.example.test`
/// for `audience`, the secret read from `GAVEL_E2E_JWT_SECRET`.
pub fn hs256_auth(audience: &str) -> String {
    format!(
        "[auth]\nissuer = \"https://idp.example.test\"\naudience = {audience:?}\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_E2E_JWT_SECRET\"\n"
    )
}

/// An HS256 bearer token with these claims.
pub fn hs256_token(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Unix seconds now (token `exp`/`iat`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A test CA and a leaf certificate for 127.0.0.1 it signed, in the
/// setup's directory, as (leaf cert, leaf key, CA cert).
pub fn test_pki(s: &Setup) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    super::files::pki(s.dir.path())
}

/// An rmcp client over streamable HTTP for `url`, trusting `ca` (PEM) when
/// given (HTTPS) and sending `bearer` as its token when given.
pub async fn http_client(url: &str, ca: Option<&Path>, bearer: Option<&str>) -> Client {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut http = reqwest::Client::builder();
    if let Some(ca) = ca {
        http = http.add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap(),
        );
    }
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(b) = bearer {
        config = config.auth_header(b.to_string());
    }
    TestHost::new()
        .serve(StreamableHttpClientTransport::with_client(
            http.build().unwrap(),
            config,
        ))
        .await
        .expect("the HTTP client initializes")
}

/// A raw TCP connection to 127.0.0.1:`port` that has sent `head` (a request
/// that may stop anywhere: the slow and half-sent cases).
pub async fn raw_partial(port: u16, head: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Everything gavel sends on `s` until it closes the connection (a reset
/// counts as closed); fails the test if it is still open after PATIENCE.
pub async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("gavel closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// The response head gavel sends on `s` (up to the blank line), within
/// PATIENCE: for answers that must come before the request is complete.
pub async fn response_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !out.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(1) => out.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_head)
        .await
        .expect("gavel answers before the request is complete");
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether process `pid` (gavel, our child) has `TCP_NODELAY` set on its
/// side of `client`'s connection. The socket option of the accepted side is
/// not visible from the client, so the test takes a duplicate of gavel's
/// socket with `pidfd_getfd` (Linux 5.6+; a parent may do this to its
/// child) and asks it; its fd is found through `/proc/<pid>/net/tcp`.
pub async fn server_side_nodelay(pid: u32, client: &tokio::net::TcpStream) -> bool {
    let (me, gavel) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    // /proc/net/tcp writes 127.0.0.1 as 0100007F and ports in hex.
    let (local, remote) = (
        format!("0100007F:{:04X}", gavel.port()),
        format!("0100007F:{:04X}", me.port()),
    );
    let mut fd = None;
    eventually("gavel accepted the connection", || {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
        let inode = table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == local && f[2] == remote).then(|| f[9].to_string())
        });
        let Some(inode) = inode else { return false };
        let want = format!("socket:[{inode}]");
        fd = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .find(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == want))
            .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok());
        fd.is_some()
    })
    .await;
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) as libc::c_int;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd.unwrap(), 0) as libc::c_int;
        let err = std::io::Error::last_os_error();
        libc::close(pidfd);
        assert!(
            dup >= 0,
            "pidfd_getfd (Linux 5.6+, rights over our child): {err}"
        );
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let r = libc::getsockopt(
            dup,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &mut on as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        );
        libc::close(dup);
        assert_eq!(r, 0, "getsockopt: {}", std::io::Error::last_os_error());
        on != 0
    }
}
