//! Operating OCI bundles: two instances on one cache, the remediation a
//! missing bundle names, the README publish walkthrough run as written,
//! digest pins offline, and the text status naming each layer's signer.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::oci::*;
use common::registry::TestRegistry;
use common::*;
use serde_json::{Value, json};

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
    let s = Setup::blank();
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
    let s = Setup::blank();
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
    let s = Setup::blank();
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
    s.write_config(&toml);
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
    let s = Setup::blank();
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
    let s = Setup::blank();
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
    ) + &role("fx", &workflow, &["gavel/workflow"], Some("workflow"));
    s.write_config(&cfg);
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
