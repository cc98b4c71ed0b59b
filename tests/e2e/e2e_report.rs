//! End to end: `gavel report` writes a page that a real headless browser
//! (Debian chromium driven by npm playwright-core, both installed by
//! scripts/setup) renders with the figures of the log, no console errors and
//! no request leaving the file — on a known log and on a real session's log.

use crate::common;
use crate::common::governance_session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use governance_session::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn playwright_core() -> PathBuf {
    repo(".deps/node/node_modules/playwright-core")
}

/// Opens `html` in chromium and returns what the page showed (see
/// tests/browser/read_report.cjs). Missing tools fail the test: never a skip.
fn read_in_browser(html: &Path) -> Value {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup (it installs Debian's chromium for this test)"
    );
    assert!(
        playwright_core().join("package.json").exists(),
        "{} is missing: run scripts/setup (it installs npm playwright-core into .deps/node)",
        playwright_core().display()
    );
    let out = std::process::Command::new("node")
        .arg(repo("tests/browser/read_report.cjs"))
        .arg(playwright_core())
        .arg(CHROMIUM)
        .arg(html)
        .output()
        .expect("node runs (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(page["consoleErrors"], json!([]), "console errors: {page}");
    assert_eq!(page["pageErrors"], json!([]), "page errors: {page}");
    assert_eq!(
        page["external"],
        json!([]),
        "the page must need no network: {page}"
    );
    assert_eq!(page["title"], "gavel decision report");
    assert_eq!(
        page["figures"]["overflow"],
        json!([]),
        "at 1280 px nothing may be wider than the window or clip: {page}"
    );
    for part in ["volume", "reasons", "tools", "latency", "revisions"] {
        let b = &page["figures"]["boxes"][part];
        assert!(
            b["w"].as_f64().unwrap_or(0.0) > 0.0 && b["h"].as_f64().unwrap_or(0.0) > 0.0,
            "{part} did not render: {b}"
        );
    }
    page
}

fn report(log: &Path, html: &Path) {
    let (ok, out, err) = gavel(&[
        "report",
        &log.display().to_string(),
        "-o",
        &html.display().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
}

fn rec(i: usize, ts: &str, tool: &str, reasons: &[&str], rev: &str, ns: u64) -> Value {
    json!({"decision_id": format!("d{i}"), "timestamp": ts, "path": "filesystem",
        "input": {"action": {"type": "tool_call", "server": "fs", "tool": tool}},
        "result": {"allow": reasons.is_empty(), "reasons": reasons},
        "bundles": {"filesystem": {"revision": rev, "digest": format!("sha256:{rev}"), "layer": "resource"}},
        "labels": {"app": "gavel", "policy": "rego"},
        "metrics": {"timer_rego_query_eval_ns": ns / 2, "timer_gavel_decision_ns": ns}})
}

#[test]
fn known_log_renders_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    // 10 decisions over three minutes, 4 denied, two bundle revisions, and
    // decision latencies 10, 20, …, 100 µs.
    let log = [
        rec(0, "2026-11-22T10:00:00Z", "read_file", &[], "1.0", 10_000),
        rec(1, "2026-11-22T10:00:10Z", "read_file", &[], "1.0", 20_000),
        rec(
            2,
            "2026-11-22T10:00:20Z",
            "move_file",
            &["destructive_operation"],
            "1.0",
            30_000,
        ),
        rec(
            3,
            "2026-11-22T10:01:00Z",
            "write_file",
            &["write_outside_writable", "path_outside_scope"],
            "1.0",
            40_000,
        ),
        rec(4, "2026-11-22T10:01:30Z", "read_file", &[], "1.0", 50_000),
        rec(
            5,
            "2026-11-22T10:02:00Z",
            "move_file",
            &["destructive_operation"],
            "1.1",
            60_000,
        ),
        rec(6, "2026-11-22T10:02:10Z", "read_file", &[], "1.1", 70_000),
        rec(
            7,
            "2026-11-22T10:02:20Z",
            "list_directory",
            &[],
            "1.1",
            80_000,
        ),
        rec(
            8,
            "2026-11-22T10:02:30Z",
            "read_file",
            &["path_traversal"],
            "1.1",
            90_000,
        ),
        rec(9, "2026-11-22T10:02:59Z", "read_file", &[], "1.1", 100_000),
    ];
    let path = dir.path().join("known.jsonl");
    let text: String = log.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let html = dir.path().join("report.html");
    report(&path, &html);
    let page = read_in_browser(&html);
    let f = &page["figures"];
    assert_eq!(f["total"], "10");
    assert_eq!(f["allowed"], "6");
    assert_eq!(f["denied"], "4");
    assert_eq!(f["denialRate"], "0.4000");
    assert_eq!(f["denialRateText"], "40.0 %");
    let reasons: Vec<(String, String)> = f["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().into(),
                r["count"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("destructive_operation", "2"),
            ("path_outside_scope", "1"),
            ("path_traversal", "1"),
            ("write_outside_writable", "1")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let tools: BTreeMap<String, (String, String)> = f["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["server"], "fs");
            (
                r["tool"].as_str().unwrap().into(),
                (
                    r["allowed"].as_str().unwrap().into(),
                    r["denied"].as_str().unwrap().into(),
                ),
            )
        })
        .collect();
    assert_eq!(tools["read_file"], ("5".into(), "1".into()));
    assert_eq!(tools["move_file"], ("0".into(), "2".into()));
    assert_eq!(tools["write_file"], ("0".into(), "1".into()));
    assert_eq!(tools["list_directory"], ("1".into(), "0".into()));
    // Volume: every decision is in one bucket, none lost.
    let buckets = f["buckets"].as_array().unwrap();
    let sum = |k: &str| -> u64 {
        buckets
            .iter()
            .map(|b| b[k].as_str().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!((sum("allowed"), sum("denied")), (6, 4));
    assert_eq!(
        f["bucketSeconds"], "2",
        "180 s of one-second buckets coarsen to 2 s"
    );
    // Latency: exact count and max; percentiles within the histogram's 6.25 %.
    let lat = f["latency"].as_array().unwrap();
    let decision = lat
        .iter()
        .find(|l| l["metric"] == "timer_gavel_decision_ns")
        .unwrap();
    assert_eq!(decision["count"], "10");
    assert_eq!(decision["max"], "100000");
    let near = |got: &Value, want: f64| {
        let g: f64 = got.as_str().unwrap().parse().unwrap();
        assert!((g - want).abs() <= want * 0.0625, "{got} vs {want}");
    };
    near(&decision["p50"], 50_000.0);
    near(&decision["p90"], 90_000.0);
    near(&decision["p99"], 100_000.0);
    let eval = lat
        .iter()
        .find(|l| l["metric"] == "timer_rego_query_eval_ns")
        .unwrap();
    assert_eq!(eval["max"], "50000");
    // Both bundle revisions, with their counts.
    let revs: Vec<(String, String)> = f["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_str().unwrap().into(),
                r["count"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        revs,
        [
            ("1.0".to_string(), "5".to_string()),
            ("1.1".into(), "5".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_session_log_renders() {
    let s = Setup::blank();
    let log = run_session(&s).await;
    let html = s.path("report.html");
    report(&s.path("decisions.jsonl"), &html);
    let page = read_in_browser(&html);
    let f = &page["figures"];
    let denied = log.iter().filter(|r| r["result"]["allow"] == false).count();
    assert_eq!(f["total"], log.len().to_string());
    assert_eq!(f["denied"], denied.to_string());
    assert_eq!(denied, 2, "{log:?}");
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in log.iter().filter(|r| r["result"]["allow"] == false) {
        for c in r["result"]["reasons"].as_array().unwrap() {
            *want.entry(c.as_str().unwrap().into()).or_default() += 1;
        }
    }
    let got: BTreeMap<String, u64> = f["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().into(),
                r["count"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let echo = f["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == "echo")
        .unwrap();
    assert_eq!(
        (echo["server"].as_str(), echo["allowed"].as_str()),
        (Some("fx"), Some("2"))
    );
    let revs: Vec<&str> = f["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_str().unwrap())
        .collect();
    assert!(
        revs.contains(&"9.9.9") && revs.contains(&"1.0.0"),
        "{revs:?}"
    );
    let decision = f["latency"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metric"] == "timer_gavel_decision_ns")
        .unwrap();
    assert_eq!(decision["count"], log.len().to_string());
    // Who was denied, and the way from each denial figure to its decisions.
    let user = &f["users"][0];
    let logged_user = log[0]["input"]["user"]["id"]
        .as_str()
        .unwrap_or("(not logged)");
    assert_eq!(
        (user["name"].as_str(), user["denied"].as_str()),
        (Some(logged_user), Some("2")),
        "{f}"
    );
    assert_eq!(f["agents"][0]["denied"], "2", "{f}");
    let log_path = s.path("decisions.jsonl").display().to_string();
    for r in log.iter().filter(|r| r["result"]["allow"] == false) {
        let cmd = format!(
            "gavel explain --decision {} --log {log_path}",
            r["decision_id"].as_str().unwrap()
        );
        assert!(
            f["decisions"].as_array().unwrap().iter().any(|c| c == &cmd),
            "{cmd} not offered: {f}"
        );
    }
    let audited = log
        .iter()
        .filter(|r| r["result"]["audit_required"] == true)
        .count();
    assert_eq!(f["auditRequired"], audited.to_string());
    assert_eq!(f["failOpen"], "0");
    // A reason with a catalog text shows it beside the code.
    for r in f["reasons"].as_array().unwrap() {
        let code = r["reason"].as_str().unwrap();
        let logged = log
            .iter()
            .find_map(|x| x["result"]["reason_texts"][code].as_str());
        if let Some(t) = logged {
            assert!(r["text"].as_str().unwrap().contains(t), "{r}");
        }
    }
}

#[test]
fn malformed_log_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(&p, "{\"result\": {\"allow\": true}}\nnot json\n").unwrap();
    let (ok, _, err) = gavel(&[
        "report",
        &p.display().to_string(),
        "-o",
        &dir.path().join("r.html").display().to_string(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("d.jsonl:2: not a JSON decision record"),
        "{err}"
    );
    assert!(
        !dir.path().join("r.html").exists(),
        "no page from part of a log"
    );
}

#[test]
fn a_torn_last_record_and_approval_steps_do_not_distort_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    let decision = |allow: bool| {
        json!({"decision_id": "d", "timestamp": "2026-11-22T12:00:00Z",
               "input": {"action": {"type": "tool_call", "server": "fs", "tool": "deploy"}},
               "result": {"allow": allow, "reasons": if allow { json!([]) } else { json!(["approval_declined"]) }}})
        .to_string()
    };
    let step = |s: &str| {
        json!({"decision_id": "d", "timestamp": "2026-11-22T12:00:00Z", "approval": {"step": s, "server": "fs", "tool": "deploy"}})
            .to_string()
    };
    let torn = &decision(true)[..40];
    std::fs::write(
        &p,
        format!(
            "{}\n{}\n{}\n{}\n{torn}",
            decision(true),
            step("requested"),
            step("declined"),
            decision(false)
        ),
    )
    .unwrap();
    let out = dir.path().join("r.html");
    let (ok, stdout, err) = gavel(&[
        "report",
        &p.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("d.jsonl:5") && err.contains("cut off"),
        "{err}"
    );
    assert!(
        stdout.contains("2 decisions (1 denied), 2 approval steps"),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.contains("id=\"total\" data-value=\"2\""), "{page}");
    assert!(page.contains("id=\"approval-steps\" data-value=\"2\""));
    assert!(page.contains("id=\"torn-tail\" data-line=\"5\""));
}
