//! Signed bundles end to end: `gavel bundle sign/build/verify`, then gavel
//! verifies before it trusts — tampering, wrong keys, rotation, unsigned.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A signed copy of the fixture bundle; returns its directory.
fn signed_bundle(s: &Setup, name: &str, secret_file: &Path, kid: &str) -> PathBuf {
    let dir = s.path(name);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture"),
        &dir,
    );
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        secret_file.to_str().unwrap(),
        "--algorithm",
        "HS256",
        "--keyid",
        kid,
    ]));
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

fn check(s: &Setup) -> (bool, String) {
    let out = Command::new(GAVEL)
        .args(["config", "check", "--config", s.config().to_str().unwrap()])
        .env("GAVEL_TEST_K2", "second-secret")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_tarball_is_verified_and_decides() {
    let s = Setup::new("");
    std::fs::write(s.path("k1.secret"), "first-secret").unwrap();
    let dir = signed_bundle(&s, "b", &s.path("k1.secret"), "k1");
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
    std::fs::write(s.config(), cfg).unwrap();
    let (good, err) = check(&s);
    assert!(good, "{err}");
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

#[test]
fn tampering_wrong_keys_rotation_and_unsigned_are_refused() {
    let s = Setup::new("");
    std::fs::write(s.path("k1.secret"), "first-secret").unwrap();
    std::fs::write(s.path("k2.secret"), "second-secret").unwrap();

    // Tampered after signing: refused, naming the check and the file.
    let dir = signed_bundle(&s, "tampered", &s.path("k1.secret"), "k1");
    std::fs::write(
        dir.join("mcp/fixture/data.json"),
        r#"{"max_turns": 1000000}"#,
    )
    .unwrap();
    std::fs::write(s.config(), config_with(&s, &dir, &["k1"])).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("digest mismatch") && err.contains("mcp/fixture/data.json"),
        "{err}"
    );

    // Signed by a key the server does not trust.
    let dir = signed_bundle(&s, "by-k2", &s.path("k2.secret"), "k2");
    std::fs::write(s.config(), config_with(&s, &dir, &["k1"])).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("verification key corresponding to ID k2 not found"),
        "{err}"
    );

    // Rotation: both trusted, then only the new one.
    std::fs::write(s.config(), config_with(&s, &dir, &["k1", "k2"])).unwrap();
    assert!(check(&s).0, "{}", check(&s).1);
    std::fs::write(s.config(), config_with(&s, &dir, &["k2"])).unwrap();
    assert!(check(&s).0);

    // A token whose kid names a trusted key but signed with another secret.
    let forged = signed_bundle(&s, "forged", &s.path("k2.secret"), "k1");
    std::fs::write(s.config(), config_with(&s, &forged, &["k1"])).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("failed to verify JWT signature"),
        "{err}"
    );

    // Unsigned while keys are configured (require_signature defaults to true).
    let unsigned = s.path("unsigned");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture"),
        &unsigned,
    );
    std::fs::write(s.config(), config_with(&s, &unsigned, &["k1"])).unwrap();
    let (good, err) = check(&s);
    assert!(!good && err.contains("not signed"), "{err}");

    // An extra file added after signing.
    let extra = signed_bundle(&s, "extra", &s.path("k1.secret"), "k1");
    std::fs::write(
        extra.join("mcp/fixture/extra.rego"),
        "package mcp.fixture\nextra := 1\n",
    )
    .unwrap();
    std::fs::write(s.config(), config_with(&s, &extra, &["k1"])).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("not included in bundle signature"),
        "{err}"
    );
}

