//! Helpers shared by the OCI end-to-end tests (e2e_oci*.rs): build, sign
//! and push the fixture bundle, write a config pinning it, launch gavel with
//! a private state dir, read its status, and fake registries that misbehave.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::registry::TestRegistry;
use super::*;
use serde_json::{Value, json};

/// The fixture bundle at `revision`, with `extra` Rego appended to its
/// policy; signed with `key` (HS256, kid = file stem) unless None.
pub fn bundle(s: &Setup, name: &str, revision: &str, extra: &str, key: Option<&str>) -> PathBuf {
    let dir = s.path(name);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture"),
        &dir,
    );
    let manifest = dir.join(".manifest");
    let m = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("9.9.9", revision);
    std::fs::write(&manifest, m).unwrap();
    let policy = dir.join("mcp/fixture/policy.rego");
    let mut p = std::fs::read_to_string(&policy).unwrap();
    p.push_str(extra);
    std::fs::write(&policy, p).unwrap();
    if let Some(k) = key {
        sign(s, &dir, k, &format!("{k}.secret"));
    }
    dir
}

/// `gavel bundle sign` (HS256) with the secret in `secret_file`, naming `kid`.
pub fn sign(s: &Setup, dir: &Path, kid: &str, secret_file: &str) {
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        s.path(secret_file).to_str().unwrap(),
        "--algorithm",
        "HS256",
        "--keyid",
        kid,
    ]));
}

