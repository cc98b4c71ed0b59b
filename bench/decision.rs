//! `cargo bench --bench decision`: one full decision — input build, Rego
//! evaluation of every layer (or its memo), decision parse and combination,
//! rate limits — on the example layered policy of the `filesystem` server
//! (filesystem + override + shared identity + compliance + workflow
//! bundles), warm, single thread, over a simulated session whose counters
//! advance on every call (so the workflow layer is evaluated on every
//! decision). Two sessions run side by side: one with the workflow bundle's
//! rate limit (counters and limits: the issues' configuration, `p50_us`,
//! `p99_us`), one with a daily budget on top (`budget_*`, a SQLite read and
//! transaction per call). Interleaved with them, in the same rounds: a bare
//! regorus evaluation of the filesystem bundle's decision rule (the floor
//! gavel builds on), and the result step of one small `read_text_file`
//! result (`result_*`: the filesystem bundle's result rule, its email and
//! card-number patterns applied to the text and its structured mirror —
//! the extra cost a result rule adds to a call). Each figure is the median
//! over rounds of that round's percentile. Last line is the JSON summary.
//!
//! Decisions run as in the proxy: on a host thread that evaluates small
//! inputs itself; `BENCH_HANDOFF=1` hands every evaluation to the
//! evaluation pool instead (the cost of the hand-off, side by side when run
//! both ways).
//!
//! Env: BENCH_ROUNDS (default 20), BENCH_ITERS (per round and kind, default
//! 2000), BENCH_HANDOFF.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gavel::config::Config;
use gavel::decision::result::{OutputKind, ResultVerdict};
use gavel::decision::{Action, ActionType, DecisionContext, Enforcer, SessionCounters};
use gavel::state::clock::ManualClock;
use serde_json::{Value, json};

/// The `p` quantile of one round's samples, in microseconds.
fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A simulated agent session against one enforcer: it cycles through a few
/// tools and paths, one call every 1.5 s of session time, and every counter
/// advances as it would (cumulative_tokens grows on every call, so the
/// workflow layer never sees the same facts twice; the other layers do).
struct Session {
    enforcer: Enforcer,
    clock: ManualClock,
    actions: Vec<Action>,
    ctx: DecisionContext,
    call: usize,
    _state: tempfile::TempDir,
}

impl Session {
    fn new(root: &Path, budget: bool) -> Session {
        let mut cfg = Config::load(&root.join("servers.toml")).expect("servers.toml");
        cfg.log.decisions = None; // measure the decision, not the disk
        let state = tempfile::tempdir().expect("temp dir");
        cfg.state_path = Some(state.path().join("state.sqlite"));
        if budget {
            cfg.budget = Some(gavel::config::Budget {
                per: gavel::config::BudgetPer::User,
                period: gavel::state::budget::Period::Day,
                calendar: Default::default(),
                calls: Some(1_000_000),
                tokens: Some(1_000_000_000),
            });
        }
        let clock = ManualClock::new(1_800_000_000.0);
        let enforcer =
            Enforcer::from_config_with_clock(&cfg, Arc::new(clock.clone())).expect("policies load");
        let calls: Vec<(&str, Value)> = vec![
            ("read_text_file", json!({"path": "public/readme.txt"})),
            ("list_directory", json!({"path": "public"})),
            ("get_file_info", json!({"path": "public/readme.txt"})),
            ("read_text_file", json!({"path": "public/notes.txt"})),
            (
                "write_file",
                json!({"path": "public/out.txt", "content": "x"}),
            ),
            (
                "search_files",
                json!({"path": "public", "pattern": "*.txt"}),
            ),
            ("directory_tree", json!({"path": "public"})),
            ("list_directory", json!({"path": "public/sub"})),
        ];
        let actions = calls
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
                trace: None,
                era: Default::default(),
            })
            .collect();
        let mut s = Session {
            enforcer,
            clock,
            actions,
            ctx: DecisionContext {
                session_id: "bench".into(),
                client: Some(("bench".into(), "1".into())),
                session_age_seconds: 0.0,
                counters: SessionCounters::default(),
                identity: None,
            },
            call: 0,
            _state: state,
        };
        // Warm up, and check what is measured: every call allowed, the rate
        // limit charged on each (and the budget, when on).
        for _ in 0..s.actions.len() {
            let i = s.next();
            let v = s.enforcer.decide(&s.actions[i], &s.ctx);
            let d = v.decision();
            assert!(
                d.allow,
                "the benchmark session's calls are allowed: {} was denied ({:?}: {})",
                s.actions[i].tool,
                d.reasons,
                d.remediation.as_deref().unwrap_or("")
            );
            assert!(
                d.rate_limit_remaining.is_some(),
                "the rate limit is charged on every call"
            );
        }
        s
    }

    /// Advances the session to its next call; returns the action's index.
    fn next(&mut self) -> usize {
        let i = self.call % self.actions.len();
        if self.call > 0 {
            let prev = &self.actions[(self.call - 1) % self.actions.len()];
            self.ctx.counters.record_tool_call_at(
                "filesystem",
                &prev.tool,
                true,
                4,
                self.ctx.session_age_seconds,
            );
        }
        self.ctx.session_age_seconds = self.call as f64 * 1.5;
        self.clock
            .set(1_800_000_000.0 + self.ctx.session_age_seconds);
        self.ctx.counters.prepare(
            "filesystem",
            &self.actions[i].tool,
            self.ctx.session_age_seconds,
        );
        self.call += 1;
        i
    }

    /// One round: `iters` decisions, timed one by one.
    fn round(&mut self, iters: usize) -> Vec<Duration> {
        (0..iters)
            .map(|_| {
                let i = self.next();
                let t = Instant::now();
                std::hint::black_box(self.enforcer.decide(&self.actions[i], &self.ctx));
                t.elapsed()
            })
            .collect()
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("decision bench: run with `cargo bench --bench decision`");
        return;
    }
    // Decide as the proxy does: on a host thread (gavel's event loop has an
    // evaluation thread's stack and evaluates small inputs itself), unless
    // BENCH_HANDOFF=1 asks for every evaluation to be handed to the pool.
    let handoff = std::env::var("BENCH_HANDOFF").is_ok_and(|v| v == "1");
    std::thread::Builder::new()
        .stack_size(gavel::decision::engine::STACK_BYTES)
        .spawn(move || {
            if !handoff {
                gavel::decision::engine::mark_host();
            }
            bench(handoff)
        })
        .expect("bench thread")
        .join()
        .expect("bench ran");
}

