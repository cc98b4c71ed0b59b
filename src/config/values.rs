//! Values `run` and `serve` parse when they use them — a log filter, a Redis
//! URL, an upstream URL and its headers, what a child process is started
//! with — checked here at load with the very parsers that use them, so that
//! `gavel config check` refuses exactly what `run` and `serve` would, and
//! names the dotted field.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{ConfigError, Ctx};

/// `[log] level`: the filter `cli::logging` installs (RUST_LOG syntax).
pub(super) fn log_level(
    ctx: &Ctx,
    level: &Option<Spanned<String>>,
) -> Result<Option<String>, ConfigError> {
    let Some(l) = level else { return Ok(None) };
    tracing_subscriber::EnvFilter::try_new(l.get_ref()).map_err(|e| {
        ctx.at(
            l.span().start,
            "log.level",
            format!(
                "{:?} is not a log filter ({e}): write a level (\"info\", \"debug\") or RUST_LOG directives (\"info,gavel=debug\")",
                l.get_ref()
            ),
        )
    })?;
    Ok(Some(l.get_ref().clone()))
}

/// `[state] redis_url`: what `state::redis` opens.
pub(super) fn redis_url(ctx: &Ctx, url: &str, at: usize) -> Result<(), ConfigError> {
    redis::Client::open(url).map(drop).map_err(|e| {
        ctx.at(
            at,
            "state.redis_url",
            format!(
                "{:?} is not a Redis URL ({e}): write redis://host:port/db (rediss:// for TLS)",
                crate::config::render::mask_url(url)
            ),
        )
    })
}

/// `servers.NAME.url`: an absolute http(s) URL with a host, as the HTTP
/// client parses it when it connects.
pub(super) fn upstream_url(
    ctx: &Ctx,
    url: &str,
    at: usize,
    field: &str,
) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ctx.at(
            at,
            field,
            format!("{url:?} is not a URL ({e}): write e.g. \"https://mcp.example/mcp\""),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ctx.at(
            at,
            field,
            "must be an http:// or https:// URL with a host, e.g. \"https://mcp.example/mcp\"",
        ));
    }
    Ok(())
}

/// `servers.NAME.headers`: names and values the HTTP client accepts.
pub(super) fn headers(
    ctx: &Ctx,
    raw: &BTreeMap<String, Spanned<String>>,
    expanded: &BTreeMap<String, String>,
    field: &str,
) -> Result<(), ConfigError> {
    for (k, v) in expanded {
        let at = raw.get(k).map_or(0, |s| s.span().start);
        if let Err(e) = http::HeaderName::try_from(k.as_str()) {
            return Err(ctx.at(
                at,
                &format!("{field}.{k}"),
                format!("{k:?} is not an HTTP header name ({e})"),
            ));
        }
        if let Err(e) = http::HeaderValue::try_from(v.as_str()) {
            return Err(ctx.at(
                at,
                &format!("{field}.{k}"),
                format!(
                    "not a valid HTTP header value ({e}): no control characters or line breaks"
                ),
            ));
        }
    }
    Ok(())
}

/// What a child process is started with: the OS refuses a NUL byte in a
/// command, an argument, an environment entry or a directory, and an
/// environment name that is empty or holds `=`.
pub(super) fn process_text(
    ctx: &Ctx,
    value: &str,
    at: usize,
    field: &str,
) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(ctx.at(
            at,
            field,
            "contains a NUL byte, which no process can be given",
        ));
    }
    Ok(())
}

pub(super) fn env_name(ctx: &Ctx, name: &str, at: usize, field: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(ctx.at(
            at,
            field,
            format!("{name:?} is not an environment variable name (not empty, no '=' or NUL)"),
        ));
    }
    Ok(())
}
