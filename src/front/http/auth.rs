//! Bearer-token identity for the HTTP front (`[auth]`), as MCP
//! authorization asks of a resource server: a JWT validated against the
//! configured key (issuer, audience = gavel's resource URL, expiry with a
//! leeway; the algorithm comes from config, never from the token); claims
//! mapped to `user.id`, `user.groups`, `agent.id` (and optionally the user's
//! data classifications). A missing or invalid token gets 401 with
//! `WWW-Authenticate: Bearer resource_metadata=…`, and the Protected
//! Resource Metadata (RFC 9728) is served at
//! `/.well-known/oauth-protected-resource` followed by the resource's path
//! (and without it). The challenge's URL is built from the configured
//! resource URL (`audience`), never from the request: behind TLS or a proxy
//! the Host gavel sees is not the one the client used, and echoing an
//! unchecked Host would point a rebinding page at its own server.
//!
//! The token is consumed here: it is never forwarded to an upstream (gavel's
//! upstream connections carry only their own configured headers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::config::{AuthKey, AuthSettings, Identity};
use crate::sync::Recover;

pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The verified identity a request carries (axum request extension; rmcp
/// hands the request parts to the session).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIdentity(pub Arc<Identity>);

type Keys = Vec<(Option<String>, DecodingKey)>;

/// Why `[auth]` cannot be used, naming the field at fault. (Config load
/// checks most of it with the field's line; these are what only the files
/// and the environment of the running process can tell.)
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(
        "[auth] algorithm {0:?} is not one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA"
    )]
    UnknownAlgorithm(String),
    #[error("[auth] key_file {}: {why}", path.display())]
    KeyFileUnreadable { path: PathBuf, why: std::io::Error },
    #[error("[auth] key_file goes with a public-key algorithm; an HMAC secret goes in key_env")]
    KeyFileWithHmac,
    #[error("[auth] key_file {}: not a PEM public key for {alg:?}: {why}", path.display())]
    KeyFileNotPem {
        path: PathBuf,
        alg: Algorithm,
        why: jsonwebtoken::errors::Error,
    },
    #[error("[auth] key_env holds an HMAC secret: set algorithm = \"HS256\" (or HS384/HS512)")]
    KeyEnvWithoutHmac,
    #[error("[auth] key_env: environment variable {0} is not set")]
    KeyEnvUnset(String),
    #[error("[auth] key_env {var}: {why}")]
    KeyEnvTooShort { var: String, why: String },
    #[error("[auth] jwks_file {}: {why}", path.display())]
    JwksFile { path: PathBuf, why: String },
    #[error("[auth] jwks_url: HTTP client: {0}")]
    JwksClient(reqwest::Error),
    #[error(
        "[auth] audience {resource:?} is not a URL ({why}): write gavel's resource URL, e.g. \"https://gavel.example/mcp\""
    )]
    AudienceNotUrl {
        resource: String,
        why: http::uri::InvalidUri,
    },
    #[error(
        "[auth] audience {0:?} is not an absolute URL: write gavel's resource URL, e.g. \"https://gavel.example/mcp\""
    )]
    AudienceNotAbsolute(String),
}

pub struct Authenticator {
    settings: AuthSettings,
    alg: Algorithm,
    /// Swapped whole when a JWKS URL is refetched.
    keys: arc_swap::ArcSwap<Keys>,
    /// For `jwks_url`: when a token with an unknown `kid` last made gavel
    /// refetch, and why the last fetch failed.
    fetched: std::sync::Mutex<(Option<std::time::Instant>, Option<String>)>,
    http: Option<reqwest::Client>,
    /// The configured identity: what a token does not say (environment,
    /// agent scope) comes from here.
    base: Identity,
    /// Where the metadata document is, as the challenge names it.
    metadata_url: String,
    /// The paths the metadata is served at.
    metadata_paths: Vec<String>,
}

