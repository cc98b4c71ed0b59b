//! OCI registries as they are in the field: basic auth, image indexes with
//! attestations, bundles pushed by `oras`, and layers built to attack the
//! reader (links, paths escaping the bundle).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::oci::*;
use common::registry::TestRegistry;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry() {
    let reg = TestRegistry::start_with(Some(("ops", "s3cret-pw")));
    let s = Setup::blank();
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
    s.write_config(&text_cfg);
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
    let s = Setup::blank();
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

    // `gavel replay` takes a candidate straight from the registry. The
    // fixture policy reads `input.user.id`, which its own log rules mask:
    // with it, these records are counted apart, not replayed.
    let candidate = format!("oci://{}/policies/fixture:candidate", reg.host());
    push(
        &tarball(&s, &bundle(&s, "r2", "r2", DENY_ECHO, Some("k1"))),
        &candidate,
    );
    let replay_out = |candidate: &str| {
        gavel_cmd(&[
            "replay",
            "--log",
            s.path("decisions.jsonl").to_str().unwrap(),
            "--config",
            s.config().to_str().unwrap(),
            "--bundle",
            candidate,
            "--json",
        ])
    };
    let replay = |candidate: &str| -> Value {
        serde_json::from_str(stdout_ok(replay_out(candidate)).trim()).unwrap()
    };
    let summary = replay(&candidate);
    assert_eq!(summary["total"], 2, "{summary}");
    assert_eq!(summary["not_replayable"]["masked_input"], 2, "{summary}");
    // A candidate that reads no masked field re-decides both records: the
    // delete (denied by r1) is now allowed, the echo (allowed) now denied.
    let lax_dir = common::policy::bundle(
        s.dir.path(),
        "lax",
        "mcp/fixture",
        json!({"revision": "r3"}),
        "package mcp.fixture\n\ndecision := {\"allow\": true} if input.action.tool == \"destructive_delete\"\n\ndecision := {\"allow\": false, \"reasons\": [\"echo_frozen\"]} if input.action.tool == \"echo\"\n",
    );
    let lax = format!("oci://{}/policies/fixture:lax", reg.host());
    push(&tarball(&s, &lax_dir), &lax);
    let summary = replay(&lax);
    assert_eq!(
        (&summary["allow_to_deny"], &summary["deny_to_allow"]),
        (&json!(1), &json!(1)),
        "{summary}"
    );
    assert_eq!(
        summary["by_tool"]["allow→deny fx/echo"]["count"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["by_tool"]["deny→allow fx/destructive_delete"]["count"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["by_reason"]["allow→deny echo_frozen"]["count"], 1,
        "{summary}"
    );
    let missing = format!("oci://{}/policies/fixture:nope", reg.host());
    let out = replay_out(&missing);
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
    let s = Setup::blank();
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
