//! End to end: agent personas (`[personas.NAME]`). Two personas over the
//! same servers get different decisions from their own bundles — over HTTP
//! (the token's agent claim) and over stdio (`[identity] agent.id`); an
//! agent of no persona gets `[policy] unmatched_persona` (deny or base); a
//! persona's server list holds; and the governance commands tell personas
//! apart (status, explain, report, replay).

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// Persona bundles: `hr` denies `echo` (`hr_no_echo`), `it` denies `add`
/// (`it_no_add`); everything else each allows.
fn persona_bundles(dir: &Path) -> (PathBuf, PathBuf) {
    let hr = common::policy::bundle(
        dir,
        "hr",
        "persona/hr",
        json!({"metadata": {"gavel": {"layer": "identity"}}}),
        "package persona.hr\n\ndefault decision := {\"allow\": true}\n\ndecision := {\"allow\": false, \"reasons\": [\"hr_no_echo\"]} if input.action.tool == \"echo\"\n",
    );
    let it = common::policy::bundle(
        dir,
        "it",
        "persona/it",
        json!({}),
        "package persona.it\n\ndefault decision := {\"allow\": true}\n\ndecision := {\"allow\": false, \"reasons\": [\"it_no_add\"]} if input.action.tool == \"add\"\n",
    );
    (hr, it)
}

/// The servers' own layer: allows everything (revision `base-1`).
fn allow_all(dir: &Path) -> PathBuf {
    common::policy::bundle(
        dir,
        "base",
        "base",
        json!({}),
        "package base\n\ndecision := {\"allow\": true}\n",
    )
}

/// Two fixture servers (`fx`, `mail`) with an allow-all bundle, personas
/// `hr` (agents `hr-*`, server `fx` only) and `it` (agent `it-bot`, every
/// server), `unmatched_persona = unmatched`, a decision log; `top` first.
fn persona_config(s: &Setup, top: &str, unmatched: &str) -> String {
    let (hr, it) = persona_bundles(&s.path("bundles"));
    let base = allow_all(&s.path("bundles")).display().to_string();
    format!(
        "{top}\n[policy]\nunmatched_persona = {unmatched:?}\n\n{}\
         {}bundle = {base:?}\n{}bundle = {base:?}\n\
         [personas.hr]\nagents = [\"hr-*\"]\nservers = [\"fx\"]\nbundles = [{:?}]\n\
         [personas.it]\nagents = [\"it-bot\"]\nbundles = [{:?}]\n",
        s.decision_log_table(),
        fixture_server("fx", &[], &s.path("fx.jsonl")),
        fixture_server("mail", &[], &s.path("mail.jsonl")),
        hr.display().to_string(),
        it.display().to_string(),
    )
}

