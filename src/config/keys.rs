//! `[keys.NAME]`: the keys that sign policy bundles, each from exactly one
//! source (inline PEM, a file, an environment variable), and the HMAC
//! secret-length rule that `[auth]` shares.

use super::ctx::*;
use super::raw::{RawConfig, RawKey};
use super::*;

/// Every `[keys.NAME]` table, its material read (files relative to the
/// config) and checked.
pub(super) fn parse(
    ctx: &Ctx,
    raw: &BTreeMap<String, Spanned<RawKey>>,
) -> Result<BTreeMap<String, KeyConfig>, ConfigError> {
    let mut keys = BTreeMap::new();
    for (name, k) in raw {
        let at = k.span().start;
        let k = k.get_ref();
        let field = format!("keys.{name}");
        let algorithm = k.algorithm.clone().unwrap_or_else(|| "RS256".into());
        const ALGS: &[&str] = &[
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
            "HS256", "HS384", "HS512", "EdDSA",
        ];
        if !ALGS.contains(&algorithm.as_str()) {
            return Err(ctx.at(
                at,
                &format!("{field}.algorithm"),
                format!(
                    "unknown algorithm {algorithm:?} (one of {})",
                    ALGS.join(", ")
                ),
            ));
        }
        let material = material(ctx, k, at, &field)?;
        // Every source (inline, file, environment) ends here.
        if let Err(why) = check_hmac_secret(&algorithm, material.as_bytes()) {
            let source = match (&k.key, &k.key_file) {
                (Some(_), _) => "key",
                (_, Some(_)) => "key_file",
                _ => "key_env",
            };
            return Err(ctx.at(at, &format!("{field}.{source}"), why));
        }
        keys.insert(
            name.clone(),
            KeyConfig {
                algorithm,
                material,
                scope: k.scope.clone(),
            },
        );
    }
    Ok(keys)
}

/// The key itself, from the one source the table names (`key`, `key_file`
/// or `key_env`).
fn material(ctx: &Ctx, k: &RawKey, at: usize, field: &str) -> Result<String, ConfigError> {
    Ok(match (&k.key, &k.key_file, &k.key_env) {
        (Some(inline), None, None) => inline.clone(),
        (None, Some(file), None) => {
            let path = ctx.path(ctx.expand(file, &format!("{field}.key_file"))?);
            std::fs::read_to_string(&path)
                .map_err(|e| {
                    ctx.at(
                        file.span().start,
                        &format!("{field}.key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim_end_matches('\n')
                .to_string()
        }
        (None, None, Some(var)) => (ctx.env)(var).ok_or_else(|| {
            ctx.at(
                at,
                &format!("{field}.key_env"),
                format!("environment variable {var} is not set"),
            )
        })?,
        _ => {
            return Err(ctx.at(
                at,
                field,
                "set exactly one of key (inline PEM), key_file or key_env",
            ));
        }
    })
}

/// Every key a server trusts (`servers.NAME.keys`) is defined by a
/// `[keys.…]` table.
pub(super) fn check_server_keys(
    ctx: &Ctx,
    raw: &RawConfig,
    servers: &BTreeMap<String, ServerConfig>,
    keys: &BTreeMap<String, KeyConfig>,
) -> Result<(), ConfigError> {
    for (name, s) in servers {
        for k in &s.signing.keys {
            if !keys.contains_key(k) {
                let span = raw.servers[name].span().start;
                return Err(ctx.at(
                    span,
                    &format!("servers.{name}.keys"),
                    format!("no [keys.{k}] table defines key {k:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// RFC 7518 §3.2: "A key of the same size as the hash output (for instance,
/// 256 bits for "HS256") or larger MUST be used." A shorter secret — the
/// empty one included — is guessable or brute-forceable, and anyone who
/// finds it mints tokens (`sub: admin`) or signs bundles. `None` for a
/// non-HMAC algorithm.
pub fn hmac_min_bytes(algorithm: &str) -> Option<usize> {
    match algorithm {
        "HS256" => Some(32),
        "HS384" => Some(48),
        "HS512" => Some(64),
        _ => None,
    }
}

/// Refuses an HMAC secret shorter than its hash (see [`hmac_min_bytes`]);
/// the message says how long it is, how long it must be and how to make
/// one. Other algorithms pass.
pub fn check_hmac_secret(algorithm: &str, secret: &[u8]) -> Result<(), String> {
    match hmac_min_bytes(algorithm) {
        Some(min) if secret.len() < min => Err(format!(
            "the {algorithm} secret is {} bytes; RFC 7518 §3.2 requires at least {min} (the hash size) — generate one with `openssl rand -base64 {min}`",
            secret.len()
        )),
        _ => Ok(()),
    }
}
