//! `gavel import`: turn an agent host's MCP config (Claude Desktop / Cursor
//! `mcpServers`, VS Code `servers` + `inputs`) into a servers.toml, naming
//! everything that could not be carried over, plus the one host entry that
//! replaces them all.

use std::path::Path;

use serde_json::{Map, Value, json};
use toml::Table;

use super::ConfigError;

pub struct ImportResult {
    pub toml: String,
    pub not_carried: Vec<String>,
    pub host_entry: Value,
    pub required_env: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    McpServers,
    VsCode,
}

fn err(source: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::General {
        path: source.display().to_string(),
        message: message.into(),
    }
}

/// The environment variable that carries VS Code input `id`.
fn input_var(id: &str) -> String {
    let upper: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("GAVEL_INPUT_{upper}")
}

/// VS Code `${input:id}` → `${GAVEL_INPUT_ID}`, `${env:X}` → `${X}`,
/// `${workspaceFolder}` → `.`; a literal `$` is escaped as `$$`.
fn convert_vars(
    s: &str,
    field: &str,
    notes: &mut Vec<String>,
    required: &mut Vec<String>,
) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(body) = after.strip_prefix("${")
            && let Some(end) = body.find('}')
        {
            let expr = &body[..end];
            if let Some(id) = expr.strip_prefix("input:") {
                let var = input_var(id);
                if !required.contains(&var) {
                    required.push(var.clone());
                }
                out.push_str(&format!("${{{var}}}"));
            } else if let Some(name) = expr.strip_prefix("env:") {
                out.push_str(&format!("${{{name}}}"));
            } else if expr == "workspaceFolder" {
                notes.push(format!("{field}: ${{workspaceFolder}} has no meaning outside VS Code; replaced by \".\" (the config's directory)"));
                out.push('.');
            } else {
                notes.push(format!(
                    "{field}: variable ${{{expr}}} is not supported; kept as the literal text"
                ));
                out.push_str(&format!("$${{{expr}}}"));
            }
            rest = &body[end + 1..];
        } else {
            out.push_str("$$");
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    s.truncate(32);
    if s.is_empty() { "server".into() } else { s }
}

