//! Bundle signature verification, OPA's `.signatures.json` exactly
//! (`v1/bundle/verify.go`): one JWT whose payload lists every file with its
//! hash; the key is chosen by the configuration's `keyid`, else the JWT
//! header's `kid`, else the payload's `keyid`; the **algorithm always comes
//! from the configured key**, never from the token. The signed set and the
//! bundle's files must match one to one (after `exclude_files`). Messages
//! follow OPA's so operators can search them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::{Bundle, BundleFile, RawBundle, canonical};

#[derive(Debug, Clone)]
pub struct VerificationKey {
    /// RS256 (default), RS/PS/ES 256/384/512, HS256/384/512, EdDSA (ES512
    /// through `es512`, the rest through jsonwebtoken).
    pub algorithm: String,
    /// PEM public key, or the HMAC secret.
    pub key: String,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct VerificationConfig {
    pub keys: BTreeMap<String, VerificationKey>,
    /// Key to use whatever the token says; empty = take it from the token.
    pub keyid: String,
    pub scope: String,
    /// Globs of bundle paths that are not signed.
    pub exclude_files: Vec<String>,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub keyid: String,
    pub scope: String,
}

/// Why a bundle's signature was refused: the check that failed (one kind per
/// step of OPA's verification, `error-messages.json` in the vectors) and a
/// message in OPA's words naming the file or key involved.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{message}")]
pub struct VerifyError {
    pub kind: VerifyErrorKind,
    pub message: String,
}

/// The verification steps, in the order OPA runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyErrorKind {
    /// `.signatures.json` is not `{"signatures": [...]}`.
    SignaturesDecode,
    /// A key id is configured and the bundle has no `.signatures.json`.
    MissingSignaturesFile,
    /// Signed, but no key to verify with.
    NoVerificationConfig,
    /// `plugin` names a verifier other than the default (gavel has none).
    UnknownVerifier,
    /// Zero JWTs.
    MissingJwt,
    /// More than one JWT.
    MultipleJwts,
    /// Not three dot-separated segments.
    SplitJwt,
    /// The header is not base64url JSON.
    Header,
    /// The payload is not base64url.
    PayloadBase64,
    /// The payload is not OPA's `{files, keyid, scope}`.
    PayloadJson,
    /// No key id in the config, the header or the payload.
    EmptyKeyId,
    /// The key id is not among the trusted keys.
    KeyNotFound,
    /// The configured algorithm is not one gavel knows.
    UnknownAlgorithm,
    /// The configured key is not a usable PEM key.
    BadKey,
    /// The signature is not base64url.
    SignatureBase64,
    /// The signature does not verify under the key.
    BadSignature,
    /// The token's scope is not the configured one.
    ScopeMismatch,
    /// A bundle file the token does not list.
    FileNotSigned,
    /// A listed file without a hashing algorithm.
    NoHashAlgorithm,
    /// A hashing algorithm OPA does not define.
    UnsupportedHashAlgorithm,
    /// A structured file (data.json, data.yaml, .manifest) does not parse.
    StructuredParse,
    /// A listed hash is not hex.
    BadHashHex,
    /// A file's digest is not the signed one.
    DigestMismatch,
    /// Files the token lists are missing from the bundle.
    SignedFilesMissing,
    /// An `exclude_files` pattern is malformed.
    ExcludePattern,
}

fn err(kind: VerifyErrorKind, m: impl Into<String>) -> VerifyError {
    VerifyError {
        kind,
        message: m.into(),
    }
}

use VerifyErrorKind as K;

#[derive(Deserialize)]
struct SignaturesFile {
    #[serde(default)]
    signatures: Vec<String>,
    /// A custom verifier's id (OPA: `SignaturesConfig.Plugin`).
    #[serde(default)]
    plugin: Option<String>,
}

