//! End to end against a third-party server: npm `@modelcontextprotocol/server-everything`
//! (installed by `scripts/setup`), wrapped with `gavel wrap` exactly as a
//! host entry would be prefixed.

use crate::common;

use std::path::PathBuf;

use common::*;
use rmcp::model::*;
use serde_json::json;

pub(crate) fn everything() -> PathBuf {
    let p = std::env::var_os("GAVEL_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
                ".deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            )
        });
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn wrap_server_everything_from_a_real_client() {
    let server = everything();
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(["wrap", "--name", "everything", "--", "node"])
        .arg(&server)
        .arg("stdio");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect_cmd(cmd, host).await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );
    let names = tool_names(&client).await;
    for expected in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
    let r = call(&client, "echo", json!({"message": "through gavel"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "Echo: through gavel");
    let r = call(&client, "get-sum", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert!(text(&r).contains("42"), "{}", text(&r));

    // Progress from a third-party server reaches the host on its own token.
    let (r, host_token) = call_with_progress(
        &client,
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 3}),
    )
    .await;
    assert!(
        text(&r).to_lowercase().contains("completed"),
        "{}",
        text(&r)
    );
    eventually("progress from server-everything", || {
        !seen.lock().unwrap().progress.is_empty()
    })
    .await;
    assert!(
        seen.lock()
            .unwrap()
            .progress
            .iter()
            .all(|p| p.progress_token == host_token)
    );

    // Resources and prompts pass through too.
    let resources = client.list_all_resources().await.unwrap();
    assert!(!resources.is_empty());
    let first = resources[0].uri.clone();
    let read = client
        .peer()
        .read_resource(ReadResourceRequestParams::new(first.clone()))
        .await
        .unwrap();
    assert!(serde_json::to_string(&read).unwrap().contains(&first));
    let prompts = client.list_all_prompts().await.unwrap();
    assert!(!prompts.is_empty());
}
