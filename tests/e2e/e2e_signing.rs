//! Signed bundles end to end: `gavel bundle sign/build/verify`, then gavel
//! verifies before it trusts — tampering, wrong keys, rotation, unsigned.
//! ES512 with openssl: tests/e2e/e2e_signing_es512.rs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A copy of the fixture bundle signed (HS256) with the secret in the
/// setup's file `secret_file`, naming `kid`; returns its directory.
fn signed_bundle(s: &Setup, name: &str, secret_file: &str, kid: &str) -> PathBuf {
    let dir = s.path(name);
    copy_dir(&common::policy::fixture_bundle(), &dir);
    common::oci::sign(s, &dir, kid, secret_file);
    dir
}

fn config_with(s: &Setup, bundle: &Path, trusted: &[&str]) -> String {
    let keys: Vec<String> = trusted.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[keys.k2]\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_TEST_K2\"\n\n[identity.user]\nid = \"ada\"\n\n{}bundle = {:?}\nkeys = [{}]\n",
        s.path("k1.secret").display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        bundle.display().to_string(),
        keys.join(", ")
    )
}

/// The HS256 secrets of keys `k1` and `k2` (32 bytes each), in the setup's
/// `k1.secret` and `k2.secret`.
fn write_secrets(s: &Setup) {
    std::fs::write(s.path("k1.secret"), "first-secret-padded-to-32-bytesx").unwrap();
    std::fs::write(s.path("k2.secret"), "second-secret-padded-to-32-bytes").unwrap();
}

/// Writes `config`: `gavel config check` refuses it, naming each of `why`.
fn refused(s: &Setup, config: &str, why: &[&str]) {
    s.write_config(config);
    let (good, err) = check(s);
    assert!(!good && why.iter().all(|w| err.contains(w)), "{err}");
}

/// Writes `config`: `gavel config check` accepts it.
fn accepted(s: &Setup, config: &str) {
    s.write_config(config);
    let (good, err) = check(s);
    assert!(good, "{err}");
}

