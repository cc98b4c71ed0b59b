//! `cargo bench --bench proxy`: tools/call round trips, direct host→upstream
//! against host→gavel→upstream, with the same rmcp client, in interleaved
//! rounds (this machine is noisy: the two paths share every disturbance).
//! gavel runs as deployed: decision log and a daily budget on (BENCH_STATE
//! narrows that to `none`, `log` or `budget`, and adds `policy`, a live Rego
//! bundle that allows every call, or `shadow`, that bundle plus a shadow
//! bundle that would deny every call: a divergence, so a shadow record, each).
//! One JSON line per upstream; the server-everything line is last.
//!
//! Env: BENCH_ROUNDS (default 20), BENCH_CALLS (per round and path, default 50),
//! GAVEL_EVERYTHING (path to server-everything's dist/index.js).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");
const FIXTURE: &str = env!("CARGO_BIN_EXE_gavel-fixture");

type Client = RunningService<RoleClient, ClientConfig>;

async fn connect(program: &str, args: &[String]) -> Client {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let info = ClientConfig::new(Default::default(), Implementation::new("gavel-bench", "1"))
        .with_protocol_version(ProtocolVersion::V_2025_11_25);
    let c = info.serve((stdout, stdin)).await.expect("initialize");
    c.peer().list_all_tools().await.expect("tools/list"); // warm: upstream ready
    c
}

