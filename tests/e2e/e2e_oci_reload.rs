//! OCI bundles over time: an unchanged layer is never downloaded again
//! (counted by gavel and by a relay in front of the registry), a cached
//! bundle is verified again at every start (a key removed from the trust
//! list makes its cache unusable), and a hot reload answers every call, in
//! flight or new, with one whole revision, its decision records naming that
//! revision and the layer's digest.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::oci::*;
use common::registry::TestRegistry;
use common::*;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};

/// What a relay in front of the registry saw of the fixture repository.
struct Relay {
    host: String,
    manifests: Arc<AtomicUsize>,
    blobs: Arc<AtomicUsize>,
}

impl Relay {
    fn counts(&self) -> (usize, usize) {
        (
            self.manifests.load(Ordering::SeqCst),
            self.blobs.load(Ordering::SeqCst),
        )
    }
}

fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// A TCP relay to the registry on `port` that counts the manifest and blob
/// requests of `policies/fixture` it passes on (request lines, across
/// keep-alive connections and read boundaries).
async fn counting_relay(port: u16) -> Relay {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const MANIFESTS: &[u8] = b" /v2/policies/fixture/manifests/";
    const BLOBS: &[u8] = b" /v2/policies/fixture/blobs/";
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let relay = Relay {
        host: format!("127.0.0.1:{}", listener.local_addr().unwrap().port()),
        manifests: Default::default(),
        blobs: Default::default(),
    };
    let (manifests, blobs) = (relay.manifests.clone(), relay.blobs.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut ur, mut uw) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut ur, &mut cw).await;
            });
            let (manifests, blobs) = (manifests.clone(), blobs.clone());
            tokio::spawn(async move {
                let mut carry: Vec<u8> = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    carry.extend_from_slice(&buf[..n]);
                    manifests.fetch_add(occurrences(&carry, MANIFESTS), Ordering::SeqCst);
                    blobs.fetch_add(occurrences(&carry, BLOBS), Ordering::SeqCst);
                    // Keep less than a whole needle: a match split by the
                    // read boundary is counted once, with the next read.
                    let keep = MANIFESTS.len().max(BLOBS.len()) - 1;
                    carry.drain(..carry.len().saturating_sub(keep));
                    if uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = uw.shutdown().await;
            });
        }
    });
    relay
}

