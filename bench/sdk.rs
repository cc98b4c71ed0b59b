//! `cargo bench --bench sdk`: what gavel adds as a host on the **official
//! Python MCP SDK** sees it (issue 17: deployed ≤ 1.3× direct, `wrap` ≤
//! 1.15×), against npm server-everything's `echo`, side by side in one run.
//!
//! Paths, each one long-lived host session (`bench/sdk_client.py`, the SDK's
//! `Client` over stdio in `legacy` mode — server-everything speaks no other):
//! `direct` (the SDK on server-everything), `wrap` (`gavel wrap`, no policy)
//! and `deployed` (`bench/deployed.rs`: the example's five layers, decision
//! log, daily budget, rate limit). Rounds in rotating order; each round makes
//! BENCH_CALLS calls per path one after another. Per path: p50 and p99 of a
//! call as the SDK's caller sees it, and the p50 as a ratio to `direct` in
//! the same run. One JSON line per path, then a summary line.
//!
//! Env: BENCH_ROUNDS (10), BENCH_CALLS (100), GAVEL_EVERYTHING
//! (server-everything's dist/index.js), GAVEL_BENCH_PYTHON (the SDK's
//! Python, default `.deps/mcp2/bin/python`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

#[path = "deployed.rs"]
mod deployed;
#[path = "../tests/common/files.rs"]
#[allow(dead_code)]
mod files;

const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");
/// The issue's targets: p50 as a multiple of the direct call's.
const TARGET_WRAP: f64 = 1.15;
const TARGET_DEPLOYED: f64 = 1.3;

/// One host session on the SDK, kept for the whole run.
struct Host {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    samples: Vec<f64>,
}

impl Host {
    fn spawn(name: &'static str, python: &Path, command: &[String]) -> Host {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/sdk_client.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg("echo")
            .arg(r#"{"message":"bench","path":"public/readme.txt"}"#)
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", python.display()));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = line(&mut stdout, name);
        assert_eq!(ready["ready"], true, "{name}: {ready}");
        Host {
            name,
            child,
            stdin,
            stdout,
            samples: Vec::new(),
        }
    }

    fn round(&mut self, calls: usize) {
        writeln!(self.stdin, "{calls}").unwrap();
        self.stdin.flush().unwrap();
        let out = line(&mut self.stdout, self.name);
        let us = out["us"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: {out}", self.name));
        self.samples.extend(us.iter().filter_map(Value::as_f64));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin);
        let _ = self.child.wait();
    }
}

fn line(r: &mut impl BufRead, name: &str) -> Value {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    serde_json::from_str(&l).unwrap_or_else(|e| panic!("{name}: {e}: {l:?}"))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 10.0).round() / 10.0
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where it must not benchmark (no benchmarks in CI).
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("sdk bench: run with `cargo bench --bench sdk`");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rounds = env_num("BENCH_ROUNDS", 10);
    let calls = env_num("BENCH_CALLS", 100);
    let python = std::env::var_os("GAVEL_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".deps/mcp2/bin/python"));
    let everything = std::env::var_os("GAVEL_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root.join(
                ".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            )
        });
    assert!(
        everything.exists(),
        "{} missing: run scripts/setup",
        everything.display()
    );
    let upstream = vec![
        "node".to_string(),
        everything.display().to_string(),
        "stdio".into(),
    ];
    let dir = tempfile::tempdir().unwrap();
    deployed::bundles(dir.path());
    let cfg = deployed::config(dir.path(), "deployed", &upstream, "");
    let mut wrap = vec![
        GAVEL.to_string(),
        "wrap".into(),
        "--name".into(),
        "bench".into(),
        "--".into(),
    ];
    wrap.extend(upstream.iter().cloned());
    let deployed = vec![
        GAVEL.to_string(),
        "run".into(),
        "--config".into(),
        cfg.display().to_string(),
    ];
    let mut hosts = vec![
        Host::spawn("direct", &python, &upstream),
        Host::spawn("wrap", &python, &wrap),
        Host::spawn("deployed", &python, &deployed),
    ];
    // Warm-up, not counted.
    for h in &mut hosts {
        h.round(calls.min(50));
        h.samples.clear();
    }
    for r in 0..rounds {
        let n = hosts.len();
        for i in 0..n {
            hosts[(i + r) % n].round(calls);
        }
    }
    let mut figures = serde_json::Map::new();
    for h in &mut hosts {
        h.samples.sort_by(f64::total_cmp);
        figures.insert(
            h.name.into(),
            json!({"p50_us": pct(&h.samples, 0.5), "p99_us": pct(&h.samples, 0.99), "calls": h.samples.len()}),
        );
    }
    let p50 = |n: &str| figures[n]["p50_us"].as_f64().unwrap();
    let ratio = |n: &str| ((p50(n) / p50("direct")) * 1000.0).round() / 1000.0;
    for name in ["direct", "wrap", "deployed"] {
        let mut line = figures[name].clone();
        line["path"] = json!(name);
        line["ratio_to_direct"] = json!(ratio(name));
        println!("{}", json!({"bench": "sdk", "line": line}));
    }
    println!(
        "{}",
        json!({
            "bench": "sdk",
            "client": "python mcp (official SDK), stdio, legacy mode",
            "upstream": "server-everything echo",
            "rounds": rounds,
            "calls_per_round": calls,
            "paths": figures,
            "ratio_to_direct": {"wrap": ratio("wrap"), "deployed": ratio("deployed")},
            "target": {"wrap": TARGET_WRAP, "deployed": TARGET_DEPLOYED},
            "target_met": {
                "wrap": ratio("wrap") <= TARGET_WRAP,
                "deployed": ratio("deployed") <= TARGET_DEPLOYED,
            },
        })
    );
}
