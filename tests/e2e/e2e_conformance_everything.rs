//! The conformance suite's 2026-07-28 requirement set against the suite's
//! **own everything-server** (`tests/conformance/everything-server`, vendored
//! unmodified: see its PROVENANCE.md), directly and through `gavel serve`
//! fronting it as an HTTP upstream with an allow-all bundle.
//!
//! Counts do not match one for one, and must not: through gavel the suite
//! talks to gavel's own HTTP edge, which does what the reference server
//! skips — it rejects mismatched `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*`
//! headers (-32020, HTTP 400), stamps `resultType` on every result, checks
//! `inputResponses` — so checks that fail directly pass through gavel. What
//! this test holds gavel to is **losing nothing**: every check that passes
//! directly passes through gavel, scenario by scenario and check by check.
//! What the server does outside the wire the 2026-07-28 transport allows,
//! gavel reads anyway: JSON lines under `application/json` (its listen
//! stream, a tool's progress) and a listen tagged with its id as a string
//! (`upstream::modern_http`). Its hooks, served without being listed, reach
//! it through `unlisted_tools = "forward"`; the list changes they announce
//! without changing a list reach the host as the server sent them, the
//! host being shown the server's whole lists (`router::notice`).
//!
//! The stand-in fixture (`e2e_conformance_2026`) stays the exact-equality
//! run: it speaks the wire as specified, over HTTP and as a stdio child.

use crate::common;
use crate::e2e_conformance_2026::{
    Check, Run, deps, differences, gavel_config, node22, required_scenarios, requirement_set, show,
    through_gavel, totals,
};

use std::path::Path;
use std::time::Duration;

use common::*;

/// The everything-server on a free port, its output in `log`: the process
/// and its MCP URL. Output goes to a file, not a pipe: the server logs
/// every request, and a pipe nobody reads would stall it.
async fn everything_server(log: &Path) -> (tokio::process::Child, String) {
    let dir = deps("everything-server");
    let tsx = deps("everything-server/node_modules/tsx/dist/cli.mjs");
    let port = free_port();
    let out = std::fs::File::create(log).unwrap();
    let child = tokio::process::Command::new(node22())
        .arg(tsx)
        .arg("everything-server.ts")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Test Server running") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the everything-server did not start within 60 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, format!("http://127.0.0.1:{port}/mcp"))
}

/// Checks that pass directly and not through gavel: (scenario, direct
/// check, gavel's non-passing checks of that id).
fn losses<'a>(direct: &'a Run, via: &'a Run) -> Vec<(&'a str, &'a Check, Vec<&'a Check>)> {
    let mut lost = Vec::new();
    for (name, checks) in direct {
        let theirs = via.get(name).map_or(&[][..], Vec::as_slice);
        let mut ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        ids.dedup();
        for id in ids {
            let passed = |cs: &[Check]| {
                cs.iter()
                    .filter(|c| c.id == id && c.status == "SUCCESS")
                    .count()
            };
            if passed(theirs) < passed(checks) {
                let example = checks
                    .iter()
                    .find(|c| c.id == id && c.status == "SUCCESS")
                    .unwrap();
                let failing = theirs
                    .iter()
                    .filter(|c| c.id == id && c.status != "SUCCESS")
                    .collect();
                lost.push((name.as_str(), example, failing));
            }
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread")]
async fn the_suites_everything_server_loses_no_check_through_gavel() {
    let work = tempfile::tempdir().unwrap();

    // A fresh server for each run: the scenarios change its state
    // (dynamic tools, subscriptions).
    let (mut server, url) = everything_server(&work.path().join("direct.log")).await;
    let direct = requirement_set(&url, &work.path().join("direct")).await;
    let _ = server.kill().await;

    let (mut server, url) = everything_server(&work.path().join("via.log")).await;
    let s = Setup::blank();
    // The server takes calls to tools it does not list (its test hooks,
    // and the unscored tasks scenarios' calls to tools it lacks, which it
    // answers with an isError result): gavel passes them on.
    gavel_config(&s, &format!("url = {url:?}\nunlisted_tools = \"forward\""));
    let via = through_gavel(&s, &work.path().join("gavel")).await;
    let _ = server.kill().await;

    eprintln!("direct:        {}", show(totals(&direct)));
    eprintln!("through gavel: {}", show(totals(&via)));
    eprintln!(
        "differences (- direct only, + gavel only):\n{}",
        differences(&direct, &via)
    );

    // Every required scenario ran both ways.
    for name in required_scenarios() {
        assert!(direct.contains_key(&name), "{name} did not run directly");
        assert!(via.contains_key(&name), "{name} did not run through gavel");
    }

    let lost: Vec<String> = losses(&direct, &via)
        .iter()
        .map(|(scenario, check, failing)| {
            let through: Vec<String> = failing
                .iter()
                .map(|c| format!("{} {}", c.status, c.message))
                .collect();
            format!(
                "{scenario} / {}: passes directly, through gavel: {through:?}",
                check.id
            )
        })
        .collect();
    assert!(
        lost.is_empty(),
        "checks that pass against the everything-server directly fail through gavel \
         (gavel log: {}):\n{}",
        s.log().display(),
        lost.join("\n")
    );

    // Every call through gavel was decided (and allowed) by the bundle.
    let calls = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .count();
    assert!(calls >= 10, "tool calls were decided and logged: {calls}");
}
