//! `gavel lint`: start a config's upstreams as the proxy does, list their
//! tools, and hold every server's bundles against them
//! (`decision::tool_lint`): tool names and argument names the servers do not
//! have, string-prefix path scoping, tools a policy that allows by default
//! never names. Text (one finding per line) or JSON; the exit status is for
//! CI (`--fail-on`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{load_config, say};
use crate::bundle::lint::schema::{Check, SchemaFinding, Severity};
use crate::config::Config;
use crate::decision::Enforcer;
use crate::upstream::{SupervisorDeps, Upstream, spawn_supervisor};

#[derive(clap::Args, Debug)]
pub struct LintArgs {
    #[arg(long, short, default_value = "servers.toml")]
    pub config: PathBuf,
    /// Only this server (a bundle it shares with servers not started is
    /// checked for prefix tests only: the others' tools are unknown).
    #[arg(long)]
    pub server: Option<String>,
    /// The findings as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// The least severe finding that fails the run (non-zero exit).
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: FailOn,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum FailOn {
    Warning,
    Error,
}

/// One finding with the server it is about.
#[derive(serde::Serialize)]
struct Row {
    server: String,
    #[serde(flatten)]
    finding: SchemaFinding,
}

pub async fn run(args: LintArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let servers: Vec<String> = match &args.server {
        Some(s) if cfg.servers.get(s).is_some_and(|c| c.enabled) => vec![s.clone()],
        Some(s) => anyhow::bail!(
            "--server {s:?}: no enabled server of that name in {} (servers: {})",
            args.config.display(),
            cfg.enabled_servers()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => cfg.enabled_servers().map(|(n, _)| n.clone()).collect(),
    };
    let clock = crate::state::clock::from_env();
    let (enforcer, _supply) =
        crate::policy::start::start_enforcer(&cfg, clock, crate::policy::start::Pull::Registry)
            .await?;
    let enforcer = Arc::new(enforcer);
    let mut rows = Vec::new();
    for (server, status) in enforcer.policy_status() {
        if let (true, Err(why)) = (servers.contains(&server), status) {
            rows.push(row(&server, &cfg, Check::PolicyUnavailable, format!(
                "the policy is unavailable (every request to this server would be denied): {why}"
            )));
        }
    }
    for (server, outcome) in list_tools(&cfg, &enforcer, &servers).await {
        match outcome {
            Ok(tools) => enforcer.note_tools(&server, &tools),
            Err(why) => rows.push(row(
                &server,
                &cfg,
                Check::ServerUnavailable,
                format!("the server did not start and list its tools: {why}"),
            )),
        }
    }
    for (server, found) in enforcer.lint_tools() {
        if servers.contains(&server) {
            rows.extend(found.into_iter().map(|finding| Row {
                server: server.clone(),
                finding,
            }));
        }
    }
    report(&rows, &args)
}

/// A finding about a server as a whole, at its `[servers.NAME]` line.
fn row(server: &str, cfg: &Config, check: Check, message: String) -> Row {
    let file = cfg.source.as_deref().unwrap_or(Path::new("servers.toml"));
    let header = format!("[servers.{server}]");
    let line = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.lines().position(|l| l.trim() == header))
        .map_or(0, |i| i + 1);
    Row {
        server: server.to_string(),
        finding: SchemaFinding {
            severity: Severity::Error,
            check,
            bundle: "-".into(),
            file: file.display().to_string(),
            line,
            message,
        },
    }
}

/// Starts each server as a session would (its supervisor, bounded by its
/// `startup_timeout`), takes its tool list, and stops them all.
async fn list_tools(
    cfg: &Config,
    enforcer: &Arc<Enforcer>,
    servers: &[String],
) -> Vec<(String, Result<Vec<rmcp::model::Tool>, String>)> {
    let shutdown = CancellationToken::new();
    let session = Arc::new(crate::decision::SessionState::new(enforcer.clock().clone()));
    let host = Arc::new(crate::host::link::HostLink::default());
    let (changed, _changes) =
        tokio::sync::mpsc::channel(crate::upstream::supervisor::CHANGES_QUEUED);
    let base_dir = cfg
        .source
        .as_ref()
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let mut ups = Vec::new();
    let mut handles = Vec::new();
    for name in servers {
        let up = Upstream::new(cfg.servers[name].clone());
        handles.push(spawn_supervisor(
            up.clone(),
            SupervisorDeps {
                host: host.clone(),
                enforcer: enforcer.clone(),
                limits: cfg.limits.clone(),
                logger_prefix: None,
                changed: crate::upstream::supervisor::ChangeSink::One(changed.clone()),
                session: session.clone(),
                shutdown: shutdown.clone(),
                base_dir: base_dir.clone(),
            },
        ));
        ups.push(up);
    }
    let outcomes = futures::future::join_all(ups.iter().map(|up| async move {
        let listed = match up.ready().await {
            Ok(_) => Ok(up.lists().tools.clone()),
            Err(e) => {
                let tail = up.stderr_tail.snapshot();
                Err(match tail.last() {
                    Some(last) => format!(
                        "{e} (last stderr line: {})",
                        crate::text::escape_controls(last)
                    ),
                    None => e.to_string(),
                })
            }
        };
        (up.name.clone(), listed)
    }))
    .await;
    shutdown.cancel();
    crate::upstream::supervisor::join_bounded(handles).await;
    outcomes
}

/// Prints the findings and fails the run as `--fail-on` says.
fn report(rows: &[Row], args: &LintArgs) -> anyhow::Result<()> {
    let errors = rows
        .iter()
        .filter(|r| r.finding.severity == Severity::Error)
        .count();
    let warnings = rows.len() - errors;
    if args.json {
        say(serde_json::to_string_pretty(&json!({
            "findings": rows,
            "errors": errors,
            "warnings": warnings,
        }))?);
    } else {
        for r in rows {
            let f = &r.finding;
            let at = if f.line > 0 {
                format!("{}:{}", f.file, f.line)
            } else {
                f.file.clone()
            };
            say(format!(
                "{} {} {} {at}: {}",
                f.severity,
                r.server,
                f.bundle,
                crate::text::escape_controls(&f.message)
            ));
        }
        eprintln!("gavel lint: {errors} error(s), {warnings} warning(s)");
    }
    let failing = match args.fail_on {
        FailOn::Error => errors,
        FailOn::Warning => errors + warnings,
    };
    if failing > 0 {
        anyhow::bail!(
            "{failing} finding(s) at or above --fail-on {}",
            if args.fail_on == FailOn::Error {
                "error"
            } else {
                "warning"
            }
        );
    }
    Ok(())
}
