//! End to end: data flow across a session (`input.context.data_classes_seen`)
//! with the example as shipped — `servers.toml`, `bundles/`, `demo-data/` —
//! against the real npm server-filesystem. A session that read confidential
//! data (by reading the file, or by a listing, tree or search that names it)
//! is refused a write to `demo-data/public/` by the example compliance layer,
//! with the reason; a fresh session (a new gavel process) makes the same
//! write; the refused write's record carries what the session had seen.

use crate::common;

use common::*;
use serde_json::{Value, json};

const PLAN: &str = "Quarterly numbers: not for agents without clearance.";

/// The example in a temp dir; `cleared`: its user may read `confidential`
/// (the shipped demo user may not).
fn example(cleared: bool) -> Setup {
    let s = Setup::blank();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["bundles", "demo-data"] {
        copy_dir(&repo.join(dir), &s.path(dir));
    }
    std::os::unix::fs::symlink(repo.join(".deps"), s.path(".deps")).unwrap();
    let mut config = std::fs::read_to_string(repo.join("servers.toml")).unwrap();
    if cleared {
        let shipped = r#"data_classifications_authorized = ["public", "internal"]"#;
        assert!(
            config.contains(shipped),
            "servers.toml changed its [identity.user]"
        );
        config = config.replace(
            shipped,
            r#"data_classifications_authorized = ["public", "internal", "confidential"]"#,
        );
    }
    s.write_config(&config);
    s
}

fn write(name: &str) -> Value {
    json!({"path": format!("public/{name}"), "content": "copied"})
}

/// The decision records of the log (result records, `result_of`, apart).
fn decisions(s: &Setup) -> Vec<Value> {
    records(&s.path(".gavel/decisions.jsonl"))
        .into_iter()
        .filter(|r| r.get("result_of").is_none())
        .collect()
}