pub fn import_host_config(
    json_text: &str,
    source: &Path,
    config_out: &Path,
    gavel_command: &str,
) -> Result<ImportResult, ConfigError> {
    let doc: Value =
        serde_json::from_str(json_text).map_err(|e| err(source, format!("not valid JSON: {e}")))?;
    let root = doc
        .get("mcp")
        .filter(|m| m.get("servers").is_some())
        .unwrap_or(&doc);
    let (dialect, servers) = if let Some(s) = root.get("mcpServers").and_then(Value::as_object) {
        (Dialect::McpServers, s)
    } else if let Some(s) = root.get("servers").and_then(Value::as_object) {
        (Dialect::VsCode, s)
    } else {
        return Err(err(
            source,
            "expected a Claude Desktop / Cursor config ({\"mcpServers\": {...}}) or a VS Code config ({\"servers\": {...}, \"inputs\": [...]}, or the same under \"mcp\")",
        ));
    };
    let key = if dialect == Dialect::McpServers {
        "mcpServers"
    } else {
        "servers"
    };
    let mut notes = Vec::new();
    let mut required = Vec::new();
    let mut out = Table::new();
    let mut servers_t = Table::new();
    for (name, v) in servers {
        let Some(obj) = v.as_object() else {
            notes.push(format!("{key}.{name}: not an object; skipped"));
            continue;
        };
        let gname = sanitize(name);
        if gname != *name {
            notes.push(format!(
                "{key}.{name}: renamed to {gname:?} (gavel names use letters, digits, '-' and '_')"
            ));
        }
        let field = |k: &str| format!("{key}.{name}.{k}");
        let mut t = Table::new();
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let str_of = |v: &Value| v.as_str().map(String::from);
        for (k, val) in obj {
            match k.as_str() {
                "command" => {
                    if let Some(c) = str_of(val) {
                        t.insert(
                            "command".into(),
                            toml::Value::String(convert_vars(
                                &c,
                                &field(k),
                                &mut notes,
                                &mut required,
                            )),
                        );
                    }
                }
                "args" => {
                    let args: Vec<toml::Value> = val
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str())
                        .map(|a| {
                            toml::Value::String(convert_vars(
                                a,
                                &field(k),
                                &mut notes,
                                &mut required,
                            ))
                        })
                        .collect();
                    t.insert("args".into(), toml::Value::Array(args));
                }
                "env" | "headers" => {
                    let mut m = Table::new();
                    for (ek, ev) in val.as_object().into_iter().flatten() {
                        if let Some(s) = ev.as_str() {
                            m.insert(
                                ek.clone(),
                                toml::Value::String(convert_vars(
                                    s,
                                    &field(&format!("{k}.{ek}")),
                                    &mut notes,
                                    &mut required,
                                )),
                            );
                        }
                    }
                    t.insert(k.clone(), toml::Value::Table(m));
                }
                "cwd" => {
                    if let Some(c) = str_of(val) {
                        t.insert(
                            "cwd".into(),
                            toml::Value::String(convert_vars(
                                &c,
                                &field(k),
                                &mut notes,
                                &mut required,
                            )),
                        );
                    }
                }
                "url" => {
                    if let Some(u) = str_of(val) {
                        t.insert(
                            "url".into(),
                            toml::Value::String(convert_vars(
                                &u,
                                &field(k),
                                &mut notes,
                                &mut required,
                            )),
                        );
                    }
                }
                "type" => {}
                "disabled" => {
                    if val.as_bool() == Some(true) {
                        t.insert("enabled".into(), toml::Value::Boolean(false));
                    }
                }
                "timeout" => match val.as_u64() {
                    Some(ms) if ms > 0 => {
                        t.insert(
                            "call_timeout".into(),
                            toml::Value::String(format!("{ms}ms")),
                        );
                    }
                    _ => notes.push(format!(
                        "{}: not a number of milliseconds; not carried over",
                        field(k)
                    )),
                },
                "envFile" => notes.push(format!(
                    "{}: env files are not supported by gavel; put the variables in env",
                    field(k)
                )),
                other => notes.push(format!(
                    "{}: not supported by gavel; not carried over",
                    field(other)
                )),
            }
        }
        let is_sse = ty == "sse"
            || t.get("url")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u.trim_end_matches('/').ends_with("/sse"));
        if is_sse {
            t.insert("enabled".into(), toml::Value::Boolean(false));
            notes.push(format!(
                "{key}.{name}: legacy HTTP+SSE transport cannot be proxied (gavel speaks streamable HTTP upstream); imported disabled"
            ));
        }
        if !t.contains_key("command") && !t.contains_key("url") {
            notes.push(format!(
                "{key}.{name}: has neither command nor url; skipped"
            ));
            continue;
        }
        servers_t.insert(gname, toml::Value::Table(t));
    }
    if servers_t.is_empty() {
        return Err(err(
            source,
            format!("no importable servers under \"{key}\""),
        ));
    }
    if let Some(inputs) = root.get("inputs").and_then(Value::as_array) {
        for i in inputs {
            if let Some(id) = i.get("id").and_then(Value::as_str) {
                let var = input_var(id);
                if required.contains(&var) {
                    let desc = i.get("description").and_then(Value::as_str).unwrap_or("");
                    notes.push(format!(
                        "inputs.{id}: VS Code prompts for it; gavel reads it from ${var} ({desc})"
                    ));
                }
            }
        }
    }
    out.insert("servers".into(), toml::Value::Table(servers_t));
    let body = toml::to_string_pretty(&out).map_err(|e| err(source, e.to_string()))?;
    let toml = format!(
        "# Imported by `gavel import` from {}.\n# Review, add policy (docs/config.md), then point your host at gavel.\n\n{body}",
        source.display()
    );
    let args = json!(["run", "--config", config_out.display().to_string()]);
    let host_entry = match dialect {
        Dialect::McpServers => {
            json!({"mcpServers": {"gavel": {"command": gavel_command, "args": args}}})
        }
        Dialect::VsCode => {
            json!({"servers": {"gavel": {"type": "stdio", "command": gavel_command, "args": args}}})
        }
    };
    let _ = Map::<String, Value>::new();
    Ok(ImportResult {
        toml,
        not_carried: notes,
        host_entry,
        required_env: required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, UpstreamTransport};

    fn load(r: &ImportResult) -> Config {
        Config::from_toml_str(&r.toml, Path::new("/tmp/servers.toml"), &|_| {
            Some("x".into())
        })
        .expect(&r.toml)
    }

    #[test]
    fn claude_desktop_round_trips() {
        let j = r#"{"mcpServers": {
            "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"A": "1"}},
            "remote": {"url": "https://mcp.example.test/mcp", "headers": {"Authorization": "Bearer x"}},
            "old": {"url": "https://legacy.example.test/sse"},
            "weird name!": {"command": "srv", "autoApprove": ["x"], "disabled": true, "timeout": 5000}
        }}"#;
        let r = import_host_config(
            j,
            Path::new("claude.json"),
            Path::new("/abs/servers.toml"),
            "/bin/gavel",
        )
        .unwrap();
        let c = load(&r);
        assert_eq!(c.servers.len(), 4);
        assert!(
            matches!(&c.servers["fs"].transport, UpstreamTransport::Stdio { command, .. } if command == "npx")
        );
        assert!(!c.servers["old"].enabled);
        assert!(!c.servers["weird-name-"].enabled);
        assert_eq!(
            c.servers["weird-name-"].call_timeout,
            std::time::Duration::from_millis(5000)
        );
        let notes = r.not_carried.join("\n");
        assert!(notes.contains("autoApprove"), "{notes}");
        assert!(notes.contains("legacy HTTP+SSE"), "{notes}");
        assert!(notes.contains("renamed"), "{notes}");
        assert_eq!(
            r.host_entry["mcpServers"]["gavel"]["args"],
            json!(["run", "--config", "/abs/servers.toml"])
        );
    }

    #[test]
    fn vscode_inputs_become_env_vars() {
        let j = r#"{"inputs": [{"type": "promptString", "id": "api-key", "description": "API key", "password": true}],
            "servers": {"gh": {"type": "stdio", "command": "gh-mcp", "env": {"TOKEN": "${input:api-key}", "HOME2": "${env:HOME}"}, "envFile": "x.env"}}}"#;
        let r = import_host_config(
            j,
            Path::new("mcp.json"),
            Path::new("/abs/servers.toml"),
            "gavel",
        )
        .unwrap();
        assert_eq!(r.required_env, vec!["GAVEL_INPUT_API_KEY"]);
        assert!(r.toml.contains("${GAVEL_INPUT_API_KEY}"));
        assert!(r.toml.contains("${HOME}"));
        assert!(r.not_carried.iter().any(|n| n.contains("envFile")));
        assert_eq!(r.host_entry["servers"]["gavel"]["type"], "stdio");
        let c = load(&r);
        assert!(
            matches!(&c.servers["gh"].transport, UpstreamTransport::Stdio { env, .. } if env["TOKEN"] == "x")
        );
    }

    #[test]
    fn unknown_shape_is_a_clear_error() {
        let e = import_host_config(
            r#"{"foo": 1}"#,
            Path::new("x.json"),
            Path::new("/o"),
            "gavel",
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("mcpServers"), "{e}");
        assert!(import_host_config("nope", Path::new("x.json"), Path::new("/o"), "gavel").is_err());
    }
}
