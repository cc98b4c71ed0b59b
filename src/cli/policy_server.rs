//! `gavel policy-server`: gavel's agent tools alone (`gavel__check`,
//! `gavel__limits`, `gavel__why`, the `gavel://policy/…` resources), over
//! stdio or, with `--http`, streamable HTTP — for frameworks that call
//! their tools themselves but want gavel's decisions. The config's
//! upstreams are started (never called): their tool lists, annotations and
//! digests are what a `check` decides with, and `visible` decides which of
//! their tools an agent may ask about at all. Everything else is `gavel
//! run`'s / `gavel serve`'s.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::AgentToolsMode;
use crate::gateway::Gateway;

use super::{Globals, load_config};

#[derive(clap::Args, Debug)]
pub struct PolicyServerArgs {
    #[arg(long, short, default_value = "servers.toml")]
    pub config: PathBuf,
    /// Serve streamable HTTP (http://ADDR/mcp, `[serve]` settings and
    /// `[auth]` apply) instead of stdio.
    #[arg(long)]
    pub http: bool,
    /// With --http: the address to listen on (overrides `[serve] listen`).
    #[arg(long, requires = "http")]
    pub listen: Option<std::net::SocketAddr>,
}

pub async fn policy_server(g: &Globals, a: PolicyServerArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(&a.config)?;
    let _guard = g.logging(Some(&cfg))?;
    cfg.agent_tools = AgentToolsMode::Only;
    tracing::info!(config = %a.config.display(), http = a.http, "gavel policy-server starting: agent tools only");
    let _metrics = g.metrics(cfg.metrics_listen).await;
    let serve = cfg.serve.clone();
    let gw = start(cfg).await?;
    if !a.http {
        return crate::front::stdio::serve_stdio(gw).await;
    }
    let args = super::proxy::ServeArgs {
        config: a.config,
        listen: a.listen,
        allowed_hosts: vec![],
        allowed_origins: vec![],
        behind_proxy: false,
        tls_cert: None,
        tls_key: None,
        max_sessions: None,
        drain_timeout: None,
        max_sessions_per_user: None,
        session_idle_timeout: None,
        max_connections: None,
        header_timeout: None,
        body_timeout: None,
    };
    crate::front::http::serve_http(gw, super::proxy::http_options(args, &serve)).await
}

/// Starts the gateway with the agent tools' texts (`gavel explain`'s, from
/// governance, which the fronts may not call) installed.
pub(super) async fn start(cfg: crate::config::Config) -> anyhow::Result<Arc<Gateway>> {
    let gw = Gateway::start(cfg).await?;
    gw.set_policy_texts(Arc::new(crate::governance::agent_texts::ExplainTexts));
    Ok(gw)
}