fn oci_status(s: &Setup) -> Value {
    status(&s.path("state"))["policies"]["fx"]["oci"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_active_layer_is_not_downloaded_again() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    // gavel reaches the registry through the relay (ref and registry table).
    let relay = counting_relay(reg.port).await;
    let cfg = std::fs::read_to_string(s.config()).unwrap();
    s.write_config(&cfg.replace(&reg.host(), &relay.host));
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    let mut first = Value::Null;
    eventually("r1 active from the registry", || {
        first = oci_status(&s);
        first["active_revision"] == "r1" && first["source"] == "registry"
    })
    .await;
    assert_eq!(first["downloads"], 1, "{first}");
    let (manifests, blobs) = relay.counts();
    assert!(manifests >= 1 && blobs >= 1, "the relay saw the pull");

    // Several poll rounds of the unchanged tag, then the same layer pushed
    // again under a new manifest (another title): the layer digest is what
    // counts, so nothing is downloaded either time.
    let requests = first["requests"].as_u64().unwrap();
    eventually("three polls of the unchanged tag", || {
        oci_status(&s)["requests"]
            .as_u64()
            .is_some_and(|n| n >= requests + 3)
            && relay.counts().0 >= manifests + 3
    })
    .await;
    let again = s.path("r1-again.tar.gz");
    std::fs::copy(s.path("r1.tar.gz"), &again).unwrap();
    let new_manifest = push(&again, &tag);
    assert_ne!(json!(new_manifest), first["manifest_digest"]);
    let (manifests, _) = relay.counts();
    let requests = oci_status(&s)["requests"].as_u64().unwrap();
    let mut later = Value::Null;
    eventually("three polls after the same layer was pushed again", || {
        later = oci_status(&s);
        later["requests"]
            .as_u64()
            .is_some_and(|n| n >= requests + 3)
            && relay.counts().0 >= manifests + 3
    })
    .await;
    assert_eq!(later["downloads"], 1, "downloaded again: {later}");
    assert_eq!(
        relay.counts().1,
        blobs,
        "the registry was asked for a blob again: {later}"
    );
    assert_eq!(
        later["last_successful_download"], first["last_successful_download"],
        "{later}"
    );
    assert_eq!(later["active_digest"], first["active_digest"], "{later}");
    assert_eq!(later["active_revision"], "r1", "{later}");
    assert!(later.get("code").is_none(), "no error: {later}");
    // …but the status names the manifest the tag names now.
    assert_eq!(later["manifest_digest"], json!(new_manifest), "{later}");
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_bundle_is_verified_again_at_start() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    eventually("r1 (k1) active and cached", || {
        let oci = oci_status(&s);
        oci["active_revision"] == "r1" && oci["signer_keyid"] == "k1"
    })
    .await;
    c.cancel().await.unwrap();

    // Registry gone, k1 no longer trusted: the cached k1-signed bundle is
    // not used; the server fails closed.
    let mut reg = reg;
    reg.stop();
    config(&s, &reg, &tag, &["k2"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    let r = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let sc = r.structured_content.clone().unwrap_or_default();
    assert_eq!(sc["reasons"], json!(["policy_unavailable"]), "{r:?}");
    assert!(
        text(&r).contains("verification key corresponding to ID k1 not found"),
        "{}",
        text(&r)
    );
    let upstream_calls = recorded_calls(&s.path("r.jsonl")).len();
    assert_eq!(
        reasons(&c, "destructive_delete").await,
        json!(["policy_unavailable"])
    );
    assert_eq!(
        recorded_calls(&s.path("r.jsonl")).len(),
        upstream_calls,
        "nothing reaches the upstream"
    );
    let mut seen = Value::Null;
    eventually("the refusal of the cached bundle is in the status", || {
        seen = oci_status(&s);
        seen["message"]
            .as_str()
            .is_some_and(|m| m.contains("verification key corresponding to ID k1 not found"))
    })
    .await;
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert!(seen.get("active_revision").is_none(), "{seen}");
    c.cancel().await.unwrap();

    // The cache itself is intact: trusting k1 again, the same offline start
    // decides with it.
    config(&s, &reg, &tag, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"), "r1 from cache");
    eventually("r1 active from the cache", || {
        let oci = oci_status(&s);
        oci["source"] == "cache" && oci["active_revision"] == "r1"
    })
    .await;
    c.cancel().await.unwrap();
}

/// One `tools/call` as the host sends it.
async fn call_on(
    peer: &rmcp::service::Peer<rmcp::service::RoleClient>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let mut p = CallToolRequestParams::new(tool.to_string());
    p.arguments = args.as_object().cloned();
    peer.call_tool(p).await
}

/// The decision record of the call whose `call` argument is `tag` (the
/// fixture bundle masks echo's `text` in the log).
fn record_for(records: &[Value], tag: &str) -> Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["input"]["action"]["args"]["call"] == tag)
        .collect();
    assert_eq!(found.len(), 1, "one record for {tag}: {found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_answers_every_call_in_flight_with_one_revision() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    // Calls in flight may wait on the gate longer than the fixture's usual
    // call timeout; PATIENCE bounds them.
    let cfg = std::fs::read_to_string(s.config()).unwrap();
    s.write_config(&cfg.replace("call_timeout = \"30s\"", "call_timeout = \"300s\""));
    let digest = |file: &str| {
        format!(
            "sha256:{}",
            sha256_hex(&std::fs::read(s.path(file)).unwrap())
        )
    };
    let (d1, name) = (digest("r1.tar.gz"), "policies/fixture");

    let host = TestHost::new();
    let seen = host.seen.clone();
    let c = connect_cmd(launch(&s), host).await;
    let peer = c.peer().clone();
    assert_eq!(reasons(&c, "echo").await, json!("allowed"));
    eventually("r1 active", || oci_status(&s)["active_revision"] == "r1").await;
    assert_eq!(oci_status(&s)["active_digest"], json!(d1));
    assert!(
        c.list_all_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "add")
    );

    // Calls decided by r1 and in flight at the upstream (held by a gate the
    // test opens after r2 is active).
    let gate = s.path("gate");
    let mut in_flight = Vec::new();
    for i in 0..3 {
        let (peer, gate) = (peer.clone(), gate.display().to_string());
        in_flight.push(tokio::spawn(async move {
            call_on(
                &peer,
                "slow",
                json!({"ms": 600_000, "until": gate, "call": format!("slow-{i}")}),
            )
            .await
        }));
    }
    eventually("three calls held at the upstream", || {
        recorded_calls(&s.path("r.jsonl"))
            .iter()
            .filter(|v| v["params"]["name"] == "slow")
            .count()
            == 3
    })
    .await;

    // r2 under the same tag, while callers keep calling; each stops after
    // two calls made once r2 is known active (and at ten before that, well
    // under the fixture policy's turn limit of 50 a session).
    let listed_before = seen.lock().unwrap().tool_list_changed;
    push(
        &tarball(&s, &bundle(&s, "r2", "r2", DENY_ECHO, Some("k1"))),
        &tag,
    );
    let d2 = digest("r2.tar.gz");
    let active = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for t in 0..3 {
        let (peer, active) = (peer.clone(), active.clone());
        callers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let (mut i, mut after) = (0, 0);
            while after < 2 {
                let known = active.load(Ordering::SeqCst);
                if known || i < 10 {
                    let tag = format!("c{t}-{i}");
                    let r = call_on(&peer, "echo", json!({"text": tag, "call": tag})).await;
                    answers.push((tag, known, r));
                    i += 1;
                    after += known as usize;
                }
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
            answers
        }));
    }
    eventually("r2 active", || oci_status(&s)["active_revision"] == "r2").await;
    active.store(true, Ordering::SeqCst);
    assert_eq!(oci_status(&s)["active_digest"], json!(d2));
    std::fs::write(&gate, "open").unwrap();

    // Every held call is answered by the upstream, decided by r1.
    for (i, h) in in_flight.into_iter().enumerate() {
        let r = h.await.unwrap().expect("the held call got an answer");
        assert_ne!(r.is_error, Some(true), "{r:?}");
        assert!(text(&r).starts_with("released by"), "{}", text(&r));
        let rec = record_for(&s.decisions(), &format!("slow-{i}"));
        assert_eq!(rec["bundles"][name]["revision"], "r1", "{rec}");
        assert_eq!(rec["bundles"][name]["digest"], json!(d1), "{rec}");
    }
    // Every new call is answered by a whole revision: allowed by r1, or
    // denied by r2 (never an error, never a mix); once r2 is known active,
    // only r2.
    let mut by = std::collections::BTreeMap::<&str, usize>::new();
    for h in callers {
        for (tag, known, r) in h.await.unwrap() {
            let r = r.unwrap_or_else(|e| panic!("{tag}: no answer: {e}"));
            let rec = record_for(&s.decisions(), &tag);
            let b = &rec["bundles"][name];
            if r.is_error == Some(true) {
                let d = &serde_json::to_value(&r).unwrap()["_meta"]["dev.gavel/decision"];
                assert_eq!(d["reasons"], json!(["echo_frozen"]), "{tag}: {r:?}");
                assert_eq!(d["policy_version"], "policies/fixture@r2", "{tag}: {d}");
                assert_eq!(
                    (b["revision"].clone(), b["digest"].clone()),
                    (json!("r2"), json!(d2)),
                    "{tag}: {rec}"
                );
                *by.entry("r2").or_default() += 1;
            } else {
                assert!(!known, "{tag}: allowed after r2 was active: {r:?}");
                assert_eq!(text(&r), tag, "{tag}: the upstream's answer");
                assert_eq!(
                    (b["revision"].clone(), b["digest"].clone()),
                    (json!("r1"), json!(d1)),
                    "{tag}: {rec}"
                );
                *by.entry("r1").or_default() += 1;
            }
        }
    }
    assert!(by.get("r2").is_some_and(|n| *n >= 6), "{by:?}");

    // The list change is announced after the activation (not just the one a
    // start may send), and r2's list is what the host then sees.
    eventually("tools/list_changed after r2's activation", || {
        seen.lock().unwrap().tool_list_changed > listed_before
    })
    .await;
    assert!(
        !c.list_all_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "add"),
        "r2 hides add"
    );
    c.cancel().await.unwrap();
}

