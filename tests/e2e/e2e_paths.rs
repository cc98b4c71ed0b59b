//! End to end: every request path that can reach an upstream (or the host)
//! is decided — subscribe, unsubscribe, completion, the upstream's own
//! elicitation and sampling — and a denied one never arrives: the fixture
//! records what it receives, the test host what it is asked. A request type
//! the bundle does not handle falls to default deny (`no_decision`). And
//! file paths: every spelling of a classified file that the real
//! server-filesystem reads as that file is denied as the plain spelling is
//! (gavel classifies canonical forms).
// resources/subscribe is legacy-era MCP (deprecated in 2026-07-28), which is what gavel serves.
#![allow(deprecated)]

use crate::common;

use common::policy::*;
use common::*;
use rmcp::model::*;
use serde_json::{Value, json};

/// Allows tool calls and subscribing to hello; denies unsubscribing,
/// subscribing to anything else, completion and the upstream's elicitation
/// and sampling; says nothing about resource reads and prompts.
const PATHS: &str = r#"package paths

decision := {"allow": true} if input.action.type == "tool_call"

decision := {"allow": true} if {
	input.action.type == "resource_subscribe"
	not input.action.args.unsubscribe
	input.action.tool == "fixture://static/hello"
}

decision := {"allow": false, "reasons": ["subscribe_denied"]} if {
	input.action.type == "resource_subscribe"
	not input.action.args.unsubscribe
	input.action.tool != "fixture://static/hello"
}

decision := {"allow": false, "reasons": ["unsubscribe_denied"]} if {
	input.action.type == "resource_subscribe"
	input.action.args.unsubscribe == true
}

decision := {"allow": false, "reasons": ["completion_denied"]} if input.action.type == "completion"

decision := {"allow": false, "reasons": ["elicitation_denied"]} if input.action.type == "elicitation_request"

decision := {"allow": false, "reasons": ["sampling_denied"]} if input.action.type == "sampling_request"
"#;

