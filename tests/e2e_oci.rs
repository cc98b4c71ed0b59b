//! Signed bundles from a real OCI registry (Debian's `docker-registry`):
//! push with `gavel bundle push`, pin by tag, decide, hot-reload a new
//! revision under the same tag (announcing list changes, dropping no call),
//! refuse bad bundles while keeping the last good one, restart offline from
//! the cache, and never use the cache for another pin.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::registry::TestRegistry;
use common::*;
use serde_json::{Value, json};

/// The fixture bundle at `revision`, with `extra` Rego appended to its
/// policy; signed with `key` (HS256, kid = file stem) unless None.
fn bundle(s: &Setup, name: &str, revision: &str, extra: &str, key: Option<&str>) -> PathBuf {
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
fn sign(s: &Setup, dir: &Path, kid: &str, secret_file: &str) {
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

fn tarball(s: &Setup, dir: &Path) -> PathBuf {
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
fn push(path: &Path, reference: &str) -> String {
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

fn keys(s: &Setup) {
    std::fs::write(s.path("k1.secret"), "first-secret").unwrap();
    std::fs::write(s.path("k2.secret"), "second-secret").unwrap();
}

fn config(s: &Setup, reg: &TestRegistry, reference: &str, trusted: &[&str]) {
    let trusted: Vec<String> = trusted.iter().map(|k| format!("{k:?}")).collect();
    std::fs::write(
        s.config(),
        format!(
            "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[keys.k2]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n\
             [identity.user]\nid = \"ada\"\n\n[log]\ndecisions = {:?}\n\n\
             [oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n\
             [oci.registries.\"{}\"]\ninsecure = true\n\n{}bundle = {reference:?}\nkeys = [{}]\n",
            s.path("k1.secret").display().to_string(),
            s.path("k2.secret").display().to_string(),
            s.path("decisions.jsonl").display().to_string(),
            s.path("cache").display().to_string(),
            reg.host(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            trusted.join(", ")
        ),
    )
    .unwrap();
}

/// Where the registry keeps a blob's bytes (to damage them on purpose).
fn blob_file(reg: &TestRegistry, tarball: &Path) -> PathBuf {
    let hex = sha256_hex(&std::fs::read(tarball).unwrap());
    reg.storage()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data")
}

/// Keys, the fixture bundle at revision r1 signed with k1 pushed under
/// `policies/fixture:live`, and a config pinning that tag; returns the tag.
fn published_r1(s: &Setup, reg: &TestRegistry) -> String {
    keys(s);
    let tag = format!("oci://{}/policies/fixture:live", reg.host());
    push(&tarball(s, &bundle(s, "r1", "r1", "", Some("k1"))), &tag);
    config(s, reg, &tag, &["k1"]);
    tag
}

fn status(state: &Path) -> Value {
    let out = Command::new(GAVEL)
        .args(["status", "--json"])
        .env("GAVEL_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().next().unwrap_or(Value::Null)
}

fn launch(s: &Setup) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args())
        .env("GAVEL_STATE_DIR", s.path("state"));
    cmd
}

async fn reasons(c: &Client, tool: &str) -> Value {
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
const DENY_ECHO: &str = "\nviolations contains \"echo_frozen\" if {\n\tinput.action.tool == \"echo\"\n\tinput.user.id == \"ada\"\n}\n\nvisible := false if input.action.tool == \"add\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn pull_decide_hot_reload_and_restart_offline() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    let tag = published_r1(&s, &reg);

    let host = TestHost::new();
    let seen = host.seen.clone();
    let c = connect_cmd(launch(&s), host).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    let tools = c.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "add"));
    // The decision records name the pulled bundle's revision and digest.
    let log = std::fs::read_to_string(s.path("decisions.jsonl")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["bundles"]["policies/fixture"]["revision"], "r1",
        "{last}"
    );
    eventually("status shows the active OCI bundle", || {
        let st = status(&s.path("state"));
        st["policies"]["fx"]["oci"][0]["active_revision"] == "r1"
    })
    .await;
    let st = status(&s.path("state"));
    let oci = &st["policies"]["fx"]["oci"][0];
    assert_eq!(oci["source"], "registry");
    // The same facts for people.
    let human = Command::new(GAVEL)
        .arg("status")
        .env("GAVEL_STATE_DIR", s.path("state"))
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&format!("{tag}: revision r1 (sha256:")) && human.contains("signer k1"),
        "{human}"
    );
    assert!(oci["last_successful_activation"].is_string());
    assert_eq!(st["policies"]["fx"]["bundles"][0]["signer_keyid"], "k1");

    // A new revision under the same tag: hot-reloaded while calls continue,
    // none dropped; the list change is announced.
    push(
        &tarball(&s, &bundle(&s, "r2", "r2", DENY_ECHO, Some("k1"))),
        &tag,
    );
    let mut answers = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let active =
            status(&s.path("state"))["policies"]["fx"]["oci"][0]["active_revision"] == "r2";
        // A call now and then while the reload happens (well under the
        // fixture policy's turn limit).
        if answers.len() < 30 {
            answers.push(reasons(&c, "echo").await);
        }
        if active {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "r2 never activated: {answers:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reasons(&c, "echo").await, json!(["echo_frozen"]));
    assert!(
        answers
            .iter()
            .all(|a| *a == json!("allowed") || *a == json!(["echo_frozen"])),
        "every call during the reload was decided by r1 or r2: {answers:?}"
    );
    eventually("tools/list_changed after activation", || {
        seen.lock().unwrap().tool_list_changed > 0
    })
    .await;
    let tools = c.list_all_tools().await.unwrap();
    assert!(!tools.iter().any(|t| t.name == "add"), "r2 hides add");
    eventually("status shows r2", || {
        status(&s.path("state"))["policies"]["fx"]["oci"][0]["active_revision"] == "r2"
    })
    .await;
    c.cancel().await.unwrap();

    // Registry gone: a new gavel starts from the cached r2.
    let mut reg = reg;
    reg.stop();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!(["echo_frozen"]));
    eventually("status says the bundle came from the cache", || {
        let st = status(&s.path("state"));
        st["policies"]["fx"]["oci"][0]["source"] == "cache"
    })
    .await;
    let st = status(&s.path("state"));
    assert!(
        st["policies"]["fx"]["oci"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("policies/fixture")),
        "the pull error is in the status: {st}"
    );
    c.cancel().await.unwrap();

    // Another pin (not in the cache, registry down): the old cache is not
    // used; the server fails closed naming the ref.
    let other = format!("oci://{}/policies/fixture:other", reg.host());
    config(&s, &reg, &other, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    let r = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let sc = r.structured_content.clone().unwrap_or_default();
    assert_eq!(sc["reasons"], json!(["policy_unavailable"]), "{r:?}");
    assert!(text(&r).contains("policies/fixture:other"), "{}", text(&r));
    c.cancel().await.unwrap();
}

/// Pushes `path` under the tag, waits until gavel has looked at it and
/// recorded an error naming that layer, and checks the last good bundle
/// still decides and is still what the status shows. Returns that status
/// entry.
async fn refused(s: &Setup, c: &Client, tag: &str, path: &Path, needle: &str) -> Value {
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
fn forged_payload(s: &Setup) -> PathBuf {
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

#[tokio::test(flavor = "multi_thread")]
async fn bad_bundles_are_refused_and_the_last_good_one_kept() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    keys(&s);
    let tag = format!("oci://{}/policies/fixture:live", reg.host());
    push(
        &tarball(&s, &bundle(&s, "good", "r1", "", Some("k1"))),
        &tag,
    );
    config(&s, &reg, &tag, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));

    // Signed by a key the server does not trust.
    let wrong = bundle(&s, "wrong-key", "bad1", DENY_ECHO, Some("k2"));
    let st = refused(
        &s,
        &c,
        &tag,
        &tarball(&s, &wrong),
        "verification key corresponding to ID k2 not found",
    )
    .await;
    // The refused layer is not downloaded (or rebuilt) again while the
    // registry keeps serving it: polls go on, downloads do not.
    let (requests, downloads) = (st["requests"].as_u64().unwrap(), st["downloads"].clone());
    eventually("three more polls after the refusal", || {
        status(&s.path("state"))["policies"]["fx"]["oci"][0]["requests"]
            .as_u64()
            .is_some_and(|n| n >= requests + 3)
    })
    .await;
    let later = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
    assert_eq!(later["downloads"], downloads, "{later}");
    assert_eq!(later["message"], st["message"], "the refusal stays shown");
    // The right kid, the wrong key material: a token claiming k1, made with
    // k2's secret.
    let bad_sig = bundle(&s, "bad-signature", "bad7", DENY_ECHO, None);
    sign(&s, &bad_sig, "k1", "k2.secret");
    refused(
        &s,
        &c,
        &tag,
        &tarball(&s, &bad_sig),
        "failed to verify JWT signature",
    )
    .await;
    // A forged payload under a genuine signature.
    refused(
        &s,
        &c,
        &tag,
        &tarball(&s, &forged_payload(&s)),
        "failed to verify JWT signature",
    )
    .await;
    // A `.signatures.json` with no signature in it.
    let empty = bundle(&s, "no-signature", "bad9", DENY_ECHO, None);
    std::fs::write(empty.join(".signatures.json"), r#"{"signatures": []}"#).unwrap();
    refused(
        &s,
        &c,
        &tag,
        &tarball(&s, &empty),
        ".signatures.json: missing JWT (expected exactly one)",
    )
    .await;
    // Unsigned.
    let unsigned = bundle(&s, "unsigned", "bad2", DENY_ECHO, None);
    refused(&s, &c, &tag, &tarball(&s, &unsigned), "not signed").await;
    // Tampered after signing.
    let tampered = bundle(&s, "tampered", "bad3", "", Some("k1"));
    let p = tampered.join("mcp/fixture/policy.rego");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str(DENY_ECHO);
    std::fs::write(&p, t).unwrap();
    refused(&s, &c, &tag, &tarball(&s, &tampered), "policy.rego").await;
    // An extra file the signature does not cover.
    let extra = bundle(&s, "extra", "bad4", "", Some("k1"));
    std::fs::write(
        extra.join("mcp/fixture/sneaky.rego"),
        "package mcp.fixture\n\nboom := 1\n",
    )
    .unwrap();
    refused(&s, &c, &tag, &tarball(&s, &extra), "sneaky.rego").await;
    // Its own tests fail.
    let failing = bundle(
        &s,
        "failing-tests",
        "bad5",
        "\ntest_fails if { false }\n",
        Some("k1"),
    );
    refused(&s, &c, &tag, &tarball(&s, &failing), "tests fail").await;

    // Rotation: k1 and k2 both trusted, a k2-signed bundle activates.
    c.cancel().await.unwrap();
    config(&s, &reg, &tag, &["k1", "k2"]);
    let rotated = bundle(&s, "rotated", "r2", DENY_ECHO, Some("k2"));
    push(&tarball(&s, &rotated), &tag);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!(["echo_frozen"]));
    c.cancel().await.unwrap();
    // Then k1 is removed: k2's bundle keeps deciding, and a k1-signed push
    // is refused.
    config(&s, &reg, &tag, &["k2"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!(["echo_frozen"]));
    let old_key = bundle(&s, "old-key", "bad6", "", Some("k1"));
    let digest = push(&tarball(&s, &old_key), &tag);
    let mut seen = Value::Null;
    eventually("the k1-signed bundle is refused once k1 is gone", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["message"].as_str().is_some_and(|m| {
            m.contains("failed signature verification")
                && m.contains("verification key corresponding to ID k1 not found")
        }) && seen["manifest_digest"] != json!(digest)
    })
    .await;
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert_eq!(seen["active_revision"], "r2", "{seen}");
    assert_eq!(seen["signer_keyid"], "k2", "{seen}");
    assert_eq!(
        reasons(&c, "echo").await,
        json!(["echo_frozen"]),
        "r2 (k2) still decides"
    );
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_failures_keep_the_last_good_bundle() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    let tag = published_r1(&s, &reg);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));

    c.cancel().await.unwrap();

    // The registry answers, but with a bundle that fails verification (signed
    // by a key the server does not trust): the next gavel refuses it and
    // starts from the cached r1 for this server and ref, saying why, and
    // does not download the refused layer again on every poll.
    let untrusted = tarball(&s, &bundle(&s, "untrusted", "bad0", DENY_ECHO, Some("k2")));
    push(&untrusted, &tag);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "echo").await,
        json!("allowed"),
        "r1 from the cache"
    );
    let mut seen = Value::Null;
    eventually("the refusal at start is in the status", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["message"].as_str().is_some_and(|m| {
            m.contains("verification key corresponding to ID k2 not found")
                && m.contains("the cached bundle for this ref is active")
        })
    })
    .await;
    assert_eq!(seen["source"], "cache", "{seen}");
    assert_eq!(seen["active_revision"], "r1", "{seen}");
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert_eq!(seen["downloads"], 1, "{seen}");
    let requests = seen["requests"].as_u64().unwrap();
    eventually("polls after the refusal at start", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["requests"].as_u64().is_some_and(|n| n >= requests + 3)
    })
    .await;
    assert_eq!(seen["downloads"], 1, "not downloaded again: {seen}");
    assert_eq!(seen["source"], "cache", "{seen}");
    c.cancel().await.unwrap();

    // A tag whose layer blob is gone from the registry's storage: the next
    // gavel cannot download it and starts from the cached last good bundle.
    let never = tarball(&s, &bundle(&s, "never", "bad", DENY_ECHO, Some("k1")));
    push(&never, &tag);
    let blob = blob_file(&reg, &never);
    std::fs::remove_file(&blob).unwrap();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "echo").await,
        json!("allowed"),
        "r1 from the cache"
    );
    eventually("missing blob reported, cache used", || {
        let st = status(&s.path("state"));
        let oci = &st["policies"]["fx"]["oci"][0];
        oci["source"] == "cache" && oci["message"].as_str().is_some_and(|m| m.contains("layer"))
    })
    .await;
    c.cancel().await.unwrap();

    // A layer whose bytes were changed in the registry's storage (same size,
    // one byte flipped): the digest check while downloading refuses it.
    let tampered = tarball(
        &s,
        &bundle(&s, "tampered-layer", "bad2", DENY_ECHO, Some("k1")),
    );
    push(&tampered, &tag);
    let blob = blob_file(&reg, &tampered);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "echo").await,
        json!("allowed"),
        "r1 from the cache"
    );
    eventually("tampered layer reported", || {
        let st = status(&s.path("state"));
        let m = st["policies"]["fx"]["oci"][0]["message"]
            .as_str()
            .unwrap_or("");
        m.contains("layer") && m.to_lowercase().contains("invalid digest")
    })
    .await;
    c.cancel().await.unwrap();

    // A "registry" that answers garbage at the registry's own address,
    // while r1 (pushed again) is active from the registry: the last good is
    // kept and the error shown; a restart starts from the cache for this
    // same server and ref.
    push(&s.path("r1.tar.gz"), &tag);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("r1 active from the registry again", || {
        let oci = &status(&s.path("state"))["policies"]["fx"]["oci"][0];
        oci["source"] == "registry" && oci["active_revision"] == "r1"
    })
    .await;
    let mut reg = reg;
    reg.stop();
    garbage_registry(
        tokio::net::TcpListener::bind(("127.0.0.1", reg.port))
            .await
            .unwrap(),
    );
    let mut seen = Value::Null;
    eventually("garbage reported while r1 stays active", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid JSON") && m.contains(&tag))
    })
    .await;
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert_eq!(seen["source"], "registry", "{seen}");
    assert_eq!(seen["active_revision"], "r1", "{seen}");
    assert_eq!(reasons(&c, "echo").await, json!("allowed"), "r1 decides");
    c.cancel().await.unwrap();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "echo").await,
        json!("allowed"),
        "r1 from the cache"
    );
    eventually("garbage at start reported, cache used", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["source"] == "cache"
            && seen["message"]
                .as_str()
                .is_some_and(|m| m.contains("not valid JSON"))
    })
    .await;
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert_eq!(seen["active_revision"], "r1", "{seen}");
    c.cancel().await.unwrap();

    // A ref this server never pulled, from the garbage registry: nothing in
    // the cache for it, so it fails closed, explained.
    let s2 = Setup::new("");
    keys(&s2);
    let never_ref = format!("oci://{}/policies/fixture:never-pulled", reg.host());
    write_config_for(&s2, &reg.host(), &never_ref, &s.path("cache"));
    let c = connect_cmd(launch(&s2), TestHost::new()).await;
    let r = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("not valid JSON"), "{}", text(&r));
    assert!(text(&r).contains("fixture:never-pulled"), "{}", text(&r));
    c.cancel().await.unwrap();
}