/// A tag moved back to an older revision — validly signed once, by a key
/// still trusted, so verification alone would take it — is refused as a
/// rollback, and stays refused across a restart (the cached newer bundle
/// is active before the registry is asked). Pinning the older bundle by
/// digest is the operator's decision, and then it decides.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moved_back_to_an_older_revision_is_refused_unless_pinned() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    push(
        &tarball(&s, &bundle(&s, "r2", "r2", DENY_ECHO, Some("k1"))),
        &tag,
    );
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("r2 active", || oci_status(&s)["active_revision"] == "r2").await;
    assert_eq!(reasons(&c, "echo").await, json!(["echo_frozen"]));

    let r1 = push(&s.path("r1.tar.gz"), &tag);
    let rollback = |seen: &Value| {
        seen["message"].as_str().is_some_and(|m| {
            m.contains("refused as a rollback") && m.contains("\"r1\"") && m.contains("\"r2\"")
        })
    };
    let mut seen = Value::Null;
    eventually("the rollback to r1 is refused", || {
        seen = oci_status(&s);
        rollback(&seen)
    })
    .await;
    assert_eq!(seen["active_revision"], "r2", "{seen}");
    assert_eq!(seen["code"], "bundle_error", "{seen}");
    assert_eq!(
        reasons(&c, "echo").await,
        json!(["echo_frozen"]),
        "r2 decides"
    );
    c.cancel().await.unwrap();

    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("refused again after a restart", || {
        seen = oci_status(&s);
        rollback(&seen)
    })
    .await;
    assert_eq!(seen["active_revision"], "r2", "{seen}");
    assert_eq!(
        reasons(&c, "echo").await,
        json!(["echo_frozen"]),
        "r2 decides"
    );
    c.cancel().await.unwrap();

    let pin = format!("oci://{}/policies/fixture@{r1}", reg.host());
    config(&s, &reg, &pin, &["k1"]);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("the pinned r1 active", || {
        oci_status(&s)["active_revision"] == "r1"
    })
    .await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"), "r1 decides");
    c.cancel().await.unwrap();
}

