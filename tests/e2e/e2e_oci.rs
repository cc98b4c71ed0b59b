//! Signed bundles from a real OCI registry (Debian's `docker-registry`):
//! push with `gavel bundle push`, pin by tag, decide, hot-reload a new
//! revision under the same tag (announcing list changes, dropping no call),
//! refuse bad bundles while keeping the last good one, restart offline from
//! the cache, and never use the cache for another pin.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::oci::*;
use common::registry::TestRegistry;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn pull_decide_hot_reload_and_restart_offline() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
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
    let layer = |file: &str| {
        format!(
            "sha256:{}",
            sha256_hex(&std::fs::read(s.path(file)).unwrap())
        )
    };
    assert_eq!(
        last["bundles"]["policies/fixture"]["revision"], "r1",
        "{last}"
    );
    assert_eq!(
        last["bundles"]["policies/fixture"]["digest"],
        json!(layer("r1.tar.gz")),
        "the pushed layer's digest: {last}"
    );
    eventually("status shows the active OCI bundle", || {
        let st = status(&s.path("state"));
        st["policies"]["fx"]["oci"][0]["active_revision"] == "r1"
    })
    .await;
    let st = status(&s.path("state"));
    let oci = &st["policies"]["fx"]["oci"][0];
    assert_eq!(oci["source"], "registry");
    assert_eq!(oci["active_digest"], json!(layer("r1.tar.gz")), "{oci}");
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
    // none dropped; the list change is announced (counted from here: one
    // sent at start must not satisfy the wait).
    let listed_before = seen.lock().unwrap().tool_list_changed;
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
    let last = s.decisions().pop().unwrap();
    assert_eq!(
        last["bundles"]["policies/fixture"],
        json!({"revision": "r2", "digest": layer("r2.tar.gz"), "layer": "resource"}),
        "{last}"
    );
    assert_eq!(
        status(&s.path("state"))["policies"]["fx"]["oci"][0]["active_digest"],
        json!(layer("r2.tar.gz"))
    );
    assert!(
        answers
            .iter()
            .all(|a| *a == json!("allowed") || *a == json!(["echo_frozen"])),
        "every call during the reload was decided by r1 or r2: {answers:?}"
    );
    eventually("tools/list_changed after activation", || {
        seen.lock().unwrap().tool_list_changed > listed_before
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
    // gavel starts from the cache and asks the registry in the background:
    // the pull error reaches the status once that request fails.
    eventually(
        "status says the bundle came from the cache, with the pull error",
        || {
            let st = status(&s.path("state"));
            let oci = &st["policies"]["fx"]["oci"][0];
            oci["source"] == "cache"
                && oci["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("policies/fixture"))
        },
    )
    .await;
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
#[tokio::test(flavor = "multi_thread")]
async fn bad_bundles_are_refused_and_the_last_good_one_kept() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
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
    // A new gavel starts from the cached r1 and activates the tag's r2 from
    // the registry in the background.
    eventually("the k2-signed r2 is active", || {
        status(&s.path("state"))["policies"]["fx"]["oci"][0]["active_revision"] == "r2"
    })
    .await;
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
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));

    c.cancel().await.unwrap();

    // The registry answers, but with a bundle that fails verification (signed
    // by a key the server does not trust): the next gavel starts from the
    // cached r1 for this server and ref, refuses the registry's bundle when
    // it asks in the background, saying why, and does not download the
    // refused layer again on every poll.
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
                && m.contains("the last good bundle stays active")
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
    let s2 = Setup::blank();
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

fn write_config_for(s: &Setup, host: &str, reference: &str, cache: &Path) {
    s.write_config(&format!(
            "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n\
             [oci.registries.\"{host}\"]\ninsecure = true\n\n{}bundle = {reference:?}\nkeys = [\"k1\"]\n{}",
            s.path("k1.secret").display().to_string(),
            cache.display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            role("fx", reference, &["mcp/fixture"], None),
        ));
}

/// A registry that accepts connections and never answers cannot hold the
/// host's `initialize` when a verified cached bundle exists: gavel starts
/// from the cache (verified again as the policy is built) and asks the
/// registry in the background, however long a pull may take.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_does_not_delay_initialize_when_the_cache_has_the_bundle() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let reg = TestRegistry::start();
    let s = Setup::blank();
    published_r1(&s, &reg);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("r1 active from the registry (and cached)", || {
        let oci = &status(&s.path("state"))["policies"]["fx"]["oci"][0];
        oci["source"] == "registry" && oci["active_revision"] == "r1"
    })
    .await;
    c.cancel().await.unwrap();

    let mut reg = reg;
    reg.stop();
    let stalled = tokio::net::TcpListener::bind(("127.0.0.1", reg.port))
        .await
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = stalled.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(sock); // never answered, never closed
        }
    });
    // A pull may wait an hour: only a start that does not wait for it
    // answers `initialize` (connect_cmd allows PATIENCE).
    let cfg = std::fs::read_to_string(s.config()).unwrap();
    s.write_config(&cfg.replace("[oci]\n", "[oci]\npull_timeout = \"1h\"\n"));
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(
        reasons(&c, "echo").await,
        json!("allowed"),
        "r1 from the cache"
    );
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    eventually("the registry is asked in the background", || {
        accepted.load(Ordering::SeqCst) >= 1
    })
    .await;
    let mut seen = Value::Null;
    eventually("the status shows the cached bundle active", || {
        seen = status(&s.path("state"))["policies"]["fx"]["oci"][0].clone();
        seen["source"] == "cache" && seen["active_revision"] == "r1"
    })
    .await;
    assert_eq!(seen["signer_keyid"], "k1", "{seen}");
    c.cancel().await.unwrap();
}
