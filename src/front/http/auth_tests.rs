//! Token checks: keys from a PEM `key_file` (RS256, ES256) and a
//! `jwks_file`, refused forgeries (`alg: none`, HS256 signed with the RSA
//! public key, the wrong algorithm), malformed tokens, the leeway, and the
//! claim mapping. Keys are made per test with `openssl` (scripts/setup).

use std::path::{Path, PathBuf};

use jsonwebtoken::{EncodingKey, Header};

use super::*;

const ISS: &str = "https://idp.example.test";
const AUD: &str = "https://gavel.example.test/mcp";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh key pair as (private PKCS#8 PEM, public PEM path).
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (Vec<u8>, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed by these tests: run scripts/setup");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let private = format!("{name}.key");
    let public = format!("{name}.pub");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", &private]);
    run(&args);
    run(&["pkey", "-in", &private, "-pubout", "-out", &public]);
    (std::fs::read(dir.join(private)).unwrap(), dir.join(public))
}

fn rsa(dir: &Path) -> (Vec<u8>, PathBuf) {
    keypair(
        dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
}

fn ec(dir: &Path) -> (Vec<u8>, PathBuf) {
    keypair(
        dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

fn settings(algorithm: &str, key: AuthKey) -> AuthSettings {
    AuthSettings {
        issuer: ISS.into(),
        audience: AUD.into(),
        algorithm: algorithm.into(),
        key,
        leeway: std::time::Duration::from_secs(60),
        user_claim: "sub".into(),
        groups_claim: "groups".into(),
        agent_claim: "azp".into(),
        classifications_claim: None,
    }
}

fn auth(s: &AuthSettings) -> Authenticator {
    Authenticator::new(s, &Identity::default()).unwrap()
}

/// HS256 settings whose secret is in a JWKS `oct` key (not the process
/// environment, which parallel tests share).
fn hs256(dir: &Path, secret: &str) -> AuthSettings {
    use base64::Engine;
    let file = dir.join("hmac.jwks.json");
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    std::fs::write(
        &file,
        json!({"keys": [{"kty": "oct", "alg": "HS256", "k": k}]}).to_string(),
    )
    .unwrap();
    settings("HS256", AuthKey::JwksFile(file))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "exp": now() + 600, "sub": "ada"});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn verify(a: &Authenticator, token: &str) -> Result<Identity, String> {
    a.verify_now(token)
}

#[test]
fn rs256_and_es256_keys_from_a_pem_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa_private, rsa_public) = rsa(dir.path());
    let (ec_private, ec_public) = ec(dir.path());
    let rs = auth(&settings("RS256", AuthKey::PemFile(rsa_public)));
    let es = auth(&settings("ES256", AuthKey::PemFile(ec_public)));
    let rsa_key = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let ec_key = EncodingKey::from_ec_pem(&ec_private).unwrap();
    let good_rs = sign(Algorithm::RS256, &rsa_key, &claims(json!({})));
    let good_es = sign(Algorithm::ES256, &ec_key, &claims(json!({})));
    assert_eq!(verify(&rs, &good_rs).unwrap().user.id, "ada");
    assert_eq!(verify(&es, &good_es).unwrap().user.id, "ada");
    // Each accepts only its own algorithm, whatever the token claims.
    assert!(verify(&rs, &good_es).unwrap_err().contains("accepts RS256"));
    assert!(verify(&es, &good_rs).unwrap_err().contains("accepts ES256"));
    // Another key pair of the right type does not verify.
    let other = tempfile::tempdir().unwrap();
    let (other_private, _) = rsa(other.path());
    let forged = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&other_private).unwrap(),
        &claims(json!({})),
    );
    assert!(
        verify(&rs, &forged)
            .unwrap_err()
            .contains("InvalidSignature")
    );
    // A key file that is not a PEM public key is refused, naming the file.
    std::fs::write(dir.path().join("junk.pem"), "not a key").unwrap();
    let e = Authenticator::new(
        &settings("RS256", AuthKey::PemFile(dir.path().join("junk.pem"))),
        &Identity::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("junk.pem") && e.contains("not a PEM public key"),
        "{e}"
    );
}

