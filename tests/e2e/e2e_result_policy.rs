//! End to end: result policy (docs/policy.md, "Result policy"). The
//! example's filesystem bundle in front of the real npm server-filesystem
//! (config written like servers.toml, in a temp dir): search_files and
//! directory_tree listings filtered per entry by path classification and the
//! user's authorized classes, emails and card numbers redacted from a text
//! result and its structuredContent mirror. The Rust fixture: a JSON mirror
//! of structuredContent redacted by pointer and pattern, a result denial
//! that says the call happened, a failing result rule that withholds the
//! result. Every result decision is in the log, linked to its request; then
//! `gavel replay` with a candidate that redacts more, `gavel report` and
//! `gavel explain --decision` read the result records.

use crate::common;

use common::*;
use serde_json::{Value, json};

const CONTACTS: &str = "Write to ann@example.com; card 4111 1111 1111 1111 on file.\n";

/// The example's bundles and demo data, server-filesystem as `fs` with the
/// filesystem bundle alone, a user authorized for `classes`.
fn filesystem(classes: &str) -> Setup {
    let s = Setup::blank();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["bundles", "demo-data"] {
        copy_dir(&repo.join(dir), &s.path(dir));
    }
    std::fs::write(s.path("demo-data/public/contacts.txt"), CONTACTS).unwrap();
    std::fs::write(s.path("demo-data/confidential/salaries.txt"), "x").unwrap();
    std::os::unix::fs::symlink(repo.join(".deps"), s.path(".deps")).unwrap();
    s.write_config(&format!(
        "[identity.user]\nid = \"ann\"\ndata_classifications_authorized = {classes}\n\n\
         [log]\ndecisions = \"decisions.jsonl\"\n\n\
         [servers.fs]\ncommand = \"node\"\n\
         args = [\".deps/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js\", \"demo-data\"]\n\
         path_root = \"demo-data\"\nstartup_timeout = \"30s\"\nbundles = [\"bundles/filesystem\"]\n"
    ));
    s
}

