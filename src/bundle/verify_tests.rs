//! OPA's own signing vectors (../shared/vectors/opa-signing): every JWT case
//! and every whole-bundle fixture.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::bundle::{BundleLimits, load_bundle_tar_gz};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/opa-signing")
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

/// Go-library-specific error texts are compared up to their first `:`.
fn matches(expected: &str, got: &str) -> bool {
    let go_specific = [
        "jwsbb",
        "cannot parse",
        "illegal base64",
        "json: cannot",
        "crypto/rsa",
        "invalid HMAC",
    ];
    if go_specific.iter().any(|m| expected.contains(m)) {
        let prefix = expected.split(':').next().unwrap();
        return expected.starts_with("json: cannot") || got.starts_with(prefix);
    }
    expected == got
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
            let e = got.err().unwrap_or_else(|| panic!("{name}: accepted")).0;
            let expected = c["expected_error"].as_str().unwrap();
            assert!(
                matches(expected, &e),
                "{name}: expected {expected:?}, got {e:?}"
            );
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
            // deliberately wrong, so it must be refused.
            assert!(
                got.is_err(),
                "{name}: gavel must not accept what OPA accepts only when skipping"
            );
            continue;
        }
        let expected = &fx["expected"];
        if expected["ok"].as_bool().unwrap() {
            assert!(got.is_ok(), "{name}: {:?}", got.err());
        } else {
            let e = got.err().unwrap_or_else(|| panic!("{name}: accepted")).0;
            let ok = match &expected["error"] {
                Value::String(s) => s == &e,
                Value::Array(options) => options.iter().any(|o| o.as_str() == Some(e.as_str())),
                _ => false,
            };
            assert!(ok, "{name}: expected {}, got {e:?}", expected["error"]);
        }
    }
    assert_eq!(ran, 12);
}