#[test]
fn keys_from_a_jwks_file_are_chosen_by_kid() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, _) = rsa(dir.path());
    let sub = dir.path().join("second");
    std::fs::create_dir(&sub).unwrap();
    let (p2, _) = rsa(&sub);
    let (k1, k2) = (
        EncodingKey::from_rsa_pem(&p1).unwrap(),
        EncodingKey::from_rsa_pem(&p2).unwrap(),
    );
    let jwk = |key: &EncodingKey, kid: &str| {
        let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
        j.common.key_id = Some(kid.into());
        j
    };
    let set = jsonwebtoken::jwk::JwkSet {
        keys: vec![jwk(&k1, "one"), jwk(&k2, "two")],
    };
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, serde_json::to_vec(&set).unwrap()).unwrap();
    let a = auth(&settings("RS256", AuthKey::JwksFile(file)));
    let with_kid = |key: &EncodingKey, kid: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims(json!({})), key).unwrap()
    };
    assert!(verify(&a, &with_kid(&k1, "one")).is_ok());
    assert!(verify(&a, &with_kid(&k2, "two")).is_ok());
    // Signed by one key but naming the other: refused.
    assert!(verify(&a, &with_kid(&k1, "two")).is_err());
    // An unknown kid says so.
    assert!(
        verify(&a, &with_kid(&k1, "three"))
            .unwrap_err()
            .contains(NO_KEY)
    );
    // A file that is not a JWKS document names the file.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"keys\": 3}").unwrap();
    let e = Authenticator::new(
        &settings("RS256", AuthKey::JwksFile(bad)),
        &Identity::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("bad.json") && e.contains("not a JWKS document"),
        "{e}"
    );
}

#[test]
fn forgeries_are_refused() {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = rsa(dir.path());
    let public_pem = std::fs::read(&public).unwrap();
    let rs = auth(&settings("RS256", AuthKey::PemFile(public)));
    // alg: none, with and without a signature segment.
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&claims(json!({})))
        );
        assert!(verify(&rs, &unsigned).is_err(), "alg {alg} accepted");
    }
    // Key confusion: HS256 "signed" with the RSA public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims(json!({})),
    );
    let e = verify(&rs, &confused).unwrap_err();
    assert!(e.contains("HS256") && e.contains("accepts RS256"), "{e}");
    // And an HS256 server never takes an RS256 token.
    let hs = auth(&hs256(dir.path(), "s3cret-s3cret-s3cret-s3cret-s3cret"));
    let (rsa_private, _) = rsa(dir.path());
    let rs_token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
        &claims(json!({})),
    );
    assert!(
        verify(&hs, &rs_token)
            .unwrap_err()
            .contains("accepts HS256")
    );
    let good = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"s3cret-s3cret-s3cret-s3cret-s3cret"),
        &claims(json!({})),
    );
    assert!(verify(&hs, &good).is_ok());
    // A tampered payload breaks the signature.
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[1] = b64(&claims(json!({"sub": "root"})));
    assert!(verify(&hs, &parts.join(".")).is_err());
}

#[test]
fn malformed_tokens_are_refused_as_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let hs = auth(&hs256(dir.path(), "another-test-secret-padded-to-32-bytes"));
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "....",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
        "bm90IGpzb24.eyJzdWIiOiJhZGEifQ.sig",
    ] {
        let e = verify(&hs, bad).unwrap_err();
        assert!(!e.is_empty(), "{bad:?}");
    }
    assert!(verify(&hs, "abc").unwrap_err().contains("malformed token"));
    // A well-formed token missing a required claim (exp, iss, aud).
    let key = EncodingKey::from_secret(b"another-test-secret-padded-to-32-bytes");
    for missing in ["exp", "iss", "aud"] {
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove(missing);
        let e = verify(&hs, &sign(Algorithm::HS256, &key, &c)).unwrap_err();
        assert!(e.contains(missing), "{missing}: {e}");
    }
}

#[test]
fn expiry_is_checked_with_the_leeway() {
    let dir = tempfile::tempdir().unwrap();
    let hs = auth(&hs256(dir.path(), "leeway-test-secret-padded-to-32-bytes"));
    let key = EncodingKey::from_secret(b"leeway-test-secret-padded-to-32-bytes");
    let at = |exp: u64| sign(Algorithm::HS256, &key, &claims(json!({"exp": exp})));
    assert!(
        verify(&hs, &at(now() - 30)).is_ok(),
        "30 s late, leeway 60 s"
    );
    assert!(
        verify(&hs, &at(now() - 120))
            .unwrap_err()
            .contains("ExpiredSignature")
    );
    // Not valid before (nbf): within the leeway accepted, beyond refused.
    let from = |nbf: u64| sign(Algorithm::HS256, &key, &claims(json!({"nbf": nbf})));
    assert!(verify(&hs, &from(now() + 30)).is_ok());
    assert!(
        verify(&hs, &from(now() + 600))
            .unwrap_err()
            .contains("ImmatureSignature")
    );
}