async fn one_call(c: &Client, tool: &str, args: &Value) -> Duration {
    let mut p = CallToolRequestParams::new(tool.to_string());
    p.arguments = args.as_object().cloned();
    let t = Instant::now();
    let r = c.peer().call_tool(p).await.expect("call");
    let d = t.elapsed();
    assert_ne!(r.is_error, Some(true), "bench call failed");
    d
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn measure(name: &str, upstream: (String, Vec<String>), tool: &str, args: Value) {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let direct = connect(&upstream.0, &upstream.1).await;
    // gavel as deployed: decision log on (one write(2) per decision) and a
    // daily budget (one SQLite transaction per call) in a throw-away dir.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("servers.toml");
    // BENCH_STATE=none|log|budget narrows that to tell the proxy's own cost
    // from the decision log's and the budget's (default: both).
    let which = std::env::var("BENCH_STATE").unwrap_or_else(|_| "log,budget".into());
    let parts: Vec<&str> = which.split(',').map(str::trim).collect();
    if let Some(bad) = parts
        .iter()
        .find(|p| !["none", "log", "budget", "policy", "shadow", "shadow_agree"].contains(p))
    {
        panic!(
            "BENCH_STATE: unknown part {bad:?} (use none, log, budget, policy, shadow, shadow_agree, comma-separated)"
        );
    }
    let (log, budget) = (parts.contains(&"log"), parts.contains(&"budget"));
    // `shadow`: a shadow that denies every call (the worst case: a record
    // each); `shadow_agree`: one that allows as the live one does (the
    // usual case: evaluated on the side, no record).
    let shadow = match (parts.contains(&"shadow"), parts.contains(&"shadow_agree")) {
        (true, _) => Some(false),
        (false, true) => Some(true),
        (false, false) => None,
    };
    let policy = shadow.is_some() || parts.contains(&"policy");
    let bundles = if policy {
        bench_bundles(dir.path(), shadow)
    } else {
        String::new()
    };
    let mut state = String::new();
    if log {
        let path = dir.path().join("decisions.jsonl");
        state += &format!("[log]\ndecisions = {:?}\n\n", path.display().to_string());
    }
    if budget {
        let path = dir.path().join("state.sqlite");
        state += &format!(
            "[state]\npath = {:?}\n\n[budget]\ncalls = 1000000000\n\n",
            path.display().to_string()
        );
    }
    std::fs::write(
        &config,
        format!(
            "{state}[servers.{name}]\ncommand = {:?}\nargs = {}\n{bundles}",
            upstream.0,
            serde_json::to_string(&upstream.1).unwrap(),
        ),
    )
    .unwrap();
    let gavel_args = vec![
        "run".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    let gavel = connect(GAVEL, &gavel_args).await;
    for _ in 0..20 {
        one_call(&direct, tool, &args).await;
        one_call(&gavel, tool, &args).await;
    }
    let (mut d, mut g) = (Vec::new(), Vec::new());
    let mut gavel_time = Duration::ZERO;
    for round in 0..rounds {
        // Alternate which path goes first so drift hits both equally.
        for first_direct in [round % 2 == 0, round % 2 != 0] {
            if first_direct {
                for _ in 0..calls {
                    d.push(one_call(&direct, tool, &args).await);
                }
            } else {
                let t = Instant::now();
                for _ in 0..calls {
                    g.push(one_call(&gavel, tool, &args).await);
                }
                gavel_time += t.elapsed();
            }
        }
    }
    d.sort();
    g.sort();
    let (dp50, gp50) = (pct(&d, 0.5), pct(&g, 0.5));
    let line = json!({
        "bench": "proxy",
        "upstream": name,
        "direct_p50_us": (dp50 * 10.0).round() / 10.0,
        "gavel_p50_us": (gp50 * 10.0).round() / 10.0,
        "added_p50_us": ((gp50 - dp50) * 10.0).round() / 10.0,
        "ratio_p50": ((gp50 / dp50) * 1000.0).round() / 1000.0,
        "direct_p99_us": (pct(&d, 0.99) * 10.0).round() / 10.0,
        "gavel_p99_us": (pct(&g, 0.99) * 10.0).round() / 10.0,
        "calls_per_s": ((g.len() as f64 / gavel_time.as_secs_f64()) * 10.0).round() / 10.0,
        "decision_log": log,
        "budget": budget,
        "policy": policy,
        "shadow": shadow.map(|agrees| if agrees { "agrees" } else { "denies" }),
    });
    println!("{line}");
    direct.cancel().await.ok();
    gavel.cancel().await.ok();
}

/// `BENCH_STATE` `policy`/`shadow`/`shadow_agree`: the config lines of a
/// live bundle that allows every call and, with a shadow, a shadow bundle of
/// the same name that would deny every call (`Some(false)`) or allow it as
/// the live one does (`Some(true)`).
fn bench_bundles(dir: &std::path::Path, shadow: Option<bool>) -> String {
    let write = |sub: &str, rego: &str| {
        let b = dir.join(sub).join("bench");
        std::fs::create_dir_all(b.join("bench")).expect("bundle dir");
        std::fs::write(
            b.join(".manifest"),
            r#"{"revision": "1", "roots": ["bench"]}"#,
        )
        .expect("manifest");
        std::fs::write(b.join("bench/policy.rego"), rego).expect("rego");
        b.display().to_string()
    };
    let live = write("live", "package bench\n\ndecision := {\"allow\": true}\n");
    let mut lines = format!("bundle = {live:?}\n");
    if let Some(agrees) = shadow {
        let rego = if agrees {
            "package bench\n\ndecision := {\"allow\": true}\n"
        } else {
            "package bench\n\ndecision := {\"allow\": false, \"reasons\": [\"shadow_denies\"]}\n"
        };
        lines += &format!("shadow_bundles = [{:?}]\n", write("shadow", rego));
    }
    lines
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where it must not benchmark (no benchmarks in CI).
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("proxy bench: run with `cargo bench --bench proxy`");
        return;
    }
    let everything = std::env::var_os("GAVEL_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
                ".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            )
        });
    assert!(
        everything.exists(),
        "{} missing: run scripts/setup",
        everything.display()
    );
    measure(
        "rust-fixture",
        (FIXTURE.to_string(), vec![]),
        "echo",
        json!({"text": "bench"}),
    )
    .await;
    measure(
        "server-everything",
        (
            "node".into(),
            vec![everything.display().to_string(), "stdio".into()],
        ),
        "echo",
        json!({"message": "bench"}),
    )
    .await;
}
