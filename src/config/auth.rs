//! `[auth]`: how `gavel serve` checks bearer tokens (issuer, audience,
//! algorithm, one key source), and where token keys may be fetched from.

use super::ctx::*;
use super::*;

impl Config {
    pub(super) fn auth(ctx: &Ctx, a: &Spanned<raw::RawAuth>) -> Result<AuthSettings, ConfigError> {
        let r = a.get_ref();
        let at = a.span().start;
        let algorithm = Self::auth_algorithm(ctx, r, at)?;
        let key = match (&r.key_file, &r.key_env, &r.jwks_file, &r.jwks_url) {
            (Some(f), None, None, None) => {
                AuthKey::PemFile(ctx.path(ctx.expand(f, "auth.key_file")?))
            }
            (None, Some(e), None, None) => {
                // Checked here when the variable is set, so `config check`
                // refuses a short secret; the authenticator checks again
                // when it reads the variable (it may be set only there).
                if let Some(secret) = (ctx.env)(e)
                    && let Err(why) = check_hmac_secret(&algorithm, secret.as_bytes())
                {
                    return Err(ctx.at(at, "auth.key_env", format!("{e}: {why}")));
                }
                AuthKey::SecretEnv(e.clone())
            }
            (None, None, Some(f), None) => {
                AuthKey::JwksFile(ctx.path(ctx.expand(f, "auth.jwks_file")?))
            }
            (None, None, None, Some(u)) => {
                let url = ctx.expand(u, "auth.jwks_url")?;
                if let Err(why) = key_url_allowed(&url) {
                    return Err(ctx.at(u.span().start, "auth.jwks_url", why));
                }
                AuthKey::JwksUrl {
                    url,
                    refresh: ctx.duration(
                        &r.jwks_refresh,
                        "auth.jwks_refresh",
                        Duration::from_secs(600),
                    )?,
                }
            }
            _ => {
                return Err(ctx.at(
                    at,
                    "auth",
                    "give exactly one of key_file (PEM public key), key_env (HMAC secret in the environment), jwks_file (a JWKS document) or jwks_url (a JWKS endpoint)",
                ));
            }
        };
        // The audience is gavel's resource URL: the 401 challenge and the
        // protected-resource metadata are built from it (RFC 9728), never
        // from a request's Host header.
        let audience = ctx.expand(&r.audience, "auth.audience")?;
        let is_url = audience.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !is_url {
            return Err(ctx.at(
                r.audience.span().start,
                "auth.audience",
                format!("{audience:?} is not gavel's resource URL: write the URL hosts use, e.g. \"https://gavel.example/mcp\""),
            ));
        }
        Ok(AuthSettings {
            issuer: ctx.expand(&r.issuer, "auth.issuer")?,
            audience,
            algorithm,
            key,
            leeway: ctx.duration(&r.leeway, "auth.leeway", Duration::from_secs(60))?,
            user_claim: r.user_claim.clone().unwrap_or_else(|| "sub".into()),
            groups_claim: r.groups_claim.clone().unwrap_or_else(|| "groups".into()),
            agent_claim: r.agent_claim.clone().unwrap_or_else(|| "azp".into()),
            classifications_claim: r.classifications_claim.clone(),
        })
    }

    /// `[auth] algorithm`, checked by the parser the token checks use, and
    /// against the kind of key given (`Authenticator::new` would refuse both).
    fn auth_algorithm(ctx: &Ctx, r: &raw::RawAuth, table: usize) -> Result<String, ConfigError> {
        use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
        let at = r.algorithm.as_ref().map_or(table, |a| a.span().start);
        let name = r
            .algorithm
            .as_ref()
            .map_or_else(|| "RS256".to_string(), |a| a.get_ref().clone());
        let Some(alg) = name.parse::<jsonwebtoken::Algorithm>().ok() else {
            return Err(ctx.at(
                at,
                "auth.algorithm",
                format!("unknown algorithm {name:?} (one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"),
            ));
        };
        let hmac = matches!(alg, HS256 | HS384 | HS512);
        if hmac && r.key_file.is_some() {
            return Err(ctx.at(
                at,
                "auth.algorithm",
                format!("{name} is an HMAC algorithm: its secret goes in key_env; key_file holds a public key (RS*, PS*, ES*, EdDSA)"),
            ));
        }
        if !hmac && r.key_env.is_some() {
            return Err(ctx.at(
                at,
                "auth.algorithm",
                format!("key_env holds an HMAC secret: set algorithm = \"HS256\" (or HS384/HS512), not {name}"),
            ));
        }
        Ok(name)
    }
}

/// Where token-signing keys may be fetched from: `https://`, or plain
/// `http://` from a loopback host — decided on the parsed URL's host, never
/// on its text (`http://127.0.0.1@evil.example/` is evil.example).
pub fn key_url_allowed(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&parsed) => Ok(()),
        "http" => Err(format!(
            "keys must come over https:// (plain http only from a loopback address; {url:?} names host {:?})",
            parsed.host_str().unwrap_or("")
        )),
        other => Err(format!("{other}:// is not a key URL: use https://")),
    }
}

/// A URL whose host is `localhost` or a loopback address.
fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