#[derive(Deserialize)]
struct FileInfo {
    name: String,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    algorithm: String,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    files: Vec<FileInfo>,
    #[serde(default)]
    keyid: String,
    #[serde(default)]
    scope: String,
}

/// A configured key's algorithm by jsonwebtoken's names (ES512, which
/// jsonwebtoken lacks, never gets here: `es512` verifies it).
fn algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    name.parse().ok()
}

/// The key's PEM block (or, for HMAC, the secret itself) as a key of
/// `alg`'s family.
fn decoding_key(
    alg: jsonwebtoken::Algorithm,
    key: &str,
) -> Result<jsonwebtoken::DecodingKey, VerifyError> {
    use jsonwebtoken::{AlgorithmFamily as F, DecodingKey};
    let pem = |r: Result<DecodingKey, jsonwebtoken::errors::Error>| {
        r.map_err(|_| err(K::BadKey, "failed to parse PEM block containing the key"))
    };
    match alg.family() {
        F::Hmac => Ok(DecodingKey::from_secret(key.as_bytes())),
        F::Rsa => pem(DecodingKey::from_rsa_pem(key.as_bytes())),
        F::Ec => pem(DecodingKey::from_ec_pem(key.as_bytes())),
        F::Ed => pem(DecodingKey::from_ed_pem(key.as_bytes())),
    }
}

fn b64(seg: &str, what: &str, kind: VerifyErrorKind) -> Result<Vec<u8>, VerifyError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg.trim_end_matches('='))
        .map_err(|e| err(kind, format!("failed to base64 decode JWT {what}: {e}")))
}

/// Verifies one JWT; returns its payload and the key id used.
fn verify_jwt(
    token: &str,
    cfg: &VerificationConfig,
) -> Result<(Payload, String, String), VerifyError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(err(
            K::SplitJwt,
            "failed to split compact JWT: invalid number of segments",
        ));
    }
    let mut keyid = cfg.keyid.clone();
    if keyid.is_empty() {
        keyid = header_keyid(parts[0])?;
    }
    let payload_bytes = b64(parts[1], "payload", K::PayloadBase64)?;
    let payload: Payload = serde_json::from_slice(&payload_bytes)
        .map_err(|e| err(K::PayloadJson, format!("failed to decode JWT payload: {e}")))?;
    if keyid.is_empty() {
        keyid = payload.keyid.clone(); // deprecated claim, still honoured as OPA does
    }
    if keyid.is_empty() {
        return Err(err(K::EmptyKeyId, "verification key ID is empty"));
    }
    let key = cfg.keys.get(&keyid).ok_or_else(|| {
        err(
            K::KeyNotFound,
            format!("verification key corresponding to ID {keyid} not found"),
        )
    })?;
    verify_signature(token, &parts, &key.algorithm, &key.key)?;
    let scope = if !cfg.scope.is_empty() {
        cfg.scope.clone()
    } else {
        key.scope.clone().unwrap_or_default()
    };
    if payload.scope != scope {
        return Err(err(K::ScopeMismatch, "scope mismatch"));
    }
    Ok((payload, keyid, scope))
}

/// The key id (`kid`) in a JWT's header segment ("" when it has none).
fn header_keyid(segment: &str) -> Result<String, VerifyError> {
    let failed = |e: &dyn std::fmt::Display| {
        err(
            K::Header,
            format!("failed to extract key ID from headers: {e}"),
        )
    };
    let raw = b64(segment, "headers", K::Header).map_err(|e| failed(&e))?;
    let header: Value = serde_json::from_slice(&raw).map_err(|e| failed(&e))?;
    Ok(header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string())
}