/// RFC 9728 §3.1: the metadata of resource `https://h/p` is at
/// `https://h/.well-known/oauth-protected-resource/p`. Returns (that URL,
/// the paths to serve it at).
fn metadata_location(resource: &str) -> Result<(String, Vec<String>), AuthSetupError> {
    let uri: http::Uri = resource
        .parse()
        .map_err(|why| AuthSetupError::AudienceNotUrl {
            resource: resource.to_string(),
            why,
        })?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(AuthSetupError::AudienceNotAbsolute(resource.to_string()));
    };
    let path = uri.path().trim_end_matches('/');
    let url = format!("{scheme}://{authority}{METADATA_PATH}{path}");
    let mut paths = vec![
        METADATA_PATH.to_string(),
        format!("{METADATA_PATH}/mcp"),
        format!("{METADATA_PATH}{path}"),
    ];
    paths.sort();
    paths.dedup();
    Ok((url, paths))
}

impl Authenticator {
    /// Checks `[auth]` as far as it can without the network: the algorithm,
    /// the key (a PEM file, an HMAC secret, a JWKS file) and the resource
    /// URL. A JWKS URL's keys come later ([`Self::start`]).
    pub fn new(settings: &AuthSettings, base: &Identity) -> Result<Self, AuthSetupError> {
        let alg = token_algorithm(&settings.algorithm)?;
        let keys = configured_keys(settings, alg)?;
        let http = jwks_client(&settings.key)?;
        let (metadata_url, metadata_paths) = metadata_location(&settings.audience)?;
        Ok(Authenticator {
            metadata_url,
            metadata_paths,
            settings: settings.clone(),
            alg,
            keys: arc_swap::ArcSwap::from_pointee(keys),
            fetched: Default::default(),
            http,
            base: base.clone(),
        })
    }

