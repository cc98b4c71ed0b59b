//! The invariant "a memoized decision is the decision" (ARCHITECTURE.md,
//! invariant 2), checked differentially: for every bundle gavel ships
//! (`bundles/`) and the tests use (`tests/bundles/`), the shipped servers'
//! combinations, and bundles written to stress the dependency analysis, over
//! generated inputs, the memo on and off give the same decisions, and every
//! memoized layer decides its projected input as it decides the full one.
//!
//! The inputs are generated from the policies' *text*, not from the analysis
//! under test: every `input.…` path written in a module gets values drawn
//! from the string literals of the modules and data, so a rule the analysis
//! overlooks still sees inputs that make it fire. The projection check does
//! not need two inputs to collide in the memo: a read the analysis missed is
//! dropped by the projection, and the decision changes on the first input
//! that makes the read matter.

use super::evaluate::eval_rule;
use super::*;
use crate::bundle::{BundleLimits, load_bundle};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

struct Rng(u64);

impl Rng {
    fn pick(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n.max(1)
    }
}

/// Every `input.a.b["c"]` path written in `text` (dotted and quoted keys).
fn input_paths_in(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("input") {
        let start = i + at;
        i = start + 5;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        let mut path = Vec::new();
        let mut j = i;
        loop {
            if text[j..].starts_with('.') {
                let k = text[j + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(text.len(), |n| j + 1 + n);
                if k == j + 1 {
                    break;
                }
                path.push(text[j + 1..k].to_string());
                j = k;
            } else if text[j..].starts_with("[\"") {
                let Some(k) = text[j + 2..].find('"').map(|n| j + 2 + n) else {
                    break;
                };
                path.push(text[j + 2..k].to_string());
                j = k + 2;
            } else {
                break;
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

/// The string literals of `text` and every string (key or value) of `data`.
fn literals(text: &str, data: &Value, out: &mut Vec<String>) {
    for (n, part) in text.split('"').enumerate() {
        if n % 2 == 1 && part.len() < 64 && !part.contains('\\') {
            out.push(part.to_string());
        }
    }
    match data {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| literals("", v, out)),
        Value::Object(o) => o.iter().for_each(|(k, v)| {
            out.push(k.clone());
            literals("", v, out)
        }),
        _ => {}
    }
}

/// The numbers written in `text` and held in `data`, each with its
/// neighbours just below and above: values on both sides of every threshold
/// a policy compares with (the compared paths of `bundle::deps`).
fn numbers(text: &str, data: &Value, out: &mut Vec<Value>) {
    let mut near = |n: f64| {
        let step = if n.fract() == 0.0 { 1.0 } else { 0.01 };
        for v in [n - step, n, n + step] {
            out.push(if v.fract() == 0.0 && v.abs() < 1e15 {
                json!(v as i64)
            } else {
                json!(v)
            });
        }
    };
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|t| t.parse::<f64>().ok())
        .for_each(&mut near);
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => near(n.as_f64().unwrap_or(0.0)),
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
}

fn set_path(doc: &mut Value, path: &[String], v: Value) {
    let mut node = doc;
    for k in &path[..path.len() - 1] {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .expect("made an object")
            .entry(k.clone())
            .or_insert_with(|| json!({}));
    }
    if !node.is_object() {
        *node = json!({});
    }
    node.as_object_mut()
        .expect("made an object")
        .insert(path[path.len() - 1].clone(), v);
}

/// A value for a path: a literal, a number (one beside a policy's own
/// numbers, or a few of every size), a boolean, a list of literals, or
/// absent.
fn value(rng: &mut Rng, lits: &[String], nums: &[Value]) -> Option<Value> {
    let lit = |rng: &mut Rng| Value::String(lits[rng.pick(lits.len())].clone());
    Some(match rng.pick(9) {
        0 => return None,
        1 => json!([0, 1, 3, 100, 1_000_000][rng.pick(5)]),
        8 if !nums.is_empty() => nums[rng.pick(nums.len())].clone(),
        2 => json!(rng.pick(2) == 0),
        3 => json!([lit(rng), lit(rng)]),
        4 => json!([]),
        _ => lit(rng),
    })
}

/// A base input of the contract's shape with the written paths overlaid.
fn input(rng: &mut Rng, paths: &[Vec<String>], lits: &[String], nums: &[Value]) -> Value {
    let mut doc = json!({
        "agent": {"id": "a", "scope": ["tools:call"]},
        "user": {"id": "alice", "groups": ["engineering"], "data_classifications_authorized": ["public"]},
        "action": {"type": "tool_call", "server": "s", "tool": "t", "args": {}, "annotations": {}, "data_classes_referenced": []},
        "context": {"turn_count": 1, "consecutive_same_tool": 0, "calls_last_minute": 0, "cumulative_tokens": 0, "session_age_seconds": 1},
        "environment": {"region": "eu-west-1", "is_production": false},
    });
    for p in paths {
        if rng.pick(3) > 0
            && let Some(v) = value(rng, lits, nums)
        {
            set_path(&mut doc, p, v);
        }
    }
    doc
}

fn outcome(r: Result<EvalOutcome, EngineError>) -> Result<Decision, ReasonCode> {
    r.map(|o| o.decision).map_err(|e| e.reason_code())
}

/// Memo on vs off over `n` generated inputs, and each memoized layer's
/// projected evaluation vs its full one. Returns how many layers were
/// memoized.
fn differential(name: &str, bundles: Vec<Arc<Bundle>>, n: usize) -> usize {
    let opts = EngineOptions {
        eval_timeout: Duration::from_secs(5),
        strict_input: false,
    };
    let memo = PolicyEngine::build(name, bundles.clone(), &opts).unwrap();
    let mut full = PolicyEngine::build(name, bundles.clone(), &opts).unwrap();
    full.bundles.iter_mut().for_each(|b| b.memo = None);
    let mut paths = Vec::new();
    let mut lits = vec!["".to_string(), "x".to_string()];
    let mut nums = Vec::new();
    for b in &bundles {
        for m in &b.modules {
            paths.extend(input_paths_in(&m.text));
            literals(&m.text, &Value::Null, &mut lits);
            numbers(&m.text, &Value::Null, &mut nums);
        }
        literals("", &b.data, &mut lits);
        numbers("", &b.data, &mut nums);
    }
    paths.sort();
    paths.dedup();
    // Every module of every bundle and the library: what the engines that
    // decide leave out (idle test files, the library where no rule names
    // it) must not change any layer's value.
    let mut reference = super::assemble::new_engine(&opts);
    let refs: Vec<&Bundle> = bundles.iter().map(|b| b.as_ref()).collect();
    for b in crate::bundle::library::with_library(&refs) {
        super::assemble::add_bundle(&mut reference, b).unwrap();
    }
    // Per memoized layer: the decision first seen for each key. One key,
    // one decision — also where a key holds comparisons' outcomes instead
    // of values.
    let mut seen: Vec<HashMap<Vec<u8>, Result<Value, ReasonCode>>> =
        vec![HashMap::new(); memo.bundles.len()];
    let mut rng = Rng(7);
    for _ in 0..n {
        let input = input(&mut rng, &paths, &lits, &nums);
        for l in &memo.bundles {
            let on = |pool: &Pool| {
                let mut e = pool.take();
                e.set_input(to_regorus(&input));
                eval_rule(&mut e, &l.decision_rule, opts.eval_timeout).map_err(|e| e.reason_code())
            };
            let want = on(&Pool::new(reference.clone()));
            let name = &l.info.name;
            assert_eq!(
                on(&memo.pool),
                want,
                "{name}: the server's engine on {input}"
            );
            if let Some(own) = &l.own {
                assert_eq!(on(own), want, "{name}: its own engine on {input}");
            }
        }
        // Twice through the memo: a miss, then (usually) a hit.
        let a = outcome(memo.decide(&input));
        let a2 = outcome(memo.decide(&input));
        let b = outcome(full.decide(&input));
        assert_eq!(a, b, "{name}: memo on and off differ on {input}");
        assert_eq!(a2, b, "{name}: a memo hit differs on {input}");
        for l in memo.bundles.iter().filter(|l| l.memo.is_some()) {
            let m = l.memo.as_ref().unwrap();
            let mut e = memo.pool.take();
            e.set_input(to_regorus(&input));
            let whole =
                eval_rule(&mut e, &l.decision_rule, opts.eval_timeout).map_err(|e| e.reason_code());
            let mut e = memo.pool.take();
            e.set_input(to_regorus(&m.project(&input)));
            let projected =
                eval_rule(&mut e, &l.decision_rule, opts.eval_timeout).map_err(|e| e.reason_code());
            assert_eq!(
                whole,
                projected,
                "{name}: layer {} reads more than its memo key (projected: {}) on {input}",
                l.info.name,
                m.project(&input)
            );
            let key = m.keyed_alike().key(&input).expect("a new memo keys");
            let at = memo
                .bundles
                .iter()
                .position(|b| std::ptr::eq(b, l))
                .unwrap();
            let first = seen[at].entry(key.clone()).or_insert_with(|| whole.clone());
            assert_eq!(
                &whole,
                first,
                "{name}: layer {} decides two inputs of one key ({}) apart; now {input}",
                l.info.name,
                String::from_utf8_lossy(&key)
            );
        }
    }
    memo.bundles.iter().filter(|b| b.memo.is_some()).count()
}

fn load(dir: &std::path::Path) -> Arc<Bundle> {
    Arc::new(load_bundle(dir, &BundleLimits::default()).unwrap())
}

#[test]
fn memo_on_and_off_decide_alike_for_every_bundle() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut memoized = 0;
    for dir in ["bundles", "tests/bundles"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            let bundle = load(&path);
            if crate::bundle::library::library_only(&bundle) {
                continue; // bundles/lib decides nothing (every engine has it)
            }
            memoized += differential(&path.display().to_string(), vec![bundle], 300);
        }
    }
    // The shipped servers: own bundles and the shared layers together.
    let b = |n: &str| load(&root.join("bundles").join(n));
    for own in [&["filesystem", "override"][..], &["everything"], &["time"]] {
        let set: Vec<_> = own
            .iter()
            .chain(["identity", "compliance", "workflow"].iter())
            .map(|n| b(n))
            .collect();
        memoized += differential(&own.join("+"), set, 300);
    }
    assert!(memoized >= 10, "the memo is exercised ({memoized} layers)");
}

/// Bundles written against the analysis: reads hidden in helpers of other
/// files, packages and bundles, named like tests, behind imports, dynamic
/// references, ref heads, functions, `every`, comprehensions and `else`.
#[test]
fn memo_on_and_off_decide_alike_for_analysis_stress_bundles() {
    let cases: &[&[(&str, &str)]] = &[
        &[
            (
                "a.rego",
                "package p\ndecision := {\"allow\": true} if not test_blocked\ndecision := {\"allow\": false} if test_blocked\n",
            ),
            (
                "b.rego",
                "package p\ntest_blocked if input.action.args.path == \"/etc/passwd\"\n",
            ),
        ],
        &[
            (
                "a.rego",
                "package p\nimport data.p.h.test_rule as r\ndecision := {\"allow\": r}\n",
            ),
            (
                "b.rego",
                "package p.h\ndefault test_rule := false\ntest_rule if input.user.id == \"alice\"\n",
            ),
        ],
        &[
            (
                "a.rego",
                "package p\ndecision := {\"allow\": data.p.h[input.action.tool] == true}\n",
            ),
            (
                "b.rego",
                "package p.h\ntest_x if input.user.id == \"alice\"\nt if input.environment.region == \"eu-west-1\"\n",
            ),
        ],
        // Test files: one no rule reaches (left out of the engines that
        // decide, with the library it alone names), one whose helper the
        // decision uses (kept).
        &[
            (
                "a.rego",
                "package p\ndecision := {\"allow\": input.user.id == \"alice\"}\n",
            ),
            (
                "a_test.rego",
                "package p\nimport data.gavel.lib.paths\ntest_norm if paths.is_absolute(\"/a\")\ntest_alice if decision.allow with input as {\"user\": {\"id\": \"alice\"}}\n",
            ),
        ],
        &[
            ("a.rego", "package p\ndecision := {\"allow\": test_ok}\n"),
            (
                "a_test.rego",
                "package p\nimport data.gavel.lib.paths\ndefault test_ok := false\ntest_ok if paths.is_absolute(input.action.args.path)\n",
            ),
        ],
        &[(
            "a.rego",
            "package p\ncheck.paths.ok if every g in input.user.groups { g != \"sre-oncall\" }\ndecision := {\"allow\": true} if { check.paths.ok } else := {\"allow\": false, \"reasons\": [x | some x in input.action.data_classes_referenced]}\n",
        )],
        &[(
            "a.rego",
            "package p\nf(x) := y if y := {v | some v in x; startswith(v, \"demo\")}\ndecision := {\"allow\": count(f(input.user.groups)) == 0, \"reasons\": [input.environment.region]}\n",
        )],
        // Compared paths (`bundle::deps::compared`), keyed on outcomes only
        // when nothing else reads them: here the value also reaches the
        // answer, through a builtin, a helper in another file, an alias.
        &[
            ("data.json", "{\"max\": 20, \"warn\": 0.8}"),
            (
                "a.rego",
                "package p\ndecision := {\"allow\": input.context.calls_last_minute < data.p.max, \"reasons\": [sprintf(\"%v\", [input.context.calls_last_minute])]}\n",
            ),
        ],
        &[
            ("data.json", "{\"max\": 20}"),
            (
                "a.rego",
                "package p\ndecision := {\"allow\": true, \"reasons\": [r | some r in seen]} if input.context.turn_count <= data.p.max\n",
            ),
            (
                "b.rego",
                "package p\nseen contains x if x := input.context.turn_count * 2\n",
            ),
        ],
        &[
            ("data.json", "{\"max\": 3}"),
            (
                "a.rego",
                "package p\nimport input.context as c\ndecision := {\"allow\": input.context.denied_count < data.p.max, \"reasons\": [x | x := c.denied_count]}\n",
            ),
        ],
        // Only compared, with a `with` a decision reaches, and beside it.
        &[
            ("data.json", "{\"max\": 20, \"warn\": 0.8}"),
            (
                "a.rego",
                "package p\nnear if input.context.budget.used_fraction >= data.p.warn\ndecision := {\"allow\": input.context.consecutive_same_tool < data.p.max, \"audit_required\": near}\n",
            ),
        ],
        &[
            ("data.json", "{\"max\": 20}"),
            (
                "a.rego",
                "package p\nover if input.context.calls_last_minute >= data.p.max\ndecision := {\"allow\": not_over} if input.action.type == \"tool_call\"\nnot_over if not over with data.p.max as 1\n",
            ),
        ],
    ];
    for (n, files) in cases.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
        std::fs::create_dir_all(d.path().join("p")).unwrap();
        for (f, text) in *files {
            std::fs::write(d.path().join("p").join(f), text).unwrap();
        }
        differential(&format!("case {n}"), vec![load(d.path())], 200);
    }
    // Across bundles: a test-named helper in one bundle, used by another.
    let d1 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d1.path().join("p")).unwrap();
    std::fs::write(d1.path().join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
    std::fs::write(
        d1.path().join("p/p.rego"),
        "package p\ndecision := {\"allow\": true}\ntest_admin if input.user.id == \"alice\"\n",
    )
    .unwrap();
    let d2 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d2.path().join("q")).unwrap();
    std::fs::write(d2.path().join(".manifest"), r#"{"roots": ["q"]}"#).unwrap();
    std::fs::write(
        d2.path().join("q/q.rego"),
        "package q\ndecision := {\"allow\": data.p.test_admin == true}\n",
    )
    .unwrap();
    differential("across", vec![load(d1.path()), load(d2.path())], 200);
}

/// The case from the issue: the helper named `test_…` in another file is
/// what denies; with the memo it was left out of the key and the call was
/// allowed.
#[test]
fn a_test_named_helper_in_another_file_still_denies() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
    std::fs::create_dir_all(d.path().join("p")).unwrap();
    std::fs::write(
        d.path().join("p/a.rego"),
        "package p\ndefault decision := {\"allow\": false}\ndecision := {\"allow\": true} if not test_blocked\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("p/b.rego"),
        "package p\ntest_blocked if input.action.args.path == \"/etc/passwd\"\n",
    )
    .unwrap();
    let e = PolicyEngine::build(
        "srv",
        vec![load(d.path())],
        &EngineOptions {
            eval_timeout: Duration::from_secs(5),
            strict_input: false,
        },
    )
    .unwrap();
    let call = |p: &str| {
        e.decide(&json!({"action": {"args": {"path": p}}}))
            .unwrap()
            .decision
            .allow
    };
    assert!(call("/tmp/x"));
    assert!(!call("/etc/passwd"), "the helper's read is part of the key");
}