/// A bundle's own test that counts for seconds (legal, signed, within the
/// test timeout's reach).
const SLOW_TEST: &str = "\ntest_slow if {\n\tevery x in numbers.range(1, 5000) {\n\t\tevery y in numbers.range(1, 5000) {\n\t\t\tx + y > 1\n\t\t}\n\t}\n}\n";

/// Checking a new bundle (verify, parse, its own tests, compile) runs off
/// the event loop: while a bundle whose own test takes seconds is checked,
/// a call is answered by the active bundle, before the check has ended —
/// the status, written by the same event loop, shows the download and
/// neither an activation nor a refusal yet.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_bundle_check_never_holds_requests() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("r1 active", || oci_status(&s)["active_revision"] == "r1").await;
    let before = oci_status(&s)["downloads"].as_u64().unwrap();
    let slow = tarball(&s, &bundle(&s, "slow", "r2", SLOW_TEST, Some("k1")));
    push(&slow, &tag);
    eventually("the slow bundle downloaded", || {
        oci_status(&s)["downloads"].as_u64() > Some(before)
    })
    .await;
    assert_eq!(reasons(&c, "echo").await, json!("allowed"), "r1 decides");
    let st = oci_status(&s);
    assert_eq!(
        st["active_revision"], "r1",
        "the check is still running: {st}"
    );
    assert!(
        st.get("message").is_none(),
        "the check is still running: {st}"
    );
    // It ends (activated or refused by the test timeout), never half-way.
    let layer = format!("sha256:{}", sha256_hex(&std::fs::read(&slow).unwrap()));
    eventually("the slow bundle's check ended", || {
        let st = oci_status(&s);
        st["active_digest"] == json!(layer)
            || st["message"].as_str().is_some_and(|m| m.contains(&layer))
    })
    .await;
    c.cancel().await.unwrap();
}