    /// Builds the authenticator and, for `jwks_url`, fetches the keys once
    /// and keeps them fresh every `jwks_refresh` until `stop`. A failed
    /// fetch is logged and retried; tokens are refused meanwhile, naming it.
    pub async fn start(
        settings: &AuthSettings,
        base: &Identity,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Self>, AuthSetupError> {
        let auth = Arc::new(Self::new(settings, base)?);
        if let AuthKey::JwksUrl { refresh, .. } = &settings.key {
            auth.refresh().await;
            let (weak, every) = (Arc::downgrade(&auth), *refresh);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.cancelled() => return,
                    }
                    let Some(a) = weak.upgrade() else { return };
                    a.refresh().await;
                }
            });
        }
        Ok(auth)
    }

    /// Fetches the JWKS URL; keeps the current keys if that fails.
    async fn refresh(&self) {
        let (Some(http), AuthKey::JwksUrl { url, .. }) = (&self.http, &self.settings.key) else {
            return;
        };
        let result = fetch_jwks(http, url).await;
        let mut f = self.fetched.lock().recover();
        match result {
            Ok(keys) => {
                tracing::info!(url = %url, keys = keys.len(), "JWKS fetched");
                self.keys.store(Arc::new(keys));
                f.1 = None;
            }
            Err(e) => {
                tracing::error!(url = %url, "JWKS fetch failed (current keys kept): {e}");
                f.1 = Some(e);
            }
        }
    }

    /// A token names a `kid` we do not have: refetch, at most once per
    /// `min(jwks_refresh, 30 s)` of such misses, so a stream of bad tokens
    /// cannot hammer the issuer (the periodic refresh does not count).
    async fn refresh_for_unknown_kid(&self) -> bool {
        let AuthKey::JwksUrl { refresh, .. } = &self.settings.key else {
            return false;
        };
        let gap = (*refresh).min(std::time::Duration::from_secs(30));
        let due = {
            let mut f = self.fetched.lock().recover();
            let due = f.0.is_none_or(|t| t.elapsed() >= gap);
            if due {
                f.0 = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            self.refresh().await;
        }
        due
    }

    /// Validates a bearer token (refetching a JWKS URL once when the token's
    /// key is unknown, for rotations).
    pub async fn verify(&self, token: &str) -> Result<Identity, String> {
        match self.verify_now(token) {
            Err(e) if e.starts_with(NO_KEY) && self.refresh_for_unknown_kid().await => {
                self.verify_now(token)
            }
            other => other,
        }
    }

    /// The paths the Protected Resource Metadata is served at.
    pub fn metadata_paths(&self) -> &[String] {
        &self.metadata_paths
    }

    /// The Protected Resource Metadata document.
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.settings.audience,
            "authorization_servers": [self.settings.issuer],
            "bearer_methods_supported": ["header"],
        })
    }

    /// Validates a bearer token with the keys at hand and maps its claims.
    fn verify_now(&self, token: &str) -> Result<Identity, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if header.alg != self.alg {
            return Err(format!(
                "token signed with {:?}; this server accepts {:?}",
                header.alg, self.alg
            ));
        }
        let mut v = Validation::new(self.alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.audience]);
        v.leeway = self.settings.leeway.as_secs();
        // jsonwebtoken skips `nbf` unless asked; a token not valid yet is refused.
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let keys = self.keys.load();
        let candidates = keys
            .iter()
            .filter(|(kid, _)| kid.is_none() || header.kid.is_none() || *kid == header.kid);
        let mut last = match &self.fetched.lock().recover().1 {
            Some(why) => format!("{NO_KEY} (the JWKS URL could not be fetched: {why})"),
            None => format!("{NO_KEY} ({:?})", header.kid),
        };
        for (_, key) in candidates {
            match jsonwebtoken::decode::<Value>(token, key, &v) {
                Ok(data) => return self.map(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    fn map(&self, claims: &Value) -> Result<Identity, String> {
        let s = &self.settings;
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(String::from);
        let list = |name: &str| -> Vec<String> {
            match claims.get(name) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                Some(Value::String(s)) => s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect(),
                _ => vec![],
            }
        };
        let mut id = self.base.clone();
        id.user.id = string(&s.user_claim).ok_or_else(|| {
            format!(
                "the token has no {:?} claim to identify the user",
                s.user_claim
            )
        })?;
        id.user.groups = list(&s.groups_claim);
        if let Some(c) = &s.classifications_claim {
            id.user.data_classifications_authorized = list(c);
        }
        if let Some(agent) = string(&s.agent_claim) {
            id.agent.id = agent;
        }
        Ok(id)
    }
}

/// `[auth] algorithm`, by jsonwebtoken's names (config load refuses the
/// same names, with the field's line).
fn token_algorithm(name: &str) -> Result<Algorithm, AuthSetupError> {
    name.parse()
        .map_err(|_| AuthSetupError::UnknownAlgorithm(name.to_string()))
}

/// The keys known at start; none yet for a JWKS URL (fetched by `start`
/// and refreshed in the background).
fn configured_keys(settings: &AuthSettings, alg: Algorithm) -> Result<Keys, AuthSetupError> {
    Ok(match &settings.key {
        AuthKey::PemFile(p) => vec![(None, pem_key(alg, p)?)],
        AuthKey::SecretEnv(var) => {
            if alg.family() != AlgorithmFamily::Hmac {
                return Err(AuthSetupError::KeyEnvWithoutHmac);
            }
            let secret =
                std::env::var(var).map_err(|_| AuthSetupError::KeyEnvUnset(var.clone()))?;
            crate::config::check_hmac_secret(&settings.algorithm, secret.as_bytes()).map_err(
                |why| AuthSetupError::KeyEnvTooShort {
                    var: var.clone(),
                    why,
                },
            )?;
            vec![(None, DecodingKey::from_secret(secret.as_bytes()))]
        }
        AuthKey::JwksFile(p) => {
            let jwks_file = |why: String| AuthSetupError::JwksFile {
                path: p.clone(),
                why,
            };
            let text = std::fs::read(p).map_err(|e| jwks_file(e.to_string()))?;
            parse_jwks(&text).map_err(jwks_file)?
        }
        AuthKey::JwksUrl { .. } => Vec::new(),
    })
}

/// `key_file`: a PEM public key of `alg`'s family.
fn pem_key(alg: Algorithm, path: &Path) -> Result<DecodingKey, AuthSetupError> {
    let text = std::fs::read(path).map_err(|why| AuthSetupError::KeyFileUnreadable {
        path: path.to_path_buf(),
        why,
    })?;
    let key = match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&text),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&text),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&text),
        AlgorithmFamily::Hmac => return Err(AuthSetupError::KeyFileWithHmac),
    };
    key.map_err(|why| AuthSetupError::KeyFileNotPem {
        path: path.to_path_buf(),
        alg,
        why,
    })
}

