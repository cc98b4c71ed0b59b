//! OPA's own signing vectors (tests/vectors/opa-signing): every JWT case
//! and every whole-bundle fixture.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::bundle::{BundleLimits, load_bundle_tar_gz};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/opa-signing")
}

fn config(v: &Value, base: &Path) -> Option<VerificationConfig> {
    if v.is_null() {
        return None;
    }
    let mut cfg = VerificationConfig {
        keyid: v["keyid"].as_str().unwrap_or("").into(),
        scope: v["scope"].as_str().unwrap_or("").into(),
        exclude_files: v["exclude_files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        ..Default::default()
    };
    for (id, k) in v["keys"].as_object().into_iter().flatten() {
        let key = match (k["key"].as_str(), k["key_file"].as_str()) {
            (Some(inline), _) => inline.to_string(),
            (None, Some(file)) => std::fs::read_to_string(base.join(file))
                .unwrap()
                .trim_end_matches('\n')
                .to_string(),
            _ => String::new(),
        };
        cfg.keys.insert(
            id.clone(),
            VerificationKey {
                algorithm: k["algorithm"].as_str().unwrap_or("RS256").into(),
                key,
                scope: None,
            },
        );
    }
    Some(cfg)
}

/// OPA's verification errors (`error-messages.json`): each message template
/// (`<...>` stands for a value) with the step it belongs to, newer and
/// older texts both.
fn templates() -> Vec<(u64, String)> {
    let all: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("error-messages.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for e in all {
        let step = e["step"].as_u64().unwrap();
        for m in [&e["message"], &e["message_older_opa"]] {
            if let Some(m) = m.as_str() {
                out.push((step, m.to_string()));
            }
        }
    }
    out
}

/// Whether `text` fits `template`: `<...>` (and a bare `...`) match
/// anything, and placeholders separated only by spaces count as one (a list
/// of names).
fn fits(template: &str, text: &str) -> bool {
    let template = template.replace(" ...]", " <...>]");
    let mut literals = Vec::new();
    let mut rest = template.as_str();
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        literals.push(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    literals.push(rest);
    if literals.len() == 1 {
        return text == template;
    }
    let n = literals.len();
    let literals: Vec<&str> = literals
        .into_iter()
        .enumerate()
        .filter(|(i, l)| *i == 0 || *i == n - 1 || !l.trim().is_empty())
        .map(|(_, l)| l)
        .collect();
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let (mut at, end) = (first.len(), text.len() - last.len());
    for lit in &literals[1..literals.len() - 1] {
        match text[at..end].find(lit) {
            Some(p) => at += p + lit.len(),
            None => return false,
        }
    }
    true
}

/// The kind gavel reports for each step of OPA's check order.
fn kind_of_step(step: u64) -> VerifyErrorKind {
    use VerifyErrorKind::*;
    match step {
        1 => SignaturesDecode,
        2 => MissingSignaturesFile,
        3 => NoVerificationConfig,
        4 => UnknownVerifier,
        5 => MissingJwt,
        6 => MultipleJwts,
        7 => SplitJwt,
        8 | 9 => Header,
        10 => PayloadBase64,
        11 => PayloadJson,
        12 => EmptyKeyId,
        13 => KeyNotFound,
        14 => UnknownAlgorithm,
        15 => BadKey,
        16 => SignatureBase64,
        17 => BadSignature,
        18 => ScopeMismatch,
        19 => FileNotSigned,
        20 => NoHashAlgorithm,
        21 => UnsupportedHashAlgorithm,
        22 => StructuredParse,
        23 => BadHashHex,
        24 => DigestMismatch,
        25 => SignedFilesMissing,
        other => panic!("error-messages.json has a step {other} gavel does not know"),
    }
}

/// Messages whose tail is the text of a Go library (jwx, encoding/json,
/// crypto/rsa): gavel's libraries word those differently.
const GO_SPECIFIC: &[&str] = &[
    "jwsbb",
    "cannot parse",
    "illegal base64",
    "json: cannot",
    "crypto/rsa",
    "invalid HMAC",
];

/// Asserts that gavel refused for the reason OPA gives: the same step of
/// the check order (found by matching OPA's message against its templates),
/// and the same text unless the text comes from a Go library — then the
/// part before the library's own words, when OPA has one.
fn assert_same_refusal(case: &str, expected: &str, got: &VerifyError) {
    // A template that is all placeholder (`<util.Unmarshal error>`) fits
    // anything: it counts only when nothing more specific does.
    let fitting: Vec<(u64, bool)> = templates()
        .into_iter()
        .filter(|(_, t)| fits(t, expected))
        .map(|(s, t)| (s, t.starts_with('<') && t.ends_with('>')))
        .collect();
    let specific: Vec<u64> = fitting.iter().filter(|f| !f.1).map(|f| f.0).collect();
    let steps = if specific.is_empty() {
        fitting.iter().map(|f| f.0).collect()
    } else {
        specific
    };
    assert!(
        !steps.is_empty(),
        "{case}: {expected:?} fits no message of error-messages.json"
    );
    assert!(
        steps.iter().any(|s| kind_of_step(*s) == got.kind),
        "{case}: OPA refuses at step(s) {steps:?} ({expected:?}); gavel refused with {:?}: {:?}",
        got.kind,
        got.message
    );
    if let Some(lib) = GO_SPECIFIC.iter().find(|m| expected.contains(**m)) {
        // OPA's own words are the first clause (up to the first `:`), unless
        // the whole message is the library's.
        let ours = match expected.split_once(':') {
            Some((head, _)) if !expected.starts_with(lib) => &expected[..head.len() + 1],
            _ => "",
        };
        assert!(
            got.message.starts_with(ours),
            "{case}: expected the prefix {ours:?}, got {:?}",
            got.message
        );
    } else {
        assert_eq!(got.message, expected, "{case}");
    }
}

#[test]
fn error_templates_fit_what_they_describe() {
    assert!(fits(
        "file <path> not included in bundle signature",
        "file a/b not included in bundle signature"
    ));
    assert!(!fits(
        "file <path> not included in bundle signature",
        "file a/b not signed"
    ));
    assert!(fits("scope mismatch", "scope mismatch"));
    assert!(!fits("scope mismatch", "scope mismatch!"));
    assert!(fits(
        "<path>: digest mismatch (want: <hex from JWT>, got: <computed hex>)",
        "x: digest mismatch (want: 1, got: 2)"
    ));
    assert!(fits("<util.Unmarshal error>", "anything"));
    assert!(fits(
        "file(s) [<p1> <p2> ...] specified in bundle signatures but not found in the target bundle",
        "file(s) [a b c] specified in bundle signatures but not found in the target bundle"
    ));
    // Every step of the file is one gavel reports as its own kind.
    for (step, _) in templates() {
        kind_of_step(step);
    }
}

#[test]
fn opa_jwt_cases() {
    let dir = vectors().join("jwt-only");
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 19);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let cfg = config(&c["verification_config"], &dir).unwrap_or_default();
        let raw = serde_json::to_vec(&serde_json::json!({"signatures": c["signatures"]})).unwrap();
        let got = verify_signatures(&raw, &cfg);
        if c["expected_ok"].as_bool().unwrap() {
            assert!(got.is_ok(), "{name}: {:?}", got.err());
        } else {
            let e = got.err().unwrap_or_else(|| panic!("{name}: accepted"));
            assert_same_refusal(name, c["expected_error"].as_str().unwrap(), &e);
        }
    }
}