fn structured_text(r: &rmcp::model::CallToolResult) -> String {
    r.structured_content
        .as_ref()
        .and_then(|v| v["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The decision log's result records of requests (not of resource lists,
/// which e2e_resource_lists covers), and its request decisions' ids.
fn split_log(s: &Setup) -> (Vec<Value>, Vec<String>) {
    let all = records(&s.path("decisions.jsonl"));
    let ids = all
        .iter()
        .filter(|r| r.get("result_of").is_none())
        .filter_map(|r| r["decision_id"].as_str().map(String::from))
        .collect();
    (
        all.into_iter()
            .filter(|r| r.get("result_of").is_some_and(|of| !of.is_null()))
            .collect(),
        ids,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_are_filtered_per_entry_and_texts_redacted_against_the_real_server() {
    let s = filesystem("[\"public\"]");
    let client = s.connect(TestHost::bare()).await;
    let r = call(
        &client,
        "search_files",
        json!({"path": ".", "pattern": "**/*.txt"}),
    )
    .await
    .unwrap();
    let listed = text(&r);
    assert_ne!(r.is_error, Some(true), "{listed}");
    assert!(
        listed.contains("public/readme.txt") && listed.contains("public/contacts.txt"),
        "{listed}"
    );
    assert!(
        !listed.contains("confidential"),
        "a confidential entry was listed: {listed}"
    );
    assert_eq!(
        structured_text(&r),
        listed,
        "the structured mirror is filtered the same"
    );

    let r = call(&client, "directory_tree", json!({"path": "."}))
        .await
        .unwrap();
    let tree: Value =
        serde_json::from_str(&text(&r)).unwrap_or_else(|e| panic!("{e}: {}", text(&r)));
    let names: Vec<&str> = tree
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"public") && !names.contains(&"confidential"),
        "{tree}"
    );
    assert_eq!(structured_text(&r), text(&r));

    let r = call(
        &client,
        "read_text_file",
        json!({"path": "public/contacts.txt"}),
    )
    .await
    .unwrap();
    let t = text(&r);
    assert!(!t.contains("ann@example.com") && !t.contains("4111"), "{t}");
    assert!(
        t.contains("[REDACTED:email]") && t.contains("[REDACTED:card_number]"),
        "{t}"
    );
    assert_eq!(structured_text(&r), t, "structuredContent is redacted too");
    client.cancel().await.unwrap();

    let (results, requests) = split_log(&s);
    assert_eq!(results.len(), 3, "one result record per call: {results:?}");
    for r in &results {
        let of = r["result_of"].as_str().unwrap();
        assert!(
            requests.iter().any(|id| id == of),
            "{of} is no request's decision id"
        );
        assert_eq!(r["result"]["outcome"], "modified", "{r}");
    }
    let log = std::fs::read_to_string(s.path("decisions.jsonl")).unwrap();
    assert!(
        !log.contains("ann@example.com") && !log.contains("salaries"),
        "removed values logged"
    );

    // Someone cleared for confidential sees it.
    let s = filesystem("[\"public\", \"confidential\"]");
    let client = s.connect(TestHost::bare()).await;
    let r = call(
        &client,
        "search_files",
        json!({"path": ".", "pattern": "**/*.txt"}),
    )
    .await
    .unwrap();
    assert!(
        text(&r).contains("confidential/salaries.txt"),
        "{}",
        text(&r)
    );
    client.cancel().await.unwrap();
}

/// A fixture server `fx` with one bundle whose Rego is `rego`.
fn fixture(rego: &str) -> Setup {
    Setup::with(|s| {
        let b = policy::bundle(&s.path("b"), "fxb", "fx", json!({}), rego);
        std::fs::write(
            b.join("fx/data.json"),
            r#"{"result_patterns": {"email": "[a-z]+@[a-z]+\\.[a-z]+"}}"#,
        )
        .unwrap();
        policy::config(s, &[&b], "", "")
    })
}

const FIXTURE_POLICY: &str = r#"package fx
decision := {"allow": true}
default result := {}
result := {"redact": {"patterns": ["email"], "pointers": ["/secret"]}} if input.action.tool == "structured"
result := {"deny": true, "reasons": ["echo_output_refused"]} if input.action.tool == "echo"
result := {"redact": {"patterns": ["undeclared"]}} if input.action.tool == "add"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_json_mirror_is_redacted_denials_say_the_call_happened_and_errors_withhold() {
    let s = fixture(FIXTURE_POLICY);
    let client = s.connect(TestHost::bare()).await;
    let r = call(
        &client,
        "structured",
        json!({"value": "mail bob@example.org"}),
    )
    .await
    .unwrap();
    let sc = r.structured_content.clone().unwrap();
    assert_eq!(sc["value"], "mail [REDACTED:email]");
    let mirror: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(mirror, sc, "the text mirror follows structuredContent");

    let r = call(&client, "echo", json!({"text": "the output"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(
        t.contains("the call itself has happened") && t.contains("already been carried out"),
        "{t}"
    );
    assert!(
        t.contains("echo_output_refused") && !t.contains("the output"),
        "{t}"
    );

    let r = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(
        t.contains("policy_bad_decision") && t.contains("undeclared"),
        "{t}"
    );
    assert!(!t.contains("\n3\n") && !t.ends_with('3'), "{t}");
    // No result rule answers for this one: it passes as the upstream sent it.
    let r = call(&client, "structured", json!({"value": "plain"}))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["value"], "plain");
    client.cancel().await.unwrap();

    let (results, requests) = split_log(&s);
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| r["result"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["modified", "deny", "error", "pass"]);
    for r in &results {
        assert!(
            requests
                .iter()
                .any(|id| Some(id.as_str()) == r["result_of"].as_str())
        );
    }
    // The arguments are the request's (logged, masked, as in its own
    // record); the output and result never hold what was redacted or
    // withheld.
    let logged: Vec<(&Value, &Value)> = results
        .iter()
        .map(|r| (&r["input"]["output"], &r["result"]))
        .collect();
    let logged = serde_json::to_string(&logged).unwrap();
    assert!(
        !logged.contains("bob@example.org") && !logged.contains("the output"),
        "{logged}"
    );

    // gavel replay: a candidate that also redacts "plain" reports it.
    let cand = policy::bundle(&s.path("cand"), "fxb", "fx", json!({}), FIXTURE_POLICY);
    std::fs::write(
        cand.join("fx/data.json"),
        r#"{"result_patterns": {"email": "[a-z]+@[a-z]+\\.[a-z]+|plain"}}"#,
    )
    .unwrap();
    let logp = s.path("decisions.jsonl").display().to_string();
    let (ok, out, err) = replay_bundle(&s.path("decisions.jsonl"), &cand);
    assert!(ok, "{err}");
    // The four calls' results and the fixture's resource list.
    assert!(out.contains("replayed 5 result records"), "{out}");
    assert!(out.contains("redacts more fx/structured email"), "{out}");
    assert!(out.contains("not replayable     2"), "{out}");

    // gavel report: the result decisions, by rule and tool.
    let page = s.path("report.html").display().to_string();
    let (ok, _, err) = gavel(&["report", &logp, "-o", &page]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("id=\"result-redactions\"") && html.contains("fx/structured"),
        "{html}"
    );
    assert!(html.contains("id=\"result-denials\"") && html.contains("echo_output_refused"));

    // gavel explain --decision: a request with its result, and a result alone.
    let of = results[0]["result_of"].as_str().unwrap();
    let (ok, out, err) = gavel(&["explain", "--decision", of, "--log", &logp]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Results") && out.contains("Redacted pattern"),
        "{out}"
    );
    let id = results[1]["decision_id"].as_str().unwrap();
    let (ok, out, err) = gavel(&["explain", "--decision", id, "--log", &logp]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Result decision") && out.contains("denied"),
        "{out}"
    );
}
