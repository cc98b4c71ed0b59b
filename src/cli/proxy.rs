//! The commands that proxy: `gavel run` and `gavel wrap` (MCP on
//! stdin/stdout) and `gavel serve` (streamable HTTP). Each loads or builds
//! a config, starts logging and metrics, starts the gateway and hands it
//! to its front.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ServeSettings};
use crate::front::http::HttpOptions;

use super::{Globals, load_config};

// `gavel serve`'s flags (the command's help is the `Serve` variant's doc).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[arg(long, short, default_value = "servers.toml")]
    pub config: PathBuf,
    /// Address to listen on (loopback unless TLS or --behind-proxy);
    /// overrides `[serve] listen` (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Another accepted `Host` header value (name or name:port); repeat.
    /// Added to `[serve] allowed_hosts`.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Another accepted browser `Origin` (scheme://host[:port|:*]);
    /// repeat. Added to `[serve] allowed_origins`.
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
    /// A TLS-terminating proxy is in front: allow a non-loopback address
    /// (or `[serve] behind_proxy = true`).
    #[arg(long)]
    pub behind_proxy: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key);
    /// overrides `[serve] tls_cert`/`tls_key`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// At most this many host sessions at once (each starts its own
    /// upstreams); more get 503 until one closes or idles out
    /// (--session-idle-timeout).
    /// Overrides `[serve] max_sessions` (default 256).
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// At shutdown, how long in-flight requests may take to finish
    /// before every session is closed (e.g. 30s, 2m); overrides
    /// `[serve] drain_timeout` (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// With `[auth]`: sessions per token user (`[serve] max_sessions_per_user`, 16).
    #[arg(long, value_parser = crate::config::serve::positive_count)]
    pub max_sessions_per_user: Option<usize>,
    /// Close a session idle this long (`[serve] session_idle_timeout`, 5m).
    #[arg(long, value_parser = crate::config::serve::positive_duration)]
    pub session_idle_timeout: Option<Duration>,
    /// Connections at once; more get 503 (`[serve] max_connections`, 1024).
    #[arg(long, value_parser = crate::config::serve::positive_count)]
    pub max_connections: Option<usize>,
    /// Close a connection whose request head is slower (`[serve] header_timeout`, 30s).
    #[arg(long, value_parser = crate::config::serve::positive_duration)]
    pub header_timeout: Option<Duration>,
    /// Answer 408 to a slower request body (`[serve] body_timeout`, 30s).
    #[arg(long, value_parser = crate::config::serve::positive_duration)]
    pub body_timeout: Option<Duration>,
}

/// `gavel run`: the servers of a config file, over stdio.
pub async fn run(g: &Globals, config: &Path) -> anyhow::Result<()> {
    let cfg = load_config(config)?;
    let _guard = g.logging(Some(&cfg))?;
    tracing::info!(config = %config.display(), servers = cfg.enabled_servers().count(), "gavel starting");
    if cfg.auth.is_some() {
        // Not an error: one config may serve both fronts.
        tracing::warn!(
            "[auth] is ignored by gavel run: over stdio there is no bearer token, so the user and agent come from [identity.*]; use gavel serve for token identity"
        );
    }
    if cfg.serve != ServeSettings::default() {
        // Not a warning: one config may serve both fronts.
        tracing::info!("[serve] applies to gavel serve only; gavel run speaks MCP on stdin/stdout");
    }
    let _metrics = g.metrics(cfg.metrics_listen).await;
    let gw = super::policy_server::start(cfg).await?;
    crate::front::stdio::serve_stdio(gw).await
}

/// `gavel serve`: the servers of a config file, over streamable HTTP.
pub async fn serve(g: &Globals, args: ServeArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let _guard = g.logging(Some(&cfg))?;
    let _metrics = g.metrics(cfg.metrics_listen).await;
    let opts = http_options(args, &cfg.serve);
    let gw = super::policy_server::start(cfg).await?;
    crate::front::http::serve_http(gw, opts).await
}

/// Flags override `[serve]`; list flags add to its lists.
pub(super) fn http_options(a: ServeArgs, serve: &ServeSettings) -> HttpOptions {
    HttpOptions {
        listen: a.listen.unwrap_or(serve.listen),
        allowed_hosts: serve
            .allowed_hosts
            .iter()
            .cloned()
            .chain(a.allowed_hosts)
            .collect(),
        allowed_origins: serve
            .allowed_origins
            .iter()
            .cloned()
            .chain(a.allowed_origins)
            .collect(),
        behind_proxy: a.behind_proxy || serve.behind_proxy,
        tls: a.tls_cert.zip(a.tls_key).or_else(|| serve.tls.clone()),
        max_sessions: a.max_sessions.unwrap_or(serve.max_sessions).max(1),
        drain_timeout: a.drain_timeout.unwrap_or(serve.drain_timeout),
        max_sessions_per_user: a
            .max_sessions_per_user
            .unwrap_or(serve.max_sessions_per_user),
        session_idle_timeout: a.session_idle_timeout.unwrap_or(serve.session_idle_timeout),
        conn: crate::transport::conn::ConnLimits {
            max_connections: a.max_connections.unwrap_or(serve.max_connections),
            header_timeout: a.header_timeout.unwrap_or(serve.header_timeout),
        },
        body_timeout: a.body_timeout.unwrap_or(serve.body_timeout),
    }
}

/// `gavel wrap`: one server command, no config file, over stdio; the few
/// settings a config would hold come as flags (`eval_timeout`: `[policy]
/// eval_timeout`, `None` for the default).
pub async fn wrap(
    g: &Globals,
    name: &str,
    bundles: &[PathBuf],
    decision_log: Option<PathBuf>,
    eval_timeout: Option<Duration>,
    mut command: Vec<String>,
) -> anyhow::Result<()> {
    let program = command.remove(0);
    let mut cfg =
        Config::single_stdio_server(name, program, command).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(server) = cfg.servers.get_mut(name) {
        server.bundles = bundles
            .iter()
            .map(|b| {
                std::path::absolute(b)
                    .unwrap_or_else(|_| b.clone())
                    .display()
                    .to_string()
            })
            .collect();
    }
    cfg.log.decisions = decision_log;
    if let Some(t) = eval_timeout {
        cfg.policy.eval_timeout = t;
    }
    let _guard = g.logging(None)?;
    let _metrics = g.metrics(None).await;
    let gw = super::policy_server::start(cfg).await?;
    crate::front::stdio::serve_stdio(gw).await
}