/// Verifies the token's signature with the configured key and algorithm.
fn verify_signature(
    token: &str,
    parts: &[&str],
    algorithm_name: &str,
    key_pem: &str,
) -> Result<(), VerifyError> {
    if algorithm_name == "ES512" {
        return verify_es512(parts, key_pem);
    }
    let alg = algorithm(algorithm_name).ok_or_else(|| {
        err(
            K::UnknownAlgorithm,
            format!("unknown signature algorithm: {algorithm_name}"),
        )
    })?;
    let dk = decoding_key(alg, key_pem)?;
    b64(parts[2], "signature", K::SignatureBase64)?;
    // Only the configured algorithm is accepted: a token whose header
    // names another (HS256 against an RSA key, say) is refused.
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &dk, &validation).map_err(|e| {
        err(
            K::BadSignature,
            format!("failed to verify JWT signature: {e}"),
        )
    })?;
    Ok(())
}

/// ES512 (not in jsonwebtoken): the configured key's algorithm, checked
/// against the header as jsonwebtoken checks the others, then the raw
/// `r || s` signature over `header.payload`.
fn verify_es512(parts: &[&str], public_pem: &str) -> Result<(), VerifyError> {
    let header: Value = serde_json::from_slice(&b64(parts[0], "headers", K::Header)?)
        .map_err(|e| err(K::Header, format!("failed to parse JWT headers: {e}")))?;
    let sig = b64(parts[2], "signature", K::SignatureBase64)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES512") {
        return Err(err(
            K::BadSignature,
            "failed to verify JWT signature: InvalidAlgorithm",
        ));
    }
    let input = format!("{}.{}", parts[0], parts[1]);
    super::es512::verify(input.as_bytes(), &sig, public_pem).map_err(|e| {
        let kind = if e.starts_with("failed to parse PEM") {
            K::BadKey
        } else {
            K::BadSignature
        };
        let message = if kind == K::BadKey {
            e
        } else {
            format!("failed to verify JWT signature: {e}")
        };
        err(kind, message)
    })
}

/// Verifies the JWT in `.signatures.json` bytes (OPA's `VerifyBundleSignature`).
fn verify_signatures(
    raw: &[u8],
    cfg: &VerificationConfig,
) -> Result<(Payload, String, String), VerifyError> {
    let sigs: SignaturesFile = serde_json::from_slice(raw).map_err(|e| {
        err(
            K::SignaturesDecode,
            format!("bundle load failed on signatures decode: {e}"),
        )
    })?;
    // OPA runs the verifier a bundle names; gavel has only the default one,
    // so a bundle asking for another is refused rather than checked by
    // rules its signer did not intend (OPA's own error when none is
    // registered under that id).
    if let Some(p) = sigs
        .plugin
        .as_deref()
        .filter(|p| !p.is_empty() && *p != "_default")
    {
        return Err(err(
            K::UnknownVerifier,
            format!("no verifier exists under id {p}"),
        ));
    }
    match sigs.signatures.len() {
        0 => Err(err(
            K::MissingJwt,
            ".signatures.json: missing JWT (expected exactly one)",
        )),
        1 => verify_jwt(&sigs.signatures[0], cfg),
        _ => Err(err(
            K::MultipleJwts,
            ".signatures.json: multiple JWTs not supported (expected exactly one)",
        )),
    }
}

/// Entry point for the fuzz target: `.signatures.json` bytes through the
/// whole JWT path.
pub fn verify_signatures_for_fuzzing(
    raw: &[u8],
    cfg: &VerificationConfig,
) -> Result<(), VerifyError> {
    verify_signatures(raw, cfg).map(|_| ())
}

/// OPA's reader behaviour for a bundle: `Ok(None)` for an unsigned bundle
/// when that is acceptable under OPA's rules (no config, or a config with no
/// key id) — callers that require signatures refuse `None`.
pub fn verify_bundle(
    bundle: &Bundle,
    cfg: Option<&VerificationConfig>,
    base_dir: &str,
) -> Result<Option<Verified>, VerifyError> {
    verify_files_signed(bundle.signatures.as_deref(), &bundle.files, cfg, base_dir)
}

