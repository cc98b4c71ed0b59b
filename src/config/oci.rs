//! `[oci]`: where pulled bundles are cached, how often tags are polled, and
//! per-registry transport and credentials (`[oci.registries."host:port"]`).
//! Plain HTTP is used only for a registry marked `insecure = true`: TLS is
//! the default for every registry, loopback included.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawOci;
use super::{ConfigError, Ctx};

#[derive(Debug, Clone, PartialEq)]
pub struct OciSettings {
    /// Verified bundles, kept for an offline start (default: XDG cache).
    pub cache_dir: Option<PathBuf>,
    /// Tag polling: the next poll comes after a random delay in
    /// `[min_delay, max_delay]` (OPA's defaults: 60 s and 120 s).
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// One pull (resolve + download) at most this long.
    pub pull_timeout: Duration,
    /// Compressed layer bound, checked against the manifest before download
    /// and against the bytes while downloading.
    pub max_bundle_bytes: u64,
    pub registries: BTreeMap<String, RegistrySettings>,
}

impl Default for OciSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            min_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(120),
            pull_timeout: Duration::from_secs(30),
            max_bundle_bytes: 32 << 20,
            registries: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegistrySettings {
    /// Plain HTTP (never without this flag).
    pub insecure: bool,
    pub username: Option<String>,
    /// Environment variable holding the password or token (never inline).
    pub password_env: Option<String>,
    /// Extra CA (PEM) trusted for this registry's TLS.
    pub ca_file: Option<PathBuf>,
}

impl OciSettings {
    /// The directory for cached bundles: `[oci] cache_dir`, else
    /// `$GAVEL_CACHE_DIR`, else `$XDG_CACHE_HOME/gavel`, else `~/.cache/gavel`.
    pub fn cache_root(&self) -> PathBuf {
        if let Some(d) = &self.cache_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("GAVEL_CACHE_DIR") {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("gavel");
        }
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/gavel")
    }

    pub(super) fn parse(ctx: &Ctx, raw: &RawOci) -> Result<Self, ConfigError> {
        let d = Self::default();
        let cache_dir = raw
            .cache_dir
            .as_ref()
            .map(|p| ctx.expand(p, "oci.cache_dir").map(|p| ctx.path(p)))
            .transpose()?;
        let min_delay = ctx.duration(&raw.min_delay, "oci.min_delay", d.min_delay)?;
        let max_delay = ctx.duration(&raw.max_delay, "oci.max_delay", d.max_delay)?;
        if max_delay < min_delay {
            let at = raw
                .max_delay
                .as_ref()
                .or(raw.min_delay.as_ref())
                .map_or(0, |v| v.span().start);
            return Err(ctx.at(
                at,
                "oci.max_delay",
                format!(
                    "max_delay ({}) must be at least min_delay ({})",
                    humantime::format_duration(max_delay),
                    humantime::format_duration(min_delay)
                ),
            ));
        }
        let pull_timeout = ctx.duration(&raw.pull_timeout, "oci.pull_timeout", d.pull_timeout)?;
        let max_bundle_bytes = ctx.size(
            &raw.max_bundle_bytes,
            "oci.max_bundle_bytes",
            d.max_bundle_bytes as usize,
            1024,
            1 << 30,
        )? as u64;
        let registries = registries(ctx, raw)?;
        Ok(Self {
            cache_dir,
            min_delay,
            max_delay,
            pull_timeout,
            max_bundle_bytes,
            registries,
        })
    }
}

/// `[oci.registries."HOST"]`: per-registry TLS and credentials, keyed by
/// the host in lower case.
fn registries(ctx: &Ctx, raw: &RawOci) -> Result<BTreeMap<String, RegistrySettings>, ConfigError> {
    let mut registries = BTreeMap::new();
    for (host, r) in &raw.registries {
        let field = format!("oci.registries.{host:?}");
        let rr = r.get_ref();
        if host.contains('/') || host.contains("://") || host.is_empty() {
            return Err(ctx.at(
                r.span().start,
                &field,
                "name the registry as host or host:port (no scheme, no path)",
            ));
        }
        if rr.password_env.is_some() != rr.username.is_some() {
            return Err(ctx.at(
                r.span().start,
                &field,
                "username and password_env go together (the password is read from that environment variable)",
            ));
        }
        registries.insert(
            host.to_ascii_lowercase(),
            RegistrySettings {
                insecure: rr.insecure.unwrap_or(false),
                username: rr
                    .username
                    .as_ref()
                    .map(|u| ctx.expand(u, &format!("{field}.username")))
                    .transpose()?,
                password_env: rr.password_env.clone(),
                ca_file: rr
                    .ca_file
                    .as_ref()
                    .map(|p| {
                        ctx.expand(p, &format!("{field}.ca_file"))
                            .map(|p| ctx.path(p))
                    })
                    .transpose()?,
            },
        );
    }
    Ok(registries)
}