fn reason(e: &rmcp::ServiceError) -> String {
    match e {
        rmcp::ServiceError::McpError(d) => d
            .data
            .as_ref()
            .and_then(|v| v["decision"]["reasons"][0].as_str())
            .unwrap_or("")
            .to_string(),
        other => panic!("not a JSON-RPC error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_is_decided_and_a_denied_request_never_arrives() {
    let s = Setup::with(|s| {
        let b = bundle(s.dir.path(), "paths", "paths", json!({}), PATHS);
        config(&s, &[&b], "", "")
    });
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    client.list_all_tools().await.unwrap();
    let peer = client.peer();

    // subscribe: allowed for hello (forwarded), denied for blob.
    peer.subscribe(SubscribeRequestParams::new("fixture://static/hello"))
        .await
        .unwrap();
    let e = peer
        .subscribe(SubscribeRequestParams::new("fixture://static/blob"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), Some(403), "{e}");
    assert_eq!(reason(&e), "subscribe_denied");
    // unsubscribe: denied, so the upstream stays subscribed.
    let e = peer
        .unsubscribe(UnsubscribeRequestParams::new("fixture://static/hello"))
        .await
        .unwrap_err();
    assert_eq!(
        (error_code(&e), reason(&e).as_str()),
        (Some(403), "unsubscribe_denied")
    );
    // completion: denied.
    let e = peer
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("greet"),
            ArgumentInfo::new("name", "al"),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (error_code(&e), reason(&e).as_str()),
        (Some(403), "completion_denied")
    );
    // A type the bundle does not handle: default deny.
    let e = peer
        .read_resource(ReadResourceRequestParams::new("fixture://static/hello"))
        .await
        .unwrap_err();
    assert_eq!(
        (error_code(&e), reason(&e).as_str()),
        (Some(403), "no_decision")
    );
    let e = peer
        .get_prompt(GetPromptRequestParams::new("plain"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "no_decision");

    // The upstream's own requests to the host: denied, the host never asked.
    let r = call(&client, "elicit", json!({"message": "may I?"}))
        .await
        .unwrap();
    assert!(text(&r).contains("elicitation failed"), "{}", text(&r));
    assert!(text(&r).contains("elicitation_denied"), "{}", text(&r));
    let r = call(&client, "sample", json!({"prompt": "hi"}))
        .await
        .unwrap();
    assert!(text(&r).contains("sampling failed"), "{}", text(&r));
    {
        let seen = seen.lock().unwrap();
        assert!(seen.elicitations.is_empty(), "{:?}", seen.elicitations);
        assert!(seen.samplings.is_empty(), "{:?}", seen.samplings);
    }

    let got = records(&s.path("r.jsonl"));
    let methods: Vec<String> = got
        .iter()
        .filter_map(|v| v["method"].as_str().map(String::from))
        .filter(|m| !m.ends_with("/list") && m != "initialize")
        .collect();
    // Only what was allowed arrived: one subscribe (hello) and the two tool calls.
    assert_eq!(
        methods,
        vec!["resources/subscribe", "tools/call", "tools/call"],
        "{got:?}"
    );
    let sub = got
        .iter()
        .find(|v| v["method"] == "resources/subscribe")
        .unwrap();
    assert_eq!(sub["params"]["uri"], "fixture://static/hello");

    // Every decision is in the log with its action type.
    let log = s.decisions();
    let types: Vec<(&str, bool)> = log
        .iter()
        .map(|r| {
            (
                r["input"]["action"]["type"].as_str().unwrap(),
                r["result"]["allow"].as_bool().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("resource_subscribe", true),
        ("resource_subscribe", false),
        ("completion", false),
        ("resource_read", false),
        ("prompt_get", false),
        ("elicitation_request", false),
        ("sampling_request", false),
    ] {
        assert!(types.contains(&expected), "{expected:?} in {types:?}");
    }
    assert!(
        log.iter()
            .any(|r| r["input"]["action"]["args"]["unsubscribe"] == true
                && r["result"]["allow"] == false)
    );
    client.cancel().await.unwrap();
}

/// server-filesystem (npm, installed by scripts/setup).
fn server_filesystem() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".deps/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

/// The shipped filesystem and compliance bundles in front of the real
/// server-filesystem, rooted at `<tmp>/root` (`path_root` too), for a user
/// cleared for `cleared`. The filesystem bundle is the shipped one with one
/// more classified directory whose name is not ASCII (`archiv-ä`, NFC).
fn filesystem_setup(cleared: &str) -> (Setup, std::path::PathBuf) {
    let s = Setup::blank();
    let root = s.path("root");
    for (file, text) in [
        ("confidential/plan.txt", "TOP SECRET plan"),
        ("public/readme.txt", "hello"),
        ("archiv-\u{e4}/alt.txt", "TOP SECRET archive"),
        ("confidential-x/ok.txt", "not classified"),
    ] {
        std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
        std::fs::write(root.join(file), text).unwrap();
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fs_bundle = s.path("filesystem");
    copy_dir(&repo.join("bundles/filesystem"), &fs_bundle);
    let data_file = fs_bundle.join("mcp/filesystem/data.json");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(&data_file).unwrap()).unwrap();
    data["classification"]["paths"]
        .as_array_mut()
        .unwrap()
        .push(json!({"prefix": "archiv-\u{e4}", "classes": ["confidential"]}));
    std::fs::write(&data_file, data.to_string()).unwrap();
    let toml = format!(
        "[identity.user]\nid = \"ada\"\ndata_classifications_authorized = [{cleared}]\n\n\
         [policy]\nshared_bundles = [{:?}]\n\n[log]\ndecisions = {:?}\n\n\
         [servers.fs]\ncommand = \"node\"\nargs = [{:?}, {:?}]\npath_root = {:?}\nbundles = [{:?}]\n",
        repo.join("bundles/compliance").display().to_string(),
        s.path("decisions.jsonl").display().to_string(),
        server_filesystem().display().to_string(),
        root.display().to_string(),
        root.display().to_string(),
        fs_bundle.display().to_string(),
    );
    s.write_config(&toml);
    (s, root)
}

/// Every spelling of a classified file that server-filesystem reads as that
/// file (shown by a cleared user reading it through gavel) is classified and
/// denied for a user who is not cleared, as the plain spelling is — `./`,
/// `//`, `x/../`, a trailing `/`, the absolute path, the NFD spelling of an
/// NFC directory name, an element of `read_multiple_files`' `paths`; a
/// sibling directory that merely starts with the same name is not.
#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_of_a_classified_path_is_denied_through_server_filesystem() {
    let abs = |s: &Setup, p: &str| format!("{}/{p}", s.path("root").display());
    let spellings = |s: &Setup| -> Vec<(&'static str, Value)> {
        let nfd = "archiv-a\u{308}/alt.txt";
        vec![
            ("read_text_file", json!({"path": "confidential/plan.txt"})),
            ("read_text_file", json!({"path": "./confidential/plan.txt"})),
            ("read_text_file", json!({"path": "confidential//plan.txt"})),
            ("read_text_file", json!({"path": "confidential/./plan.txt"})),
            (
                "read_text_file",
                json!({"path": abs(s, "confidential/plan.txt")}),
            ),
            (
                "read_text_file",
                json!({"path": abs(s, "./confidential//plan.txt")}),
            ),
            ("read_text_file", json!({"path": "archiv-\u{e4}/alt.txt"})),
            ("read_text_file", json!({"path": nfd})),
            (
                "read_multiple_files",
                json!({"paths": ["public/readme.txt", "./confidential/plan.txt"]}),
            ),
            ("list_directory", json!({"path": "confidential"})),
            ("list_directory", json!({"path": "confidential/"})),
            ("list_directory", json!({"path": abs(s, "confidential/")})),
        ]
    };

    // Cleared: each spelling reaches the file through the real server.
    let (s, _) = filesystem_setup("\"public\", \"confidential\"");
    let client = s.connect(TestHost::bare()).await;
    for (tool, args) in spellings(&s) {
        let r = call(&client, tool, args.clone()).await.unwrap();
        let t = text(&r);
        assert_ne!(r.is_error, Some(true), "{tool} {args}: {t}");
        assert!(
            t.contains("TOP SECRET") || t.contains("plan.txt"),
            "{tool} {args} names the classified file: {t}"
        );
    }
    client.cancel().await.unwrap();

    // Not cleared: every spelling is denied as confidential.
    let (s, _) = filesystem_setup("\"public\"");
    let client = s.connect(TestHost::bare()).await;
    for (tool, args) in spellings(&s) {
        let r = call(&client, tool, args.clone()).await.unwrap();
        let t = text(&r);
        assert_eq!(r.is_error, Some(true), "{tool} {args}: {t}");
        assert!(
            t.contains("data_class_unauthorized_for_user") && !t.contains("TOP SECRET"),
            "{tool} {args}: {t}"
        );
    }
    // Not within confidential, and readable: allowed.
    for path in ["public/readme.txt", "confidential-x/ok.txt"] {
        let r = call(&client, "read_text_file", json!({"path": path}))
            .await
            .unwrap();
        assert_ne!(r.is_error, Some(true), "{path}: {}", text(&r));
    }
    // A `..` above the root has no canonical form: refused.
    let r = call(
        &client,
        "read_text_file",
        json!({"path": "../root/confidential/plan.txt"}),
    )
    .await
    .unwrap();
    assert!(text(&r).contains("path_unresolvable"), "{}", text(&r));
    client.cancel().await.unwrap();

    // The policy saw the exact arguments and gavel's canonical form.
    let log = s.decisions();
    let abs_rec = log
        .iter()
        .find(|r| r["input"]["action"]["args"]["path"] == abs(&s, "./confidential//plan.txt"))
        .unwrap();
    let a = &abs_rec["input"]["action"];
    assert_eq!(a["canonical_args"]["path"], "confidential/plan.txt", "{a}");
    assert_eq!(a["data_classes_referenced"], json!(["confidential"]), "{a}");
    assert_eq!(a["path_root"], s.path("root").display().to_string(), "{a}");
}
