//! `cargo bench --bench http`: `gavel serve` under concurrent clients, with
//! full policy (the example identity, compliance and workflow layers plus the
//! server's own layer, decision log on), against the stdio path measured in
//! the same run (one `gavel run` client, same policy). Each HTTP client is
//! its own MCP session with its own upstream (the project's Rust fixture).
//! Last line: `{"bench":"http","clients":…,"calls_per_s":…,"p50_us":…,"p99_us":…,"stdio_p50_us":…,…}`.
//!
//! Env: BENCH_CLIENTS (default 4), BENCH_CALLS (per client, default 300).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");
const FIXTURE: &str = env!("CARGO_BIN_EXE_gavel-fixture");

type Client = RunningService<RoleClient, ClientConfig>;

fn info() -> ClientConfig {
    ClientConfig::new(Default::default(), Implementation::new("gavel-bench", "1"))
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
}

async fn call(c: &Client) -> Duration {
    let mut p = CallToolRequestParams::new("echo");
    p.arguments = json!({"text": "bench"}).as_object().cloned();
    let t = Instant::now();
    let r = c.peer().call_tool(p).await.expect("call");
    let d = t.elapsed();
    assert_ne!(r.is_error, Some(true), "bench call denied or failed");
    d
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

fn config(dir: &Path, root: &Path) -> PathBuf {
    // The server's own layer: destructive tools denied, the rest allowed
    // (the fixture's test bundle caps a session at 50 calls).
    let fx = dir.join("fx");
    std::fs::create_dir_all(fx.join("fx")).unwrap();
    std::fs::write(
        fx.join(".manifest"),
        r#"{"revision": "1", "roots": ["fx"]}"#,
    )
    .unwrap();
    std::fs::write(
        fx.join("fx/policy.rego"),
        "package fx\n\ndefault decision := {\"allow\": false, \"reasons\": [\"destructive\"]}\n\ndecision := {\"allow\": true} if not startswith(input.action.tool, \"destructive\")\n",
    )
    .unwrap();
    let path = dir.join("servers.toml");
    let b = |p: &str| root.join(p).display().to_string();
    std::fs::write(
        &path,
        format!(
            "[identity.user]\nid = \"bench\"\ngroups = [\"engineering\"]\ndata_classifications_authorized = [\"public\"]\n\n[identity.environment]\nregion = \"eu-west-1\"\n\n[policy]\nshared_bundles = [{:?}, {:?}]\n\n[log]\ndecisions = {:?}\n\n[servers.fx]\ncommand = {FIXTURE:?}\nbundle = {:?}\n",
            b("bundles/identity"),
            b("bundles/compliance"),
            dir.join("decisions.jsonl").display().to_string(),
            fx.display().to_string(),
        ),
    )
    .unwrap();
    path
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("http bench: run with `cargo bench --bench http`");
        return;
    }
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), root);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = tokio::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-file"])
        .arg(dir.path().join("serve.log"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "gavel serve did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut http = Vec::new();
    for _ in 0..clients {
        let c = info()
            .serve(StreamableHttpClientTransport::from_uri(url.clone()))
            .await
            .expect("HTTP initialize");
        c.peer().list_all_tools().await.unwrap();
        for _ in 0..20 {
            call(&c).await;
        }
        http.push(c);
    }

    let mut child = tokio::process::Command::new(GAVEL)
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--log-file"])
        .arg(dir.path().join("stdio.log"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let stdio = info().serve(io).await.expect("stdio initialize");
    stdio.peer().list_all_tools().await.unwrap();
    for _ in 0..20 {
        call(&stdio).await;
    }

    // Interleaved: a stdio round, then all HTTP clients at once, repeated.
    let rounds = 5;
    let (mut h, mut s) = (Vec::new(), Vec::new());
    let mut http_time = Duration::ZERO;
    for _ in 0..rounds {
        for _ in 0..calls / rounds {
            s.push(call(&stdio).await);
        }
        let t0 = Instant::now();
        let per: Vec<Vec<Duration>> = futures::future::join_all(http.iter().map(|c| async move {
            let mut v = Vec::new();
            for _ in 0..calls / rounds {
                v.push(call(c).await);
            }
            v
        }))
        .await;
        http_time += t0.elapsed();
        h.extend(per.into_iter().flatten());
    }
    let line = json!({
        "bench": "http",
        "clients": clients,
        "calls_per_s": ((h.len() as f64 / http_time.as_secs_f64()) * 10.0).round() / 10.0,
        "p50_us": (pct(&mut h, 0.5) * 10.0).round() / 10.0,
        "p99_us": (pct(&mut h, 0.99) * 10.0).round() / 10.0,
        "stdio_p50_us": (pct(&mut s, 0.5) * 10.0).round() / 10.0,
        "stdio_p99_us": (pct(&mut s, 0.99) * 10.0).round() / 10.0,
    });
    println!("{line}");
    for c in http {
        c.cancel().await.ok();
    }
    stdio.cancel().await.ok();
}