fn check(s: &Setup) -> (bool, String) {
    let out = Command::new(GAVEL)
        .args(["config", "check", "--config", s.config().to_str().unwrap()])
        .env("GAVEL_TEST_K2", "second-secret-padded-to-32-bytes")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_tarball_is_verified_and_decides() {
    let s = Setup::blank();
    std::fs::write(s.path("k1.secret"), "first-secret-padded-to-32-bytesx").unwrap();
    let dir = signed_bundle(&s, "b", "k1.secret", "k1");
    let out = stdout_ok(gavel_cmd(&[
        "bundle",
        "verify",
        dir.to_str().unwrap(),
        "--key",
        s.path("k1.secret").to_str().unwrap(),
        "--algorithm",
        "HS256",
    ]));
    assert!(out.contains("keyid \"k1\""), "{out}");
    let tgz = s.path("b.tar.gz");
    stdout_ok(gavel_cmd(&[
        "bundle",
        "build",
        dir.to_str().unwrap(),
        "-o",
        tgz.to_str().unwrap(),
    ]));
    let inspect = stdout_ok(gavel_cmd(&["bundle", "inspect", tgz.to_str().unwrap()]));
    assert!(
        inspect.contains("\"signed\": true") && inspect.contains("\"signature_kid\": \"k1\""),
        "{inspect}"
    );
    // The launched gavel gets no GAVEL_TEST_K2: this config defines only k1.
    let cfg = config_with(&s, &tgz, &["k1"]).replace(
        "[keys.k2]\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_TEST_K2\"\n\n",
        "",
    );
    accepted(&s, &cfg);
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert!(text(&r).contains("destructive_denied"), "{}", text(&r));
    assert_eq!(
        text(
            &call(&client, "echo", json!({"text": "signed"}))
                .await
                .unwrap()
        ),
        "signed"
    );
}

/// An HMAC secret shorter than its hash (RFC 7518 §3.2) fails `gavel config
/// check`, naming the field: a bundle key from a file, and `[auth]`'s
/// secret from the environment — the empty one, with which anyone could
/// mint a token for `sub: admin`.
#[test]
fn config_check_refuses_hmac_secrets_shorter_than_the_hash() {
    let s = Setup::blank();
    std::fs::write(s.path("k1.secret"), "first-secret-padded-to-32-bytesx").unwrap();
    let dir = signed_bundle(&s, "b", "k1.secret", "k1");
    let auth = hs256_auth("https://gavel.example.test/mcp");
    s.write_config(&format!("{auth}\n{}", config_with(&s, &dir, &["k1"])));
    let check_with = |jwt_secret: &str| {
        let out = Command::new(GAVEL)
            .args(["config", "check", "--config", s.config().to_str().unwrap()])
            .env("GAVEL_TEST_K2", "second-secret-padded-to-32-bytes")
            .env("GAVEL_E2E_JWT_SECRET", jwt_secret)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (good, err) = check_with(JWT_SECRET);
    assert!(good, "{err}");
    for short in ["", "secret"] {
        let (good, err) = check_with(short);
        assert!(
            !good && err.contains("auth.key_env") && err.contains("at least 32"),
            "{short:?}: {err}"
        );
    }
    std::fs::write(s.path("k1.secret"), "first-secret").unwrap();
    let (good, err) = check_with(JWT_SECRET);
    assert!(
        !good && err.contains("keys.k1.key_file") && err.contains("12 bytes"),
        "{err}"
    );
}

#[test]
fn tampering_wrong_keys_rotation_and_unsigned_are_refused() {
    let s = Setup::blank();
    write_secrets(&s);

    // Tampered after signing: refused, naming the check and the file.
    let dir = signed_bundle(&s, "tampered", "k1.secret", "k1");
    std::fs::write(
        dir.join("mcp/fixture/data.json"),
        r#"{"max_turns": 1000000}"#,
    )
    .unwrap();
    refused(
        &s,
        &config_with(&s, &dir, &["k1"]),
        &["digest mismatch", "mcp/fixture/data.json"],
    );

    // Signed by a key the server does not trust.
    let dir = signed_bundle(&s, "by-k2", "k2.secret", "k2");
    refused(
        &s,
        &config_with(&s, &dir, &["k1"]),
        &["verification key corresponding to ID k2 not found"],
    );

    // Rotation: both trusted, then only the new one.
    s.write_config(&config_with(&s, &dir, &["k1", "k2"]));
    assert!(check(&s).0, "{}", check(&s).1);
    s.write_config(&config_with(&s, &dir, &["k2"]));
    assert!(check(&s).0);

    // A token whose kid names a trusted key but signed with another secret.
    let forged = signed_bundle(&s, "forged", "k2.secret", "k1");
    refused(
        &s,
        &config_with(&s, &forged, &["k1"]),
        &["failed to verify JWT signature"],
    );

    // Unsigned while keys are configured (require_signature defaults to true).
    let unsigned = s.path("unsigned");
    copy_dir(&common::policy::fixture_bundle(), &unsigned);
    refused(&s, &config_with(&s, &unsigned, &["k1"]), &["not signed"]);

    // An extra file added after signing.
    let extra = signed_bundle(&s, "extra", "k1.secret", "k1");
    std::fs::write(
        extra.join("mcp/fixture/extra.rego"),
        "package mcp.fixture\nextra := 1\n",
    )
    .unwrap();
    refused(
        &s,
        &config_with(&s, &extra, &["k1"]),
        &["not included in bundle signature"],
    );
}

#[test]
fn rs256_signatures_from_opas_test_keys() {
    let s = Setup::blank();
    let keys =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/opa-signing/jwt-only/keys");
    let dir = s.path("rsa");
    copy_dir(&common::policy::fixture_bundle(), &dir);
    let private = keys.join("keys_test.TestGetPrivateKey.rsa4096-private.pem");
    let public = keys.join("DERIVED.keys_test.rsa4096-public.pem");
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        private.to_str().unwrap(),
        "--keyid",
        "rsa",
    ]));
    stdout_ok(gavel_cmd(&[
        "bundle",
        "verify",
        dir.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ]));
    let bad = gavel_cmd(&[
        "bundle",
        "verify",
        dir.to_str().unwrap(),
        "--key",
        keys.join("verify_test.publicKeyValid.pem")
            .to_str()
            .unwrap(),
    ]);
    assert!(!bad.status.success());
}

