//! `cargo bench --bench decision`: one full decision — input build, Rego
//! evaluation of every layer (or its memo), decision parse and combination —
//! on the example layered policy of the `filesystem` server (filesystem +
//! override + shared identity + compliance + workflow bundles), warm, single
//! thread, over a simulated session whose counters advance on every call (so
//! the workflow layer is evaluated on every decision). Side by side, in
//! interleaved rounds: a bare regorus evaluation of the filesystem bundle's
//! decision rule (the floor gavel builds on). Each figure is the median over
//! rounds of that round's percentile. Last line is the JSON summary.
//!
//! Env: BENCH_ROUNDS (default 20), BENCH_ITERS (per round and kind, default 2000).

use std::path::Path;
use std::time::{Duration, Instant};

use gavel::config::Config;
use gavel::decision::{Action, ActionType, DecisionContext, Enforcer, SessionCounters};
use serde_json::{Value, json};

/// The `p` quantile of one round's samples, in microseconds.
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
    // Stateful checks on: the workflow bundle's per-user rate limit, and
    // (BENCH_BUDGET=1, default on) a daily budget — each a SQLite
    // transaction in a throw-away state file, on a clock that follows the
    // simulated session.
    let state = tempfile::tempdir().expect("temp dir");
    cfg.state_path = Some(state.path().join("state.sqlite"));
    let with_budget = std::env::var("BENCH_BUDGET").map_or(true, |v| v != "0");
    if with_budget {
        cfg.budget = Some(gavel::config::Budget {
            per: gavel::config::BudgetPer::User,
            period: gavel::state::budget::Period::Day,
            calls: Some(1_000_000),
            tokens: Some(1_000_000_000),
        });
    }
    let clock = gavel::state::clock::ManualClock::new(1_800_000_000.0);
    let enforcer = Enforcer::from_config_with_clock(&cfg, std::sync::Arc::new(clock.clone()))
        .expect("policies load");
    // A session: the agent cycles through a few tools and paths, one call
    // every 1.5 s of session time, and every counter advances as it would
    // (cumulative_tokens grows on every call, so the workflow layer never
    // sees the same facts twice; the other layers do).
    let calls: Vec<(&str, Value)> = vec![
        (
            "read_text_file",
            json!({"path": "demo-data/public/readme.txt"}),
        ),
        ("list_directory", json!({"path": "demo-data/public"})),
        (
            "get_file_info",
            json!({"path": "demo-data/public/readme.txt"}),
        ),
        (
            "read_text_file",
            json!({"path": "demo-data/public/notes.txt"}),
        ),
        (
            "write_file",
            json!({"path": "demo-data/public/out.txt", "content": "x"}),
        ),
        (
            "search_files",
            json!({"path": "demo-data/public", "pattern": "*.txt"}),
        ),
        ("directory_tree", json!({"path": "demo-data/public"})),
        ("list_directory", json!({"path": "demo-data/public/sub"})),
    ];
    let actions: Vec<Action> = calls
        .iter()
        .map(|(tool, args)| Action {
            kind: ActionType::ToolCall,
            server: "filesystem".into(),
            tool: tool.to_string(),
            args: args.clone(),
            annotations: json!({"readOnlyHint": true}),
            annotations_trusted: false,
            tool_digest: Some("sha256:0000".into()),
            upstream_data_classes: vec![],
        })
        .collect();
    let mut ctx = DecisionContext {
        session_id: "bench".into(),
        client: Some(("bench".into(), "1".into())),
        session_age_seconds: 0.0,
        counters: SessionCounters::default(),
        identity: None,
    };
    let mut call = 0usize;
    let mut next = |ctx: &mut DecisionContext| -> usize {
        let i = call % actions.len();
        if call > 0 {
            let prev = &actions[(call - 1) % actions.len()];
            ctx.counters.record_tool_call_at(
                "filesystem",
                &prev.tool,
                true,
                4,
                ctx.session_age_seconds,
            );
        }
        ctx.session_age_seconds = call as f64 * 1.5;
        clock.set(1_800_000_000.0 + ctx.session_age_seconds);
        ctx.counters
            .prepare("filesystem", &actions[i].tool, ctx.session_age_seconds);
        call += 1;
        i
    };
    let mut rate_limited = true;
    for _ in 0..actions.len() {
        let i = next(&mut ctx);
        let v = enforcer.decide(&actions[i], &ctx);
        assert!(
            v.decision().allow,
            "the benchmark session's calls are allowed: {}",
            actions[i].tool
        );
        // The workflow bundle's per-user limit is charged on every call.
        rate_limited &= v.decision().rate_limit_remaining.is_some();
    }
    assert!(rate_limited, "the rate limit is charged on every call");

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

    // Per round: p50 and p99 of each kind; reported: the median over rounds
    // (one noisy round on this shared machine moves nothing).
    let (mut full_p50, mut full_p99, mut bare_p50) = (Vec::new(), Vec::new(), Vec::new());
    let (mut decided, mut busy) = (0usize, Duration::ZERO);
    for round in 0..rounds {
        for first in [round % 2 == 0, round % 2 != 0] {
            if first {
                let mut full = Vec::with_capacity(iters);
                for _ in 0..iters {
                    let i = next(&mut ctx);
                    let t = Instant::now();
                    std::hint::black_box(enforcer.decide(&actions[i], &ctx));
                    full.push(t.elapsed());
                }
                decided += full.len();
                busy += full.iter().sum::<Duration>();
                full_p50.push(pct(&mut full, 0.5));
                full_p99.push(pct(&mut full, 0.99));
            } else {
                let mut bare = Vec::with_capacity(iters);
                for _ in 0..iters {
                    let t = Instant::now();
                    let mut e = warm.clone();
                    e.set_input(input.clone());
                    std::hint::black_box(
                        e.eval_rule("data.mcp.filesystem.decision".into()).unwrap(),
                    );
                    bare.push(t.elapsed());
                }
                bare_p50.push(pct(&mut bare, 0.5));
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p50, p99, bare50) = (
        median(&mut full_p50),
        median(&mut full_p99),
        median(&mut bare_p50),
    );
    let line = json!({
        "bench": "decision",
        "p50_us": (p50 * 10.0).round() / 10.0,
        "p99_us": (p99 * 10.0).round() / 10.0,
        "decisions_per_s": (decided as f64 / busy.as_secs_f64()).round(),
        "regorus_eval_p50_us": (bare50 * 10.0).round() / 10.0,
        "ratio_to_bare_eval_p50": ((p50 / bare50) * 100.0).round() / 100.0,
        "layers": enforcer.status_json()["filesystem"]["bundles"].as_array().map_or(0, Vec::len),
        "rate_limits": rate_limited,
        "budget": with_budget,
    });
    println!("{line}");
}