/// Asserts `r` is the compliance layer's refusal of a write after a
/// confidential read, and that nothing was written.
fn assert_refused_egress(s: &Setup, r: &rmcp::model::CallToolResult, name: &str) {
    let t = text(r);
    assert_eq!(r.is_error, Some(true), "{t}");
    assert!(t.starts_with("Denied by policy"), "{t}");
    assert!(t.contains("egress_after_sensitive_read"), "{t}");
    assert!(
        t.contains("confidential"),
        "the denial names the class: {t}"
    );
    assert!(!s.path("demo-data/public").join(name).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_confidential_read_the_session_cannot_write_to_public_and_a_fresh_session_can() {
    let s = example(true);
    let client = s.connect(TestHost::bare()).await;
    let r = call(&client, "filesystem__write_file", write("before.txt"))
        .await
        .unwrap();
    assert_ne!(
        r.is_error,
        Some(true),
        "a write before any read: {}",
        text(&r)
    );
    let r = call(
        &client,
        "filesystem__read_text_file",
        json!({"path": "./confidential//plan.txt"}),
    )
    .await
    .unwrap();
    assert_eq!(text(&r).trim_end(), PLAN, "the cleared user reads the plan");
    let r = call(&client, "filesystem__write_file", write("leak.txt"))
        .await
        .unwrap();
    assert_refused_egress(&s, &r, "leak.txt");
    let r = call(
        &client,
        "filesystem__read_text_file",
        json!({"path": "public/readme.txt"}),
    )
    .await
    .unwrap();
    assert_ne!(r.is_error, Some(true), "reads go on: {}", text(&r));
    client.cancel().await.unwrap();

    // The refused write's record carries what the session had seen; the
    // write before the read saw nothing.
    let log = decisions(&s);
    let writes: Vec<&Value> = log
        .iter()
        .filter(|r| r["input"]["action"]["tool"] == "write_file")
        .collect();
    assert_eq!(writes.len(), 2, "{log:?}");
    assert_eq!(
        writes[0]["input"]["context"]["data_classes_seen"],
        json!([])
    );
    assert_eq!(
        writes[1]["input"]["context"]["data_classes_seen"],
        json!([{"class": "confidential", "server": "filesystem", "tool": "read_text_file"}]),
        "{}",
        writes[1]
    );
    assert_eq!(writes[1]["result"]["allow"], false, "{}", writes[1]);

    // A fresh session (a new gavel process) makes the same write.
    let client = s.connect(TestHost::bare()).await;
    let r = call(&client, "filesystem__write_file", write("leak.txt"))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    client.cancel().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(s.path("demo-data/public/leak.txt")).unwrap(),
        "copied"
    );
}

/// A cleared user who never reads the file: a tree, a listing or a search
/// that names it is enough for the session to have seen the class (the
/// answer's paths are classified as arguments are). A listing of `public/`
/// names nothing classified. For the shipped, uncleared demo user the
/// example's result layer filters those entries out of the same answers:
/// what the host never got was never seen, and the write goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_names_confidential_files_closes_the_way_out() {
    let uncleared = example(false);
    let client = uncleared.connect(TestHost::bare()).await;
    let r = call(&client, "filesystem__directory_tree", json!({"path": "."}))
        .await
        .unwrap();
    assert!(text(&r).contains("readme.txt"), "{}", text(&r));
    assert!(!text(&r).contains("plan.txt"), "filtered: {}", text(&r));
    let r = call(&client, "filesystem__write_file", write("after-tree.txt"))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "nothing seen: {}", text(&r));
    client.cancel().await.unwrap();
    let last = decisions(&uncleared).pop().unwrap();
    assert_eq!(last["input"]["context"]["data_classes_seen"], json!([]));

    let s = example(true);
    let seen = [
        ("filesystem__directory_tree", json!({"path": "."})),
        ("filesystem__list_directory", json!({"path": "./"})),
        (
            "filesystem__search_files",
            json!({"path": ".", "pattern": "**/plan*"}),
        ),
        (
            "filesystem__list_directory_with_sizes",
            json!({"path": s.path("demo-data").display().to_string()}),
        ),
    ];
    for (i, (tool, args)) in seen.iter().enumerate() {
        let client = s.connect(TestHost::bare()).await;
        let r = call(
            &client,
            "filesystem__list_directory",
            json!({"path": "public"}),
        )
        .await
        .unwrap();
        assert!(text(&r).contains("readme.txt"), "{}", text(&r));
        let name = format!("x{i}.txt");
        let r = call(&client, "filesystem__write_file", write(&name))
            .await
            .unwrap();
        assert_ne!(
            r.is_error,
            Some(true),
            "public/ names nothing classified: {}",
            text(&r)
        );
        let r = call(&client, tool, args.clone()).await.unwrap();
        assert!(text(&r).contains("confidential"), "{tool}: {}", text(&r));
        let r = call(&client, "filesystem__write_file", write("leak.txt"))
            .await
            .unwrap();
        assert_refused_egress(&s, &r, "leak.txt");
        client.cancel().await.unwrap();
        let last = decisions(&s).pop().unwrap();
        let upstream_tool = tool.trim_start_matches("filesystem__");
        assert_eq!(
            last["input"]["context"]["data_classes_seen"],
            json!([{"class": "confidential", "server": "filesystem", "tool": upstream_tool}]),
            "{last}"
        );
    }
}

/// Over `gavel serve`, what a session has seen is its own: one MCP session
/// reads the confidential file and is refused the write; a second session
/// of the same process makes it; the first stays refused.
#[tokio::test(flavor = "multi_thread")]
async fn each_http_session_has_its_own_data_flow() {
    let s = example(true);
    let (mut child, port) = gavel_serve(&s, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let a = http_client(&url, None, None).await;
    let b = http_client(&url, None, None).await;
    let r = call(
        &a,
        "filesystem__read_text_file",
        json!({"path": "confidential/plan.txt"}),
    )
    .await
    .unwrap();
    assert_eq!(text(&r).trim_end(), PLAN);
    let r = call(&a, "filesystem__write_file", write("a.txt"))
        .await
        .unwrap();
    assert_refused_egress(&s, &r, "a.txt");
    let r = call(&b, "filesystem__write_file", write("b.txt"))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "another session: {}", text(&r));
    assert!(s.path("demo-data/public/b.txt").exists());
    let r = call(&a, "filesystem__write_file", write("a.txt"))
        .await
        .unwrap();
    assert_refused_egress(&s, &r, "a.txt");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    child.kill().await.unwrap();
}
