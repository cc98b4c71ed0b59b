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

/// What the conversion could not carry over (`notes`) and the environment
/// variables the converted config reads (`required`), gathered while the
/// servers are converted.
#[derive(Default)]
struct Carried {
    notes: Vec<String>,
    required: Vec<String>,
}

impl Carried {
    /// `s` with its host variables converted (see [`convert_vars`]).
    fn text(&mut self, s: &str, field: &str) -> toml::Value {
        toml::Value::String(convert_vars(s, field, &mut self.notes, &mut self.required))
    }
}

/// Converts the host config `json_text` (read from `source`) into a
/// servers.toml to be written at `config_out`, and the host entry that
/// starts `gavel_command` on it.
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
    let (dialect, servers) = dialect(root, source)?;
    let key = dialect.servers_key();
    let mut carried = Carried::default();
    let mut servers_t = Table::new();
    for (name, v) in servers {
        if let Some((gname, t)) = import_server(key, name, v, &mut carried) {
            servers_t.insert(gname, toml::Value::Table(t));
        }
    }
    if servers_t.is_empty() {
        return Err(err(
            source,
            format!("no importable servers under \"{key}\""),
        ));
    }
    note_inputs(root, &mut carried);
    let mut out = Table::new();
    out.insert("servers".into(), toml::Value::Table(servers_t));
    let body = toml::to_string_pretty(&out).map_err(|e| err(source, e.to_string()))?;
    let toml = format!(
        "# Imported by `gavel import` from {}.\n# Review, add policy (docs/config.md), then point your host at gavel.\n\n{body}",
        source.display()
    );
    Ok(ImportResult {
        toml,
        not_carried: carried.notes,
        host_entry: host_entry(dialect, config_out, gavel_command),
        required_env: carried.required,
    })
}

impl Dialect {
    /// The key the servers are listed under.
    fn servers_key(self) -> &'static str {
        match self {
            Dialect::McpServers => "mcpServers",
            Dialect::VsCode => "servers",
        }
    }
}

/// Which host wrote the config, told by where its servers are.
fn dialect<'a>(
    root: &'a Value,
    source: &Path,
) -> Result<(Dialect, &'a Map<String, Value>), ConfigError> {
    if let Some(s) = root.get("mcpServers").and_then(Value::as_object) {
        Ok((Dialect::McpServers, s))
    } else if let Some(s) = root.get("servers").and_then(Value::as_object) {
        Ok((Dialect::VsCode, s))
    } else {
        Err(err(
            source,
            "expected a Claude Desktop / Cursor config ({\"mcpServers\": {...}}) or a VS Code config ({\"servers\": {...}, \"inputs\": [...]}, or the same under \"mcp\")",
        ))
    }
}

/// One host server → its gavel name and `[servers.NAME]` table, or `None`
/// (with a note saying why) when it cannot be imported.
fn import_server(
    key: &str,
    name: &str,
    v: &Value,
    carried: &mut Carried,
) -> Option<(String, Table)> {
    let Some(obj) = v.as_object() else {
        carried
            .notes
            .push(format!("{key}.{name}: not an object; skipped"));
        return None;
    };
    let gname = sanitize(name);
    if gname != *name {
        carried.notes.push(format!(
            "{key}.{name}: renamed to {gname:?} (gavel names use letters, digits, '-' and '_')"
        ));
    }
    let mut t = Table::new();
    for (k, val) in obj {
        carry_field(&mut t, &format!("{key}.{name}"), k, val, carried);
    }
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let is_sse = ty == "sse"
        || t.get("url")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u.trim_end_matches('/').ends_with("/sse"));
    if is_sse {
        t.insert("enabled".into(), toml::Value::Boolean(false));
        carried.notes.push(format!(
            "{key}.{name}: legacy HTTP+SSE transport cannot be proxied (gavel speaks streamable HTTP upstream); imported disabled"
        ));
    }
    if !t.contains_key("command") && !t.contains_key("url") {
        carried.notes.push(format!(
            "{key}.{name}: has neither command nor url; skipped"
        ));
        return None;
    }
    Some((gname, t))
}

/// One field `k` of the host server at `at` (`mcpServers.NAME`) into the
/// server's table `t`, or a note that it was not carried over.
fn carry_field(t: &mut Table, at: &str, k: &str, val: &Value, carried: &mut Carried) {
    let field = |k: &str| format!("{at}.{k}");
    let str_of = |v: &Value| v.as_str().map(String::from);
    match k {
        "command" | "cwd" | "url" => {
            if let Some(c) = str_of(val) {
                t.insert(k.into(), carried.text(&c, &field(k)));
            }
        }
        "args" => {
            let args: Vec<toml::Value> = val
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .map(|a| carried.text(a, &field(k)))
                .collect();
            t.insert("args".into(), toml::Value::Array(args));
        }
        "env" | "headers" => {
            let mut m = Table::new();
            for (ek, ev) in val.as_object().into_iter().flatten() {
                if let Some(s) = ev.as_str() {
                    m.insert(ek.clone(), carried.text(s, &field(&format!("{k}.{ek}"))));
                }
            }
            t.insert(k.into(), toml::Value::Table(m));
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
            _ => carried.notes.push(format!(
                "{}: not a number of milliseconds; not carried over",
                field(k)
            )),
        },
        "envFile" => carried.notes.push(format!(
            "{}: env files are not supported by gavel; put the variables in env",
            field(k)
        )),
        other => carried.notes.push(format!(
            "{}: not supported by gavel; not carried over",
            field(other)
        )),
    }
}

/// VS Code `inputs` the converted config reads: a note each, saying which
/// environment variable now carries it.
fn note_inputs(root: &Value, carried: &mut Carried) {
    for i in root
        .get("inputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = i.get("id").and_then(Value::as_str) {
            let var = input_var(id);
            if carried.required.contains(&var) {
                let desc = i.get("description").and_then(Value::as_str).unwrap_or("");
                carried.notes.push(format!(
                    "inputs.{id}: VS Code prompts for it; gavel reads it from ${var} ({desc})"
                ));
            }
        }
    }
}

/// The one entry that replaces the imported servers in the host config.
fn host_entry(dialect: Dialect, config_out: &Path, gavel_command: &str) -> Value {
    let args = json!(["run", "--config", config_out.display().to_string()]);
    match dialect {
        Dialect::McpServers => {
            json!({"mcpServers": {"gavel": {"command": gavel_command, "args": args}}})
        }
        Dialect::VsCode => {
            json!({"servers": {"gavel": {"type": "stdio", "command": gavel_command, "args": args}}})
        }
    }
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
