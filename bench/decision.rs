//! `cargo bench --bench decision`: one full decision — input build, Rego
//! evaluation of every layer, decision parse and combination — on the example
//! layered policy of the `filesystem` server (filesystem + override + shared
//! identity + compliance bundles), warm, single thread. Side by side, in
//! interleaved rounds: a bare regorus evaluation of the filesystem bundle's
//! decision rule (the floor gavel builds on). Last line is the JSON summary.
//!
//! Env: BENCH_ROUNDS (default 20), BENCH_ITERS (per round and kind, default 2000).

use std::path::Path;
use std::time::{Duration, Instant};

use gavel::config::Config;
use gavel::decision::{Action, ActionType, DecisionContext, Enforcer, SessionCounters};
use serde_json::json;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("decision bench: run with `cargo bench --bench decision`");
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = Config::load(&root.join("servers.toml")).expect("servers.toml");
    cfg.log.decisions = None; // measure the decision, not the disk
    let enforcer = Enforcer::from_config(&cfg).expect("policies load");
    let action = Action {
        kind: ActionType::ToolCall,
        server: "filesystem".into(),
        tool: "read_text_file".into(),
        args: json!({"path": "demo-data/public/readme.txt"}),
        annotations: json!({"readOnlyHint": true}),
        annotations_trusted: false,
        tool_digest: Some("sha256:0000".into()),
        upstream_data_classes: vec![],
    };
    let mut counters = SessionCounters::default();
    counters.record_tool_call("filesystem", "list_directory", true, 40);
    let ctx = DecisionContext {
        session_id: "bench".into(),
        client: Some(("bench".into(), "1".into())),
        session_age_seconds: 12.5,
        counters,
    };
    assert!(
        enforcer.decide(&action, &ctx).decision().allow,
        "the benchmark decision is an allow"
    );

    // Baseline: bare regorus on the filesystem bundle alone.
    let b =
        gavel::bundle::load_bundle(&root.join("bundles/filesystem"), &Default::default()).unwrap();
    let mut warm = regorus::Engine::new();
    for m in &b.modules {
        warm.add_policy(m.path.clone(), m.text.clone()).unwrap();
    }
    warm.add_data(serde_json::from_value(b.data.clone()).unwrap())
        .unwrap();
    let input: regorus::Value = serde_json::from_value(json!({"action": {"type": "tool_call", "tool": "read_text_file", "args": {"path": "demo-data/public/readme.txt"}}})).unwrap();
    warm.set_input(input.clone());
    warm.eval_rule("data.mcp.filesystem.decision".into())
        .unwrap();

    let (mut full, mut bare) = (Vec::new(), Vec::new());
    let mut full_total = Duration::ZERO;
    for round in 0..rounds {
        for first in [round % 2 == 0, round % 2 != 0] {
            if first {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let t = Instant::now();
                    std::hint::black_box(enforcer.decide(&action, &ctx));
                    full.push(t.elapsed());
                }
                full_total += t0.elapsed();
            } else {
                for _ in 0..iters {
                    let t = Instant::now();
                    let mut e = warm.clone();
                    e.set_input(input.clone());
                    std::hint::black_box(
                        e.eval_rule("data.mcp.filesystem.decision".into()).unwrap(),
                    );
                    bare.push(t.elapsed());
                }
            }
        }
    }
    let (p50, p99) = (pct(&mut full, 0.5), pct(&mut full, 0.99));
    let bare50 = pct(&mut bare, 0.5);
    let line = json!({
        "bench": "decision",
        "p50_us": (p50 * 10.0).round() / 10.0,
        "p99_us": (p99 * 10.0).round() / 10.0,
        "decisions_per_s": (full.len() as f64 / full_total.as_secs_f64()).round(),
        "regorus_eval_p50_us": (bare50 * 10.0).round() / 10.0,
        "ratio_to_bare_eval_p50": ((p50 / bare50) * 100.0).round() / 100.0,
        "layers": enforcer.status_json()["filesystem"]["bundles"].as_array().map_or(0, Vec::len),
    });
    println!("{line}");
}
