//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus
//! replay test (`tests/fuzz_replay.rs`), so the corpus runs on stable in CI.
//! Each checks an invariant and panics on violation; a panic is a finding.

use crate::transport::idscan::IdScanner;

/// The streaming id scanner never panics, and on a complete JSON-RPC object
/// agrees with a real JSON parser about the top-level `id`.
pub fn idscan(data: &[u8]) {
    let mut whole = IdScanner::new();
    whole.feed(data);
    let r = whole.result();
    // Chunking must not change the answer (the transport feeds pieces).
    let mut pieces = IdScanner::new();
    for chunk in data.chunks(3) {
        pieces.feed(chunk);
    }
    assert_eq!(pieces.result(), r, "chunked scan differs");
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(data) {
        let expected = obj
            .get("id")
            .and_then(|v| serde_json::from_value::<rmcp::model::RequestId>(v.clone()).ok());
        // Only ids the scanner can hold (short raw tokens) are comparable.
        let short = obj.get("id").is_some_and(|v| v.to_string().len() < 200);
        let unique_keys = String::from_utf8_lossy(data)
            .matches("\"id\"")
            .nth(1)
            .is_none();
        if short && unique_keys {
            assert_eq!(r.id, expected, "scanner and parser disagree on the id");
            assert_eq!(r.has_method, obj.contains_key("method"));
        }
    }
}

/// The bundle reader never panics on any bytes, and whatever it accepts has
/// only normalised, in-bundle paths and respects the limits.
pub fn bundle_reader(data: &[u8]) {
    let limits = crate::bundle::BundleLimits {
        max_files: 64,
        max_file_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
    };
    if let Ok(b) = crate::bundle::load_bundle_tar_gz("fuzz", "fuzz", data, &limits) {
        assert!(b.files.len() <= limits.max_files);
        let total: usize = b.files.iter().map(|f| f.bytes.len()).sum();
        assert!(total as u64 <= limits.max_total_bytes);
        for f in &b.files {
            assert!(
                !f.path.starts_with('/') && !f.path.split('/').any(|s| s == ".." || s.is_empty()),
                "{}",
                f.path
            );
        }
        let _ = crate::bundle::lint::lint(&b, false);
    }
}

/// The HS256 secret the `bundle_verified` corpus is signed with (what a
/// server would trust; long enough for RFC 7518 §3.2).
pub const BUNDLE_FUZZ_SECRET: &str = "fuzz-bundle-secret-of-32-bytes-at-least";

/// A registry bundle as a server with keys takes it: read (bounded, nesting
/// pre-scanned, nothing parsed), signature verified, and only then parsed.
/// Never panics; whatever the reader keeps is within the nesting bounds (so
/// no parser meets an expensive input); nothing unverified is parsed.
pub fn bundle_verified(data: &[u8]) {
    use crate::bundle::verify::{VerificationConfig, VerificationKey, verify_raw};
    let limits = crate::bundle::BundleLimits {
        max_files: 64,
        max_file_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
    };
    let Ok(raw) = crate::bundle::read_bundle_tar_gz("fuzz", "fuzz", data, &limits) else {
        return;
    };
    for f in &raw.files {
        assert!(
            crate::bundle::nesting::check(&f.path, &f.bytes).is_ok(),
            "{} passed the reader beyond the nesting bounds",
            f.path
        );
    }
    let mut cfg = VerificationConfig::default();
    cfg.keys.insert(
        "fuzz".into(),
        VerificationKey {
            algorithm: "HS256".into(),
            key: BUNDLE_FUZZ_SECRET.into(),
            scope: None,
        },
    );
    // As a server with keys: unsigned (Ok(None)) or refused → never parsed.
    if let Ok(Some(_)) = verify_raw(&raw, Some(&cfg), "")
        && let Ok(b) = raw.parse()
    {
        let _ = crate::bundle::lint::lint(&b, false);
    }
}

/// `.signatures.json` and JWT parsing never panic on any bytes, and never
/// accept a token under a key it was not signed with.
pub fn signatures(data: &[u8]) {
    use crate::bundle::verify::{
        VerificationConfig, VerificationKey, verify_signatures_for_fuzzing,
    };
    let mut cfg = VerificationConfig::default();
    cfg.keys.insert(
        "foo".into(),
        VerificationKey {
            algorithm: "HS256".into(),
            key: "fuzz-secret-never-used-to-sign".into(),
            scope: None,
        },
    );
    assert!(
        verify_signatures_for_fuzzing(data, &cfg).is_err(),
        "a token verified under a key nobody signed with"
    );
}

/// OCI manifest and index parsing never panics, and whatever it accepts
/// names only well-formed sha256 digests with non-negative sizes, and an
/// accepted image always yields OPA's bundle layer media type.
pub fn oci_manifest(data: &[u8]) {
    use crate::bundle::oci::manifest::{Document, LAYER_MEDIA_TYPE, parse};
    let well_formed = |d: &str| {
        d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    for ct in [None, Some("application/vnd.oci.image.index.v1+json")] {
        match parse(data, ct) {
            Ok(Document::Image { layer }) => {
                assert_eq!(layer.media_type, LAYER_MEDIA_TYPE);
                assert!(well_formed(&layer.digest) && layer.size >= 0);
            }
            Ok(Document::Index { manifests }) => {
                assert!(!manifests.is_empty());
                for m in manifests {
                    assert!(well_formed(&m.digest) && m.size >= 0);
                    assert!(
                        !m.platform
                            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
                    );
                }
            }
            Err(_) => {}
        }
    }
    // References: parse never panics, and what parses prints back to itself.
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = crate::bundle::oci::OciRef::parse(s.trim())
    {
        let again =
            crate::bundle::oci::OciRef::parse(&r.to_string()).expect("normalized form parses");
        assert_eq!(again, r);
    }
}
