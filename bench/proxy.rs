//! `cargo bench --bench proxy`: what a `tools/call` round trip costs through
//! each hop, side by side in one run, with a minimal client (std only: one
//! `write(2)` per request, a blocking line read per answer), so the figures
//! are the hops' and not a client library's. Paths, all alive for the whole
//! run, measured in interleaved rounds whose order rotates:
//!
//! - `direct`: the client on the upstream itself;
//! - `floor`: a byte relay (this binary, re-run as one: `poll(2)` and copy,
//!   no parsing) — the physical floor of an extra process on the path;
//! - `wrap`: `gavel wrap` (no policy, no log);
//! - `deployed`: `gavel run` as the example deploys it (`bench/deployed.rs`:
//!   the five example layers, the filesystem one with its result rule, the
//!   decision log, a daily budget and the workflow layer's rate limit);
//! - with `BENCH_SHADOW=1`, also `deployed_shadow` (deployed plus a shadow
//!   layer that would deny every call: a divergence record each, the worst
//!   case) and `deployed_shadow_agree` (a shadow layer that agrees: the usual
//!   case, evaluated on the side, no record) — issue 20's shadow cost.
//!
//! Each path reports p50/p99, the p50 added over `direct`, and the proxy
//! process's CPU per call (its threads' `schedstat` run time around each
//! block, divided by the calls). The whole set runs twice: unpinned, then
//! with every process on one CPU (`sched_setaffinity` before spawning,
//! inherited), where wake-ups across vCPUs vanish and CPU cost is what is
//! left (pinned p50s repeat within a few µs here). Beside the proxy figures,
//! the deployed path's own decision timers from its decision log
//! (`timer_gavel_decision_ns`, `timer_rego_query_eval_ns`): what a decision
//! costs inside the proxy, to set against `cargo bench --bench decision`.
//!
//! One JSON line per upstream (the Rust fixture's `echo`, then npm
//! server-everything's `echo`); the last line is the summary of both.
//!
//! Env: BENCH_ROUNDS (default 30), BENCH_CALLS (per round and path, default
//! 200), BENCH_UPSTREAMS (`fixture,everything`), BENCH_SHADOW (`1` adds the
//! shadow paths), BENCH_BASELINE_GAVEL (another gavel binary: adds
//! `wrap_baseline` and `deployed_baseline`, an A/B in the same rounds),
//! GAVEL_EVERYTHING (server-everything's dist/index.js).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "deployed.rs"]
mod deployed;
#[path = "../tests/common/files.rs"]
#[allow(dead_code)]
mod files;

const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");
const FIXTURE: &str = env!("CARGO_BIN_EXE_gavel-fixture");
/// Set in the environment of this binary re-run as the floor relay.
const RELAY_ENV: &str = "GAVEL_BENCH_RELAY";

/// The client side of one path: a child speaking MCP over its pipes.
struct Raw {
    child: Child,
    w: ChildStdin,
    r: BufReader<ChildStdout>,
    id: u64,
    line: String,
}