/// The reasons of a call's decision (empty when it was allowed).
async fn reasons(c: &Client, tool: &str, args: Value) -> Vec<String> {
    let r = call(c, tool, args).await.unwrap();
    if r.is_error != Some(true) {
        return vec![];
    }
    let d = &r.meta.as_ref().expect("a denial carries its decision").0["dev.gavel/decision"];
    d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn prompts(c: &Client) -> Vec<String> {
    c.list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect()
}

fn personas_logged(s: &Setup) -> Vec<(Value, Value, Value)> {
    s.decisions()
        .iter()
        .map(|r| {
            (
                r["input"]["agent"]["id"].clone(),
                r["labels"]["persona"].clone(),
                r["result"]["allow"].clone(),
            )
        })
        .collect()
}

async fn serve_with_personas(s: &Setup, unmatched: &str) -> (String, tokio::process::Child) {
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    s.write_config(&persona_config(s, &hs256_auth(&audience), unmatched));
    let gavel = gavel_serve_at(s, port, &[("GAVEL_E2E_JWT_SECRET", JWT_SECRET)], &[]).await;
    (audience, gavel)
}

async fn as_agent(audience: &str, agent: &str) -> Client {
    let token = hs256_token(
        json!({"iss": "https://idp.example.test", "aud": audience, "exp": unix_now() + 600,
               "sub": format!("user-of-{agent}"), "azp": agent}),
        JWT_SECRET,
    );
    http_client(audience, None, Some(&token)).await
}

async fn stop(mut gavel: tokio::process::Child) {
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    gavel.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_each_token_agent_is_decided_by_its_personas_bundles() {
    let s = Setup::blank();
    let (audience, gavel) = serve_with_personas(&s, "deny").await;
    let hr = as_agent(&audience, "hr-payroll").await;
    let it = as_agent(&audience, "it-bot").await;
    let stranger = as_agent(&audience, "sales-bot").await;
    // Same servers, same call: hr's bundle denies echo, it's allows it.
    assert_eq!(
        reasons(&hr, "fx__echo", json!({"text": "a"})).await,
        ["hr_no_echo"]
    );
    assert!(
        reasons(&it, "fx__echo", json!({"text": "b"}))
            .await
            .is_empty()
    );
    // ... and the other way round for add.
    assert!(
        reasons(&hr, "fx__add", json!({"a": 1, "b": 2}))
            .await
            .is_empty()
    );
    assert_eq!(
        reasons(&it, "fx__add", json!({"a": 1, "b": 2})).await,
        ["it_no_add"]
    );
    // hr reaches fx only: mail's tools are not listed to it, and a call is
    // refused before any policy, with gavel's code.
    let hr_tools = tool_names(&hr).await;
    assert!(hr_tools.iter().any(|t| t == "fx__echo"), "{hr_tools:?}");
    assert!(
        !hr_tools.iter().any(|t| t.starts_with("mail__")),
        "{hr_tools:?}"
    );
    assert!(tool_names(&it).await.iter().any(|t| t == "mail__echo"));
    assert_eq!(
        reasons(&hr, "mail__add", json!({"a": 1, "b": 2})).await,
        ["persona_server_denied"]
    );
    // Nor its prompts; and an agent refused everywhere is shown no
    // prompt, resource or template either (they are routed, not listed).
    let hr_prompts = prompts(&hr).await;
    assert!(
        hr_prompts.iter().any(|p| p.starts_with("fx__")),
        "{hr_prompts:?}"
    );
    assert!(
        !hr_prompts.iter().any(|p| p.starts_with("mail__")),
        "{hr_prompts:?}"
    );
    assert!(prompts(&it).await.iter().any(|p| p.starts_with("mail__")));
    assert!(prompts(&stranger).await.is_empty());
    assert!(!hr.list_all_resources().await.unwrap().is_empty());
    assert!(stranger.list_all_resources().await.unwrap().is_empty());
    assert!(
        stranger
            .list_all_resource_templates()
            .await
            .unwrap()
            .is_empty()
    );
    // An agent of no persona: unmatched_persona = "deny".
    assert!(tool_names(&stranger).await.is_empty());
    assert_eq!(
        reasons(&stranger, "fx__echo", json!({"text": "c"})).await,
        ["persona_unmatched"]
    );
    // Only allowed calls reached the upstreams.
    let texts: Vec<Value> = recorded_calls(&s.path("fx.jsonl"))
        .iter()
        .map(|c| c["params"]["arguments"]["text"].clone())
        .filter(|t| !t.is_null())
        .collect();
    assert_eq!(texts, [json!("b")]);
    assert!(recorded_calls(&s.path("mail.jsonl")).is_empty());
    // Every record names the persona it was decided as (none for the stranger).
    let logged = personas_logged(&s);
    assert!(logged.contains(&(json!("hr-payroll"), json!("hr"), json!(false))));
    assert!(logged.contains(&(json!("it-bot"), json!("it"), json!(true))));
    assert!(logged.contains(&(json!("sales-bot"), Value::Null, json!(false))));
    for c in [hr, it, stranger] {
        c.cancel().await.unwrap();
    }
    stop(gavel).await;
    governance_tells_personas_apart(&s);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_an_unmatched_agent_gets_the_base_layers_when_configured() {
    let s = Setup::blank();
    let (audience, gavel) = serve_with_personas(&s, "base").await;
    let stranger = as_agent(&audience, "sales-bot").await;
    // The base policy (the servers' own allow-all, no persona bundle): echo and add pass.
    assert!(
        reasons(&stranger, "fx__echo", json!({"text": "s"}))
            .await
            .is_empty()
    );
    assert!(
        reasons(&stranger, "mail__add", json!({"a": 1, "b": 2}))
            .await
            .is_empty()
    );
    assert_eq!(recorded_calls(&s.path("fx.jsonl")).len(), 1);
    let logged = personas_logged(&s);
    assert!(
        logged
            .iter()
            .all(|(_, p, a)| p.is_null() && a == &json!(true)),
        "{logged:?}"
    );
    stranger.cancel().await.unwrap();
    stop(gavel).await;
}

/// A `gavel run` on this setup with `[identity] agent.id = agent`, its
/// own config file, publishing status in `state`.
async fn run_as(s: &Setup, agent: &str, unmatched: &str, state: &Path) -> Client {
    let config = s.path(&format!("{agent}.toml"));
    std::fs::write(
        &config,
        persona_config(s, &format!("[identity.agent]\nid = {agent:?}\n"), unmatched),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--log-file")
        .arg(s.path(&format!("{agent}.log")))
        .env("GAVEL_STATE_DIR", state);
    connect_cmd(cmd, TestHost::new()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn over_stdio_the_configured_agent_picks_the_persona() {
    let s = Setup::blank();
    let state = s.path("state");
    let hr = run_as(&s, "hr-bot", "deny", &state).await;
    let it = run_as(&s, "it-bot", "deny", &state).await;
    let stranger = run_as(&s, "sales-bot", "deny", &state).await;
    let base = run_as(&s, "ops-bot", "base", &state).await;
    assert_eq!(
        reasons(&hr, "fx__echo", json!({"text": "a"})).await,
        ["hr_no_echo"]
    );
    assert!(
        reasons(&it, "fx__echo", json!({"text": "b"}))
            .await
            .is_empty()
    );
    assert_eq!(
        reasons(&it, "mail__add", json!({"a": 1, "b": 2})).await,
        ["it_no_add"]
    );
    assert_eq!(
        reasons(&hr, "mail__echo", json!({"text": "c"})).await,
        ["persona_server_denied"]
    );
    assert_eq!(
        reasons(&stranger, "fx__echo", json!({"text": "d"})).await,
        ["persona_unmatched"]
    );
    assert!(
        reasons(&base, "fx__echo", json!({"text": "e"}))
            .await
            .is_empty()
    );
    let logged = personas_logged(&s);
    assert!(logged.contains(&(json!("hr-bot"), json!("hr"), json!(false))));
    assert!(logged.contains(&(json!("ops-bot"), Value::Null, json!(true))));
    // `gavel status` lists each persona's policy under the servers it reaches.
    let out = gavel_cmd_env(&["status", "--json"], &state);
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.len(), 4);
    let fx = &all[0]["policies"]["fx"];
    assert_eq!(fx["personas"]["hr"]["policy"], "rego", "{fx}");
    let names = |p: &Value| -> Vec<String> {
        p["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                format!(
                    "{}@{}",
                    b["name"].as_str().unwrap(),
                    b["active_revision"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&fx["personas"]["hr"]), ["base@base-1", "hr@hr-1"]);
    assert_eq!(names(&fx["personas"]["it"]), ["base@base-1", "it@it-1"]);
    assert!(all[0]["policies"]["mail"]["personas"].get("hr").is_none());
    let text = String::from_utf8(gavel_cmd_env(&["status"], &state).stdout).unwrap();
    assert!(
        text.contains(
            "persona hr: policy rego, bundles base@base-1 (resource), hr@hr-1 (identity)"
        ),
        "{text}"
    );
    for c in [hr, it, stranger, base] {
        c.cancel().await.unwrap();
    }
}

fn gavel_cmd_env(args: &[&str], state: &Path) -> std::process::Output {
    let out = std::process::Command::new(GAVEL)
        .args(args)
        .env("GAVEL_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// After the HTTP run: explain, report and replay see the personas apart.
fn governance_tells_personas_apart(s: &Setup) {
    let config = s.config().display().to_string();
    // config check builds and reports each persona's policy too.
    let out = std::process::Command::new(GAVEL)
        .args(["config", "check", "--config", &config])
        .env("GAVEL_E2E_JWT_SECRET", JWT_SECRET)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("policy fx@hr: base@base-1,hr@hr-1"), "{err}");
    assert!(err.contains("policy mail@it: base@base-1,it@it-1"), "{err}");
    // gavel test --config --server: a case's agent is decided as its persona.
    let fixture = s.path("fx-cases.json");
    let case = |name: &str, agent: &str, expect: Value| json!({"name": name, "input": {"agent": {"id": agent}, "action": {"tool": "echo"}}, "expect": expect});
    let cases = json!({"cases": [
        case("hr may not echo", "hr-bot", json!({"allow": false, "reasons": ["hr_no_echo"]})),
        case("it may echo", "it-bot", json!({"allow": true})),
        case("a stranger is refused", "sales-bot", json!({"allow": false, "reasons": ["persona_unmatched"]})),
    ]});
    std::fs::write(&fixture, cases.to_string()).unwrap();
    let out = std::process::Command::new(GAVEL)
        .args(["test", "--config", &config, "--server", "fx"])
        .arg(&fixture)
        .env("GAVEL_E2E_JWT_SECRET", JWT_SECRET)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PASS: 3/3"), "{text}");
    // explain --persona: each persona's own layers and probe outcomes.
    let (ok, hr, err) = gavel(&["explain", "--config", &config, "--persona", "hr"]);
    assert!(ok, "{err}");
    let (ok, it, err) = gavel(&["explain", "--config", &config, "--persona", "it"]);
    assert!(ok, "{err}");
    assert!(
        hr.contains("Persona hr") && hr.contains("hr — bundle hr") && !hr.contains("Server mail"),
        "{hr}"
    );
    assert!(
        it.contains("Persona it") && it.contains("Server mail") && it.contains("it — bundle it"),
        "{it}"
    );
    assert!(
        hr.contains("hr_no_echo") && !it.contains("hr_no_echo"),
        "{hr}\n---\n{it}"
    );
    let (ok, _, err) = gavel(&["explain", "--config", &config, "--persona", "sales"]);
    assert!(!ok && err.contains("personas: hr, it"), "{err}");
    // explain --decision: a persona's decision against that persona's layers.
    let denied = records(&s.path("decisions.jsonl"))
        .into_iter()
        .find(|r| r["labels"]["persona"] == "hr" && r["input"]["action"]["tool"] == "echo")
        .unwrap();
    let id = denied["decision_id"].as_str().unwrap();
    let (ok, why, err) = gavel(&["explain", "--config", &config, "--decision", id]);
    assert!(ok, "{err}");
    // (The base layer alone would allow: re-evaluated with hr's layers.)
    assert!(
        why.contains("Re-evaluated unchanged: denied (hr_no_echo), as logged."),
        "{why}"
    );
    // report: outcomes per persona.
    let page = s.path("report.html");
    let log = s.path("decisions.jsonl").display().to_string();
    let (ok, _, err) = gavel(&["report", &log, "--output", page.to_str().unwrap()]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"personas\""), "no persona table");
    for row in [
        "data-persona=\"hr\" data-allowed=\"1\" data-denied=\"2\"",
        "data-persona=\"it\" data-allowed=\"1\" data-denied=\"1\"",
        "data-persona=\"(none)\" data-allowed=\"0\" data-denied=\"1\"",
    ] {
        assert!(html.contains(row), "{row} missing");
    }
    // replay --persona hr with a candidate hr bundle that allows echo: only
    // hr's records are re-decided, and its echo denial flips.
    let cand = common::policy::bundle(
        &s.path("candidate"),
        "hr",
        "persona/hr",
        json!({"metadata": {"gavel": {"layer": "identity"}}}),
        "package persona.hr\n\ndecision := {\"allow\": true}\n",
    );
    let (_, out, err) = gavel(&[
        "replay",
        "--log",
        &log,
        "--config",
        &config,
        "--persona",
        "hr",
        "--candidate",
        cand.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    // hr: echo (deny→allow), add (unchanged), mail__add (refused by gavel
    // before the policy: stands).
    assert_eq!(v["deny_to_allow"], 1, "{v}");
    assert_eq!(v["unchanged"], 1, "{v}");
    assert_eq!(v["gavel_side"], 1, "{v}");
    assert_eq!(v["other_persona"], 3, "it's two and the stranger's: {v}");
    assert!(
        v["by_tool"]
            .as_object()
            .unwrap()
            .contains_key("deny→allow fx/echo"),
        "{v}"
    );
}

/// A persona's registry bundle at `revision` (root `persona/hr`), denying
/// echo when `deny_echo`, signed with k1 when `signed`: its tarball.
fn hr_tarball(s: &Setup, revision: &str, deny_echo: bool, signed: bool) -> PathBuf {
    let rego = if deny_echo {
        "package persona.hr\n\ndefault decision := {\"allow\": true}\n\ndecision := {\"allow\": false, \"reasons\": [\"hr_no_echo\"]} if input.action.tool == \"echo\"\n"
    } else {
        "package persona.hr\n\ndecision := {\"allow\": true}\n"
    };
    let dir = common::policy::bundle(
        &s.path(revision),
        "hr",
        "persona/hr",
        json!({"revision": revision}),
        rego,
    );
    if signed {
        common::oci::sign(s, &dir, "k1", "k1.secret");
    }
    common::oci::tarball(s, &dir)
}

/// The status of persona hr's registry bundle on server fx.
fn hr_oci(s: &Setup) -> Value {
    common::oci::status(&s.path("state"))["policies"]["fx"]["personas"]["hr"]["oci"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_persona_bundle_is_verified_pulled_and_hot_reloaded() {
    let reg = common::registry::TestRegistry::start();
    let s = Setup::blank();
    common::oci::keys(&s);
    let tag = format!("oci://{}/policies/hr:live", reg.host());
    common::oci::push(&hr_tarball(&s, "r1", false, true), &tag);
    s.write_config(&format!(
        "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[identity.agent]\nid = \"hr-bot\"\n\n{}\
         [oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n\
         [oci.registries.\"{}\"]\ninsecure = true\n\n{}keys = [\"k1\"]\n\n\
         [personas.hr]\nagents = [\"hr-*\"]\nbundles = [{tag:?}]\n",
        s.path("k1.secret").display().to_string(),
        s.decision_log_table(),
        s.path("cache").display().to_string(),
        reg.host(),
        fixture_server("fx", &[], &s.path("fx.jsonl")),
    ));
    let c = connect_cmd(common::oci::launch(&s), TestHost::new()).await;
    eventually("r1 active for hr", || hr_oci(&s)["active_revision"] == "r1").await;
    assert_eq!(hr_oci(&s)["signer_keyid"], "k1");
    assert!(reasons(&c, "echo", json!({"text": "a"})).await.is_empty());
    // A new signed revision under the tag: pulled, verified, activated.
    common::oci::push(&hr_tarball(&s, "r2", true, true), &tag);
    eventually("r2 active for hr", || hr_oci(&s)["active_revision"] == "r2").await;
    assert_eq!(
        reasons(&c, "echo", json!({"text": "b"})).await,
        ["hr_no_echo"]
    );
    let st = common::oci::status(&s.path("state"));
    let hr = &st["policies"]["fx"]["personas"]["hr"];
    assert_eq!(hr["bundles"][0]["active_revision"], "r2", "{hr}");
    // An unsigned revision is refused; r2 keeps deciding.
    common::oci::push(&hr_tarball(&s, "r3", false, false), &tag);
    eventually("the unsigned r3 refused", || {
        hr_oci(&s)["message"]
            .as_str()
            .is_some_and(|m| m.contains("not signed"))
    })
    .await;
    assert_eq!(hr_oci(&s)["active_revision"], "r2");
    assert_eq!(
        reasons(&c, "echo", json!({"text": "c"})).await,
        ["hr_no_echo"]
    );
    let logged = personas_logged(&s);
    assert!(logged.iter().all(|(_, p, _)| p == "hr"), "{logged:?}");
    c.cancel().await.unwrap();
    // `gavel bundle pull --server` checks a persona's bundle in the
    // persona's policy for that server, with the server's keys.
    let pull = || {
        gavel_cmd(&[
            "bundle",
            "pull",
            &tag,
            "--config",
            s.config().to_str().unwrap(),
            "--server",
            "fx",
        ])
    };
    let out = pull();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not signed"), "{err}");
    common::oci::push(&hr_tarball(&s, "r4", true, true), &tag);
    let out = stdout_ok(pull());
    assert!(out.contains("verified for server \"fx\""), "{out}");
    // Registry gone: a restart decides with the persona's cached bundle.
    drop(reg);
    let c = connect_cmd(common::oci::launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "echo", json!({"text": "d"})).await,
        ["hr_no_echo"]
    );
    eventually("r4 from the cache in the status", || {
        let st = hr_oci(&s);
        st["active_revision"] == "r4" && st["source"] == "cache"
    })
    .await;
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_steps_name_the_persona_of_the_decision_they_settle() {
    let s = common::approval::setup("");
    common::approval::add_config(
        &s,
        "[identity.agent]\nid = \"hr-bot\"\n\n[personas.hr]\nagents = [\"hr-*\"]\n",
    );
    let client = s.connect(TestHost::new()).await;
    let ok = call(&client, "destructive_delete", json!({"path": "/tmp/x"}))
        .await
        .unwrap();
    assert_ne!(ok.is_error, Some(true), "{}", text(&ok));
    client.cancel().await.unwrap();
    assert_eq!(common::approval::steps(&s), ["requested", "approved"]);
    let records = s.decisions();
    assert_eq!(records.len(), 3, "the decision and its two steps");
    for r in &records {
        assert_eq!(r["labels"]["persona"], "hr", "{r}");
    }
    // The report counts the approved call for hr (from its final step).
    let page = s.path("report.html");
    let log = s.path("decisions.jsonl").display().to_string();
    let (ok, _, err) = gavel(&["report", &log, "--output", page.to_str().unwrap()]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("data-persona=\"hr\" data-allowed=\"1\" data-denied=\"0\""),
        "persona row missing"
    );
}