#[test]
fn rs256_signatures_from_opas_test_keys() {
    let s = Setup::new("");
    let keys =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/opa-signing/jwt-only/keys");
    let dir = s.path("rsa");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture"),
        &dir,
    );
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
    let s = Setup::new("");
    std::fs::write(s.path("k1.secret"), "first-secret").unwrap();
    std::fs::write(s.path("org.secret"), "org-secret").unwrap();
    let own = signed_bundle(&s, "own", &s.path("k1.secret"), "k1");
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
    std::fs::write(s.config(), with_shared("keys = [\"org\"]\n", &shared)).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("is not signed and policy requires a signature (keys org)"),
        "{err}"
    );
    // Unsigned shared bundle, no [policy] keys, a server that trusts k1:
    // verified with the server's keys, so refused too.
    std::fs::write(s.config(), with_shared("", &shared)).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("is not signed and servers.fx requires a signature"),
        "{err}"
    );
    // Signed by the org key: verifies under [policy] keys (not k1).
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        shared.to_str().unwrap(),
        "--key",
        s.path("org.secret").to_str().unwrap(),
        "--algorithm",
        "HS256",
        "--keyid",
        "org",
    ]));
    std::fs::write(s.config(), with_shared("", &shared)).unwrap();
    let (good, err) = check(&s);
    assert!(
        !good && err.contains("verification key corresponding to ID org not found"),
        "the server's keys do not include org: {err}"
    );
    std::fs::write(s.config(), with_shared("keys = [\"org\"]\n", &shared)).unwrap();
    let (good, err) = check(&s);
    assert!(good, "{err}");
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
    let s = Setup::new("");
    std::fs::write(s.path("k1.secret"), "first-secret").unwrap();
    std::fs::write(s.path("k2.secret"), "second-secret").unwrap();
    let dir = s.path("b");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture"),
        &dir,
    );
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
    std::fs::write(s.config(), with_scope("write")).unwrap();
    let (good, err) = check(&s);
    assert!(good, "{err}");
    std::fs::write(s.config(), with_scope("read")).unwrap();
    let (good, err) = check(&s);
    assert!(!good && err.contains("scope mismatch"), "{err}");
    // A signed directory cannot take a new revision (the signature covers
    // .manifest); the message says what order works.
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        s.path("k1.secret").to_str().unwrap(),
        "--algorithm",
        "HS256",
        "--keyid",
        "k1",
    ]));
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

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// ECDSA `r || s` (66 bytes each for P-521) to DER, as openssl wants it.
fn raw_to_der(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
        if v.first().is_none_or(|x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut der = vec![0x30];
    if body.len() > 127 {
        der.push(0x81);
    }
    der.push(body.len() as u8);
    der.extend(body);
    der
}

/// DER ECDSA signature to `r || s`, each left-padded to `n` bytes.
fn der_to_raw(der: &[u8], n: usize) -> Vec<u8> {
    let mut i = if der[1] == 0x81 { 3 } else { 2 };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let v: Vec<u8> = der[i + 2..i + 2 + len]
            .iter()
            .copied()
            .skip_while(|x| *x == 0)
            .collect();
        out.extend(std::iter::repeat_n(0u8, n - v.len()));
        out.extend(v);
        i += 2 + len;
    }
    out
}