impl Raw {
    fn spawn(program: &str, args: &[String], relay: bool) -> Raw {
        let mut cmd = Command::new(program);
        if relay {
            cmd.env(RELAY_ENV, "1");
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        let mut c = Raw {
            child,
            w,
            r,
            id: 0,
            line: String::new(),
        };
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "gavel-bench", "version": "1"}});
        c.request("initialize", init);
        c.w.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .unwrap();
        c.request("tools/list", json!({}));
        c
    }

    /// Sends one request and waits for its answer (notifications skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params});
        self.w.write_all(format!("{msg}\n").as_bytes()).unwrap();
        loop {
            self.line.clear();
            let n = self.r.read_line(&mut self.line).unwrap();
            assert!(n > 0, "{method}: the path closed its output");
            let v: Value = serde_json::from_str(&self.line).unwrap();
            if v["id"] == json!(self.id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v;
            }
        }
    }

    /// One `tools/call`, timed from before the write to the answer's line.
    /// The answer is checked after the clock stops.
    fn call(&mut self, tool: &str, args: &str) -> Duration {
        self.id += 1;
        let msg = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{args}}}}}\n",
            self.id
        );
        let t = Instant::now();
        self.w.write_all(msg.as_bytes()).unwrap();
        loop {
            self.line.clear();
            let n = self.r.read_line(&mut self.line).unwrap();
            assert!(n > 0, "the path closed its output");
            if self.line.contains("\"result\"") || self.line.contains("\"error\"") {
                break;
            }
        }
        let d = t.elapsed();
        let v: Value = serde_json::from_str(&self.line).unwrap();
        assert_eq!(v["id"], json!(self.id), "answers come in order");
        assert!(
            v["result"].is_object() && v["result"]["isError"] != json!(true),
            "the bench call must succeed: {v}"
        );
        d
    }

    /// CPU time of the process's threads so far (`schedstat`, ns).
    fn cpu_ns(&self) -> u64 {
        let dir = format!("/proc/{}/task", self.child.id());
        let Ok(tasks) = std::fs::read_dir(dir) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One path of the comparison.
struct Hop {
    name: &'static str,
    client: Raw,
    /// Whether the child is a proxy whose CPU is counted (not `direct`).
    proxy: bool,
    samples: Vec<Duration>,
    cpu_ns: u64,
}

/// An upstream under test.
struct Upstream {
    name: &'static str,
    program: String,
    args: Vec<String>,
    tool: &'static str,
    call_args: &'static str,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The paths for `up`, spawned (configs written under `dir`).
fn spawn_paths(up: &Upstream, dir: &Path, shadow: bool) -> Vec<Hop> {
    let mut upstream = vec![up.program.clone()];
    upstream.extend(up.args.iter().cloned());
    let relay = std::env::current_exe().unwrap().display().to_string();
    let wrap: Vec<String> = ["wrap", "--name", "bench", "--"]
        .into_iter()
        .map(String::from)
        .chain(upstream.iter().cloned())
        .collect();
    let mut specs: Vec<(&'static str, String, Vec<String>, bool)> = vec![
        ("direct", up.program.clone(), up.args.clone(), false),
        ("floor", relay, upstream.clone(), true),
        ("wrap", GAVEL.into(), wrap.clone(), true),
        (
            "deployed",
            GAVEL.into(),
            run_args(&deployed_config(dir, "deployed", &upstream, None)),
            true,
        ),
    ];
    // A/B in one run: the same wrap and deployed paths with another gavel
    // binary (e.g. a release build of the previous commit).
    if let Ok(base) = std::env::var("BENCH_BASELINE_GAVEL") {
        specs.push(("wrap_baseline", base.clone(), wrap, true));
        let cfg = deployed_config(dir, "deployed_baseline", &upstream, None);
        specs.push(("deployed_baseline", base, run_args(&cfg), true));
    }
    if shadow {
        for (name, agrees) in [("deployed_shadow", false), ("deployed_shadow_agree", true)] {
            let cfg = deployed_config(dir, name, &upstream, Some(agrees));
            specs.push((name, GAVEL.into(), run_args(&cfg), true));
        }
    }
    specs
        .into_iter()
        .map(|(name, program, args, proxy)| Hop {
            name,
            // The floor relay is this very binary, told so by its
            // environment.
            client: Raw::spawn(&program, &args, name == "floor"),
            proxy,
            samples: Vec::new(),
            cpu_ns: 0,
        })
        .collect()
}

fn run_args(config: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--config".into(),
        config.display().to_string(),
    ]
}

/// The deployed configuration (`bench/deployed.rs`) of `upstream` as path
/// `name`, its own log and state; `shadow` adds a shadow layer that denies
/// (`Some(false)`) or allows (`Some(true)`) every call.
fn deployed_config(dir: &Path, name: &str, upstream: &[String], shadow: Option<bool>) -> PathBuf {
    let extra = match shadow {
        None => String::new(),
        Some(agrees) => {
            let b = dir.join(format!("shadow-{name}"));
            std::fs::create_dir_all(b.join("shadowbench")).unwrap();
            std::fs::write(
                b.join(".manifest"),
                r#"{"revision": "1", "roots": ["shadowbench"]}"#,
            )
            .unwrap();
            let rego = if agrees {
                "package shadowbench\n\ndecision := {\"allow\": true}\n"
            } else {
                "package shadowbench\n\ndecision := {\"allow\": false, \"reasons\": [\"shadow_denies\"]}\n"
            };
            std::fs::write(b.join("shadowbench/policy.rego"), rego).unwrap();
            format!("shadow_bundles = [{:?}]\n", b.display().to_string())
        }
    };
    deployed::config(dir, name, upstream, &extra)
}

/// Runs the interleaved rounds on `paths`; returns each path's figures.
fn measure(paths: &mut [Hop], up: &Upstream, rounds: usize, calls: usize) -> Value {
    for p in paths.iter_mut() {
        for _ in 0..200 {
            p.client.call(up.tool, up.call_args);
        }
    }
    let n = paths.len();
    for round in 0..rounds {
        for k in 0..n {
            let p = &mut paths[(round + k) % n];
            let cpu = p.client.cpu_ns();
            for _ in 0..calls {
                let d = p.client.call(up.tool, up.call_args);
                p.samples.push(d);
            }
            p.cpu_ns += p.client.cpu_ns().saturating_sub(cpu);
        }
    }
    for p in paths.iter_mut() {
        p.samples.sort();
    }
    let direct = pct(&paths[0].samples, 0.5);
    let floor_cpu = paths
        .iter()
        .find(|p| p.name == "floor")
        .map(|p| p.cpu_ns as f64 / p.samples.len() as f64 / 1e3);
    let mut out = serde_json::Map::new();
    for p in paths.iter() {
        let p50 = pct(&p.samples, 0.5);
        let cpu = p.cpu_ns as f64 / p.samples.len() as f64 / 1e3;
        out.insert(
            p.name.into(),
            json!({
                "p50_us": r1(p50),
                "p99_us": r1(pct(&p.samples, 0.99)),
                "added_p50_us": r1(p50 - direct),
                "cpu_us_per_call": p.proxy.then(|| r1(cpu)),
                "cpu_ratio_to_floor": (p.proxy).then(|| floor_cpu.map(|f| r1(cpu / f))).flatten(),
            }),
        );
    }
    let added = |name: &str| out.get(name).and_then(|v| v["added_p50_us"].as_f64());
    if let (Some(f), Some(w), Some(d)) = (added("floor"), added("wrap"), added("deployed")) {
        out.insert(
            "added_ratio_to_floor".into(),
            json!({"wrap": r1(w / f), "deployed": r1(d / f)}),
        );
    }
    Value::Object(out)
}

/// The deployed path's own decision timers, from its decision log.
fn log_timers(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("decisions-deployed.jsonl")).unwrap_or_default();
    let (mut dec, mut eval) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let m = &v["metrics"];
        if let Some(n) = m["timer_gavel_decision_ns"].as_u64() {
            dec.push(Duration::from_nanos(n));
        }
        if let Some(n) = m["timer_rego_query_eval_ns"].as_u64() {
            eval.push(Duration::from_nanos(n));
        }
    }
    dec.sort();
    eval.sort();
    let fig = |v: &[Duration]| {
        (!v.is_empty())
            .then(|| json!({"p50_us": r1(pct(v, 0.5)), "p99_us": r1(pct(v, 0.99)), "n": v.len()}))
    };
    json!({"decision": fig(&dec), "rego_eval": fig(&eval)})
}

