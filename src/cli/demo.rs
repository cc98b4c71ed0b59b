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

/// The scripted session, in order: each step is a list of alternatives
/// (tool, arguments), the first listed by gavel is called; a step whose
/// tools are all absent (that server is not configured) is skipped.
const ALLOWED: &[&[(&str, &str)]] = &[
    &[
        ("everything__echo", r#"{"message":"hello through gavel"}"#),
        ("echo", r#"{"message":"hello through gavel"}"#),
    ],
    // A read inside the filesystem server's scope returns the file.
    &[(
        "filesystem__read_text_file",
        r#"{"path":"public/readme.txt"}"#,
    )],
    &[("time__get_current_time", r#"{"timezone":"UTC"}"#)],
];
const REFUSED: &[&[(&str, &str)]] = &[
    // Out of the server's scope, however it is spelt.
    &[(
        "filesystem__read_text_file",
        r#"{"path":"./public/../../servers.toml"}"#,
    )],
    // In scope, but confidential: the user is not cleared for it.
    &[(
        "filesystem__read_text_file",
        r#"{"path":"confidential/plan.txt"}"#,
    )],
    // Writes only under public/.
    &[(
        "filesystem__write_file",
        r#"{"path":"confidential/notes.txt","content":"x"}"#,
    )],
    &[("everything__get-env", "{}"), ("get-env", "{}")],
];

/// The first alternative of `step` that gavel lists.
fn pick<'a>(step: &[(&'a str, &'a str)], has: &dyn Fn(&str) -> bool) -> Option<(&'a str, &'a str)> {
    step.iter().find(|(n, _)| has(n)).copied()
}

/// The first alternative of a refusal step whose server is configured: a
/// refused tool may well be hidden from the listing, so its server's other
/// tools (the `server__` prefix) stand for it; an unprefixed one needs a
/// single-server listing.
fn pick_refusal<'a>(step: &[(&'a str, &'a str)], listed: &[String]) -> Option<(&'a str, &'a str)> {
    step.iter()
        .find(|(n, _)| match n.split_once("__") {
            Some((server, _)) => listed.iter().any(|t| t.starts_with(&format!("{server}__"))),
            None => !listed.is_empty() && !listed.iter().any(|t| t.contains("__")),
        })
        .copied()
}

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

    for (name, args) in ALLOWED.iter().filter_map(|step| pick(step, &has)) {
        println!("\n▶ tools/call {name} {args}"); // stdout-ok
        match call(&client, name, args).await {
            Ok(r) if r.is_error != Some(true) => {
                println!("✔ allowed — the upstream answered: {}", text_of(&r)) // stdout-ok
            }
            Ok(r) => println!("  (refused or failed: {})", text_of(&r)), // stdout-ok
            Err(e) => println!("  (error: {e})"),                        // stdout-ok
        }
    }
    let listed: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let refusals = REFUSED
        .iter()
        .filter_map(|step| pick_refusal(step, &listed));
    for (i, (name, args)) in refusals.enumerate() {
        // The first refusal in full; the others by their reasons.
        show_refusal(&client, name, args, i == 0).await;
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

/// A scripted call gavel should refuse, and what the agent reads: all of
/// it (`full`), or the line saying why.
async fn show_refusal(client: &Client, name: &str, args: &str, full: bool) {
    println!("\n▶ tools/call {name} {args}"); // stdout-ok
    let r = match call(client, name, args).await {
        Ok(r) if r.is_error == Some(true) => r,
        Ok(r) => return println!("  (the call was allowed: {})", text_of(&r)), // stdout-ok
        Err(e) => return println!("  (error: {e})"),                           // stdout-ok
    };
    let text = text_of(&r);
    if !full {
        let why = text.lines().find(|l| l.starts_with("Why:")).unwrap_or("");
        return println!("✘ refused — {why}"); // stdout-ok
    }
    println!("✘ refused — what the agent reads:\n"); // stdout-ok
    for line in text.lines() {
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