fn tarball(root: &Path, order: &[Value]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for p in order {
        let p = p.as_str().unwrap();
        let data = std::fs::read(root.join(p.trim_start_matches('/'))).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn opa_bundle_fixtures() {
    let dir = vectors().join("fixtures");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let f = entry.unwrap().path();
        let fx: Value =
            serde_json::from_str(&std::fs::read_to_string(f.join("fixture.json")).unwrap())
                .unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let bytes = tarball(&f.join("bundle"), fx["tar_order"].as_array().unwrap());
        let bundle = load_bundle_tar_gz(&name, &name, &bytes, &BundleLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let cfg = config(&fx["verification_config"], &f);
        let got = verify_bundle(
            &bundle,
            cfg.as_ref(),
            fx["reader_base_dir"].as_str().unwrap_or(""),
        );
        ran += 1;
        if fx["skip_verification"].as_bool() == Some(true) {
            // gavel never skips verification: this bundle's .manifest digest is
            // deliberately wrong, so it must be refused — at the step the
            // vectors' README derives: under the base dir the signed names do
            // not carry it, without one the digest is wrong.
            let e = got.expect_err("gavel must not accept what OPA accepts only when skipping");
            assert_same_refusal(
                &name,
                "file foo/bar/.manifest not included in bundle signature",
                &e,
            );
            let e = verify_bundle(&bundle, cfg.as_ref(), "").expect_err(&name);
            assert_same_refusal(
                &name,
                ".manifest: digest mismatch (want: 607a2c38a1441db58d2cb87982c42aa91a4342ef422a6b542eddebeef6f0412f, got: 507a2c38a1441db58d2cb87982c42aa91a4342ef422a6b542eddebeef6f0412f)",
                &e,
            );
            continue;
        }
        let plugin = bundle
            .signatures
            .as_ref()
            .and_then(|raw| serde_json::from_slice::<Value>(raw).ok())
            .and_then(|v| v["plugin"].as_str().map(String::from));
        if let Some(plugin) = plugin {
            // OPA accepts this one only with a custom verifier registered
            // under the id it names; gavel has none, so it refuses with
            // OPA's own error for an unregistered verifier (step 4).
            let e = got.expect_err("a bundle naming an unknown verifier is refused");
            assert_same_refusal(&name, &format!("no verifier exists under id {plugin}"), &e);
            continue;
        }
        let expected = &fx["expected"];
        if expected["ok"].as_bool().unwrap() {
            assert!(got.is_ok(), "{name}: {:?}", got.err());
        } else {
            let e = got.err().unwrap_or_else(|| panic!("{name}: accepted"));
            let options: Vec<&str> = match &expected["error"] {
                Value::String(s) => vec![s.as_str()],
                Value::Array(o) => o.iter().filter_map(Value::as_str).collect(),
                other => panic!("{name}: expected.error {other}"),
            };
            let closest = options
                .iter()
                .find(|o| **o == e.message)
                .unwrap_or(&options[0]);
            assert_same_refusal(&name, closest, &e);
        }
    }
    assert_eq!(ran, 12);
}

/// OPA's `TestVerifyBundleFile` cases (`verify-bundle-file-cases.json`), run
/// through the whole verification with a token listing exactly the case's
/// `signature_files`. OPA's test calls `VerifyBundleFile` with the raw path
/// `/.manifest`; gavel's reader strips the leading `/` from every tar path
/// (as `opa build` and the signer name files: no leading `/`), so the
/// case's names are mapped to the reader's, and its expected messages with
/// them: `/.manifest` becomes `.manifest`.
#[test]
fn opa_verify_bundle_file_cases() {
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("verify-bundle-file-cases.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cases.len(), 3);
    let normal = |p: &str| p.trim_start_matches('/').to_string();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let path = c["path"].as_str().unwrap();
        let content = c["content"].as_str().unwrap().as_bytes();
        let files: Vec<Value> = c["signature_files"]
            .as_object()
            .unwrap()
            .values()
            .map(|f| {
                let mut f = f.clone();
                f["name"] = serde_json::json!(normal(f["name"].as_str().unwrap()));
                f
            })
            .collect();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some("foo".into()),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
            },
            &serde_json::json!({"files": files}),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let sigs = serde_json::to_vec(&serde_json::json!({"signatures": [token]})).unwrap();
        let bytes = tarball_of(&[(path, content), ("/.signatures.json", &sigs)]);
        let bundle = load_bundle_tar_gz(name, name, &bytes, &BundleLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            bundle.files.iter().any(|f| f.path == normal(path)),
            "{name}: the reader strips the leading /"
        );
        let cfg = VerificationConfig {
            keys: [(
                "foo".to_string(),
                VerificationKey {
                    algorithm: "HS256".into(),
                    key: "secret".into(),
                    scope: None,
                },
            )]
            .into(),
            ..Default::default()
        };
        let e = verify_bundle(&bundle, Some(&cfg), "").expect_err(name);
        let expected = c["expected_error"]
            .as_str()
            .unwrap()
            .replace(path, &normal(path));
        assert_same_refusal(name, &expected, &e);
    }
}

/// A gzipped tarball of `(path, bytes)` entries, paths written as given.
fn tarball_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (p, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// `exclude_files` as OPA matches it (`filepath.Match`): `*.json` excludes a
/// top-level `data.json` but not a nested one, which stays signed and
/// checked; a malformed pattern is a refusal, never "matches nothing".
#[test]
fn exclude_files_star_does_not_cross_directories() {
    let manifest = br#"{"revision":"x"}"#;
    let nested = br#"{"a":1}"#;
    let token = |files: Value| {
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some("foo".into()),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
            },
            &serde_json::json!({"files": files}),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        serde_json::to_vec(&serde_json::json!({"signatures": [t]})).unwrap()
    };
    let cfg = |exclude: &[&str]| VerificationConfig {
        keys: [(
            "foo".to_string(),
            VerificationKey {
                algorithm: "HS256".into(),
                key: "secret".into(),
                scope: None,
            },
        )]
        .into(),
        exclude_files: exclude.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let manifest_hash = crate::bundle::canonical::sha256_hex(
        &crate::bundle::canonical::hash_input(".manifest", manifest).unwrap(),
    );
    // Only .manifest is signed; a/b/data.json is not.
    let sigs = token(
        serde_json::json!([{"name": ".manifest", "hash": manifest_hash, "algorithm": "SHA-256"}]),
    );
    let bytes = tarball_of(&[
        ("/.manifest", manifest),
        ("/a/b/data.json", nested),
        ("/.signatures.json", &sigs),
    ]);
    let b = load_bundle_tar_gz("b", "b", &bytes, &BundleLimits::default()).unwrap();
    let e = verify_bundle(&b, Some(&cfg(&["*.json"])), "")
        .expect_err("*.json must not reach a/b/data.json");
    assert_eq!(e.kind, VerifyErrorKind::FileNotSigned, "{e}");
    assert_eq!(
        e.message,
        "file a/b/data.json not included in bundle signature"
    );
    // A pattern that names the directory levels does exclude it.
    assert!(
        verify_bundle(&b, Some(&cfg(&["a/*/*.json"])), "")
            .unwrap()
            .is_some()
    );
    assert!(
        verify_bundle(&b, Some(&cfg(&["*/*/data.json"])), "")
            .unwrap()
            .is_some()
    );
    // No globstar, no alternation.
    assert!(verify_bundle(&b, Some(&cfg(&["**/data.json"])), "").is_err());
    assert!(verify_bundle(&b, Some(&cfg(&["{a,x}/b/data.json"])), "").is_err());
    let e = verify_bundle(&b, Some(&cfg(&["a/[b"])), "").unwrap_err();
    assert_eq!(e.kind, VerifyErrorKind::ExcludePattern, "{e}");
}