/// Pins this process (and so every child spawned after) to CPU 0.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The floor: relays bytes between this process's stdin/stdout and the
/// upstream's pipes with `poll(2)`, one thread, no parsing.
fn relay(args: &[String]) {
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay: spawn the upstream");
    let mut to_up = child.stdin.take().unwrap();
    let mut from_up = child.stdout.take().unwrap();
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: from_up.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: two valid pollfd entries.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            break;
        }
        if fds[0].revents != 0 {
            let n = stdin.read(&mut buf).unwrap_or(0);
            if n == 0 || to_up.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        if fds[1].revents != 0 {
            let n = from_up.read(&mut buf).unwrap_or(0);
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    if std::env::var_os(RELAY_ENV).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return relay(&args);
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where it must not benchmark (no benchmarks in CI).
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("proxy bench: run with `cargo bench --bench proxy`");
        return;
    }
    let rounds = env_num("BENCH_ROUNDS", 30);
    let calls = env_num("BENCH_CALLS", 200);
    let shadow = std::env::var("BENCH_SHADOW").is_ok_and(|v| v == "1");
    let which = std::env::var("BENCH_UPSTREAMS").unwrap_or_else(|_| "fixture,everything".into());
    let everything = std::env::var_os("GAVEL_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
                ".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            )
        });
    let mut ups = Vec::new();
    if which.contains("fixture") {
        ups.push(Upstream {
            name: "rust-fixture",
            program: FIXTURE.into(),
            args: vec![],
            tool: "echo",
            call_args: r#"{"text":"bench","path":"public/readme.txt"}"#,
        });
    }
    if which.contains("everything") {
        assert!(
            everything.exists(),
            "{} missing: run scripts/setup",
            everything.display()
        );
        ups.push(Upstream {
            name: "server-everything",
            program: "node".into(),
            args: vec![everything.display().to_string(), "stdio".into()],
            tool: "echo",
            call_args: r#"{"message":"bench","path":"public/readme.txt"}"#,
        });
    }
    let mut figures = Vec::new();
    for pinned in [false, true] {
        if pinned {
            pin_to_cpu0();
        }
        for up in &ups {
            let dir = tempfile::tempdir().expect("temp dir");
            deployed::bundles(dir.path());
            let mut paths = spawn_paths(up, dir.path(), shadow);
            let fig = measure(&mut paths, up, rounds, calls);
            drop(paths);
            let line = json!({
                "bench": "proxy",
                "upstream": up.name,
                "pinned": pinned,
                "rounds": rounds,
                "calls_per_round": calls,
                "paths": fig,
                "deployed_log_timers": log_timers(dir.path()),
            });
            println!("{line}");
            figures.push(line);
        }
    }
    let summary: Vec<Value> = figures
        .iter()
        .map(|f| {
            let p = &f["paths"];
            json!({
                "upstream": f["upstream"], "pinned": f["pinned"],
                "added_p50_us": {
                    "floor": p["floor"]["added_p50_us"], "wrap": p["wrap"]["added_p50_us"],
                    "deployed": p["deployed"]["added_p50_us"],
                    "deployed_shadow": p.get("deployed_shadow").map(|s| &s["added_p50_us"]),
                    "deployed_shadow_agree": p.get("deployed_shadow_agree").map(|s| &s["added_p50_us"]),
                    "wrap_baseline": p.get("wrap_baseline").map(|s| &s["added_p50_us"]),
                    "deployed_baseline": p.get("deployed_baseline").map(|s| &s["added_p50_us"]),
                },
                "cpu_us_per_call": {
                    "floor": p["floor"]["cpu_us_per_call"], "wrap": p["wrap"]["cpu_us_per_call"],
                    "deployed": p["deployed"]["cpu_us_per_call"],
                },
                "deployed_decision_p50_us": f["deployed_log_timers"]["decision"]["p50_us"],
            })
        })
        .collect();
    println!("{}", json!({"bench": "proxy", "summary": summary}));
}
