//! End to end: clauses of the input contract and of the policy lifecycle,
//! through the real binary — a server without a bundle, an erroring
//! `visible` rule, untrusted upstream annotations and `_meta`, the tool
//! digest and data classes in the record, server and tool names with two
//! servers, `strict_input` from the config, and a tool definition that
//! changes (on `list_changed`, across a restart, and between two gavel runs).

use crate::common;

use common::metrics::*;
use common::policy::*;
use common::*;
use serde_json::{Value, json};

/// The decision record of the first call to `tool`.
fn record_of<'a>(log: &'a [Value], tool: &str) -> &'a Value {
    log.iter()
        .find(|r| r["input"]["action"]["tool"] == tool)
        .unwrap_or_else(|| panic!("no record for {tool}: {log:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_a_bundle_is_announced_and_logged_as_policy_none() {
    let s = Setup::with(|s| {
        format!(
            "[log]\ndecisions = {:?}\n\n{}",
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "echo", json!({"text": "static only"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "static only");
    assert!(
        s.log_text().contains("no policy bundle: static rules only"),
        "announced at startup: {}",
        s.log_text()
    );
    let log = s.decisions();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["labels"]["policy"], "none");
    assert_eq!(log[0]["result"]["allow"], true);
    assert_eq!(log[0]["path"], "gavel/static");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erroring_visible_rule_is_logged_and_hides_the_tool() {
    let s = Setup::with(|s| {
        // `visible` has two values for echo (an evaluation error), is false for add.
        let b = bundle(
            s.dir.path(),
            "vis",
            "vis",
            json!({}),
            "package vis\ndecision := {\"allow\": true}\ndefault visible := true\nvisible := false if input.action.tool == \"add\"\nvisible := false if input.action.tool == \"echo\"\nvisible := true if input.action.tool == \"echo\"\n",
        );
        config(s, &[&b], "", "")
    });
    let client = s.connect(TestHost::new()).await;
    let names = tool_names(&client).await;
    // Fail closed: the rule that errs for echo hides it; the others are
    // listed as the rule says.
    assert!(!names.contains(&"echo".to_string()), "{names:?}");
    assert!(!names.contains(&"add".to_string()), "{names:?}");
    assert!(names.contains(&"slow".to_string()), "{names:?}");
    // Hiding is not denying: the call is still decided (here, allowed).
    let r = call(&client, "echo", json!({"text": "still decided"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "still decided");
    let log = s.log_text();
    assert!(
        log.contains("the visible rule failed") && log.contains("tool=echo"),
        "{log}"
    );
    client.cancel().await.unwrap();
}

/// Denies a call whose request references `health` data (the bundle's data
/// classifies by tool and path; the upstream's `_meta` may add classes).
const CLASSES: &str = r#"package cls

decision := {"allow": true} if not "health" in input.action.data_classes_referenced

decision := {"allow": false, "reasons": ["health_data"]} if "health" in input.action.data_classes_referenced
"#;

#[tokio::test(flavor = "multi_thread")]
async fn upstream_meta_only_adds_classes_and_annotations_are_trusted_only_by_config() {
    for trusted in [false, true] {
        let s = Setup::with(|s| {
            let b = bundle(s.dir.path(), "cls", "cls", json!({}), CLASSES);
            std::fs::write(
                b.join("cls/data.json"),
                json!({"classification": {
                    "tools": {"classified": ["pii"], "read_file": ["pii"]},
                    "paths": [{"prefix": "/records/", "classes": ["records"]}],
                }})
                .to_string(),
            )
            .unwrap();
            let extra = if trusted {
                "annotations_trusted = true"
            } else {
                ""
            };
            config(s, &[&b], extra, "")
        });
        let client = s.connect(TestHost::new()).await;
        let tools = client.list_all_tools().await.unwrap();
        let r = call(&client, "classified", json!({"path": "/records/7"}))
            .await
            .unwrap();
        // The upstream's own `health` class is added to the bundle's: denied.
        assert!(text(&r).contains("health_data"), "{}", text(&r));
        let ok = call(&client, "read_file", json!({"path": "/records/8"}))
            .await
            .unwrap();
        assert_eq!(text(&ok), "contents of /records/8");
        let log = s.decisions();
        let rec = record_of(&log, "classified");
        let a = &rec["input"]["action"];
        let mut classes: Vec<&str> = a["data_classes_referenced"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        classes.sort();
        assert_eq!(
            classes,
            vec!["health", "pii", "records"],
            "bundle classes stay, _meta adds: {a}"
        );
        assert_eq!(a["annotations"]["readOnlyHint"], true, "{a}");
        assert_eq!(a["annotations_trusted"], trusted, "{a}");
        // tool_digest: the canonical definition's sha256, in the record.
        let digest = a["tool_digest"].as_str().unwrap();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{a}"
        );
        let other = record_of(&log, "read_file")["input"]["action"].clone();
        assert_ne!(other["tool_digest"], a["tool_digest"]);
        assert_eq!(other["data_classes_referenced"], json!(["pii", "records"]));
        assert!(tools.iter().any(|t| t.name == "classified"));
        client.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_servers_the_record_names_the_config_server_and_the_upstream_tool() {
    let s = Setup::blank();
    let b = allow_all_bundle(&s);
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\n\n{}bundle = {:?}\nprefix = \"alpha\"\n\n{}bundle = {:?}\n",
        s.path("decisions.jsonl").display().to_string(),
        fixture_server("first", &[], &s.path("r1.jsonl")),
        b.display().to_string(),
        fixture_server("second", &[], &s.path("r2.jsonl")),
        b.display().to_string(),
    ));
    let client = s.connect(TestHost::new()).await;
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"alpha__echo".to_string()) && names.contains(&"second__echo".to_string()),
        "{names:?}"
    );
    let r = call(&client, "alpha__echo", json!({"text": "one"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "one");
    call(&client, "second__add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    let log = s.decisions();
    let a = &log[0]["input"]["action"];
    assert_eq!(
        (a["server"].as_str(), a["tool"].as_str()),
        (Some("first"), Some("echo")),
        "{a}"
    );
    let b = &log[1]["input"]["action"];
    assert_eq!(
        (b["server"].as_str(), b["tool"].as_str()),
        (Some("second"), Some("add")),
        "{b}"
    );
    // Each upstream got its own name for the tool.
    assert_eq!(
        recorded_calls(&s.path("r1.jsonl"))[0]["params"]["name"],
        "echo"
    );
    assert_eq!(
        recorded_calls(&s.path("r2.jsonl"))[0]["params"]["name"],
        "add"
    );
    client.cancel().await.unwrap();
}

#[test]
fn strict_input_from_the_config_refuses_a_bundle_reading_an_unknown_input_path() {
    let s = Setup::blank();
    let b = bundle(
        s.dir.path(),
        "typo",
        "typo",
        json!({}),
        "package typo\ndecision := {\"allow\": true} if input.action.tool_nmae == \"echo\"\n",
    );
    for strict in [false, true] {
        let top = format!("[policy]\nstrict_input = {strict}\n");
        s.write_config(&config(&s, &[&b], "", &top));
        let out = s.config_check();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.success(),
            !strict,
            "strict_input = {strict}: {stderr}"
        );
        if strict {
            assert!(
                stderr.contains("tool_nmae") && stderr.contains("typo"),
                "the path and the bundle are named: {stderr}"
            );
        }
    }
}

/// `(old, new)` digests of the "tool definition changed {when}" warning for
/// `tool` in gavel's log, once it is there.
fn change_logged(log: &str, tool: &str, when: &str) -> Option<(String, String)> {
    let line = log.lines().find(|l| {
        l.contains(&format!("tool definition changed {when}"))
            && l.contains(&format!("tool={tool} "))
    })?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(String::from)
    };
    Some((field("old=")?, field("new=")?))
}

/// The tool digest in the decision record of the last call to `tool`.
fn last_digest(s: &Setup, tool: &str) -> String {
    s.decisions()
        .iter()
        .rev()
        .find(|r| r["input"]["action"]["tool"] == tool)
        .and_then(|r| {
            r["input"]["action"]["tool_digest"]
                .as_str()
                .map(String::from)
        })
        .expect("a record with a tool digest")
}

/// A bundle that allows everything (so the records say `rego`).
fn allow_all_bundle(s: &Setup) -> std::path::PathBuf {
    bundle(
        s.dir.path(),
        "any",
        "any",
        json!({}),
        "package any\ndecision := {\"allow\": true}\n",
    )
}

/// The fixture server `fx` whose tool descriptions come from a file the
/// test rewrites (returned), with a decision log and `extra` config after
/// the server table (`bundle = …`).
fn describable_fixture(s: &Setup, extra: &str) -> std::path::PathBuf {
    let descriptions = s.path("descriptions.json");
    std::fs::write(&descriptions, "{}").unwrap();
    let server = fixture_server(
        "fx",
        &["--descriptions", descriptions.to_str().unwrap()],
        &s.path("r.jsonl"),
    );
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\n\n{server}{extra}",
        s.path("decisions.jsonl").display().to_string(),
    ));
    descriptions
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_tool_definition_is_logged_on_list_changed_and_across_a_restart() {
    let s = Setup::blank();
    let b = allow_all_bundle(&s);
    let descriptions =
        describable_fixture(&s, &format!("bundle = {:?}\n", b.display().to_string()));
    let port = free_port();
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args())
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect_cmd(cmd, host).await;
    call(&client, "echo", json!({"text": "1"})).await.unwrap();
    let d1 = last_digest(&s, "echo");

    // 1. The description changes and the upstream says so.
    std::fs::write(&descriptions, r#"{"echo": "Echo text back (v2)"}"#).unwrap();
    call(&client, "tools_changed", json!({})).await.unwrap();
    eventually("the change is logged", || {
        change_logged(&s.log_text(), "echo", "after list_changed").is_some()
    })
    .await;
    let (old, new) = change_logged(&s.log_text(), "echo", "after list_changed").unwrap();
    assert_eq!(old, d1);
    assert_ne!(new, d1);
    until_announced_list(&client, &seen, 0, "the host was told", |tools| {
        tools
            .iter()
            .any(|t| t.name == "echo" && t.description.as_deref() == Some("Echo text back (v2)"))
    })
    .await;
    call(&client, "echo", json!({"text": "2"})).await.unwrap();
    let d2 = last_digest(&s, "echo");
    assert_eq!(d2, new, "the record carries the new digest");

    // 2. It changes again while the upstream is down: seen at the restart.
    let before = scrape(port).await;
    std::fs::write(&descriptions, r#"{"echo": "Echo text back (v3)"}"#).unwrap();
    let _ = call(&client, "crash", json!({"code": 3})).await;
    eventually("the change across the restart is logged", || {
        change_logged(&s.log_text(), "echo", "after a restart").is_some()
    })
    .await;
    let (old, d3) = change_logged(&s.log_text(), "echo", "after a restart").unwrap();
    assert_eq!(old, d2, "compared with the definition before the crash");
    assert_ne!(d3, d2);
    // Calls go through again, decided with the new digest.
    let start = std::time::Instant::now();
    loop {
        let ok =
            matches!(call(&client, "echo", json!({"text": "3"})).await, Ok(r) if text(&r) == "3");
        if ok && last_digest(&s, "echo") == d3 {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "echo never came back with digest {d3}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = scrape(port).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved(r#"gavel_upstream_restarts_total{server="fx"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(value(&after, r#"gavel_upstream_up{server="fx"}"#), 1.0);
    client.cancel().await.unwrap();
}

/// The gavel log of one run (each run writes its own).
fn run_log(s: &Setup, name: &str) -> String {
    std::fs::read_to_string(s.path(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_definition_changed_between_two_gavel_runs_is_logged() {
    let s = Setup::blank();
    let descriptions = describable_fixture(&s, "");
    // One gavel run: a call, then the host closes it.
    let run = |log: &'static str| {
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args([
            "run",
            "--config",
            s.config().to_str().unwrap(),
            "--log-file",
            s.path(log).to_str().unwrap(),
        ])
        .env("GAVEL_STATE_DIR", s.path("state"));
        async move {
            let client = connect_cmd(cmd, TestHost::new()).await;
            call(&client, "echo", json!({"text": "x"})).await.unwrap();
            client.cancel().await.unwrap();
        }
    };
    run("run1.log").await;
    let d1 = last_digest(&s, "echo");
    assert!(
        !run_log(&s, "run1.log").contains("tool definition changed"),
        "the first run is the baseline"
    );

    // Changed while no gavel was running.
    std::fs::write(
        &descriptions,
        r#"{"echo": "Echo text back (between runs)"}"#,
    )
    .unwrap();
    run("run2.log").await;
    let d2 = last_digest(&s, "echo");
    assert_ne!(d2, d1);
    let (old, new) = change_logged(
        &run_log(&s, "run2.log"),
        "echo",
        "since gavel last listed it",
    )
    .unwrap_or_else(|| panic!("no change logged: {}", run_log(&s, "run2.log")));
    assert_eq!((old, new), (d1, d2.clone()));

    // Unchanged since: nothing to report.
    run("run3.log").await;
    assert_eq!(last_digest(&s, "echo"), d2);
    assert!(
        !run_log(&s, "run3.log").contains("tool definition changed"),
        "{}",
        run_log(&s, "run3.log")
    );
}