/// [`verify_bundle`] on a bundle's files as read, before anything in it is
/// parsed: the JWT first (only `.signatures.json` is read), then each
/// file's hash — so bytes nobody trusted signed never reach a parser, but
/// for the structured files OPA hashes in canonical form (within the
/// reader's nesting bounds).
pub fn verify_raw(
    bundle: &RawBundle,
    cfg: Option<&VerificationConfig>,
    base_dir: &str,
) -> Result<Option<Verified>, VerifyError> {
    verify_files_signed(bundle.signatures(), &bundle.files, cfg, base_dir)
}

fn verify_files_signed(
    signatures: Option<&[u8]>,
    files: &[BundleFile],
    cfg: Option<&VerificationConfig>,
    base_dir: &str,
) -> Result<Option<Verified>, VerifyError> {
    let Some(raw) = signatures else {
        return match cfg {
            Some(c) if !c.keyid.is_empty() => Err(err(
                K::MissingSignaturesFile,
                "bundle missing .signatures.json file",
            )),
            _ => Ok(None),
        };
    };
    let cfg = cfg.ok_or_else(|| err(K::NoVerificationConfig, "verification key not provided"))?;
    let (payload, keyid, scope) = verify_signatures(raw, cfg)?;
    let signed: BTreeMap<String, FileInfo> = payload
        .files
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    verify_files(files, signed, &cfg.exclude_files, base_dir)?;
    Ok(Some(Verified { keyid, scope }))
}

/// Whether `path` matches one of the `exclude_files` patterns (Go's
/// `filepath.Match`, as OPA: `*` never crosses `/`).
fn excluded(patterns: &[String], path: &str) -> Result<bool, VerifyError> {
    for p in patterns {
        let hit = super::pathmatch::matches(p, path)
            .map_err(|e| err(K::ExcludePattern, format!("exclude_files: {e}")))?;
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The file checks (OPA's `VerifyBundleFile` for each file, then the
/// leftovers): every bundle file but `.signatures.json` and the excluded
/// ones is listed with an algorithm and its digest; nothing listed is
/// missing. Paths are the reader's, without a leading `/` (as OPA signs
/// them), under `base_dir` when one is given.
fn verify_files(
    files: &[BundleFile],
    mut signed: BTreeMap<String, FileInfo>,
    exclude: &[String],
    base_dir: &str,
) -> Result<(), VerifyError> {
    let prefix = base_dir.trim_matches('/');
    for f in files.iter().filter(|f| f.path != ".signatures.json") {
        let name = if prefix.is_empty() {
            f.path.clone()
        } else {
            format!("{prefix}/{}", f.path)
        };
        if excluded(exclude, &f.path)? || excluded(exclude, &name)? {
            signed.remove(&name);
            continue;
        }
        let info = signed.remove(&name).ok_or_else(|| {
            err(
                K::FileNotSigned,
                format!("file {name} not included in bundle signature"),
            )
        })?;
        if info.algorithm.is_empty() {
            return Err(err(
                K::NoHashAlgorithm,
                format!("no hashing algorithm provided for file {name}"),
            ));
        }
        let input =
            canonical::hash_input(&f.path, &f.bytes).map_err(|e| err(K::StructuredParse, e))?;
        let got = canonical::file_digest(&info.algorithm, &input).ok_or_else(|| {
            err(
                K::UnsupportedHashAlgorithm,
                format!("unsupported hashing algorithm: {}", info.algorithm),
            )
        })?;
        hex::decode(&info.hash).map_err(|e| err(K::BadHashHex, format!("{name}: hash: {e}")))?;
        if got != info.hash {
            return Err(err(
                K::DigestMismatch,
                format!("{name}: digest mismatch (want: {}, got: {got})", info.hash),
            ));
        }
    }
    if !signed.is_empty() {
        let names: Vec<&str> = signed.keys().map(String::as_str).collect();
        return Err(err(
            K::SignedFilesMissing,
            format!(
                "file(s) [{}] specified in bundle signatures but not found in the target bundle",
                names.join(" ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
