//! Policy-side helpers shared by the end-to-end tests: the fixture's bundle,
//! one-file bundles, a config with a decision log, the tests' evaluation
//! limit and the policy that runs past any.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Setup, fixture_server};

/// `tests/bundles/fixture` (root `mcp/fixture`, revision 9.9.9).
pub fn fixture_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture")
}

/// A one-file bundle under `dir/name` with root `root` (revision `<name>-1`).
pub fn bundle(dir: &Path, name: &str, root: &str, manifest_extra: Value, rego: &str) -> PathBuf {
    let b = dir.join(name);
    std::fs::create_dir_all(b.join(root)).unwrap();
    let mut m = json!({"revision": format!("{name}-1"), "roots": [root]});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), manifest_extra.as_object()) {
        m.extend(extra.clone());
    }
    std::fs::write(b.join(".manifest"), m.to_string()).unwrap();
    std::fs::write(b.join(root).join("policy.rego"), rego).unwrap();
    b
}

/// The policy evaluation limit of every test config that names none.
/// gavel's default, 100 ms, is wall-clock time: on a loaded machine (CI, a
/// shared runner, two cores and several builds) an evaluation of a trivial
/// policy can be descheduled past it, and the call is then denied
/// `policy_timeout` — a test of something else fails for no fault of the
/// code (seen in e2e_limits, e2e_oci_registry, wrap_takes_a_bundle). Tests
/// *of* the limit set their own, small, with a policy whose work is
/// unbounded, so it fires whatever the load; nothing else depends on time.
pub const TEST_EVAL_TIMEOUT: &str = "10s";

/// `toml` with `[policy] eval_timeout = TEST_EVAL_TIMEOUT` when it names no
/// `eval_timeout`: the key put under an existing `[policy]` header, or a
/// `[policy]` table appended (so line numbers above it stay as written).
/// An empty config stays empty.
pub fn with_test_eval_timeout(toml: &str) -> String {
    if toml.trim().is_empty() || toml.contains("eval_timeout") {
        return toml.to_string();
    }
    let key = format!("eval_timeout = {TEST_EVAL_TIMEOUT:?}");
    let mut out = String::with_capacity(toml.len() + key.len() + 12);
    let mut placed = false;
    for line in toml.split_inclusive('\n') {
        out.push_str(line);
        if !placed && line.trim() == "[policy]" {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&key);
            out.push('\n');
            placed = true;
        }
    }
    if !placed {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\n[policy]\n{key}\n"));
    }
    out
}

/// A policy whose evaluation never ends in practice: 10^10 pairs tried one
/// interpreter step at a time, none matching, in small memory. The tests of
/// `eval_timeout` use it, not a slightly slow one, so the limit fires
/// whatever the machine's speed or load (regorus's timer stops it between
/// steps); were the limit not enforced, the call would hang, not pass.
pub const UNBOUNDED_REGO: &str = "package p\n# CPU-bound, small memory: 10^10 pairs tried one at a time, none matches.\nslow if {\n\tsome a in numbers.range(1, 100000)\n\tsome b in numbers.range(1, 100000)\n\ta * b == -1\n}\ndecision := {\"allow\": true} if not slow\n";

/// [`UNBOUNDED_REGO`] as the bundle `dir/unbounded` (root `p`).
pub fn unbounded(dir: &Path) -> PathBuf {
    bundle(dir, "unbounded", "p", json!({}), UNBOUNDED_REGO)
}

/// One fixture server `fx` (recording to `r.jsonl`) with `bundles`, user
/// `ada`, and a decision log at `decisions.jsonl`; `top` goes first (other
/// sections), `extra_server` after the server's keys.
pub fn config(s: &Setup, bundles: &[&Path], extra_server: &str, top: &str) -> String {
    let list: Vec<String> = bundles
        .iter()
        .map(|b| format!("{:?}", b.display().to_string()))
        .collect();
    format!(
        "{top}\n[identity.user]\nid = \"ada\"\ngroups = [\"engineering\"]\n\n[log]\ndecisions = {:?}\nsecret_fields = [\"note\"]\nmax_arg_bytes = 256\n\n{}bundles = [{}]\n{extra_server}\n",
        s.path("decisions.jsonl").display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        list.join(", ")
    )
}

/// The JSON-RPC error code of a failed request.
pub fn error_code(e: &rmcp::ServiceError) -> Option<i32> {
    match e {
        rmcp::ServiceError::McpError(d) => Some(d.code.0),
        _ => None,
    }
}
