//! Producing what `verify` checks: `.signatures.json` per OPA (one JWT over
//! the SHA-256 hash of every file, canonical JSON for structured documents),
//! and `opa build`-shaped tarballs.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{Bundle, canonical};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

/// The JWT for a bundle's files (everything but `.signatures.json` and the
/// excluded globs).
pub fn sign(
    bundle: &Bundle,
    algorithm: &str,
    key_pem_or_secret: &str,
    keyid: Option<&str>,
    scope: Option<&str>,
) -> Result<String, SignError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut files = Vec::new();
    for f in bundle.files.iter().filter(|f| f.path != ".signatures.json") {
        let input = canonical::hash_input(&f.path, &f.bytes).map_err(SignError)?;
        files.push(
            json!({"name": f.path, "hash": canonical::sha256_hex(&input), "algorithm": "SHA-256"}),
        );
    }
    let mut claims = json!({"files": files});
    if let Some(k) = keyid {
        claims["keyid"] = json!(k);
    }
    if let Some(s) = scope {
        claims["scope"] = json!(s);
    }
    if algorithm == "ES512" {
        return sign_es512(&claims, key_pem_or_secret, keyid);
    }
    let alg: Algorithm = algorithm
        .parse()
        .map_err(|_| SignError(format!("unknown algorithm {algorithm}")))?;
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(key_pem_or_secret.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(key_pem_or_secret.as_bytes())
                .map_err(|e| SignError(format!("signing key: {e}")))?
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(key_pem_or_secret.as_bytes())
            .map_err(|e| SignError(format!("signing key: {e}")))?,
        _ => EncodingKey::from_rsa_pem(key_pem_or_secret.as_bytes())
            .map_err(|e| SignError(format!("signing key: {e}")))?,
    };
    let mut header = Header::new(alg);
    header.kid = keyid.map(String::from);
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| SignError(format!("signing failed: {e}")))
}

/// A compact JWS with ES512 (jsonwebtoken has no P-521): header and
/// payload as jsonwebtoken would write them, the raw `r || s` signature.
fn sign_es512(
    claims: &serde_json::Value,
    key: &str,
    keyid: Option<&str>,
) -> Result<String, SignError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = json!({"typ": "JWT", "alg": "ES512"});
    if let Some(k) = keyid {
        header["kid"] = json!(k);
    }
    let input = format!(
        "{}.{}",
        b64.encode(serde_json::to_vec(&header).map_err(|e| SignError(e.to_string()))?),
        b64.encode(serde_json::to_vec(claims).map_err(|e| SignError(e.to_string()))?)
    );
    let sig = super::es512::sign(input.as_bytes(), key)
        .map_err(|e| SignError(format!("signing key: {e}")))?;
    Ok(format!("{input}.{}", b64.encode(sig)))
}

/// Signs the bundle at `path`: a directory gets `<dir>/.signatures.json`; a
/// `.tar.gz` (as `gavel bundle build` made it) is re-packed with the new
/// `.signatures.json` inside (an older one replaced), so build → sign →
/// push works in that order. The tarball is replaced atomically and its
/// digest changes; it is returned (`None` for a directory).
pub fn sign_bundle(
    path: &Path,
    algorithm: &str,
    key: &str,
    keyid: Option<&str>,
    scope: Option<&str>,
) -> Result<Option<String>, SignError> {
    let bundle =
        super::load_bundle(path, &Default::default()).map_err(|e| SignError(e.to_string()))?;
    let jwt = sign(&bundle, algorithm, key, keyid, scope)?;
    let body = serde_json::to_vec_pretty(&json!({"signatures": [jwt]}))
        .map_err(|e| SignError(e.to_string()))?;
    if path.is_dir() {
        std::fs::write(path.join(".signatures.json"), body)
            .map_err(|e| SignError(format!("{}: {e}", path.display())))?;
        return Ok(None);
    }
    let mut files: Vec<super::BundleFile> = bundle
        .files
        .into_iter()
        .filter(|f| f.path != ".signatures.json")
        .collect();
    files.push(super::BundleFile {
        path: ".signatures.json".into(),
        bytes: body,
    });
    write_tarball(files, path).map(Some)
}

/// Packs a bundle directory as `opa build` does (leading-slash paths), with an
/// optional revision written into `.manifest`. Written to a temp file and
/// renamed, so a reader never sees half a tarball.
pub fn build_tarball(dir: &Path, out: &Path, revision: Option<&str>) -> Result<String, SignError> {
    let bundle =
        super::load_bundle(dir, &Default::default()).map_err(|e| SignError(e.to_string()))?;
    if revision.is_some() && bundle.signatures.is_some() {
        return Err(SignError("setting --revision changes .manifest and would invalidate .signatures.json: build with --revision first, then sign the tarball (gavel bundle sign OUT.tar.gz)".into()));
    }
    let mut files = bundle.files.clone();
    if let Some(rev) = revision {
        let mut manifest: serde_json::Value = files
            .iter()
            .find(|f| f.path == ".manifest")
            .and_then(|f| serde_json::from_slice(&f.bytes).ok())
            .unwrap_or_else(|| json!({}));
        manifest["revision"] = json!(rev);
        files.retain(|f| f.path != ".manifest");
        files.push(super::BundleFile {
            path: ".manifest".into(),
            bytes: serde_json::to_vec(&manifest).unwrap_or_default(),
        });
    }
    write_tarball(files, out)
}

/// Writes `files` as a gzipped tarball at `out` (sorted, mode 0644, mtime
/// 0: the same files give the same bytes), through a temp file and a
/// rename; returns its `sha256:` digest.
fn write_tarball(mut files: Vec<super::BundleFile>, out: &Path) -> Result<String, SignError> {
    let tmp = out.with_extension(format!("tmp.{}", std::process::id()));
    let f =
        std::fs::File::create(&tmp).map_err(|e| SignError(format!("{}: {e}", tmp.display())))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::default(),
    ));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let written = (|| {
        for f in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(f.bytes.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, &f.path, f.bytes.as_slice())?;
        }
        let mut file = tar.into_inner()?.finish()?;
        file.flush()?;
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(SignError(format!("{}: {e}", out.display())));
    }
    std::fs::rename(&tmp, out).map_err(|e| SignError(format!("{}: {e}", out.display())))?;
    let bytes = std::fs::read(out).map_err(|e| SignError(e.to_string()))?;
    Ok(format!("sha256:{}", canonical::sha256_hex(&bytes)))
}
