//! `gavel demo`: with no agent host at hand, start gavel on a config as a host
//! would (a child process speaking MCP on stdio) and drive a short scripted
//! session through it, printed so a newcomer sees what gavel does.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, Implementation, ProtocolVersion,
};
use serde_json::{Value, json};

use super::say;

/// The scripted calls: (tool, arguments, what it shows). The first that
/// exists in the listing is used for each step.
const ALLOWED: &[(&str, &str)] = &[
    ("everything__echo", r#"{"message":"hello through gavel"}"#),
    ("echo", r#"{"message":"hello through gavel"}"#),
    ("time__get_current_time", r#"{"timezone":"UTC"}"#),
];
const REFUSED: &[(&str, &str)] = &[
    (
        "filesystem__read_text_file",
        r#"{"path":"../servers.toml"}"#,
    ),
    ("everything__get-env", "{}"),
    ("get-env", "{}"),
];

fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>;

pub async fn run(config: &Path, log_file: Option<&Path>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the gavel binary")?;
    let log = match log_file {
        Some(p) => p.to_path_buf(),
        None => std::env::temp_dir().join(format!("gavel-demo-{}.log", std::process::id())),
    };
    let cfg = crate::cli::load_config(config)?; // a bad config is reported here, plainly
    say(format!(
        "▶ Starting gavel as an agent host would: {} run --config {}",
        exe.display(),
        config.display()
    ));
    let (mut child, client) = start(&exe, config, &log).await?;
    let tools = client.list_all_tools().await?;
    println!("▶ tools/list — {} tools visible to the agent:", tools.len()); // stdout-ok
    for t in &tools {
        println!("    {}", t.name); // stdout-ok
    }
    let has = |n: &str| tools.iter().any(|t| t.name == n);

    if let Some((name, args)) = ALLOWED.iter().find(|(n, _)| has(n)) {
        println!("\n▶ tools/call {name} {args}"); // stdout-ok
        let r = call(&client, name, args).await?;
        println!("✔ allowed — the upstream answered: {}", text_of(&r)); // stdout-ok
    }
    // The first scripted refusal whose server is configured (its prefix is listed).
    let refused = REFUSED.iter().find(|(n, _)| {
        let prefix = n.split("__").next().unwrap_or("");
        tools
            .iter()
            .any(|t| t.name.starts_with(&format!("{prefix}__")))
            || !n.contains("__")
    });
    if let Some((name, args)) = refused {
        show_refusal(&client, name, args).await;
    }
    client.cancel().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    where_next(&cfg, &exe, config, &log);
    Ok(())
}

/// `gavel run --config CONFIG` as a child speaking MCP on its stdio, and
/// an MCP client connected to it (initialized).
async fn start(
    exe: &Path,
    config: &Path,
    log: &Path,
) -> anyhow::Result<(tokio::process::Child, Client)> {
    let mut child = tokio::process::Command::new(exe)
        .args(["run", "--config"])
        .arg(config)
        .arg("--log-file")
        .arg(log)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting gavel")?;
    let stdin = child.stdin.take().context("gavel stdin")?;
    let stdout = child.stdout.take().context("gavel stdout")?;
    let info = ClientConfig::new(
        Default::default(),
        Implementation::new("gavel-demo", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    let client = tokio::time::timeout(Duration::from_secs(30), info.serve((stdout, stdin)))
        .await
        .context("gavel did not answer initialize within 30s")??;
    let proto = client
        .peer_info()
        .map(|i| i.protocol_version.to_string())
        .unwrap_or_default();
    println!("✔ Connected (MCP {proto}).\n"); // stdout-ok
    Ok((child, client))
}

/// The scripted call gavel should refuse, and what the agent reads.
async fn show_refusal(client: &Client, name: &str, args: &str) {
    println!("\n▶ tools/call {name} {args}"); // stdout-ok
    let r = call(client, name, args).await;
    match r {
        Ok(r) if r.is_error == Some(true) => {
            println!("✘ refused — what the agent reads:\n"); // stdout-ok
            for line in text_of(&r).lines() {
                println!("    {line}"); // stdout-ok
            }
            if let Some(meta) = &r.meta {
                let d = meta
                    .0
                    .get("dev.gavel/decision")
                    .cloned()
                    .unwrap_or(Value::Null);
                println!("\n  structured decision (_meta[\"dev.gavel/decision\"]):\n    {d}"); // stdout-ok
            }
        }
        Ok(r) => println!("  (the call was allowed: {})", text_of(&r)), // stdout-ok
        Err(e) => println!("  (error: {e})"),                           // stdout-ok
    }
}

/// Where the logs went, and the host entry that points at gavel.
fn where_next(cfg: &crate::config::Config, exe: &Path, config: &Path, log: &Path) {
    let decisions = match &cfg.log.decisions {
        Some(d) => {
            let n = std::fs::read_to_string(d)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            format!(
                "{} ({n} records: one JSON line per decision, allowed and denied)",
                d.display()
            )
        }
        None => "none (set [log] decisions = \"…\" in the config)".into(),
    };
    let host_entry = json!({"command": exe, "args": ["run", "--config", std::path::absolute(config).unwrap_or_default()]});
    say("\nWhere the logs went:");
    say(format!("  gavel's own log: {}", log.display()));
    say(format!("  decision log:    {decisions}"));
    say(format!(
        "Next: point your agent host at gavel — {host_entry}"
    ));
}

async fn call(client: &Client, name: &str, args: &str) -> anyhow::Result<CallToolResult> {
    let args: Value = serde_json::from_str(args)?;
    let mut p = CallToolRequestParams::new(name.to_string());
    p.arguments = args.as_object().cloned();
    Ok(client.peer().call_tool(p).await?)
}
