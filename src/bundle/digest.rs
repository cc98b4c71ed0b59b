//! The bundle digest recorded with every decision (`bundles[name].digest`).
//!
//! - A tarball: `sha256:` + hex sha256 of the `.tar.gz` bytes exactly as
//!   received — the same value an OCI registry or `sha256sum` shows.
//! - A directory: there are no tarball bytes, so the digest is taken over
//!   OPA's own file hashes, which makes it independent of JSON formatting
//!   and of directory order:
//!
//!   ```text
//!   for each regular file, sorted by bundle-relative path (byte order):
//!       <path> 0x20 <lowercase hex sha256 of the OPA hash input> 0x0A
//!   digest = "sha256:" + hex(sha256(concatenation of those lines))
//!   ```
//!
//!   The OPA hash input (OPA `v1/bundle/hash.go`) is the raw
//!   bytes for `.rego`, `data.yml` and any other file, and canonical JSON
//!   (keys sorted byte-wise, compact, number text kept, Go string escaping)
//!   for `data.json`, `data.yaml`, `.manifest` and `.signatures.json`.
//!   Paths never contain control characters (the reader refuses them), so
//!   the line format is unambiguous.

use super::{BundleError, BundleFile, canonical, file_err};

/// `sha256:<hex>` of a tarball's bytes.
pub fn tarball_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", canonical::sha256_hex(bytes))
}

/// OPA's SHA-256 file hash (lowercase hex) of one bundle file, as a signer
/// writes it into `.signatures.json`.
pub fn opa_file_hash(path: &str, bytes: &[u8]) -> Result<String, String> {
    canonical::hash_input(path, bytes).map(|b| canonical::sha256_hex(&b))
}

/// Digest of a directory bundle (format above). `files` may be in any order.
pub fn directory_digest(files: &[BundleFile], source: &str) -> Result<String, BundleError> {
    let mut sorted: Vec<&BundleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut acc = Vec::new();
    for f in sorted {
        let h = opa_file_hash(&f.path, &f.bytes).map_err(|m| {
            file_err(
                source,
                &f.path,
                format!("cannot hash it as OPA does ({m}); fix the file"),
            )
        })?;
        acc.extend_from_slice(f.path.as_bytes());
        acc.push(b' ');
        acc.extend_from_slice(h.as_bytes());
        acc.push(b'\n');
    }
    Ok(format!("sha256:{}", canonical::sha256_hex(&acc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors(file: &str) -> Vec<Value> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/opa-signing")
            .join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Every vector of hashing.json (digests asserted by OPA's tests, plus the
    /// exact canonical bytes) and hashing_derived.json (hash_test.go cases),
    /// with the vector's own algorithm.
    #[test]
    fn every_opa_hashing_vector() {
        let mut n = 0;
        for file in ["hashing.json", "hashing_derived.json"] {
            for v in vectors(file) {
                let name = v["input_file_name"].as_str().expect("input_file_name");
                let input = v["input"].as_str().expect("input");
                let bytes = canonical::hash_input(name, input.as_bytes()).unwrap();
                if let Some(canon) = v["canonical_bytes_hashed"].as_str() {
                    assert_eq!(
                        String::from_utf8_lossy(&bytes),
                        canon,
                        "{}",
                        v["description"]
                    );
                }
                let alg = v["algorithm"].as_str().unwrap();
                let got = canonical::file_digest(alg, &bytes).expect("known algorithm");
                assert_eq!(
                    got,
                    v["expected_hex"].as_str().unwrap(),
                    "{}",
                    v["description"]
                );
                if alg == "SHA-256" {
                    assert_eq!(opa_file_hash(name, input.as_bytes()).unwrap(), got);
                }
                n += 1;
            }
        }
        assert_eq!(n, 20, "12 + 8 vectors");
    }

    fn f(path: &str, bytes: &str) -> BundleFile {
        BundleFile {
            path: path.into(),
            bytes: bytes.as_bytes().to_vec(),
        }
    }

    #[test]
    fn directory_digest_is_the_documented_byte_format() {
        let files = [
            f("b.rego", "package b"),
            f(".manifest", r#"{ "revision" : "1" }"#),
        ];
        let lines = format!(
            ".manifest {}\nb.rego {}\n",
            canonical::sha256_hex(br#"{"revision":"1"}"#),
            canonical::sha256_hex(b"package b")
        );
        assert_eq!(
            directory_digest(&files, "d").unwrap(),
            format!("sha256:{}", canonical::sha256_hex(lines.as_bytes()))
        );
        let bad = [f("data.json", "{")];
        let e = directory_digest(&bad, "d").unwrap_err().to_string();
        assert!(e.contains("bundle d: data.json"), "{e}");
        assert_eq!(
            tarball_digest(b"x"),
            format!("sha256:{}", canonical::sha256_hex(b"x"))
        );
    }
}
