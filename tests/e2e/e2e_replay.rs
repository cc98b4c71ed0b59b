//! End to end: `gavel replay` on a decision log written by a real session —
//! the producing revision gives zero flips, a stricter candidate gives
//! exactly the expected flips, and the CI gate fails on them.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const POLICY: &str = r#"package fx

violations contains "destructive_denied" if input.action.tool == "destructive_delete"

decision := {"allow": true} if count(violations) == 0

decision := {"allow": false, "reasons": sort(violations)} if count(violations) > 0
"#;

/// The candidate: also refuses `add` with a big operand.
const STRICTER: &str = r#"package fx

violations contains "destructive_denied" if input.action.tool == "destructive_delete"

violations contains "big_numbers" if {
	input.action.tool == "add"
	input.action.args.a > 10
}

decision := {"allow": true} if count(violations) == 0

decision := {"allow": false, "reasons": sort(violations)} if count(violations) > 0
"#;

fn bundle(dir: &Path, revision: &str, rego: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("fx")).unwrap();
    std::fs::write(
        dir.join(".manifest"),
        json!({"revision": revision, "roots": ["fx"]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("fx/policy.rego"), rego).unwrap();
    dir.to_path_buf()
}

fn replay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(GAVEL)
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_of_a_real_session() {
    let s = Setup::blank();
    let live = bundle(&s.path("live/policy"), "1", POLICY);
    let log = s.path("decisions.jsonl");
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\nsecret_fields = [\"note\"]\n\n{}bundle = {:?}\n",
        log.display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        live.display().to_string()
    ));
    let client = s.connect(TestHost::new()).await;
    for (tool, args) in [
        (
            "echo",
            json!({"text": "hi", "note": "a secret the policy never reads"}),
        ),
        ("add", json!({"a": 1, "b": 2})),
        ("add", json!({"a": 50, "b": 2})),
        ("add", json!({"a": 70, "b": 2})),
        ("destructive_delete", json!({"path": "/srv"})),
    ] {
        call(&client, tool, args).await.unwrap();
    }
    client.cancel().await.unwrap();
    let records = std::fs::read_to_string(&log).unwrap();
    assert_eq!(records.lines().count(), 5, "{records}");
    assert!(
        records.contains("\"masked\""),
        "the note is masked in the log"
    );

    let cfg = s.config().display().to_string();
    let log_s = log.display().to_string();

    // The producing revision, through the config: zero flips, the gate passes.
    let (ok, out, err) = replay(&[
        "--log",
        &log_s,
        "--config",
        &cfg,
        "--fail-on-flip",
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["total"], 5);
    assert_eq!(v["unchanged"], 5, "{v}");
    assert_eq!(v["flips"], 0);

    // A stricter candidate of the same name: exactly the two big adds flip.
    let strict = bundle(&s.path("candidate/policy"), "2", STRICTER);
    let strict_s = strict.display().to_string();
    let (ok, out, _) = replay(&[
        "--log", &log_s, "--config", &cfg, "--bundle", &strict_s, "--json",
    ]);
    assert!(ok, "without --fail-on-flip the report is not a failure");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["allow_to_deny"].clone(), v["deny_to_allow"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(v["unchanged"], 3);
    assert_eq!(v["by_tool"]["allow→deny fx/add"]["count"], 2);
    assert_eq!(
        v["by_reason"]["allow→deny big_numbers"]["examples"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(v["logged_revisions"]["policy"], json!(["1"]));

    // As a gate: fails, naming the count; a threshold of 2 lets it pass.
    let (ok, out, err) = replay(&["--log", &log_s, "--bundle", &strict_s, "--fail-on-flip"]);
    assert!(!ok);
    assert!(err.contains("2 decisions flipped"), "{err}");
    assert!(out.contains("allow → deny       2"), "{out}");
    assert!(out.contains("fx/add"), "{out}");
    let (ok, _, err) = replay(&[
        "--log",
        &log_s,
        "--bundle",
        &strict_s,
        "--fail-on-flip",
        "2",
    ]);
    assert!(ok, "{err}");

    // A candidate that reads the clock cannot be replayed faithfully.
    let clock = bundle(
        &s.path("clock/policy"),
        "3",
        "package fx\ndecision := {\"allow\": time.now_ns() > 0}\n",
    );
    let clock_s = clock.display().to_string();
    let (ok, out, err) = replay(&["--log", &log_s, "--bundle", &clock_s, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["not_replayable"]["non_deterministic_builtin"], 5);
    assert_eq!(v["flips"], 0);
    assert!(
        err.contains("WARNING: 5 of 5 decision records could not be replayed"),
        "loud: {err}"
    );
    // As a gate, zero flips out of nothing replayed is a failure.
    let (ok, _, err) = replay(&["--log", &log_s, "--bundle", &clock_s, "--fail-on-flip"]);
    assert!(!ok);
    assert!(
        err.contains("no decision record could be replayed"),
        "{err}"
    );
    let (ok, _, err) = replay(&[
        "--log",
        &log_s,
        "--bundle",
        &clock_s,
        "--max-not-replayable",
        "4",
    ]);
    assert!(
        !ok && err.contains("5 records could not be replayed (allowed: 4)"),
        "{err}"
    );
    let (ok, _, err) = replay(&[
        "--log",
        &log_s,
        "--bundle",
        &clock_s,
        "--max-not-replayable",
        "5",
    ]);
    assert!(ok, "{err}");

    // Bad input: a candidate that replaces nothing, a missing log.
    let other = bundle(&s.path("other/elsewhere"), "1", POLICY);
    let (ok, _, err) = replay(&[
        "--log",
        &log_s,
        "--config",
        &cfg,
        "--bundle",
        &other.display().to_string(),
    ]);
    assert!(!ok);
    assert!(err.contains("replaces no bundle"), "{err}");
    let (ok, _, err) = replay(&[
        "--log",
        "/nonexistent/decisions.jsonl",
        "--bundle",
        &strict_s,
    ]);
    assert!(!ok);
    assert!(err.contains("cannot open the decision log"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_alone_needs_server_when_the_log_holds_several() {
    let s = Setup::blank();
    let live = bundle(&s.path("live/policy"), "1", POLICY);
    let log = s.path("decisions.jsonl");
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n\n{}bundle = {:?}\n",
        log.display().to_string(),
        fixture_server("alpha", &[], &s.path("ra.jsonl")),
        live.display().to_string(),
        fixture_server("beta", &[], &s.path("rb.jsonl")),
        live.display().to_string()
    ));
    let client = s.connect(TestHost::new()).await;
    call(&client, "alpha__add", json!({"a": 50, "b": 1}))
        .await
        .unwrap();
    call(&client, "beta__add", json!({"a": 60, "b": 1}))
        .await
        .unwrap();
    call(&client, "beta__echo", json!({"text": "x"}))
        .await
        .unwrap();
    client.cancel().await.unwrap();
    let strict = bundle(&s.path("candidate/policy"), "2", STRICTER);
    let (log_s, strict_s) = (log.display().to_string(), strict.display().to_string());
    let (ok, _, err) = replay(&["--log", &log_s, "--bundle", &strict_s]);
    assert!(!ok);
    assert!(
        err.contains("several servers (alpha, beta)") && err.contains("--server NAME"),
        "{err}"
    );
    let (ok, out, err) = replay(&[
        "--log", &log_s, "--bundle", &strict_s, "--server", "beta", "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["total"].clone(), v["other_server"].clone()),
        (json!(2), json!(1)),
        "{v}"
    );
    assert_eq!(v["by_tool"]["allow→deny beta/add"]["count"], 1, "{v}");
    assert_eq!(v["unchanged"], 1);
}
