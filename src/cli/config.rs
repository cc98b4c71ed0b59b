//! `gavel config check`: load a config as `gavel run`/`serve` would — the
//! policy built (registry bundles pulled and verified), the files `serve`
//! reads opened — and print the effective config with secrets masked.

use std::path::Path;

use crate::config::{Config, OnWriteError};
use crate::decision::Enforcer;

use super::{load_config, say};

pub async fn check(config: &Path) -> anyhow::Result<()> {
    let cfg = load_config(config)?;
    check_serve_files(&cfg)?;
    let enforcer = enforcer(&cfg).await?;
    let mut broken = Vec::new();
    for (server, status) in enforcer.policy_status() {
        match status {
            Ok(v) => eprintln!("policy {server}: {v}"),
            Err(why) => broken.push(format!("server {server:?}: {why}")),
        }
    }
    // Each persona's policy for a server it reaches (`SERVER@PERSONA`).
    for (target, status) in enforcer.persona_policy_status() {
        match status {
            Ok(v) => eprintln!("policy {target}: {v}"),
            Err(why) => broken.push(format!("persona policy {target:?}: {why}")),
        }
    }
    if cfg.log.decisions.is_some() && cfg.log.on_write_error == OnWriteError::Allow {
        eprintln!(
            "warning: [log] on_write_error = \"allow\": a request whose decision record cannot be written is carried out unrecorded"
        );
    }
    if !broken.is_empty() {
        anyhow::bail!(
            "policy unavailable (every request to these servers would be denied):\n  {}",
            broken.join("\n  ")
        );
    }
    say(format!(
        "# {} is valid. Effective configuration (secrets masked):\n",
        config.display()
    ));
    print!("{}", cfg.render_masked()); // stdout-ok
    Ok(())
}

/// The enforcer `gavel run` would start with: OCI bundles are pulled (or
/// taken from the cache) and verified exactly as at start.
async fn enforcer(cfg: &Config) -> anyhow::Result<Enforcer> {
    use crate::policy::start::{Pull, start_enforcer};
    let clock = crate::state::clock::from_env();
    Ok(start_enforcer(cfg, clock, Pull::Registry).await?.0)
}

/// What `gavel serve` reads at start besides the config — the `[auth]` key
/// (file, environment or JWKS file), the `[serve]` TLS pair and the
/// input-round key (`GAVEL_ROUND_KEY` or `round_key_file`) — read by the
/// same constructors `serve` uses, so `config check` refuses what `serve`
/// would. A `jwks_url` is not fetched (serve starts without it and retries).
fn check_serve_files(cfg: &Config) -> anyhow::Result<()> {
    if let Some(auth) = &cfg.auth {
        crate::front::http::auth::Authenticator::new(auth, &cfg.identity)?;
    }
    if let Some((cert, key)) = &cfg.serve.tls {
        crate::front::http::tls::server_config(cert, key)
            .map_err(|e| anyhow::anyhow!("[serve] tls_cert/tls_key: {e}"))?;
    }
    crate::gateway::round_key(cfg)?;
    Ok(())
}