/// For `jwks_url`: the HTTP client that fetches the keys. A redirect is
/// followed only where the configured URL could have pointed (https, or
/// http on loopback), at most 5 hops: keys never arrive over plain http
/// from elsewhere.
fn jwks_client(key: &AuthKey) -> Result<Option<reqwest::Client>, AuthSetupError> {
    let AuthKey::JwksUrl { .. } = key else {
        return Ok(None);
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if crate::config::key_url_allowed(attempt.url().as_str()).is_ok() {
                attempt.follow()
            } else {
                let to = attempt.url().to_string();
                attempt.error(format!(
                    "redirected to {to}: keys must come over https:// (plain http only from a loopback address)"
                ))
            }
        }))
        .build()
        .map_err(AuthSetupError::JwksClient)?;
    Ok(Some(client))
}

const NO_KEY: &str = "no key matches the token's kid";

/// A JWKS document's keys (each must be usable; an empty set is refused).
fn parse_jwks(bytes: &[u8]) -> Result<Keys, String> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for k in &set.keys {
        // A symmetric (`oct`) key is an HMAC secret: as short as RFC 7518
        // §3.2 allows for its algorithm (HS256 when it names none), never
        // shorter.
        if let jsonwebtoken::jwk::AlgorithmParameters::OctetKey(oct) = &k.algorithm {
            use base64::Engine as _;
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(oct.value.trim_end_matches('='))
                .map_err(|e| format!("key {:?}: k: {e}", k.common.key_id))?;
            let alg = k
                .common
                .key_algorithm
                .map(|a| a.to_string())
                .filter(|a| crate::config::hmac_min_bytes(a).is_some())
                .unwrap_or_else(|| "HS256".to_string());
            crate::config::check_hmac_secret(&alg, &secret)
                .map_err(|why| format!("key {:?}: {why}", k.common.key_id))?;
        }
        let key =
            DecodingKey::from_jwk(k).map_err(|e| format!("key {:?}: {e}", k.common.key_id))?;
        keys.push((k.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err("no keys".into());
    }
    Ok(keys)
}

/// GET the JWKS URL: status checked, body bounded to 1 MiB.
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Keys, String> {
    const MAX: usize = 1 << 20;
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| crate::error_text::chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::error_text::chain(&e))?
    {
        if body.len() + chunk.len() > MAX {
            return Err(format!("the JWKS document is over {MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

/// 401 with the challenge MCP clients follow to find the authorization server.
fn unauthorized(metadata_url: &str, error: Option<&str>) -> Response {
    let mut challenge = format!("Bearer resource_metadata=\"{metadata_url}\"");
    if let Some(e) = error {
        challenge.push_str(", error=\"invalid_token\", error_description=\"");
        challenge.push_str(&e.replace('"', "'"));
        challenge.push('"');
    }
    let mut r = (StatusCode::UNAUTHORIZED, "a valid bearer token is required").into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The axum middleware: verifies the bearer token of every `/mcp` request
/// and attaches the identity; the token itself goes no further.
pub async fn require_token(auth: Arc<Authenticator>, mut req: Request, next: Next) -> Response {
    let base = &auth.metadata_url;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(String::from);
    let Some(token) = token else {
        return unauthorized(base, None);
    };
    match auth.verify(&token).await {
        Ok(id) => {
            req.headers_mut().remove(header::AUTHORIZATION);
            req.extensions_mut().insert(TokenIdentity(Arc::new(id)));
            next.run(req).await
        }
        Err(e) => {
            tracing::warn!("bearer token refused: {e}");
            unauthorized(base, Some(&e))
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
