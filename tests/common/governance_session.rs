//! A real gavel session whose decision log the explain and report tests read:
//! the fixture upstream behind the fixture bundle plus the repo's workflow
//! layer (shared), two allowed and two denied tool calls.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Writes the config into `s` and returns its text.
pub fn config(s: &Setup) -> String {
    let toml = format!(
        "[identity.user]\nid = \"ada\"\ngroups = [\"engineering\"]\n\n[policy]\nshared_bundles = [{:?}]\n\n[log]\ndecisions = {:?}\n\n{}bundles = [{:?}]\n",
        repo("bundles/workflow").display().to_string(),
        s.path("decisions.jsonl").display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        repo("tests/bundles/fixture").display().to_string(),
    );
    s.write_config(&toml);
    toml
}

/// Runs the session and returns the decision log's records.
pub async fn run_session(s: &Setup) -> Vec<Value> {
    config(s);
    let client = s.connect(TestHost::new()).await;
    for (tool, args, allowed) in [
        ("echo", json!({"text": "hi"}), true),
        ("destructive_delete", json!({"path": "/srv"}), false),
        ("structured", json!({"value": "x"}), false),
        ("echo", json!({"text": "again"}), true),
    ] {
        let r = call(&client, tool, args).await.unwrap();
        assert_eq!(r.is_error != Some(true), allowed, "{tool}: {r:?}");
    }
    client.cancel().await.unwrap();
    records(&s.path("decisions.jsonl"))
}

/// Runs `gavel <args>` to completion: (success, stdout, stderr).
pub fn gavel(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(GAVEL)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