/// ES512 (P-521, not in jsonwebtoken) with keys openssl generates: gavel
/// signs and openssl verifies; openssl signs and gavel verifies (and
/// decides); PKCS#8 and SEC1 private keys; the wrong key is refused. And no
/// algorithm confusion: a token whose header says HS256 (or HS512), MACed
/// with the public key's PEM as the secret, is refused by an RS256 (or
/// ES512) key.
#[tokio::test(flavor = "multi_thread")]
async fn es512_with_openssl_keys_both_ways_and_no_algorithm_confusion() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = Setup::new("");
    let p = |n: &str| s.path(n).display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
        "-out",
        &p("es.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &p("es.pem"),
        "-pubout",
        "-out",
        &p("es.pub.pem"),
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "secp521r1",
        "-genkey",
        "-noout",
        "-out",
        &p("sec1.pem"),
    ]);
    openssl(&[
        "ec",
        "-in",
        &p("sec1.pem"),
        "-pubout",
        "-out",
        &p("sec1.pub.pem"),
    ]);
    assert!(
        std::fs::read_to_string(s.path("sec1.pem"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture");
    let verify = |dir: &Path, public: &str| {
        gavel_cmd(&[
            "bundle",
            "verify",
            dir.to_str().unwrap(),
            "--key",
            &p(public),
            "--algorithm",
            "ES512",
        ])
    };
    let token_of = |dir: &Path| -> String {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(".signatures.json")).unwrap()).unwrap();
        v["signatures"][0].as_str().unwrap().to_string()
    };

    // gavel signs (PKCS#8 key); gavel and openssl verify.
    let dir = s.path("by-gavel");
    copy_dir(&fixture, &dir);
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        &p("es.pem"),
        "--algorithm",
        "ES512",
        "--keyid",
        "es",
    ]));
    let out = stdout_ok(verify(&dir, "es.pub.pem"));
    assert!(out.contains("keyid \"es\""), "{out}");
    assert!(
        !verify(&dir, "sec1.pub.pem").status.success(),
        "another P-521 key"
    );
    let token = token_of(&dir);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b64.decode(parts[0]).unwrap()).unwrap()["alg"],
        "ES512"
    );
    std::fs::write(s.path("input"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(
        s.path("sig.der"),
        raw_to_der(&b64.decode(parts[2]).unwrap()),
    )
    .unwrap();
    let out = openssl(&[
        "dgst",
        "-sha512",
        "-verify",
        &p("es.pub.pem"),
        "-signature",
        &p("sig.der"),
        &p("input"),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));

    // openssl signs the same payload; gavel verifies it and decides with it.
    let header = b64.encode(br#"{"alg":"ES512","typ":"JWT","kid":"es"}"#);
    let input = format!("{header}.{}", parts[1]);
    std::fs::write(s.path("input2"), &input).unwrap();
    openssl(&[
        "dgst",
        "-sha512",
        "-sign",
        &p("es.pem"),
        "-out",
        &p("sig2.der"),
        &p("input2"),
    ]);
    let raw = der_to_raw(&std::fs::read(s.path("sig2.der")).unwrap(), 66);
    let by_openssl = s.path("by-openssl");
    copy_dir(&dir, &by_openssl);
    std::fs::write(
        by_openssl.join(".signatures.json"),
        serde_json::to_vec(&json!({"signatures": [format!("{input}.{}", b64.encode(&raw))]}))
            .unwrap(),
    )
    .unwrap();
    stdout_ok(verify(&by_openssl, "es.pub.pem"));
    std::fs::write(
        s.config(),
        format!(
            "[keys.es]\nalgorithm = \"ES512\"\nkey_file = {:?}\n\n[identity.user]\nid = \"ada\"\n\n{}bundle = {:?}\nkeys = [\"es\"]\n",
            p("es.pub.pem"),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            by_openssl.display().to_string()
        ),
    )
    .unwrap();
    let (good, err) = check(&s);
    assert!(good, "{err}");
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert!(text(&r).contains("destructive_denied"), "{}", text(&r));
    client.cancel().await.unwrap();

    // A SEC1 ("EC PRIVATE KEY") signing key works too.
    let sec1 = s.path("by-sec1");
    copy_dir(&fixture, &sec1);
    stdout_ok(gavel_cmd(&[
        "bundle",
        "sign",
        sec1.to_str().unwrap(),
        "--key",
        &p("sec1.pem"),
        "--algorithm",
        "ES512",
        "--keyid",
        "es",
    ]));
    stdout_ok(verify(&sec1, "sec1.pub.pem"));
    assert!(!verify(&sec1, "es.pub.pem").status.success());

    // Algorithm confusion: HMAC with the public key text as the secret,
    // the header claiming HS*; the configured algorithm decides.
    let rsa_pub = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/opa-signing/jwt-only/keys/DERIVED.keys_test.rsa4096-public.pem");
    for (alg, hs, public) in [
        ("RS256", "HS256", rsa_pub.display().to_string()),
        ("ES512", "HS512", p("es.pub.pem")),
    ] {
        let pem = std::fs::read_to_string(&public).unwrap();
        let forged = s.path(&format!("confused-{alg}"));
        copy_dir(&dir, &forged);
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        let forged_token = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some("k".into()),
                ..jsonwebtoken::Header::new(hs.parse().unwrap())
            },
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(pem.trim_end_matches('\n').as_bytes()),
        )
        .unwrap();
        std::fs::write(
            forged.join(".signatures.json"),
            serde_json::to_vec(&json!({"signatures": [forged_token]})).unwrap(),
        )
        .unwrap();
        std::fs::write(
            s.config(),
            format!(
                "[keys.k]\nalgorithm = \"{alg}\"\nkey_file = {public:?}\n\n{}bundle = {:?}\nkeys = [\"k\"]\n",
                fixture_server("fx", &[], &s.path("r.jsonl")),
                forged.display().to_string()
            ),
        )
        .unwrap();
        let (good, err) = check(&s);
        assert!(
            !good
                && err.contains("failed to verify JWT signature")
                && err.contains("InvalidAlgorithm"),
            "{alg} key, {hs} token: {err}"
        );
    }
}
