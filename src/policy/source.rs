//! Where a bundle reference's bytes come from. A directory or `.tar.gz` is
//! read from disk; an `oci://` reference is served by whoever pulled it
//! ([`crate::policy::supply::Supply`] while gavel runs) or, offline, from the
//! bundle cache. Either way the result is an unverified, unparsed
//! [`RawBundle`]: the signature is checked when a server's policy is built
//! from it, and only then is it parsed.

use std::sync::Arc;

use crate::bundle::oci::OciRef;
use crate::bundle::oci::cache::Cache;
use crate::bundle::{
    Bundle, BundleLimits, RawBundle, load_bundle_tar_gz, read_bundle, read_bundle_tar_gz,
};

/// Resolves a bundle reference for an owner (a server name, or
/// [`SHARED_OWNER`] for `[policy] shared_bundles`).
pub trait Resolve: Send + Sync {
    fn resolve(&self, owner: &str, reference: &str) -> Result<Arc<RawBundle>, String>;
}

/// The cache owner of `[policy] shared_bundles`.
pub const SHARED_OWNER: &str = "(shared)";

/// Loads a pulled layer as a bundle named after its repository.
pub fn bundle_from_layer(r: &OciRef, bytes: &[u8]) -> Result<Bundle, String> {
    load_bundle_tar_gz(
        &r.repository,
        &r.to_string(),
        bytes,
        &BundleLimits::default(),
    )
    .map_err(|e| e.to_string())
}

/// Reads a pulled layer's files (nothing parsed), named after its repository.
pub fn raw_from_layer(r: &OciRef, bytes: &[u8]) -> Result<RawBundle, String> {
    read_bundle_tar_gz(
        &r.repository,
        &r.to_string(),
        bytes,
        &BundleLimits::default(),
    )
    .map_err(|e| e.to_string())
}

/// Local files, and OCI references from the cache only (no network):
/// `gavel status`, `config check`, and the first moments of a start.
pub struct Offline {
    pub cache: Option<Cache>,
    /// The config file, for the remediation a missing bundle names.
    pub config: Option<std::path::PathBuf>,
}

impl Offline {
    pub fn new(cache: Option<Cache>) -> Self {
        Self {
            cache,
            config: None,
        }
    }

    /// Names `config` in remediations.
    pub fn with_config(mut self, config: Option<std::path::PathBuf>) -> Self {
        self.config = config;
        self
    }
}

/// What to run to put a verified `reference` into the cache for `owner`
/// (`gavel bundle pull --server` pulls, verifies with that server's keys,
/// runs the bundle's tests and stores it where a start looks).
pub fn pull_hint(reference: &str, owner: &str, config: Option<&std::path::Path>) -> String {
    let config = config.map_or_else(|| "servers.toml".to_string(), |p| p.display().to_string());
    let server = if owner == SHARED_OWNER {
        "NAME (any server that uses it)".to_string()
    } else if let Some(p) = super::persona::persona_of_owner(owner) {
        format!("NAME (any server persona {p:?} reaches)")
    } else {
        owner.to_string()
    };
    format!(
        "`gavel bundle pull {reference} --config {config} --server {server}` from where the registry is reachable verifies it and stores it in the bundle cache"
    )
}

impl Resolve for Offline {
    fn resolve(&self, owner: &str, reference: &str) -> Result<Arc<RawBundle>, String> {
        if !reference.starts_with("oci://") {
            return read_bundle(std::path::Path::new(reference), &BundleLimits::default())
                .map(Arc::new)
                .map_err(|e| e.to_string());
        }
        let r = OciRef::parse(reference).map_err(|e| e.to_string())?;
        let Some(cache) = &self.cache else {
            return Err(format!("{reference} has not been pulled"));
        };
        match cache.load(owner, reference, r.digest.as_deref()) {
            Ok(Some((_, bytes))) => raw_from_layer(&r, &bytes).map(Arc::new),
            Ok(None) => Err(format!(
                "{reference} could not be pulled and is not in the bundle cache; check the registry (gavel status shows the last error), or: {}",
                pull_hint(reference, owner, self.config.as_deref())
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Pulls an `oci://` reference now, for the command-line tools that read
/// policy (replay, explain): registry settings from the config's `[oci]`.
/// The digest is checked; the signature is not (these tools evaluate
/// history, they do not enforce).
pub fn pull_now(
    reference: &str,
    settings: &crate::config::OciSettings,
) -> Result<Arc<Bundle>, String> {
    let r = OciRef::parse(reference).map_err(|e| e.to_string())?;
    let settings = settings.clone();
    let target = r.clone();
    // Its own thread and runtime: callers are sync code that may or may not
    // run inside a runtime already.
    let bytes = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let reg = crate::bundle::oci::Registry::new(&settings)?;
            let resolved = reg.resolve(&target).await.map_err(|e| e.to_string())?;
            reg.fetch(&target, &resolved.layer)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| format!("{reference}: the pull thread panicked"))??;
    bundle_from_layer(&r, &bytes).map(Arc::new)
}
