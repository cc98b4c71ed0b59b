//! End to end: shadow bundles. A shadow that would deny what the live
//! policy allows leaves every call allowed, and each divergence is a
//! `gavel/shadow` record linked to the live decision, a count in the
//! metrics (scraped from the metrics port) and a row of `gavel report`'s
//! "Shadow would have…" section; `gavel replay` skips shadow records.

use crate::common;

use std::path::{Path, PathBuf};

use common::metrics::*;
use common::*;
use serde_json::{Value, json};

const LIVE: &str = r#"package fx

decision := {"allow": true}
"#;

/// The candidate: no more adds.
const SHADOW: &str = r#"package fx

decision := {"allow": true} if input.action.tool != "add"

decision := {"allow": false, "reasons": ["no_adds"]} if input.action.tool == "add"
"#;

/// A bundle named `policy` (so the shadow replaces the live one) under `dir`.
fn bundle(dir: &Path, revision: &str, rego: &str) -> PathBuf {
    let b = dir.join("policy");
    std::fs::create_dir_all(b.join("fx")).unwrap();
    std::fs::write(
        b.join(".manifest"),
        json!({"revision": revision, "roots": ["fx"]}).to_string(),
    )
    .unwrap();
    std::fs::write(b.join("fx/policy.rego"), rego).unwrap();
    std::fs::write(
        b.join("fx/data.json"),
        json!({"reasons": {"no_adds": "adding is being retired"}}).to_string(),
    )
    .unwrap();
    b
}

fn shadow_records(log: &Path) -> Vec<Value> {
    if !log.exists() {
        return vec![];
    }
    records(log)
        .into_iter()
        .filter(|r| r.get("shadow").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_that_would_deny_changes_nothing_and_records_the_divergence() {
    let port = free_port();
    let s = Setup::blank();
    let live = bundle(&s.path("live"), "1", LIVE);
    let shadow = bundle(&s.path("candidate"), "2", SHADOW);
    let log = s.path("decisions.jsonl");
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}bundle = {:?}\nshadow_bundles = [{:?}]\n",
        log.display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        live.display().to_string(),
        shadow.display().to_string(),
    ));
    let state = s.path("state");
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args()).env("GAVEL_STATE_DIR", &state);
    let client = connect_cmd(cmd, TestHost::new()).await;
    // `gavel status` names the shadow beside the live policy.
    let status = |json: bool| {
        let mut c = std::process::Command::new(GAVEL);
        c.arg("status").env("GAVEL_STATE_DIR", &state);
        if json {
            c.arg("--json");
        }
        String::from_utf8(c.output().unwrap().stdout).unwrap()
    };
    eventually("gavel status shows the shadow", || {
        serde_json::from_str::<Value>(&status(true)).is_ok_and(|v| {
            v[0]["policies"]["fx"]["shadow"] == json!({"policy": "rego", "version": "policy@2"})
        })
    })
    .await;
    let shown = status(false);
    assert!(
        shown.contains("policy rego policy@1")
            && shown.contains("shadow (never decides): rego policy@2"),
        "{shown}"
    );
    let zero = scrape(port).await;
    assert_eq!(
        value(&zero, r#"gavel_shadow_dropped_total{server="fx"}"#),
        0.0,
        "{zero}"
    );
    let r = call(&client, "echo", json!({"text": "hi"})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    for (a, b) in [(1, 2), (3, 4)] {
        let r = call(&client, "add", json!({"a": a, "b": b})).await.unwrap();
        assert_ne!(
            r.is_error,
            Some(true),
            "the live policy decides: {}",
            text(&r)
        );
        assert!(text(&r).contains(&(a + b).to_string()), "{}", text(&r));
    }
    eventually("two shadow records", || shadow_records(&log).len() == 2).await;
    let metrics = scrape(port).await;
    client.cancel().await.unwrap();

    let all = records(&log);
    let live_adds: Vec<&Value> = all
        .iter()
        .filter(|r| r.get("shadow").is_none() && r["input"]["action"]["tool"] == "add")
        .collect();
    assert_eq!(live_adds.len(), 2);
    assert!(live_adds.iter().all(|r| r["result"]["allow"] == true));
    let shadows = shadow_records(&log);
    for (sh, live) in shadows.iter().zip(&live_adds) {
        assert_eq!(sh["decision_id"], live["decision_id"], "{sh}");
        assert_eq!(sh["path"], "gavel/shadow");
        assert_eq!(sh["shadow"]["diverged"], "allow_to_deny", "{sh}");
        assert_eq!(sh["shadow"]["tool"], "add");
        assert_eq!(sh["shadow"]["live"], json!({"allow": true, "reasons": []}));
        assert_eq!(sh["result"]["allow"], false);
        assert_eq!(sh["result"]["reasons"], json!(["no_adds"]));
        assert_eq!(sh["shadow"]["bundles"]["policy"]["revision"], "2", "{sh}");
    }
    assert_eq!(
        value(
            &metrics,
            r#"gavel_shadow_divergences_total{server="fx",direction="allow_to_deny",reason="no_adds"}"#
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            r#"gavel_decisions_total{server="fx",outcome="deny"}"#
        ),
        0.0,
        "{metrics}"
    );

    let html = s.path("report.html");
    let (ok, out, err) = gavel(&[
        "report",
        &log.display().to_string(),
        "-o",
        &html.display().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("2 shadow divergences"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Shadow would have"), "{page}");
    assert!(
        page.contains(r#"id="shadow-total" data-value="2""#),
        "{page}"
    );
    assert!(page.contains("no_adds"), "{page}");

    // Replay re-decides the live records only.
    let (ok, out, err) = gavel(&[
        "replay",
        "--log",
        &log.display().to_string(),
        "--config",
        &s.config().display().to_string(),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(v["malformed"], 0, "{v}");
}

/// A shadow bundle that is also a live one, or one for a server without a
/// live policy, is a config error naming the field.
#[test]
fn shadow_bundles_are_validated() {
    let s = Setup::blank();
    let live = bundle(&s.path("live"), "1", LIVE);
    let l = live.display().to_string();
    let server = fixture_server("fx", &[], &s.path("r.jsonl"));
    for (extra, needle) in [
        (
            format!("bundle = {l:?}\nshadow_bundles = [{l:?}]\n"),
            "also a live bundle",
        ),
        (format!("shadow_bundles = [{l:?}]\n"), "has no live bundle"),
    ] {
        s.write_config(&format!("{server}{extra}"));
        let out = s.config_check();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}");
        assert!(
            err.contains("servers.fx.shadow_bundles") && err.contains(needle),
            "{err}"
        );
    }
}
