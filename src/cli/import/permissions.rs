//! The host's own lists that name MCP tools, rewritten for the names the
//! tools have through gavel (one host server, `gavel`; with several enabled
//! servers each tool is `SERVER__TOOL`):
//!
//! - Claude Code permission rules (`permissions.allow/ask/deny` in
//!   `.claude/settings.json` and `.claude/settings.local.json` beside the
//!   `.mcp.json`): `mcp__fs__read_file` → `mcp__gavel__fs__read_file`, a
//!   whole-server rule `mcp__fs` → `mcp__gavel__fs__*`;
//! - per-server `autoApprove` / `alwaysAllow` lists (Claude Desktop-style
//!   configs of Cline and Roo Code) → the same list on the gavel entry.

use std::path::Path;

use serde_json::Value;

use super::{Host, Imported, Parsed};

/// Claude Code's normalization of a server name in a tool's name.
fn claude_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The lines to print: each host entry, old and new.
pub fn rewritten(imported: &Imported, parsed: &Parsed, source: &Path) -> Vec<String> {
    let prefixed = imported.enabled() > 1;
    // What a tool of host server `host_name` is called through gavel.
    let through = |host_name: &str, tool: &str| -> Option<String> {
        let s = imported.servers.iter().find(|s| s.host_name == host_name)?;
        Some(if prefixed {
            format!("{}__{tool}", s.name)
        } else {
            tool.to_string()
        })
    };
    let mut out = Vec::new();
    for (host_name, v) in &parsed.servers {
        for key in ["autoApprove", "alwaysAllow"] {
            let tools: Vec<String> = v
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|t| through(host_name, t))
                .collect();
            if !tools.is_empty() {
                out.push(format!(
                    "{host_name}.{key} → the gavel entry's \"{key}\": {}",
                    serde_json::to_string(&tools).unwrap_or_default()
                ));
            }
        }
    }
    if imported.host == Host::ClaudeCode {
        claude_code_rules(imported, source, &through, &mut out);
    }
    out
}

/// Claude Code's permission rules beside the `.mcp.json` at `source`.
fn claude_code_rules(
    imported: &Imported,
    source: &Path,
    through: &dyn Fn(&str, &str) -> Option<String>,
    out: &mut Vec<String>,
) {
    let dir = source.parent().unwrap_or(Path::new("."));
    for file in ["settings.json", "settings.local.json"] {
        let path = dir.join(".claude").join(file);
        let Ok(text) = super::read(&path) else {
            continue;
        };
        let Ok(doc) = super::jsonc::parse(&text) else {
            out.push(format!(
                "{}: not valid JSON; its rules were not read",
                path.display()
            ));
            continue;
        };
        for list in ["allow", "ask", "deny"] {
            for rule in doc
                .pointer(&format!("/permissions/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Some(new) = rule_through(imported, rule, through) {
                    out.push(format!(
                        "{}: permissions.{list}: {rule:?} → {new:?}",
                        path.display()
                    ));
                }
            }
        }
    }
}

/// One Claude Code rule (`mcp__SERVER`, `mcp__SERVER__*`, `mcp__SERVER__TOOL`)
/// for gavel's names, if it names an imported server.
fn rule_through(
    imported: &Imported,
    rule: &str,
    through: &dyn Fn(&str, &str) -> Option<String>,
) -> Option<String> {
    let rest = rule.strip_prefix("mcp__")?;
    let server = imported
        .servers
        .iter()
        .filter(|s| {
            let n = claude_name(&s.host_name);
            rest == n || rest.starts_with(&format!("{n}__"))
        })
        .max_by_key(|s| s.host_name.len())?;
    let tool = rest[claude_name(&server.host_name).len()..].trim_start_matches("__");
    Some(match tool {
        "" | "*" if imported.enabled() > 1 => format!("mcp__gavel__{}__*", server.name),
        "" | "*" => "mcp__gavel".to_string(),
        t => format!("mcp__gavel__{}", through(&server.host_name, t)?),
    })
}
