//! End to end: the decision log's operational guarantees through the real
//! binary — reopening on SIGHUP in `gavel serve`, failing closed when a
//! record cannot be written, and rotation at a configured size.

mod common;

use common::policy::*;
use common::*;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn serve_survives_sighup_and_reopens_the_decision_log() {
    let s = Setup::new("");
    std::fs::write(s.config(), config(&s, &[&fixture_bundle()], "", "")).unwrap();
    let port = free_port();
    let state = s.path("state");
    let mut gavel = gavel_serve(&s, port, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let client = TestHost::new()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://127.0.0.1:{port}/mcp"
        )))
        .await
        .unwrap();
    call(&client, "echo", json!({"text": "before"}))
        .await
        .unwrap();
    std::fs::rename(s.path("decisions.jsonl"), s.path("decisions.jsonl.old")).unwrap();
    let pid = gavel.id().unwrap() as i32;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    eventually("gavel reopened the log", || {
        s.log_text().contains("decision log reopened")
    })
    .await;
    assert!(
        gavel.try_wait().unwrap().is_none(),
        "gavel serve must survive SIGHUP"
    );
    let r = call(&client, "echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "after");
    let new = decisions(&s);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        new[0]["input"]["action"]["args"]["text"],
        "**masked-by-bundle**"
    );
    let old = records(&s.path("decisions.jsonl.old"));
    assert_eq!(old.len(), 1, "the first record stayed in the moved file");
    assert_ne!(old[0]["decision_id"], new[0]["decision_id"]);
    client.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}
