//! The enforcer a process starts with, and the supply that keeps its
//! registry bundles current: one function for every command that builds
//! one (`gavel run`/`serve` through `Gateway::start`, `gavel config check`),
//! so that what `config check` verifies is what a start would run.

use std::sync::Arc;

use crate::config::Config;
use crate::decision::Enforcer;
use crate::state::clock::Clock;

use super::supply::Supply;

/// How a start treats `oci://` bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Start from the verified cache and ask the registry in the background:
    /// a stalled registry never holds the host's `initialize` (`run`, `serve`).
    CacheFirst,
    /// Ask the registry now, each pull bounded by `oci.pull_timeout`, falling
    /// back to the cache (`config check`: it reports what a registry serves).
    Registry,
}

/// Builds the enforcer for `config`: with the supply when some bundle comes
/// from a registry (the caller starts its polling), from local files and the
/// cache otherwise.
pub async fn start_enforcer(
    config: &Config,
    clock: Arc<dyn Clock>,
    pull: Pull,
) -> anyhow::Result<(Enforcer, Option<Arc<Supply>>)> {
    if !Supply::needed(config) {
        return Ok((Enforcer::from_config_with_clock(config, clock)?, None));
    }
    let supply = match pull {
        Pull::CacheFirst => Supply::start_from_cache(config).await?,
        Pull::Registry => Supply::start(config).await?,
    };
    let enforcer = Enforcer::with_resolver(config, clock, supply.as_ref())?;
    Ok((enforcer, Some(supply)))
}
