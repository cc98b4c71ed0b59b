//! The official Python SDK (`mcp` 2.3, `.deps/mcp2`, installed by
//! scripts/setup) as a host: one runner for every script in
//! `tests/clients/` that takes a JSON plan on stdin and prints one JSON
//! line per step.

use std::path::Path;

use serde_json::Value;

use super::{PATIENCE, Setup};

/// Runs `tests/clients/SCRIPT ARGS…` with `plan` on stdin and `env` (and
/// `GAVEL_STATE_DIR` under `s`): every line it printed, parsed. The script
/// must exit 0; otherwise the test fails with its stderr and gavel's log.
pub async fn python_host(
    s: &Setup,
    script: &str,
    args: &[String],
    env: &[(&str, String)],
    plan: &Value,
) -> Vec<Value> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/mcp2/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup first",
        py.display()
    );
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(script),
    )
    .args(args)
    .env("GAVEL_STATE_DIR", s.path("state"))
    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("python starts");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(plan.to_string().as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(PATIENCE * 2, child.wait_with_output())
        .await
        .expect("the python host finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python host {script} {args:?} failed: {}\nstdout: {stdout}\ngavel log: {}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