#[test]
fn claims_map_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = hs256(dir.path(), "mapping-test-secret-padded-to-32-bytes");
    s.user_claim = "email".into();
    s.groups_claim = "roles".into();
    s.agent_claim = "client_id".into();
    s.classifications_claim = Some("clearance".into());
    let mut base = Identity::default();
    base.agent.id = "configured-agent".into();
    base.agent.scope = vec!["repo:read".into()];
    let a = Authenticator::new(&s, &base).unwrap();
    let key = EncodingKey::from_secret(b"mapping-test-secret-padded-to-32-bytes");
    let id = verify(
        &a,
        &sign(
            Algorithm::HS256,
            &key,
            &claims(json!({"email": "ada@example.test", "roles": "admin ops",
                "client_id": "cursor", "clearance": ["internal", "pii"],
                "groups": ["ignored"], "azp": "ignored"})),
        ),
    )
    .unwrap();
    assert_eq!(id.user.id, "ada@example.test");
    assert_eq!(id.user.groups, vec!["admin", "ops"]);
    assert_eq!(id.agent.id, "cursor");
    assert_eq!(
        id.user.data_classifications_authorized,
        vec!["internal", "pii"]
    );
    assert_eq!(
        id.agent.scope,
        vec!["repo:read"],
        "what the token does not say stays configured"
    );
    // No agent claim: the configured agent; no user claim: refused, naming it.
    let id = verify(
        &a,
        &sign(
            Algorithm::HS256,
            &key,
            &claims(json!({"email": "bob@example.test"})),
        ),
    )
    .unwrap();
    assert_eq!(id.agent.id, "configured-agent");
    assert!(id.user.groups.is_empty());
    let e = verify(&a, &sign(Algorithm::HS256, &key, &claims(json!({})))).unwrap_err();
    assert!(e.contains("\"email\""), "{e}");
}

#[test]
fn the_challenge_points_at_the_resources_metadata() {
    let (url, paths) = metadata_location("https://gavel.example/mcp").unwrap();
    assert_eq!(
        url,
        "https://gavel.example/.well-known/oauth-protected-resource/mcp"
    );
    assert!(paths.contains(&"/.well-known/oauth-protected-resource".to_string()));
    assert!(paths.contains(&"/.well-known/oauth-protected-resource/mcp".to_string()));
    let (url, paths) = metadata_location("https://proxy.example:8443/team/mcp/").unwrap();
    assert_eq!(
        url,
        "https://proxy.example:8443/.well-known/oauth-protected-resource/team/mcp"
    );
    assert!(paths.contains(&"/.well-known/oauth-protected-resource/team/mcp".to_string()));
    assert!(metadata_location("gavel").is_err());
    let r = unauthorized(&url, Some("bad \"quote\""));
    let h = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        h.starts_with(&format!("Bearer resource_metadata=\"{url}\"")),
        "{h}"
    );
    assert!(h.contains("error_description=\"bad 'quote'\""), "{h}");
}

/// A JWKS `oct` key is an HMAC secret: shorter than its hash (RFC 7518
/// §3.2), the empty one included, the key set is refused.
#[test]
fn short_hmac_keys_in_a_jwks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for short in ["", "k", &"k".repeat(31)] {
        let e = Authenticator::new(&hs256(dir.path(), short), &Identity::default())
            .err()
            .expect("a short oct key is refused")
            .to_string();
        assert!(e.contains("at least 32") && e.contains("jwks_file"), "{e}");
    }
    Authenticator::new(&hs256(dir.path(), &"k".repeat(32)), &Identity::default()).unwrap();
}

#[test]
fn algorithm_names_are_jsonwebtokens_and_others_are_refused_naming_the_field() {
    for name in [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "EdDSA",
    ] {
        let alg = token_algorithm(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{alg:?}"), name);
    }
    // ES512 is for bundle signatures only (jsonwebtoken has no P-521).
    for name in ["ES512", "none", "hs256", ""] {
        let e = token_algorithm(name).unwrap_err().to_string();
        assert!(e.starts_with("[auth] algorithm"), "{name}: {e}");
    }
}
