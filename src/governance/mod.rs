//! Governance: reading a policy and its decision history as people need to —
//! `explain` (what a bundle says, why one decision came out as it did),
//! `replay` (re-decide a log with a candidate policy: what would flip) and
//! `report` (a self-contained HTML page over a decision log).
//!
//! Everything here is read-only over bundles and logs; nothing in the
//! enforcement path depends on it.

pub mod agent_texts;
pub mod counterfactual;
pub mod doc;
pub mod explain;
pub mod explain_decision;
pub mod explain_result;
pub mod persona;
mod rego_facts;
pub mod replay;
pub mod report;
pub mod report_html;
pub mod report_results;
pub mod report_shadow;
pub mod report_trail;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::{Bundle, BundleError, BundleLimits, load_bundle};
use crate::config::Config;

/// Why a governance command could not do its work. Every message names the
/// file (and line) at fault and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Metadata(#[from] crate::bundle::metadata::MetadataError),
    #[error("{0}")]
    Engine(String),
    /// The decision log (`crate::audit::read`: file and line at fault).
    #[error(transparent)]
    Log(#[from] crate::audit::read::LogReadError),
    #[error("{0}")]
    Usage(String),
}

/// The bundles one server is decided by, in evaluation order.
#[derive(Debug, Clone)]
pub struct ServerBundles {
    pub server: String,
    pub bundles: Vec<Arc<Bundle>>,
    /// How many of `bundles` (at the end) are the config's shared layers.
    pub shared: usize,
}

/// Loads bundle paths (directories or .tar.gz) as one policy, the way a
/// server's `bundles` list composes.
pub fn bundles_from_paths(paths: &[PathBuf]) -> Result<ServerBundles, GovernanceError> {
    if paths.is_empty() {
        return Err(GovernanceError::Usage(
            "no bundle given: name a bundle directory or .tar.gz, or use --config servers.toml"
                .into(),
        ));
    }
    let bundles = paths
        .iter()
        .map(|p| match p.to_str().filter(|s| s.starts_with("oci://")) {
            Some(r) => load_ref(r, &Default::default()),
            None => Ok(load_bundle(p, &BundleLimits::default()).map(Arc::new)?),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServerBundles {
        server: bundles[0].name.clone(),
        bundles,
        shared: 0,
    })
}

fn load_ref(r: &str, oci: &crate::config::OciSettings) -> Result<Arc<Bundle>, GovernanceError> {
    if r.starts_with("oci://") {
        return crate::policy::source::pull_now(r, oci).map_err(GovernanceError::Usage);
    }
    Ok(Arc::new(load_bundle(
        Path::new(r),
        &BundleLimits::default(),
    )?))
}

/// Every enabled server of a config with its own bundles then the shared
/// ones (the order `Enforcer::from_config` uses). Servers without any bundle
/// are listed with none.
pub fn bundles_from_config(config: &Config) -> Result<Vec<ServerBundles>, GovernanceError> {
    let shared = config
        .policy
        .shared_bundles
        .iter()
        .map(|r| load_ref(r, &config.oci))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    let mut names: Vec<&String> = config.servers.keys().collect();
    names.sort();
    for name in names {
        let server = &config.servers[name];
        if !server.enabled {
            continue;
        }
        let mut bundles = server
            .bundles
            .iter()
            .map(|r| load_ref(r, &config.oci))
            .collect::<Result<Vec<_>, _>>()?;
        bundles.extend(shared.iter().cloned());
        out.push(ServerBundles {
            server: name.clone(),
            bundles,
            shared: shared.len(),
        });
    }
    Ok(out)
}

/// A policy engine over some bundles, with the config's options or defaults.
pub fn build_engine(
    sb: &ServerBundles,
    config: Option<&Config>,
) -> Result<crate::decision::engine::PolicyEngine, GovernanceError> {
    let opts = crate::decision::engine::EngineOptions {
        eval_timeout: config
            .map(|c| c.policy.eval_timeout)
            .unwrap_or(std::time::Duration::from_secs(1)),
        strict_input: config.map(|c| c.policy.strict_input).unwrap_or(false),
    };
    crate::decision::engine::PolicyEngine::build(&sb.server, sb.bundles.clone(), &opts)
        .map_err(|e| GovernanceError::Engine(e.to_string()))
}
