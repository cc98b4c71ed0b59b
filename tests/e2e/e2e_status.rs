//! `gavel status`: two gavel processes on one machine each publish their state;
//! the command shows both, and forgets one that exits.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn status(dir: &Path) -> Vec<Value> {
    let out = std::process::Command::new(GAVEL)
        .args(["status", "--json"])
        .env("GAVEL_STATE_DIR", dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_publish_policy_and_upstream_state() {
    let s = Setup::with(|s| {
        let bundle = common::policy::fixture_bundle();
        format!(
            "{}bundle = {:?}\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        )
    });
    let state = s.path("state");
    let launch = || {
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args(s.run_args()).env("GAVEL_STATE_DIR", &state);
        cmd
    };
    let a = connect_cmd(launch(), TestHost::new()).await;
    let b = connect_cmd(launch(), TestHost::new()).await;
    a.list_all_tools().await.unwrap();
    b.list_all_tools().await.unwrap();
    eventually("both instances report a ready upstream", || {
        let all = status(&state);
        all.len() == 2
            && all
                .iter()
                .all(|i| i["session"]["upstreams"]["fx"]["phase"] == "ready")
    })
    .await;
    let all = status(&state);
    let fx = &all[0]["policies"]["fx"];
    assert_eq!(fx["policy"], "rego");
    assert_eq!(fx["bundles"][0]["active_revision"], "9.9.9");
    assert!(
        fx["bundles"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_ne!(all[0]["pid"], all[1]["pid"]);
    let text = std::process::Command::new(GAVEL)
        .arg("status")
        .env("GAVEL_STATE_DIR", &state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("fx: upstream ready") && text.contains("fixture@9.9.9"),
        "{text}"
    );
    // One host window closes: its gavel exits and disappears from status.
    a.cancel().await.unwrap();
    eventually("the exited instance is gone", || status(&state).len() == 1).await;
}
