//! ES512 signatures end to end, with keys and signatures made by `openssl`
//! (installed by scripts/setup): gavel verifies what openssl signed and
//! openssl verifies what gavel signed; an ES512 key never verifies a token
//! claiming another algorithm. The rest of signing: tests/e2e/e2e_signing.rs.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// `gavel config check` on the setup: (ok, stderr).
fn check(s: &Setup) -> (bool, String) {
    let out = s.config_check();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    let s = Setup::blank();
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
    let fixture = common::policy::fixture_bundle();
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
    s.write_config(&format!(
            "[keys.es]\nalgorithm = \"ES512\"\nkey_file = {:?}\n\n[identity.user]\nid = \"ada\"\n\n{}bundle = {:?}\nkeys = [\"es\"]\n",
            p("es.pub.pem"),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            by_openssl.display().to_string()
        ));
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
        .join("tests/vectors/opa-signing/jwt-only/keys/DERIVED.keys_test.rsa4096-public.pem");
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
        s.write_config(&format!(
                "[keys.k]\nalgorithm = \"{alg}\"\nkey_file = {public:?}\n\n{}bundle = {:?}\nkeys = [\"k\"]\n",
                fixture_server("fx", &[], &s.path("r.jsonl")),
                forged.display().to_string()
            ));
        let (good, err) = check(&s);
        assert!(
            !good
                && err.contains("failed to verify JWT signature")
                && err.contains("InvalidAlgorithm"),
            "{alg} key, {hs} token: {err}"
        );
    }
}