pub fn tarball(s: &Setup, dir: &Path) -> PathBuf {
    let out = s.path(&format!(
        "{}.tar.gz",
        dir.file_name().unwrap().to_string_lossy()
    ));
    stdout_ok(gavel_cmd(&[
        "bundle",
        "build",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    out
}

/// `gavel bundle push`; returns the digest it prints.
pub fn push(path: &Path, reference: &str) -> String {
    let out = stdout_ok(gavel_cmd(&[
        "bundle",
        "push",
        path.to_str().unwrap(),
        reference,
        "--insecure",
    ]));
    out.split('@')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('"')
        .to_string()
}

pub fn keys(s: &Setup) {
    std::fs::write(s.path("k1.secret"), "first-secret-padded-to-32-bytesx").unwrap();
    std::fs::write(s.path("k2.secret"), "second-secret-padded-to-32-bytes").unwrap();
}

/// `[servers.SERVER.bundle_roles."REF"]` permitting `roots` (and, if
/// given, playing `layer`): the operator's word on what a registry bundle
/// is for (the fixture bundle's root is `mcp/fixture`, not `mcp/fx`).
pub fn role(server: &str, reference: &str, roots: &[&str], layer: Option<&str>) -> String {
    let layer = layer.map_or_else(String::new, |l| format!("layer = {l:?}\n"));
    format!("\n[servers.{server}.bundle_roles.{reference:?}]\nroots = {roots:?}\n{layer}")
}

pub fn config(s: &Setup, reg: &TestRegistry, reference: &str, trusted: &[&str]) {
    let trusted: Vec<String> = trusted.iter().map(|k| format!("{k:?}")).collect();
    s.write_config(&format!(
            "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[keys.k2]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n\
             [identity.user]\nid = \"ada\"\n\n[log]\ndecisions = {:?}\n\n\
             [oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n\
             [oci.registries.\"{}\"]\ninsecure = true\n\n{}bundle = {reference:?}\nkeys = [{}]\n{}",
            s.path("k1.secret").display().to_string(),
            s.path("k2.secret").display().to_string(),
            s.path("decisions.jsonl").display().to_string(),
            s.path("cache").display().to_string(),
            reg.host(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            trusted.join(", "),
            role("fx", reference, &["mcp/fixture"], None)
        ));
}

/// Where the registry keeps a blob's bytes (to damage them on purpose).
pub fn blob_file(reg: &TestRegistry, tarball: &Path) -> PathBuf {
    let hex = sha256_hex(&std::fs::read(tarball).unwrap());
    reg.storage()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data")
}

/// Keys, the fixture bundle at revision r1 signed with k1 pushed under
/// `policies/fixture:live`, and a config pinning that tag; returns the tag.
pub fn published_r1(s: &Setup, reg: &TestRegistry) -> String {
    keys(s);
    let tag = format!("oci://{}/policies/fixture:live", reg.host());
    push(&tarball(s, &bundle(s, "r1", "r1", "", Some("k1"))), &tag);
    config(s, reg, &tag, &["k1"]);
    tag
}

pub fn status(state: &Path) -> Value {
    let out = Command::new(GAVEL)
        .args(["status", "--json"])
        .env("GAVEL_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().next().unwrap_or(Value::Null)
}

pub fn launch(s: &Setup) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args())
        .env("GAVEL_STATE_DIR", s.path("state"));
    cmd
}

pub async fn reasons(c: &Client, tool: &str) -> Value {
    let r = call(c, tool, json!({"text": "x"})).await.unwrap();
    if r.is_error == Some(true) {
        r.structured_content
            .as_ref()
            .map(|v| v["reasons"].clone())
            .unwrap_or_else(|| json!(text(&r)))
    } else {
        json!("allowed")
    }
}

/// A policy change that keeps the bundle's own tests passing (they use
/// user "u"): echo is frozen for ada, and `add` is no longer listed.
pub const DENY_ECHO: &str = "\nviolations contains \"echo_frozen\" if {\n\tinput.action.tool == \"echo\"\n\tinput.user.id == \"ada\"\n}\n\nvisible := false if input.action.tool == \"add\"\n";

/// Pushes `path` under the tag, waits until gavel has looked at it and
/// recorded an error naming that layer, and checks the last good bundle
/// still decides and is still what the status shows. Returns that status
/// entry.
pub async fn refused(s: &Setup, c: &Client, tag: &str, path: &Path, needle: &str) -> Value {
    let digest = push(path, tag);
    let layer = format!("sha256:{}", sha256_hex(&std::fs::read(path).unwrap()));
    let mut seen = Value::Null;
    eventually(
        &format!("{} refused with {needle:?}", path.display()),
        || {
            let st = status(&s.path("state"));
            seen = st["policies"]["fx"]["oci"][0].clone();
            seen["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle) && m.contains(&layer))
                && seen["manifest_digest"] != json!(digest)
        },
    )
    .await;
    assert_eq!(
        reasons(c, "echo").await,
        json!("allowed"),
        "r1 still decides"
    );
    assert_eq!(seen["active_revision"], "r1", "{seen}");
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert_eq!(seen["source"], "registry", "{seen}");
    assert!(
        seen["message"]
            .as_str()
            .unwrap()
            .contains("the last good bundle stays active"),
        "{seen}"
    );
    seen
}

/// A good k1-signed bundle whose JWT payload is rewritten to cover a
/// changed policy (the file hash updated, the original signature kept): what
/// someone without the key would try.
pub fn forged_payload(s: &Setup) -> PathBuf {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let dir = bundle(s, "forged-payload", "bad8", "", Some("k1"));
    let policy = dir.join("mcp/fixture/policy.rego");
    let mut p = std::fs::read_to_string(&policy).unwrap();
    p.push_str(DENY_ECHO);
    std::fs::write(&policy, &p).unwrap();
    let sigs: Value =
        serde_json::from_slice(&std::fs::read(dir.join(".signatures.json")).unwrap()).unwrap();
    let token = sigs["signatures"][0].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    for f in payload["files"].as_array_mut().unwrap() {
        if f["name"] == "mcp/fixture/policy.rego" {
            f["hash"] = json!(sha256_hex(p.as_bytes()));
        }
    }
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    std::fs::write(
        dir.join(".signatures.json"),
        serde_json::to_vec(&json!({"signatures": [forged]})).unwrap(),
    )
    .unwrap();
    dir
}

/// Answers every request on `listener` with 200 and `body` as a manifest.
pub fn fake_registry(listener: tokio::net::TcpListener, body: String) {
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
