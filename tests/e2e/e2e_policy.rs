//! End to end: Rego policy decides through the real binary — allow, deny with
//! everything the agent needs, hidden tools, every request path, each
//! fail-closed code, layers and overrides, disclosure, what a decision record
//! holds (the log's durability and rotation: `e2e_decision_log`).

use crate::common;

use std::path::{Path, PathBuf};

use common::policy::*;
use common::*;
use rmcp::model::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn rego_allows_denies_hides_and_logs() {
    let s = Setup::with(|s| config(s, &[&fixture_bundle()], "", ""));
    let client = s.connect(TestHost::new()).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert!(
        !tools.iter().any(|t| t.name == "read_file"),
        "the visible rule hides read_file"
    );

    let ok = call(
        &client,
        "echo",
        json!({"text": "hi", "note": "secret-note", "blob": "z".repeat(400)}),
    )
    .await
    .unwrap();
    assert_eq!(text(&ok), "hi");

    let denied = call(&client, "destructive_delete", json!({"path": "/srv"}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    let t = text(&denied);
    for needle in [
        "destructive_denied",
        "destructive tools need a human",
        "ask a human to run it",
        "https://appeal.example.test/fixture",
        "fixture@9.9.9",
        "data.mcp.fixture.decision",
    ] {
        assert!(t.contains(needle), "{needle} missing from: {t}");
    }
    let d = &denied.meta.as_ref().unwrap().0["dev.gavel/decision"];
    assert_eq!(d["reasons"], json!(["destructive_denied"]));
    assert_eq!(d["policy_version"], "fixture@9.9.9");
    assert_eq!(
        denied.structured_content.as_ref().unwrap()["appeal_path"],
        "https://appeal.example.test/fixture"
    );
    let calls = recorded_calls(&s.path("r.jsonl"));
    assert_eq!(
        calls.len(),
        1,
        "only the allowed call reached the upstream: {calls:?}"
    );

    // A tool with an outputSchema gets no structuredContent on denial.
    let st = call(&client, "structured", json!({"value": "x"}))
        .await
        .unwrap();
    assert_eq!(st.is_error, Some(true));
    assert!(st.structured_content.is_none());

    // Every decision is logged with the bundle's revision and digest, masked.
    let log = s.decisions();
    assert!(log.len() >= 3, "{log:?}");
    let allowed = log
        .iter()
        .find(|r| r["input"]["action"]["tool"] == "echo")
        .unwrap();
    assert_eq!(allowed["result"]["allow"], true);
    assert_eq!(allowed["bundles"]["fixture"]["revision"], "9.9.9");
    // OPA's event: the decision path as OPA writes it, the instance id and
    // version in `labels`, a UUIDv4 id, an RFC 3339 UTC timestamp with ns.
    for rec in &log {
        assert_eq!(rec["path"], "mcp/fixture/decision", "{rec}");
        let id = uuid::Uuid::parse_str(rec["decision_id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4, "{rec}");
        let instance = uuid::Uuid::parse_str(rec["labels"]["id"].as_str().unwrap()).unwrap();
        assert_eq!(instance.get_version_num(), 4, "{rec}");
        assert_eq!(rec["labels"]["id"], log[0]["labels"]["id"], "one instance");
        assert_eq!(rec["labels"]["version"], env!("CARGO_PKG_VERSION"));
        let ts = rec["timestamp"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.split('.').nth(1).unwrap().len() == 10,
            "{ts}"
        );
    }
    assert!(
        allowed["bundles"]["fixture"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        allowed["metrics"]["timer_rego_query_eval_ns"]
            .as_u64()
            .unwrap()
            > 0
    );
    let raw = allowed.to_string();
    assert!(
        !raw.contains("secret-note"),
        "configured secret fields are masked"
    );
    assert!(
        !raw.contains("zzzz"),
        "big arguments are logged as size + sha256"
    );
    assert_eq!(
        allowed["input"]["action"]["args"]["blob"]["size_bytes"],
        402
    );
    assert_eq!(allowed["input"]["context"]["turn_count"], 0);
    // The bundle's own log rules: mask (erase and upsert), then drop.
    assert!(
        allowed["input"]["user"].get("id").is_none(),
        "erased by log.mask"
    );
    assert_eq!(
        allowed["input"]["action"]["args"]["text"],
        "**masked-by-bundle**"
    );
    assert!(
        allowed["erased"]
            .as_array()
            .unwrap()
            .contains(&json!("/input/user/id"))
    );
    call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert!(
        !s.decisions()
            .iter()
            .any(|r| r["input"]["action"]["tool"] == "add"),
        "dropped by log.drop"
    );
    let denied_rec = log
        .iter()
        .find(|r| r["input"]["action"]["tool"] == "destructive_delete")
        .unwrap();
    assert_eq!(denied_rec["result"]["allow"], false);
    assert_eq!(
        denied_rec["input"]["context"]["turn_count"], 1,
        "turn_count counts calls decided before"
    );
    assert_eq!(denied_rec["result"]["decision_id"], d["decision_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_prompts_and_sampling_are_decided() {
    let s = Setup::with(|s| config(s, &[&fixture_bundle()], "", ""));
    let host = TestHost::new();
    let asked = host.seen.clone();
    let client = s.connect(host).await;
    client.list_all_tools().await.unwrap();
    let ok = client
        .peer()
        .read_resource(ReadResourceRequestParams::new("fixture://static/hello"))
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&ok)
            .unwrap()
            .contains("hello from fx")
    );
    let e = client
        .peer()
        .read_resource(ReadResourceRequestParams::new("fixture://static/blob"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), Some(403), "{e}");
    assert!(e.to_string().contains("secret_resource"), "{e}");
    let e = client
        .peer()
        .get_prompt(GetPromptRequestParams::new("plain"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("prompt_denied"), "{e}");
    // The upstream's own sampling request is decided too: denied, the host is never asked.
    let host_seen = call(&client, "sample", json!({"prompt": "hi"}))
        .await
        .unwrap();
    assert!(
        text(&host_seen).contains("sampling failed") || host_seen.is_error == Some(true),
        "{}",
        text(&host_seen)
    );
    assert!(
        asked.lock().unwrap().samplings.is_empty(),
        "the host was never asked to sample"
    );
    let recorded = records(&s.path("r.jsonl"));
    assert!(
        !recorded
            .iter()
            .any(|v| v["method"] == "resources/read"
                && v["params"]["uri"] == "fixture://static/blob")
    );
    assert!(
        !recorded
            .iter()
            .any(|v| v["method"] == "prompts/get" && v["params"]["name"] == "plain")
    );
    let log = s.decisions();
    assert!(log.iter().any(
        |r| r["input"]["action"]["type"] == "sampling_request" && r["result"]["allow"] == false
    ));
}

async fn denial_reason(s: &Setup) -> (String, Value) {
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "must fail closed: {}", text(&r));
    let d = r.meta.unwrap().0["dev.gavel/decision"].clone();
    assert!(
        recorded_calls(&s.path("r.jsonl")).is_empty(),
        "nothing reached the upstream"
    );
    (d["reasons"][0].as_str().unwrap_or("").to_string(), d)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_failure_fails_closed_with_its_own_code() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (tmp.path().join("missing-bundle"), "policy_unavailable"),
        (
            bundle(
                tmp.path(),
                "broken",
                "p",
                json!({}),
                "package p\ndecision := {\"allow\": true} if {\n",
            ),
            "policy_unavailable",
        ),
        (
            bundle(
                tmp.path(),
                "errs",
                "p",
                json!({}),
                "package p\ndecision := {\"allow\": true} if input.user.id\ndecision := {\"allow\": false} if input.user.id\n",
            ),
            "policy_error",
        ),
        (unbounded(tmp.path()), "policy_timeout"),
        (
            bundle(
                tmp.path(),
                "shape",
                "p",
                json!({}),
                "package p\ndecision := [\"allow\"]\n",
            ),
            "policy_bad_decision",
        ),
        (
            bundle(
                tmp.path(),
                "undef",
                "p",
                json!({}),
                "package p\ndecision := {\"allow\": true} if input.nope\n",
            ),
            "no_decision",
        ),
    ];
    for (b, code) in cases {
        let s = Setup::with(|s| config(s, &[&b], "", "[policy]\neval_timeout = \"300ms\"\n"));
        let (reason, d) = denial_reason(&s).await;
        assert_eq!(reason, code, "{}: {d}", b.display());
    }
}

/// One builtin call over a large agent argument ran past `eval_timeout`
/// (the cooperative timer cannot interrupt it) and the call was allowed: it
/// is denied as `policy_timeout`, nothing reaches the upstream. A recursive
/// rule crashed `gavel config check` (stack overflow): it is refused with
/// the file and line.
#[tokio::test(flavor = "multi_thread")]
async fn slow_builtins_time_out_and_recursion_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = bundle(
        tmp.path(),
        "slow-builtin",
        "p",
        json!({}),
        "package p\ndecision := {\"allow\": count(sort(split(input.action.args.text, \",\"))) > 0}\n",
    );
    let s = Setup::with(|s| config(s, &[&slow], "", "[policy]\neval_timeout = \"20ms\"\n"));
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let items: Vec<String> = (0..400_000u64)
        .map(|i| format!("{:016x}", i.wrapping_mul(0x9E3779B97F4A7C15)))
        .collect();
    let r = call(&client, "echo", json!({"text": items.join(",")}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "must fail closed");
    let d = r.meta.unwrap().0["dev.gavel/decision"].clone();
    assert_eq!(d["reasons"][0], "policy_timeout", "{d}");
    assert!(recorded_calls(&s.path("r.jsonl")).is_empty());

    let rec = bundle(
        tmp.path(),
        "recursive",
        "p",
        json!({}),
        "package p\nf(x) := y if { y := f(x) }\ndecision := {\"allow\": f(1) == 1}\n",
    );
    let s = Setup::with(|s| config(s, &[&rec], "", ""));
    let out = s.config_check();
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        out.status.code().is_some(),
        "exited, not killed by a signal: {err}"
    );
    assert!(
        err.contains("policy.rego:2: rule data.p.f is recursive"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_is_explicit_and_logged() {
    let s = Setup::with(|s| {
        let missing = s.path("no-such-bundle");
        config(s, &[&missing], "fail_open = true", "")
    });
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "echo", json!({"text": "through"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "through");
    let rec = s
        .decisions()
        .into_iter()
        .find(|r| r["input"]["action"]["tool"] == "echo")
        .unwrap();
    assert_eq!(rec["labels"]["fail_open"], "true");
    assert_eq!(rec["result"]["reasons"], json!(["policy_unavailable"]));
    assert!(
        s.log_text().contains("fail_open = true"),
        "announced at startup"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_override_and_withheld_details() {
    let tmp = tempfile::tempdir().unwrap();
    let resource = bundle(
        tmp.path(),
        "res",
        "r",
        json!({"metadata": {"gavel": {"layer": "resource"}}}),
        "package r\ndecision := {\"allow\": false, \"reasons\": [\"outside_scope\"], \"appeal_path\": \"https://a.test\"} if input.action.tool == \"echo\"\ndefault decision := {\"allow\": true}\n",
    );
    let compliance = bundle(
        tmp.path(),
        "comp",
        "c",
        json!({"metadata": {"gavel": {"layer": "compliance", "disclosure": "withhold"}}}),
        "package c\ndecision := {\"allow\": false, \"reasons\": [\"residency\"]} if input.action.tool == \"add\"\ndefault decision := {\"allow\": true}\n",
    );
    let over = bundle(
        tmp.path(),
        "ovr",
        "o",
        json!({"metadata": {"gavel": {"layer": "override"}}}),
        "package o\ndecision := {\"waive\": [\"outside_scope\", \"residency\"]}\n",
    );
    let s = Setup::with(|s| config(s, &[&resource, &compliance, &over], "", ""));
    let client = s.connect(TestHost::new()).await;
    // The override waives the resource layer's code…
    let r = call(&client, "echo", json!({"text": "waived"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "waived");
    let rec = s
        .decisions()
        .into_iter()
        .find(|r| r["input"]["action"]["tool"] == "echo")
        .unwrap();
    assert_eq!(
        rec["result"]["matched_rules"],
        json!(["override:ovr:waived:outside_scope"])
    );
    // OPA's `path`: every layer allowed (one by waiver), so the first
    // non-override layer's rule.
    assert_eq!(rec["path"], "r/decision");
    // …but never a compliance denial, whose details are withheld from the agent.
    let r = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let all = serde_json::to_string(&r).unwrap();
    assert!(!all.contains("residency"), "withheld: {all}");
    assert_eq!(
        r.meta.unwrap().0["io.modelcontextprotocol/authorization"]["remediation"],
        "undisclosed"
    );
    let rec = s
        .decisions()
        .into_iter()
        .find(|r| r["input"]["action"]["tool"] == "add")
        .unwrap();
    assert_eq!(
        rec["result"]["reasons"],
        json!(["residency"]),
        "the log keeps the full decision"
    );
    // The layer that denied is the record's `path`; every bundle is in
    // `bundles`.
    assert_eq!(rec["path"], "c/decision");
    for b in ["res", "comp", "ovr"] {
        assert!(rec["bundles"][b].is_object(), "{b}: {rec}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opa_build_tarball_loads_and_decides() {
    let s = Setup::blank();
    let tar = s.path("bundle.tar.gz");
    let f = std::fs::File::create(&tar).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::default(),
    ));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/data.json", br#"{"opa":{"built":{"blocked":["add"]}}}"#.to_vec()),
        ("/.manifest", br#"{"revision":"built-1","roots":["opa/built"]}"#.to_vec()),
        ("/opa/built/policy.rego", b"package opa.built\n\ndefault decision := {\"allow\": true}\n\ndecision := {\"allow\": false, \"reasons\": [\"blocked\"]} if input.action.tool in data.opa.built.blocked\n".to_vec()),
    ];
    for (p, d) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        let name = h.as_old_mut().name.as_mut();
        name[..p.len()].copy_from_slice(p.as_bytes());
        h.set_cksum();
        b.append(&h, d.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    s.write_config(&config(&s, &[&tar], "", ""));
    let client = s.connect(TestHost::new()).await;
    assert_eq!(
        text(&call(&client, "echo", json!({"text": "ok"})).await.unwrap()),
        "ok"
    );
    let r = call(&client, "add", json!({"a": 1, "b": 1})).await.unwrap();
    assert!(
        text(&r).contains("blocked") && text(&r).contains("built-1"),
        "{}",
        text(&r)
    );
    let digest = s.decisions()[0]["bundles"]["bundle"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = format!("sha256:{}", hex_sha256(&std::fs::read(&tar).unwrap()));
    assert_eq!(
        digest, expected,
        "a tarball's digest is the sha256 of the tarball"
    );
}

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// `gavel wrap` decides with its `--bundle` and logs to `--decision-log`;
/// `--eval-timeout` is its `[policy] eval_timeout` (the tests' generous
/// one, `TEST_EVAL_TIMEOUT`, then a short one that an unbounded policy
/// runs past).
#[tokio::test(flavor = "multi_thread")]
async fn wrap_takes_a_bundle() {
    let s = Setup::blank();
    let wrap = |bundle: &Path, eval_timeout: &str| {
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args(["wrap", "--name", "fx", "--bundle"])
            .arg(bundle)
            .args(["--eval-timeout", eval_timeout, "--decision-log"])
            .arg(s.path("decisions.jsonl"))
            .args(["--", FIXTURE, "--record"])
            .arg(s.path("r.jsonl"));
        cmd
    };
    let client = connect_cmd(wrap(&fixture_bundle(), TEST_EVAL_TIMEOUT), TestHost::new()).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert!(text(&r).contains("destructive_denied"), "{}", text(&r));
    // wrap has no identity config: the fixture policy sees unknown-user.
    let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert!(text(&r).contains("unknown_user"), "{}", text(&r));
    assert_eq!(s.decisions().len(), 2);
    assert!(recorded_calls(&s.path("r.jsonl")).is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let client = connect_cmd(wrap(&unbounded(tmp.path()), "20ms"), TestHost::new()).await;
    let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    let d = r.meta.unwrap().0["dev.gavel/decision"].clone();
    assert_eq!(d["reasons"][0], "policy_timeout", "{d}");
    // The limit is the flag's, not the default (100ms).
    let said = d["remediation"].as_str().unwrap_or_default();
    assert!(said.contains("exceeded the 20ms limit"), "{d}");
    assert!(recorded_calls(&s.path("r.jsonl")).is_empty());
}

#[test]
fn require_bundle_makes_a_bundleless_server_a_startup_error() {
    let s = Setup::with(|s| {
        format!(
            "[policy]\nrequire_bundle = true\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let out = s.config_check();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("require_bundle"));
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_counters_stop_a_runaway_agent() {
    // The example workflow layer, with tighter limits.
    let tmp = tempfile::tempdir().unwrap();
    let wf = tmp.path().join("workflow");
    std::fs::create_dir_all(wf.join("gavel/workflow")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/workflow");
    std::fs::copy(src.join(".manifest"), wf.join(".manifest")).unwrap();
    std::fs::copy(
        src.join("gavel/workflow/workflow.rego"),
        wf.join("gavel/workflow/workflow.rego"),
    )
    .unwrap();
    std::fs::write(
        wf.join("gavel/workflow/data.json"),
        r#"{"max_consecutive_same_tool": 3, "max_calls_per_minute": 1000, "max_session_tokens": 5000, "reasons": {"same_tool_loop": "loop"}}"#,
    )
    .unwrap();
    let s = Setup::with(|s| config(s, &[&fixture_bundle(), &wf], "", ""));
    let client = s.connect(TestHost::new()).await;
    for i in 0..3 {
        let r = call(&client, "echo", json!({"text": format!("n{i}")}))
            .await
            .unwrap();
        assert_ne!(r.is_error, Some(true), "call {i}: {}", text(&r));
    }
    let r = call(&client, "echo", json!({"text": "fourth"}))
        .await
        .unwrap();
    assert!(text(&r).contains("same_tool_loop"), "{}", text(&r));
    // Another tool breaks the run.
    let r = call(&client, "add", json!({"a": 1, "b": 1})).await.unwrap();
    assert_eq!(text(&r), "2");
    let log = s.decisions();
    let fourth = log
        .iter()
        .filter(|r| r["input"]["action"]["tool"] == "echo")
        .nth(3)
        .unwrap();
    assert_eq!(
        fourth["input"]["context"]["consecutive_same_tool"], 3,
        "the snapshot the decision used is logged"
    );
    // A host-reported token count can only raise gavel's figure: over budget now.
    let mut p = rmcp::model::CallToolRequestParams::new("add");
    p.arguments = json!({"a": 2, "b": 2}).as_object().cloned();
    let mut meta = RequestMetaObject::default();
    meta.0
        .0
        .insert("dev.gavel/cumulative_tokens".into(), json!(999_999));
    p.meta = Some(meta);
    let r = client.peer().call_tool(p).await.unwrap();
    assert!(text(&r).contains("token_budget_exceeded"), "{}", text(&r));
}
