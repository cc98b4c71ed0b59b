//! The official MCP conformance suite (`@modelcontextprotocol/conformance`
//! 0.1.16, `--suite active`) run three ways in one test: against the
//! conformance fixture directly, against `gavel serve` fronting it as a
//! stdio child, and against `gavel serve` fronting it over HTTP — with an
//! allow-all bundle, so gavel must be invisible. Every scenario's checks
//! (id and status) must be the same as direct, `dns-rebinding-protection`
//! included, and the direct run must pass everything.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn deps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/node/node_modules")
}

fn node22() -> PathBuf {
    let p = deps().join(".bin/node");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup (npm node@22)",
        p.display()
    );
    p
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/fixture-server.mjs")
}

/// Runs the active suite against `url`; returns scenario → [(check id,
/// status)], and the summary line.
async fn suite(url: &str, out: &Path) -> (BTreeMap<String, Vec<(String, String)>>, String) {
    let cli = deps().join("@modelcontextprotocol/conformance/dist/index.js");
    let run = tokio::process::Command::new(node22())
        .arg(&cli)
        .args(["server", "--url", url, "--suite", "active", "-o"])
        .arg(out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(600), run)
        .await
        .expect("the suite finished within 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("Total:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let mut scenarios = BTreeMap::new();
    for e in std::fs::read_dir(out).unwrap().flatten() {
        let dir = e.file_name().to_string_lossy().to_string();
        // server-<scenario>-<timestamp>, the timestamp as 2026-12-07T17-49-31-384Z
        // (fixed width; a scenario's own name may hold "-20…": json-schema-2020-12).
        let Some(rest) = dir.strip_prefix("server-") else {
            continue;
        };
        let name = rest
            .len()
            .checked_sub(25)
            .filter(|&i| rest.ends_with('Z') && rest[i..].starts_with('-'))
            .map_or(rest, |i| &rest[..i])
            .to_string();
        let checks: Vec<Value> =
            serde_json::from_slice(&std::fs::read(e.path().join("checks.json")).unwrap()).unwrap();
        let mut list: Vec<(String, String)> = checks
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("").to_string(),
                    c["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        list.sort();
        scenarios.insert(name, list);
    }
    assert!(
        !scenarios.is_empty(),
        "no results in {}: {stdout}",
        out.display()
    );
    (scenarios, summary)
}

fn failures(r: &BTreeMap<String, Vec<(String, String)>>) -> Vec<String> {
    r.iter()
        .flat_map(|(s, checks)| {
            checks
                .iter()
                .filter(|(_, st)| st == "FAILURE")
                .map(move |(id, _)| format!("{s}/{id}"))
        })
        .collect()
}

fn gavel_config(s: &Setup, server: &str) {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/allow-all");
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\n\n[servers.conformance]\n{server}\nbundle = {:?}\n",
        s.path("decisions.jsonl").display().to_string(),
        bundle.display().to_string()
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_sees_no_difference_through_gavel() {
    // The fixture over HTTP (also gavel's HTTP upstream below).
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    // The fixture's diagnostics go to a file (kept out of the test output).
    let fixture_log = std::fs::File::create(work.path().join("fixture.log")).unwrap();
    let mut fx = tokio::process::Command::new(node22())
        .arg(fixture())
        .args(["--http", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(fixture_log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the fixture listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let fixture_url = format!("http://127.0.0.1:{port}/mcp");

    let (direct, summary) = suite(&fixture_url, &work.path().join("direct")).await;
    // 0.1.16's active suite: 30 scenarios, 40 checks (tests/conformance/README.md).
    assert_eq!(direct.len(), 30, "{:?}", direct.keys());
    assert_eq!(direct.values().map(Vec::len).sum::<usize>(), 40);
    assert!(summary.contains("40 passed, 0 failed"), "{summary}");
    assert!(
        failures(&direct).is_empty(),
        "the fixture passes every active scenario directly: {summary}; failing: {:?}",
        failures(&direct)
    );

    // gavel serve → the fixture as a stdio child.
    let s1 = Setup::blank();
    gavel_config(
        &s1,
        &format!(
            "command = {:?}\nargs = [{:?}, \"--stdio\"]",
            node22().display().to_string(),
            fixture().display().to_string()
        ),
    );
    let (mut g1, p1) = gavel_serve(&s1, &[]).await;
    let (via_stdio, summary1) = suite(
        &format!("http://127.0.0.1:{p1}/mcp"),
        &work.path().join("stdio"),
    )
    .await;
    let _ = g1.kill().await;

    // gavel serve → the fixture over HTTP.
    let s2 = Setup::blank();
    gavel_config(&s2, &format!("url = {fixture_url:?}"));
    let (mut g2, p2) = gavel_serve(&s2, &[]).await;
    let (via_http, summary2) = suite(
        &format!("http://127.0.0.1:{p2}/mcp"),
        &work.path().join("http"),
    )
    .await;
    let _ = g2.kill().await;
    let _ = fx.kill().await;

    for (label, got, summary) in [
        ("stdio child", &via_stdio, &summary1),
        ("HTTP upstream", &via_http, &summary2),
    ] {
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            direct.keys().collect::<Vec<_>>(),
            "same scenarios through gavel ({label})"
        );
        assert!(
            summary.contains("40 passed, 0 failed"),
            "through gavel ({label}): {summary}; failing: {:?}",
            failures(got)
        );
        for (scenario, checks) in &direct {
            assert_eq!(
                &got[scenario], checks,
                "scenario {scenario} through gavel ({label}) differs from direct ({summary})"
            );
        }
    }
    assert!(direct.contains_key("dns-rebinding-protection"));
    // Every tools/call through gavel was decided (and allowed) by the bundle.
    let log = std::fs::read_to_string(s2.path("decisions.jsonl")).unwrap();
    assert!(log.lines().count() >= 10, "decisions were made and logged");
}