fn bench(handoff: bool) {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut limits = Session::new(root, false);
    let mut budget = Session::new(root, true);
    let layers = limits.enforcer.status_json()["filesystem"]["bundles"]
        .as_array()
        .map_or(0, Vec::len);

    // Baseline: bare regorus on the filesystem bundle alone.
    let b =
        gavel::bundle::load_bundle(&root.join("bundles/filesystem"), &Default::default()).unwrap();
    let mut warm = regorus::Engine::new();
    // The bundle calls the policy library (data.gavel.lib), which gavel
    // adds to every engine: the floor has it too.
    let lib = gavel::bundle::library::embedded();
    for m in b.modules.iter().chain(&lib.modules) {
        warm.add_policy(m.path.clone(), m.text.clone()).unwrap();
    }
    warm.add_data(serde_json::from_value(b.data.clone()).unwrap())
        .unwrap();
    let input: regorus::Value = serde_json::from_value(json!({"action": {"type": "tool_call", "tool": "read_text_file", "args": {"path": "public/readme.txt"}}})).unwrap();
    warm.set_input(input.clone());
    warm.eval_rule("data.mcp.filesystem.decision".into())
        .unwrap();
    let bare_round = || -> Vec<Duration> {
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                let mut e = warm.clone();
                e.set_input(input.clone());
                std::hint::black_box(e.eval_rule("data.mcp.filesystem.decision".into()).unwrap());
                t.elapsed()
            })
            .collect()
    };

    // The result step: a permit for one read, then its small result.
    let read = Action::new(
        ActionType::ToolCall,
        "filesystem",
        "read_text_file",
        json!({"path": "public/readme.txt"}),
    );
    let permit = match limits.enforcer.decide(&read, &limits.ctx) {
        gavel::decision::Verdict::Allow(p) => p,
        gavel::decision::Verdict::Deny(d) => panic!("the read is allowed: {d:?}"),
    };
    assert!(
        permit.decides_result(),
        "the filesystem bundle has a result rule"
    );
    let text = "Hello from gavel's demo data. Contact ann@example.com.\n";
    let small = json!({"content": [{"type": "text", "text": text}], "structuredContent": {"content": text}, "isError": false});
    let result_round = |enforcer: &Enforcer| -> Vec<Duration> {
        (0..iters)
            .map(|_| {
                let r = small.clone();
                let t = Instant::now();
                let v = enforcer.decide_result(&permit, OutputKind::ToolResult, r);
                let d = t.elapsed();
                assert!(
                    matches!(v, ResultVerdict::Pass(_)),
                    "the result passes redacted: {v:?}"
                );
                d
            })
            .collect()
    };

    // [limits, budget, bare, result] × [p50, p99], one value per round; the
    // order of the kinds rotates from round to round.
    let mut figures = [
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
    ];
    let (mut decided, mut busy) = (0usize, Duration::ZERO);
    for round in 0..rounds {
        for k in 0..4 {
            let kind = (round + k) % 4;
            let mut samples = match kind {
                0 => limits.round(iters),
                1 => budget.round(iters),
                2 => bare_round(),
                _ => result_round(&limits.enforcer),
            };
            if kind == 0 {
                decided += samples.len();
                busy += samples.iter().sum::<Duration>();
            }
            figures[kind][0].push(pct(&mut samples, 0.5));
            figures[kind][1].push(pct(&mut samples, 0.99));
        }
    }
    let [l, bu, ba, re] = figures
        .each_mut()
        .map(|[p50, p99]| (median(p50), median(p99)));
    let line = json!({
        "bench": "decision",
        "evaluations": if handoff { "handed to the pool" } else { "on the calling thread" },
        "p50_us": round1(l.0),
        "p99_us": round1(l.1),
        "decisions_per_s": (decided as f64 / busy.as_secs_f64()).round(),
        "regorus_eval_p50_us": round1(ba.0),
        "regorus_eval_p99_us": round1(ba.1),
        "ratio_to_bare_eval_p50": ((l.0 / ba.0) * 100.0).round() / 100.0,
        "budget_p50_us": round1(bu.0),
        "budget_p99_us": round1(bu.1),
        "result_p50_us": round1(re.0),
        "result_p99_us": round1(re.1),
        "layers": layers,
        "rate_limits": true,
    });
    println!("{line}");
}