/// Answers every request on `listener` with 200 and an HTML page.
fn garbage_registry(listener: tokio::net::TcpListener) {
    fake_registry(listener, "<html>definitely not a manifest</html>".into());
}

/// Answers every request on `listener` with 200 and `body` as a manifest.
fn fake_registry(listener: tokio::net::TcpListener, body: String) {
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

fn write_config_for(s: &Setup, host: &str, reference: &str, cache: &Path) {
    std::fs::write(
        s.config(),
        format!(
            "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n\
             [oci.registries.\"{host}\"]\ninsecure = true\n\n{}bundle = {reference:?}\nkeys = [\"k1\"]\n",
            s.path("k1.secret").display().to_string(),
            cache.display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
        ),
    )
    .unwrap();
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry() {
    let reg = TestRegistry::start_with(Some(("ops", "s3cret-pw")));
    let s = Setup::new("");
    keys(&s);
    let tag = format!("oci://{}/policies/fixture:live", reg.host());
    let tb = tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1")));
    // Anonymous push is refused, clearly.
    let out = gavel_cmd(&["bundle", "push", tb.to_str().unwrap(), &tag, "--insecure"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policies/fixture"), "{err}");
    // With credentials from the environment.
    let out = Command::new(GAVEL)
        .args(["bundle", "push", tb.to_str().unwrap(), &tag, "--insecure"])
        .env("GAVEL_REGISTRY_USERNAME", "ops")
        .env("GAVEL_REGISTRY_PASSWORD", "s3cret-pw")
        .env("GAVEL_REGISTRY", reg.host())
        .output()
        .unwrap();
    stdout_ok(out);
    // Environment credentials name their registry: they are not sent to
    // another one, and without GAVEL_REGISTRY they are refused.
    let out = Command::new(GAVEL)
        .args(["bundle", "push", tb.to_str().unwrap(), &tag, "--insecure"])
        .env("GAVEL_REGISTRY_USERNAME", "ops")
        .env("GAVEL_REGISTRY_PASSWORD", "s3cret-pw")
        .env("GAVEL_REGISTRY", "elsewhere.example:5000")
        .output()
        .unwrap();
    assert!(!out.status.success(), "anonymous: refused by the registry");
    let out = Command::new(GAVEL)
        .args(["bundle", "push", tb.to_str().unwrap(), &tag, "--insecure"])
        .env("GAVEL_REGISTRY_USERNAME", "ops")
        .env("GAVEL_REGISTRY_PASSWORD", "s3cret-pw")
        .env_remove("GAVEL_REGISTRY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GAVEL_REGISTRY does not name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP is never assumed: without --insecure the error says so.
    let out = Command::new(GAVEL)
        .args(["bundle", "push", tb.to_str().unwrap(), &tag])
        .env("GAVEL_REGISTRY_USERNAME", "ops")
        .env("GAVEL_REGISTRY_PASSWORD", "s3cret-pw")
        .env("GAVEL_REGISTRY", reg.host())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("insecure = true") && err.contains("--insecure"),
        "{err}"
    );
    let out = gavel_cmd(&[
        "bundle",
        "pull",
        &tag,
        "-o",
        s.path("x.tar.gz").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("insecure = true") && err.contains("--insecure"),
        "{err}"
    );
    // gavel run with username + password_env from servers.toml.
    config(&s, &reg, &tag, &["k1"]);
    let mut text_cfg = std::fs::read_to_string(s.config()).unwrap();
    text_cfg = text_cfg.replace(
        "insecure = true\n",
        "insecure = true\nusername = \"ops\"\npassword_env = \"GAVEL_TEST_REG_PW\"\n",
    );
    std::fs::write(s.config(), text_cfg).unwrap();
    let mut cmd = launch(&s);
    cmd.env("GAVEL_TEST_REG_PW", "s3cret-pw");
    let c = connect_cmd(cmd, TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    // The password never reaches the log.
    assert!(!s.log_text().contains("s3cret-pw"));
    c.cancel().await.unwrap();
}

/// PUT a manifest document straight to the registry API.
async fn put_manifest(reg: &TestRegistry, repo: &str, tag: &str, media_type: &str, body: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", reg.port))
        .await
        .unwrap();
    sock.write_all(
        format!(
            "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            reg.host(),
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_index_is_descended_past_attestations() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    keys(&s);
    let tb = tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1")));
    let digest = push(&tb, &format!("oci://{}/policies/fixture:plain", reg.host()));
    // The digest push printed pins exactly that manifest.
    {
        let out = stdout_ok(gavel_cmd(&[
            "bundle",
            "pull",
            &format!("oci://{}/policies/fixture@{digest}", reg.host()),
            "-o",
            s.path("check.tar.gz").to_str().unwrap(),
            "--insecure",
        ]));
        assert!(out.contains(&digest), "{out}");
    }
    // An attestation manifest (unknown/unknown) listed first: an image
    // manifest without a bundle layer.
    let att = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": []})
    .to_string();
    let att_digest = format!("sha256:{}", sha256_hex(att.as_bytes()));
    put_manifest(
        &reg,
        "policies/fixture",
        &att_digest,
        "application/vnd.oci.image.manifest.v1+json",
        &att,
    )
    .await;
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att_digest, "size": att.len(),
             "platform": {"os": "unknown", "architecture": "unknown"}},
            // gavel checks digests, not these informative sizes.
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 0}
        ]})
    .to_string();
    put_manifest(
        &reg,
        "policies/fixture",
        "indexed",
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await;
    let out = stdout_ok(gavel_cmd(&[
        "bundle",
        "pull",
        &format!("oci://{}/policies/fixture:indexed", reg.host()),
        "-o",
        s.path("via-index.tar.gz").to_str().unwrap(),
        "--insecure",
    ]));
    assert!(out.contains("revision \"r1\""), "{out}");
    assert_eq!(
        std::fs::read(s.path("via-index.tar.gz")).unwrap(),
        std::fs::read(&tb).unwrap(),
        "the bundle layer behind the index, byte for byte"
    );
    // And gavel run decides with it.
    config(
        &s,
        &reg,
        &format!("oci://{}/policies/fixture:indexed", reg.host()),
        &["k1"],
    );
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    c.cancel().await.unwrap();

    // `gavel replay` takes a candidate straight from the registry (these
    // records' inputs are masked, so they are counted apart, not replayed).
    let candidate = format!("oci://{}/policies/fixture:candidate", reg.host());
    push(
        &tarball(&s, &bundle(&s, "r2", "r2", DENY_ECHO, Some("k1"))),
        &candidate,
    );
    let out = stdout_ok(gavel_cmd(&[
        "replay",
        "--log",
        s.path("decisions.jsonl").to_str().unwrap(),
        "--config",
        s.config().to_str().unwrap(),
        "--bundle",
        &candidate,
        "--json",
    ]));
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["total"], 2, "{summary}");
    let missing = format!("oci://{}/policies/fixture:nope", reg.host());
    let out = gavel_cmd(&[
        "replay",
        "--log",
        s.path("decisions.jsonl").to_str().unwrap(),
        "--config",
        s.config().to_str().unwrap(),
        "--bundle",
        &missing,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("policies/fixture:nope"));
}

/// The PyPI `oras` SDK (installed by scripts/setup into .deps/oras).
fn oras(op: &str, reg: &TestRegistry, target: &str, path: &Path) {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/oras/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oras/oras_tool.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([op, &reg.host(), target, path.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("{} (run scripts/setup): {e}", py.display()));
    assert!(
        out.status.success(),
        "oras {op}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gzipped tarball with arbitrary entries, the way an attacker would
/// build one (gavel's own tools refuse to make these).
fn evil_tarball(
    path: &Path,
    build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<std::fs::File>>),
) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    build(&mut b);
    b.into_inner().unwrap().finish().unwrap();
}

type Tar = tar::Builder<flate2::write::GzEncoder<std::fs::File>>;
/// (case name, how to build its layer, what the refusal must say)
type EvilCase<'a> = (&'a str, Box<dyn FnOnce(&mut Tar) + 'a>, &'a str);

fn raw_entry(b: &mut Tar, name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) {
    let mut h = tar::Header::new_old();
    // Written raw so names like "../x" survive (the tar crate refuses them
    // through set_path).
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    if let Some(l) = link {
        h.set_link_name(l).unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oras_interop_and_malicious_layers() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    keys(&s);
    let host = reg.host();
    // oras pushes a gavel-signed bundle exactly as OPA's docs say; gavel
    // pulls it, verifies it, decides with it.
    let tb = tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1")));
    let tag = format!("oci://{host}/policies/fixture:live");
    oras("push", &reg, &format!("{host}/policies/fixture:live"), &tb);
    config(&s, &reg, &tag, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );

    // oras pulls what gavel pushed (and, seeing a tar+gzip layer, unpacks
    // it): the very files that were signed.
    push(&tb, &format!("oci://{host}/policies/fixture:by-gavel"));
    let outdir = s.path("oras-out");
    oras(
        "pull",
        &reg,
        &format!("{host}/policies/fixture:by-gavel"),
        &outdir,
    );
    for f in [
        ".manifest",
        ".signatures.json",
        "mcp/fixture/policy.rego",
        "mcp/fixture/data.json",
    ] {
        assert_eq!(
            std::fs::read(outdir.join(f)).unwrap(),
            std::fs::read(s.path("r1").join(f)).unwrap(),
            "{f}"
        );
    }

    // Layers no gavel tool would build, pushed with oras under the live tag:
    // each is refused, naming the check, and r1 keeps deciding.
    let manifest = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture/.manifest"),
    )
    .unwrap();
    let cases: Vec<EvilCase> = vec![
        (
            "traversal",
            Box::new(|b: &mut Tar| {
                raw_entry(b, "/.manifest", tar::EntryType::Regular, &manifest, None);
                raw_entry(
                    b,
                    "../../etc/evil.rego",
                    tar::EntryType::Regular,
                    b"package x\n",
                    None,
                );
            }),
            "escapes the bundle",
        ),
        (
            "symlink",
            Box::new(|b: &mut Tar| {
                raw_entry(b, "/.manifest", tar::EntryType::Regular, &manifest, None);
                raw_entry(
                    b,
                    "/mcp/fixture/data.json",
                    tar::EntryType::Symlink,
                    b"",
                    Some("/etc/passwd"),
                );
            }),
            "entries are refused",
        ),
        (
            "bomb",
            Box::new(|b: &mut Tar| {
                raw_entry(b, "/.manifest", tar::EntryType::Regular, &manifest, None);
                let zeros = vec![0u8; 7 << 20];
                for i in 0..12 {
                    raw_entry(
                        b,
                        &format!("/pad{i}.json"),
                        tar::EntryType::Regular,
                        &zeros,
                        None,
                    );
                }
            }),
            "gzip bomb",
        ),
    ];
    for (name, build, needle) in cases {
        let p = s.path(&format!("{name}.tar.gz"));
        evil_tarball(&p, build);
        oras("push", &reg, &format!("{host}/policies/fixture:live"), &p);
        eventually(&format!("{name} refused with {needle:?}"), || {
            let st = status(&s.path("state"));
            st["policies"]["fx"]["oci"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .await;
        assert_eq!(
            reasons(&c, "echo").await,
            json!("allowed"),
            "r1 still decides after {name}"
        );
        assert_eq!(
            status(&s.path("state"))["policies"]["fx"]["oci"][0]["active_revision"],
            "r1"
        );
    }
    c.cancel().await.unwrap();
}

/// Two host windows start their gavel at the same moment; both decide with
/// the pulled (or cached) bundle.
async fn two_deciding_instances(s: &Setup) -> (Client, Client) {
    let (a, b) = tokio::join!(
        connect_cmd(launch(s), TestHost::new()),
        connect_cmd(launch(s), TestHost::new())
    );
    for c in [&a, &b] {
        assert_eq!(
            reasons(c, "destructive_delete").await,
            json!(["destructive_denied"])
        );
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_cache() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    published_r1(&s, &reg);
    let (a, b) = two_deciding_instances(&s).await;
    // Both persisted the same verified bundle: one record, one blob, no
    // temporary files left behind.
    let refs: Vec<_> = std::fs::read_dir(s.path("cache/oci/refs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(refs.len(), 1, "{refs:?}");
    let blobs: Vec<_> = std::fs::read_dir(s.path("cache/oci/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert!(!refs.iter().chain(&blobs).any(|n| n.contains(".tmp.")));
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    // Offline, both restart from it.
    let mut reg = reg;
    reg.stop();
    let (a, b) = two_deciding_instances(&s).await;
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// The remediation a server without its bundle names is true: `gavel bundle
/// pull REF --config … --server NAME` verifies the bundle as that server
/// would and stores it where a start looks, so gavel then starts offline.
#[tokio::test(flavor = "multi_thread")]
async fn the_remediation_for_a_missing_bundle_fills_the_cache() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    published_r1(&s, &reg);
    let other = format!("oci://{}/policies/fixture:other", reg.host());
    config(&s, &reg, &other, &["k1"]);
    // Registry down, nothing cached: fails closed, naming what to run.
    let mut reg = reg;
    reg.stop();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    let r = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let hint = format!(
        "gavel bundle pull {other} --config {} --server fx",
        s.config().display()
    );
    assert!(text(&r).contains(&hint), "{}", text(&r));
    c.cancel().await.unwrap();

    // Registry back (same storage, new port): run the hint as given.
    reg.restart();
    let other = format!("oci://{}/policies/fixture:other", reg.host());
    let tag = format!("oci://{}/policies/fixture:live", reg.host());
    config(&s, &reg, &other, &["k1"]);
    // A bundle the server would refuse is not stored.
    push(
        &tarball(&s, &bundle(&s, "by-k2", "bad", "", Some("k2"))),
        &other,
    );
    let pull = |r: &str| {
        gavel_cmd(&[
            "bundle",
            "pull",
            r,
            "--config",
            s.config().to_str().unwrap(),
            "--server",
            "fx",
        ])
    };
    let out = pull(&other);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not stored in the bundle cache")
            && err.contains("verification key corresponding to ID k2 not found"),
        "{err}"
    );
    assert!(!s.path("cache/oci/refs").exists(), "nothing stored");
    // A ref the server does not use is refused too.
    let out = pull(&tag);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a bundle of server \"fx\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The good one is verified and stored.
    push(&s.path("r1.tar.gz"), &other);
    let out = stdout_ok(pull(&other));
    assert!(
        out.contains("verified for server \"fx\"") && out.contains("stored in the bundle cache"),
        "{out}"
    );
    // Registry gone again: gavel starts from what the hint stored.
    reg.stop();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    eventually("started from the cache", || {
        status(&s.path("state"))["policies"]["fx"]["oci"][0]["source"] == "cache"
    })
    .await;
    c.cancel().await.unwrap();
}

/// The fenced block after `marker` in README.md.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md lost its {marker} marker"));
    let rest = &readme[at..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// Kills the process group of the walkthrough's shell (the registry it
/// started in the background is in it) when the test ends, however it ends.
struct ProcessGroup(i32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: signals the group this test created (its leader's pid).
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
        }
    }
}

/// README "Publish a policy", run as written: its shell block (with only
/// the command, directory and port it reads from the environment set, so
/// several test runs can share the machine) builds, signs with a PKCS#8 RSA
/// key from `openssl genpkey`, and pushes to a real registry; its TOML block
/// (the demo directory and port substituted, the placeholder command given
/// a real server) pins it; the pulled, verified bundle decides.
#[tokio::test(flavor = "multi_thread")]
async fn readme_publish_walkthrough_runs_as_written() {
    use std::os::unix::process::CommandExt;
    let s = Setup::new("");
    let demo = s.path("demo");
    let port = free_port();
    let script = readme_block("<!-- publish-walkthrough:sh -->");
    let child = std::process::Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GAVEL", GAVEL)
        .env("GAVEL_DEMO", &demo)
        .env("GAVEL_DEMO_PORT", port.to_string())
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _group = ProcessGroup(child.id() as i32);
    let out = child.wait_with_output().unwrap();
    let printed = stdout_ok(out);
    let pin = printed
        .lines()
        .find_map(|l| l.strip_prefix("pin it: bundle = "))
        .unwrap_or_else(|| panic!("push printed no pin: {printed}"));
    assert!(
        pin.contains(&format!("127.0.0.1:{port}/policies/filesystem@sha256:")),
        "{pin}"
    );
    assert!(
        std::fs::read_to_string(demo.join("release.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"),
        "openssl genpkey writes PKCS#8"
    );
    // Signed after it was built: the tarball holds the signature.
    let inspect = stdout_ok(gavel_cmd(&[
        "bundle",
        "inspect",
        demo.join("filesystem.tar.gz").to_str().unwrap(),
    ]));
    assert!(
        inspect.contains("\"signed\": true")
            && inspect.contains("\"signature_kid\": \"release-2026\"")
            && inspect.contains("\"revision\": \"1.0.0\""),
        "{inspect}"
    );

    let toml = readme_block("<!-- publish-walkthrough:toml -->");
    assert!(toml.contains("command = \"…\""), "{toml}");
    let toml = toml
        .replace("/tmp/gavel-demo", demo.to_str().unwrap())
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{port}"))
        .replace(
            "command = \"…\"",
            &format!(
                "command = {FIXTURE:?}\nargs = [\"--name\", \"filesystem\", \"--record\", {:?}]",
                s.path("r.jsonl").display().to_string()
            ),
        );
    std::fs::write(s.config(), toml).unwrap();
    let mut cmd = launch(&s);
    cmd.env("GAVEL_CACHE_DIR", s.path("cache"));
    let c = connect_cmd(cmd, TestHost::new()).await;
    // The filesystem policy decides: the fixture's echo is not a
    // filesystem tool.
    assert_eq!(reasons(&c, "echo").await, json!(["action_not_permitted"]));
    eventually("status shows the verified bundle", || {
        let oci = &status(&s.path("state"))["policies"]["filesystem"]["oci"][0];
        oci["active_revision"] == "1.0.0" && oci["signer_keyid"] == "release-2026"
    })
    .await;
    c.cancel().await.unwrap();
}

/// A digest pin: decided from the registry, then offline from the cache
/// without asking the registry at all; a registry that answers a pin with
/// another manifest is refused (the server fails closed, naming both
/// digests). The text status shows each OCI layer's own signer.
#[tokio::test(flavor = "multi_thread")]
async fn digest_pins_offline_and_a_registry_that_breaks_the_pin() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    keys(&s);
    let tb = tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1")));
    let digest = push(&tb, &format!("oci://{}/policies/fixture:live", reg.host()));
    let pin = format!("oci://{}/policies/fixture@{digest}", reg.host());
    config(&s, &reg, &pin, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    eventually("active from the registry", || {
        status(&s.path("state"))["policies"]["fx"]["oci"][0]["source"] == "registry"
    })
    .await;
    c.cancel().await.unwrap();

    let mut reg = reg;
    reg.stop();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    let mut seen = Value::Null;
    eventually("active from the cache", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["source"] == "cache"
    })
    .await;
    assert_eq!(
        seen["requests"], 0,
        "a cached digest pin never asks: {seen}"
    );
    assert!(seen.get("message").is_none(), "{seen}");
    assert_eq!(seen["manifest_digest"], json!(digest));
    c.cancel().await.unwrap();

    // Same address, now a registry that answers any pin with some other
    // (well-formed) manifest; a pin this cache has never seen.
    let other = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": []})
    .to_string();
    fake_registry(
        tokio::net::TcpListener::bind(("127.0.0.1", reg.port))
            .await
            .unwrap(),
        other.clone(),
    );
    let wanted = format!("sha256:{}", sha256_hex(b"some other manifest"));
    let broken = format!("oci://{}/policies/fixture@{wanted}", reg.host());
    config(&s, &reg, &broken, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    let r = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(
        t.contains(&format!(
            "the registry sent a manifest with digest sha256:{}, not the pinned {wanted}",
            sha256_hex(other.as_bytes())
        )),
        "{t}"
    );
    c.cancel().await.unwrap();
}

/// `gavel status` (text) names each OCI layer's own signer.
#[tokio::test(flavor = "multi_thread")]
async fn text_status_shows_each_layers_signer() {
    let reg = TestRegistry::start();
    let s = Setup::new("");
    keys(&s);
    let fixture = format!("oci://{}/policies/fixture:live", reg.host());
    let workflow = format!("oci://{}/policies/workflow:live", reg.host());
    push(
        &tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1"))),
        &fixture,
    );
    let wf = s.path("workflow");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/workflow"),
        &wf,
    );
    sign(&s, &wf, "k2", "k2.secret");
    push(&tarball(&s, &wf), &workflow);
    config(&s, &reg, &fixture, &["k1", "k2"]);
    let cfg = std::fs::read_to_string(s.config()).unwrap().replace(
        &format!("bundle = {fixture:?}"),
        &format!("bundles = [{fixture:?}, {workflow:?}]"),
    );
    std::fs::write(s.config(), cfg).unwrap();
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    let mut human = String::new();
    eventually("both layers in the text status", || {
        let out = Command::new(GAVEL)
            .arg("status")
            .env("GAVEL_STATE_DIR", s.path("state"))
            .output()
            .unwrap();
        human = String::from_utf8_lossy(&out.stdout).into_owned();
        human.contains("policies/workflow:live: revision 1.0.0")
    })
    .await;
    let line = |name: &str| {
        human
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        line("policies/fixture:live: revision").contains("signer k1"),
        "{human}"
    );
    assert!(
        line("policies/workflow:live: revision").contains("signer k2"),
        "{human}"
    );
    c.cancel().await.unwrap();
}
