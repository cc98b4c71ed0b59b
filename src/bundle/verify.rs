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

use super::{Bundle, canonical};

#[derive(Debug, Clone)]
pub struct VerificationKey {
    /// RS256 (default), RS/PS/ES 256/384/512, HS256/384/512, EdDSA.
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

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct VerifyError(pub String);

fn err(m: impl Into<String>) -> VerifyError {
    VerifyError(m.into())
}

#[derive(Deserialize)]
struct SignaturesFile {
    #[serde(default)]
    signatures: Vec<String>,
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

fn algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

fn decoding_key(
    alg: jsonwebtoken::Algorithm,
    key: &str,
) -> Result<jsonwebtoken::DecodingKey, VerifyError> {
    use jsonwebtoken::{Algorithm::*, DecodingKey};
    let pem = |r: Result<DecodingKey, jsonwebtoken::errors::Error>| {
        r.map_err(|_| err("failed to parse PEM block containing the key"))
    };
    match alg {
        HS256 | HS384 | HS512 => Ok(DecodingKey::from_secret(key.as_bytes())),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            pem(DecodingKey::from_rsa_pem(key.as_bytes()))
        }
        ES256 | ES384 => pem(DecodingKey::from_ec_pem(key.as_bytes())),
        EdDSA => pem(DecodingKey::from_ed_pem(key.as_bytes())),
        other => Err(err(format!("unknown signature algorithm: {other:?}"))),
    }
}

fn b64(seg: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg.trim_end_matches('='))
        .map_err(|e| err(format!("failed to base64 decode JWT {what}: {e}")))
}

/// Verifies one JWT; returns its payload and the key id used.
fn verify_jwt(
    token: &str,
    cfg: &VerificationConfig,
) -> Result<(Payload, String, String), VerifyError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(err(
            "failed to split compact JWT: invalid number of segments",
        ));
    }
    let mut keyid = cfg.keyid.clone();
    if keyid.is_empty() {
        let raw = b64(parts[0], "headers")
            .map_err(|e| err(format!("failed to extract key ID from headers: {e}")))?;
        let header: Value = serde_json::from_slice(&raw)
            .map_err(|e| err(format!("failed to extract key ID from headers: {e}")))?;
        keyid = header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
    }
    let payload_bytes = b64(parts[1], "payload")?;
    let payload: Payload =
        serde_json::from_slice(&payload_bytes).map_err(|e| err(e.to_string()))?;
    if keyid.is_empty() {
        keyid = payload.keyid.clone(); // deprecated claim, still honoured as OPA does
    }
    if keyid.is_empty() {
        return Err(err("verification key ID is empty"));
    }
    let key = cfg.keys.get(&keyid).ok_or_else(|| {
        err(format!(
            "verification key corresponding to ID {keyid} not found"
        ))
    })?;
    let alg = algorithm(&key.algorithm)
        .ok_or_else(|| err(format!("unknown signature algorithm: {}", key.algorithm)))?;
    let dk = decoding_key(alg, &key.key)?;
    b64(parts[2], "signature")?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &dk, &validation)
        .map_err(|e| err(format!("failed to verify JWT signature: {e}")))?;
    let scope = if !cfg.scope.is_empty() {
        cfg.scope.clone()
    } else {
        key.scope.clone().unwrap_or_default()
    };
    if payload.scope != scope {
        return Err(err("scope mismatch"));
    }
    Ok((payload, keyid, scope))
}

/// Verifies the JWT in `.signatures.json` bytes (OPA's `VerifyBundleSignature`).
fn verify_signatures(
    raw: &[u8],
    cfg: &VerificationConfig,
) -> Result<(Payload, String, String), VerifyError> {
    let sigs: SignaturesFile = serde_json::from_slice(raw)
        .map_err(|e| err(format!("bundle load failed on signatures decode: {e}")))?;
    match sigs.signatures.len() {
        0 => Err(err(".signatures.json: missing JWT (expected exactly one)")),
        1 => verify_jwt(&sigs.signatures[0], cfg),
        _ => Err(err(
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
    let Some(raw) = &bundle.signatures else {
        return match cfg {
            Some(c) if !c.keyid.is_empty() => Err(err("bundle missing .signatures.json file")),
            _ => Ok(None),
        };
    };
    let cfg = cfg.ok_or_else(|| err("verification key not provided"))?;
    let (payload, keyid, scope) = verify_signatures(raw, cfg)?;
    let mut signed: BTreeMap<String, FileInfo> = payload
        .files
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    let excluded = {
        let mut b = globset::GlobSetBuilder::new();
        for g in &cfg.exclude_files {
            b.add(globset::Glob::new(g).map_err(|e| err(format!("exclude_files: {e}")))?);
        }
        b.build().map_err(|e| err(format!("exclude_files: {e}")))?
    };
    let prefix = base_dir.trim_matches('/');
    for f in bundle.files.iter().filter(|f| f.path != ".signatures.json") {
        let name = if prefix.is_empty() {
            f.path.clone()
        } else {
            format!("{prefix}/{}", f.path)
        };
        if excluded.is_match(&f.path) || excluded.is_match(&name) {
            signed.remove(&name);
            continue;
        }
        let info = signed
            .remove(&name)
            .ok_or_else(|| err(format!("file {name} not included in bundle signature")))?;
        if info.algorithm.is_empty() {
            return Err(err(format!(
                "no hashing algorithm provided for file {name}"
            )));
        }
        let input = canonical::hash_input(&f.path, &f.bytes).map_err(err)?;
        let got = canonical::file_digest(&info.algorithm, &input)
            .ok_or_else(|| err(format!("unsupported hashing algorithm: {}", info.algorithm)))?;
        hex::decode(&info.hash).map_err(|e| err(e.to_string()))?;
        if got != info.hash {
            return Err(err(format!(
                "{name}: digest mismatch (want: {}, got: {got})",
                info.hash
            )));
        }
    }
    if !signed.is_empty() {
        let names: Vec<&str> = signed.keys().map(String::as_str).collect();
        return Err(err(format!(
            "file(s) [{}] specified in bundle signatures but not found in the target bundle",
            names.join(" ")
        )));
    }
    Ok(Some(Verified { keyid, scope }))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