/// `[policy] keys` sign the org-wide shared bundles: a signed workflow layer
/// verifies under the org key while the server's own bundle verifies under
/// its key; an unsigned shared bundle is refused, and so is one for a
/// server that trusts keys when no [policy] keys are given (it would run an
/// unsigned bundle).
#[tokio::test(flavor = "multi_thread")]
async fn shared_bundles_are_signed_with_the_policy_keys() {
    let s = Setup::blank();
    std::fs::write(s.path("k1.secret"), "first-secret-padded-to-32-bytesx").unwrap();
    std::fs::write(s.path("org.secret"), "org-secret-padded-to-32-bytesxxx").unwrap();
    let own = signed_bundle(&s, "own", "k1.secret", "k1");
    let shared = s.path("workflow");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/workflow"),
        &shared,
    );
    let with_shared = |policy_keys: &str, shared: &Path| {
        format!(
            "[keys.org]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[policy]\n{policy_keys}shared_bundles = [{:?}]\n\n{}",
            s.path("org.secret").display().to_string(),
            shared.display().to_string(),
            config_with(&s, &own, &["k1"]).replace(
                "[keys.k2]\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_TEST_K2\"\n\n",
                "",
            )
        )
    };
    // Unsigned shared bundle, [policy] keys given: refused.
    refused(
        &s,
        &with_shared("keys = [\"org\"]\n", &shared),
        &["is not signed and policy requires a signature (keys org)"],
    );
    // Unsigned shared bundle, no [policy] keys, a server that trusts k1:
    // verified with the server's keys, so refused too.
    refused(
        &s,
        &with_shared("", &shared),
        &["is not signed and servers.fx requires a signature"],
    );
    // Signed by the org key: verifies under [policy] keys (not k1).
    common::oci::sign(&s, &shared, "org", "org.secret");
    refused(
        &s,
        &with_shared("", &shared),
        &["verification key corresponding to ID org not found"],
    );
    accepted(&s, &with_shared("keys = [\"org\"]\n", &shared));
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert!(text(&r).contains("destructive_denied"), "{}", text(&r));
    assert_eq!(
        text(&call(&client, "echo", json!({"text": "org"})).await.unwrap()),
        "org"
    );
}

/// `bundle build --revision` writes the revision into `.manifest`; `bundle
/// sign` signs a built tarball in place (re-packed, a new digest, an older
/// signature replaced) and `--scope` binds the token to a key's scope.
#[test]
fn build_revision_then_sign_the_tarball_with_a_scope() {
    let s = Setup::blank();
    write_secrets(&s);
    let dir = s.path("b");
    copy_dir(&common::policy::fixture_bundle(), &dir);
    let tgz = s.path("b.tar.gz");
    let built = stdout_ok(gavel_cmd(&[
        "bundle",
        "build",
        dir.to_str().unwrap(),
        "-o",
        tgz.to_str().unwrap(),
        "--revision",
        "2.0.0",
    ]));
    let inspect = stdout_ok(gavel_cmd(&["bundle", "inspect", tgz.to_str().unwrap()]));
    assert!(
        inspect.contains("\"revision\": \"2.0.0\"") && inspect.contains("\"signed\": false"),
        "{inspect}"
    );
    let sign = |key: &str, kid: &str| {
        stdout_ok(gavel_cmd(&[
            "bundle",
            "sign",
            tgz.to_str().unwrap(),
            "--key",
            s.path(key).to_str().unwrap(),
            "--algorithm",
            "HS256",
            "--keyid",
            kid,
            "--scope",
            "write",
        ]))
    };
    // Signed twice: the second signature replaces the first.
    sign("k2.secret", "k2");
    let signed = sign("k1.secret", "k1");
    let digest = |out: &str| {
        out.rsplit("sha256:")
            .next()
            .unwrap()
            .trim()
            .trim_end_matches(')')
            .to_string()
    };
    assert_ne!(digest(&built), digest(&signed), "{built} / {signed}");
    let inspect = stdout_ok(gavel_cmd(&["bundle", "inspect", tgz.to_str().unwrap()]));
    assert!(
        inspect.contains("\"revision\": \"2.0.0\"")
            && inspect.contains("\"signature_kid\": \"k1\""),
        "{inspect}"
    );
    let with_scope = |scope: &str| {
        config_with(&s, &tgz, &["k1"])
            .replace(
                "[keys.k2]\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_TEST_K2\"\n\n",
                "",
            )
            .replace(
                "k1.secret\"\n",
                &format!("k1.secret\"\nscope = {scope:?}\n"),
            )
    };
    accepted(&s, &with_scope("write"));
    refused(&s, &with_scope("read"), &["scope mismatch"]);
    // A signed directory cannot take a new revision (the signature covers
    // .manifest); the message says what order works.
    common::oci::sign(&s, &dir, "k1", "k1.secret");
    let out = gavel_cmd(&[
        "bundle",
        "build",
        dir.to_str().unwrap(),
        "-o",
        s.path("c.tar.gz").to_str().unwrap(),
        "--revision",
        "3.0.0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("build with --revision first, then sign the tarball"),
        "{err}"
    );
}
