//! `[oci]` settings as the registry client and the bundle cache use them:
//! defined here, beside their users, and parsed from `servers.toml` by
//! `crate::config` (which sits above the bundle format).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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
}