/// `dir`'s bundle rewritten to govern `mcp/other` instead of `mcp/fixture`
/// (directory, packages, data references, roots) — a bundle made, and
/// validly signed, for another server.
fn for_another_server(dir: &std::path::Path) {
    fn rewrite(dir: &std::path::Path) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rewrite(&p);
            } else {
                let t = std::fs::read_to_string(&p).unwrap();
                let t = t
                    .replace("mcp.fixture", "mcp.other")
                    .replace("mcp/fixture", "mcp/other");
                std::fs::write(&p, t).unwrap();
            }
        }
    }
    std::fs::rename(dir.join("mcp/fixture"), dir.join("mcp/other")).unwrap();
    rewrite(dir);
}

/// A bundle from the registry, signed by a trusted key, is still refused
/// when it is not made for this server (its roots lie outside what
/// `bundle_roles` gives the server) or claims a layer the operator did not
/// give it (`override` in its own .manifest): which data a bundle governs
/// and which layer it plays are the operator's word, not the bundle's. The
/// last good bundle keeps deciding.
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_bundle_for_another_server_or_layer_is_refused() {
    let reg = TestRegistry::start();
    let s = Setup::blank();
    let tag = published_r1(&s, &reg);
    let c = connect_cmd(launch(&s), TestHost::new()).await;
    eventually("r1 active", || oci_status(&s)["active_revision"] == "r1").await;

    let other = bundle(&s, "other", "r2", DENY_ECHO, None);
    for_another_server(&other);
    sign(&s, &other, "k1", "k1.secret");
    push(&tarball(&s, &other), &tag);
    let mut seen = Value::Null;
    eventually("the other server's bundle is refused", || {
        seen = oci_status(&s);
        seen["message"]
            .as_str()
            .is_some_and(|m| m.contains("mcp/other") && m.contains("not within"))
    })
    .await;
    assert_eq!(seen["active_revision"], "r1", "{seen}");
    assert_eq!(reasons(&c, "echo").await, json!("allowed"), "r1 decides");

    let promoted = bundle(&s, "promoted", "r3", DENY_ECHO, None);
    let manifest = promoted.join(".manifest");
    let m = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"resource\"", "\"override\"");
    std::fs::write(&manifest, m).unwrap();
    sign(&s, &promoted, "k1", "k1.secret");
    push(&tarball(&s, &promoted), &tag);
    eventually("the self-promoted bundle is refused", || {
        seen = oci_status(&s);
        seen["message"]
            .as_str()
            .is_some_and(|m| m.contains("declares layer \"override\""))
    })
    .await;
    assert_eq!(seen["active_revision"], "r1", "{seen}");
    assert_eq!(reasons(&c, "echo").await, json!("allowed"), "r1 decides");
    c.cancel().await.unwrap();
}
