//! gavel as the example deploys it, for the benches (`#[path]`-included by
//! `bench/http.rs` and `bench/proxy.rs`): the five example layers — the
//! filesystem server's bundle and `override`, the shared `identity`,
//! `compliance` and `workflow` — copied with the workflow layer's loop
//! thresholds and rate limit raised (a bench loop stays allowed; its rules
//! are unchanged) and `echo` one of the filesystem layer's read tools, so a
//! fixture's or server-everything's `echo` meets every layer; a decision log,
//! a daily budget and the workflow layer's rate limit. Calls carry
//! `path: public/readme.txt`, so classification and the result rule see a
//! realistic read.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::files;

/// The example's layers, copied into `dir`, with the workflow layer's
/// thresholds and rate limit raised (a bench loop stays allowed; its rules
/// are unchanged) and `echo` a read tool of the filesystem layer.
pub fn bundles(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    for b in [
        "filesystem",
        "override",
        "identity",
        "compliance",
        "workflow",
    ] {
        files::copy_dir(&root.join(b), &dir.join("bundles").join(b));
    }
    let fs = dir.join("bundles/filesystem/mcp/filesystem/filesystem.rego");
    let rego = std::fs::read_to_string(&fs).unwrap();
    let with_echo = rego.replacen(
        "\"list_allowed_directories\",",
        "\"list_allowed_directories\", \"echo\",",
        1,
    );
    assert_ne!(rego, with_echo, "filesystem.rego: its read_tools set moved");
    std::fs::write(&fs, with_echo).unwrap();
    let wf = dir.join("bundles/workflow/gavel/workflow/data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&wf).unwrap()).unwrap();
    data["max_consecutive_same_tool"] = json!(1_000_000_000u64);
    data["max_calls_per_minute"] = json!(1_000_000_000u64);
    data["max_session_tokens"] = json!(1_000_000_000_000u64);
    data["limits"] =
        json!([{"scope": "user", "rate": 1_000_000_000u64, "per": "1m", "burst": 1_000_000u64}]);
    std::fs::write(&wf, data.to_string()).unwrap();
}

/// gavel as deployed, with its own decision log and state (budget, rate
/// table) per server.
pub fn config(dir: &Path, name: &str, upstream: &[String], extra: &str) -> PathBuf {
    let p = |s: &str| dir.join(s).display().to_string();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo-data");
    let text = format!(
        r#"[identity.agent]
id = "bench-agent"
scope = ["tools:read", "tools:call"]
owner_team = "platform"

[identity.user]
id = "bench"
groups = ["engineering"]
data_classifications_authorized = ["public", "internal"]

[identity.environment]
region = "eu-west-1"
is_production = false

[policy]
shared_bundles = [{identity:?}, {compliance:?}, {workflow:?}]

[log]
decisions = {log:?}
# Long runs pass the default 256 MiB: every rotated file is kept, so a
# bench can count a record for every call (`http`'s check).
rotate_keep = 1000

[state]
path = {state:?}

[budget]
calls = 1000000000

[servers.filesystem]
command = {command:?}
args = {args}
path_root = {demo:?}
bundles = [{filesystem:?}, {override_:?}]
{extra}"#,
        command = upstream[0],
        args = serde_json::to_string(&upstream[1..]).unwrap(),
        identity = p("bundles/identity"),
        compliance = p("bundles/compliance"),
        workflow = p("bundles/workflow"),
        log = p(&format!("decisions-{name}.jsonl")),
        state = p(&format!("state-{name}/state.sqlite")),
        demo = demo.display().to_string(),
        filesystem = p("bundles/filesystem"),
        override_ = p("bundles/override"),
    );
    let path = dir.join(format!("servers-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
