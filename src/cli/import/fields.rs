//! The server entries of every host, read as JSON objects (Codex's TOML and
//! Continue's YAML are read into the same shape): which key holds them, and
//! each field carried into a `[servers.NAME]` table — or named as not
//! carried. The hosts' field names differ for the same thing (a remote URL is
//! `url`, Windsurf's `serverUrl`, Gemini's `httpUrl`; Gemini's own `url` is
//! legacy SSE); docs/config.md lists them per host.

use std::path::Path;

use serde_json::{Map, Value, json};
use toml::Table;

use super::{Carried, Host, Parsed, Server, restrict};

/// The servers of a JSON host config, told by the key that holds them;
/// `host` (given or guessed) decides which host's meaning they have.
pub fn find(root: Value, host: Option<Host>) -> Option<Parsed> {
    let (default, key): (Host, &[&str]) = if root.get("context_servers").is_some() {
        (Host::Zed, &["context_servers"])
    } else if root.get("mcpServers").is_some_and(Value::is_object) {
        (Host::ClaudeDesktop, &["mcpServers"])
    } else if root.get("servers").is_some_and(Value::is_object) {
        (Host::Vscode, &["servers"])
    } else if root.pointer("/mcp/servers").is_some_and(Value::is_object) {
        (Host::Vscode, &["mcp", "servers"])
    } else {
        return None;
    };
    let mut node = &root;
    for k in key {
        node = &node[*k];
    }
    let servers = node
        .as_object()?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Parsed {
        host: host
            .filter(|h| !matches!(h, Host::Codex | Host::Continue))
            .unwrap_or(default),
        servers,
        key: key.iter().map(|k| k.to_string()).collect(),
        root,
    })
}

/// gavel's name for host server `name`: letters, digits, `-`, `_`, no `__`,
/// at most 32 characters.
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

/// Whether a host entry already starts gavel (a config installed before).
fn is_gavel(obj: &Map<String, Value>) -> bool {
    let cmd = obj.get("command").and_then(Value::as_str).unwrap_or("");
    let first = obj
        .get("args")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str);
    Path::new(cmd).file_stem().and_then(|s| s.to_str()) == Some("gavel")
        && matches!(first, Some("run" | "wrap" | "serve"))
}

/// What a server entry says besides its plain fields, gathered while they
/// are carried.
#[derive(Default)]
struct Entry {
    url: Option<String>,
    /// The key the URL was under (Gemini's `url` is legacy SSE).
    url_key: String,
    /// `type`/`transport`, as written.
    ty: Option<String>,
    deny: Vec<String>,
    allow: Option<Vec<String>>,
    disabled: bool,
}

/// One host server → its gavel table, or `None` (with a note) when it
/// cannot be imported.
pub fn server(host: Host, root: &Value, name: &str, v: &Value, c: &mut Carried) -> Option<Server> {
    let Some(obj) = v.as_object() else {
        c.notes.push(format!("{name}: not an object; skipped"));
        return None;
    };
    let mut obj = obj.clone();
    if host == Host::Zed {
        if obj.get("source").and_then(Value::as_str) == Some("extension") {
            c.notes.push(format!(
                "{name}: provided by a Zed extension (no command in settings.json); left to Zed"
            ));
            return None;
        }
        // Zed's older form: "command": {"path", "args", "env"}.
        if let Some(Value::Object(cmd)) = obj.get("command").cloned() {
            obj.remove("command");
            for (k, v) in cmd {
                obj.insert(if k == "path" { "command".into() } else { k }, v);
            }
        }
    }
    if is_gavel(&obj) {
        c.notes
            .push(format!("{name}: already starts gavel; skipped"));
        return None;
    }
    let mut t = Table::new();
    let mut e = Entry::default();
    for (k, val) in &obj {
        carry(&mut t, &mut e, name, k, val, c);
    }
    finish(host, root, name, t, e, c)
}

/// The server's table completed from what its fields said.
fn finish(
    host: Host,
    root: &Value,
    name: &str,
    mut t: Table,
    e: Entry,
    c: &mut Carried,
) -> Option<Server> {
    let mut proxied = true;
    match (t.contains_key("command"), e.url) {
        (true, Some(_)) => c.notes.push(format!(
            "{name}: has both a command and a URL; the command is used"
        )),
        (false, Some(url)) => {
            let ty = e.ty.as_deref();
            let sse = ty == Some("sse")
                || (host == Host::Gemini
                    && e.url_key == "url"
                    && !matches!(ty, Some("http" | "streamable-http")))
                || (ty.is_none() && url.trim_end_matches('/').ends_with("/sse"));
            t.insert(
                "url".into(),
                toml::Value::String(c.convert(&url, &format!("{name}.url"))),
            );
            if sse {
                proxied = false;
                t.insert("enabled".into(), toml::Value::Boolean(false));
                c.notes.push(format!(
                    "{name}: legacy HTTP+SSE transport cannot be proxied (gavel speaks streamable HTTP upstream); imported disabled"
                ));
            }
        }
        (false, None) => {
            c.notes
                .push(format!("{name}: has neither a command nor a URL; skipped"));
            return None;
        }
        (true, None) => {}
    }
    if t.contains_key("url") {
        for k in ["args", "env", "cwd"] {
            if t.remove(k).is_some() {
                c.notes.push(format!(
                    "{name}.{k}: not used by a URL server; not carried over"
                ));
            }
        }
    } else if t.remove("headers").is_some() {
        c.notes.push(format!(
            "{name}.headers: not used by a command server; not carried over"
        ));
    }
    if e.disabled || !allowed_by_host(host, root, name) {
        t.insert("enabled".into(), toml::Value::Boolean(false));
    }
    if let Some(tools) = restrict::tools(&e.deny, e.allow.as_deref(), name, c) {
        t.insert("tools".into(), toml::Value::Table(tools));
    }
    Some(Server {
        host_name: name.to_string(),
        name: sanitize(name),
        table: t,
        proxied,
    })
}

/// Gemini CLI's server lists (`mcp.allowed`/`mcp.excluded`, formerly
/// `allowMCPServers`/`excludeMCPServers`): a server they keep out is
/// imported disabled.
fn allowed_by_host(host: Host, root: &Value, name: &str) -> bool {
    if host != Host::Gemini {
        return true;
    }
    let list = |p: &str| {
        root.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).any(|s| s == name))
    };
    let allowed = list("/mcp/allowed").or(list("/allowMCPServers"));
    let excluded = list("/mcp/excluded").or(list("/excludeMCPServers"));
    allowed != Some(false) && excluded != Some(true)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

/// A scalar as text (an `env` value written as a number or boolean).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn duration(v: &Value, unit_ms: f64) -> Option<toml::Value> {
    let ms = (v.as_f64()? * unit_ms).round();
    (1.0..1e12)
        .contains(&ms)
        .then(|| toml::Value::String(format!("{}ms", ms as u64)))
}

/// Codex's headers from the environment: `env_http_headers` (header →
/// variable) and `bearer_token_env_var` (`Authorization: Bearer $VAR`).
fn codex_headers(t: &mut Table, k: &str, val: &Value, c: &mut Carried) {
    let mut m = t
        .remove("headers")
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    let bearer = k == "bearer_token_env_var";
    let pairs: Vec<(String, &str)> = if bearer {
        val.as_str()
            .map(|var| ("Authorization".to_string(), var))
            .into_iter()
            .collect()
    } else {
        val.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(h, var)| Some((h.clone(), var.as_str()?)))
            .collect()
    };
    for (h, var) in pairs {
        c.require(var);
        let v = if bearer {
            format!("Bearer ${{{var}}}")
        } else {
            format!("${{{var}}}")
        };
        m.insert(h, toml::Value::String(v));
    }
    t.insert("headers".into(), toml::Value::Table(m));
}

/// `timeout` (milliseconds: Gemini, Cline), Codex's `tool_timeout_sec`,
/// `startup_timeout_sec` / `startup_timeout_ms`.
fn timeout(t: &mut Table, k: &str, val: &Value, field: &str, c: &mut Carried) {
    let unit = if k.ends_with("_sec") { 1000.0 } else { 1.0 };
    let key = if k.starts_with("startup") {
        "startup_timeout"
    } else {
        "call_timeout"
    };
    match duration(val, unit) {
        Some(d) => {
            t.insert(key.into(), d);
        }
        None => c.notes.push(format!(
            "{field}: not a duration ({}); not carried over",
            if unit > 1.0 {
                "seconds"
            } else {
                "milliseconds"
            }
        )),
    }
}

/// One field `k` of host server `name` into `t` (or `e`), or a note.
fn carry(t: &mut Table, e: &mut Entry, name: &str, k: &str, val: &Value, c: &mut Carried) {
    let field = format!("{name}.{k}");
    let s = |c: &mut Carried, v: &str| toml::Value::String(c.convert(v, &field));
    match k {
        "command" | "cwd" => match val.as_str() {
            Some(v) => {
                let v = s(c, v);
                t.insert(k.into(), v);
            }
            None => c.notes.push(format!("{field}: not a string; not carried over")),
        },
        "args" => {
            let args = strings(val).iter().map(|a| s(c, a)).collect();
            t.insert("args".into(), toml::Value::Array(args));
        }
        "env" | "headers" | "http_headers" => {
            let into = if k == "env" { "env" } else { "headers" };
            let mut m = t
                .remove(into)
                .and_then(|v| v.as_table().cloned())
                .unwrap_or_default();
            for (ek, ev) in val.as_object().into_iter().flatten() {
                if let Some(text) = scalar(ev) {
                    let sub = format!("{field}.{ek}");
                    m.insert(ek.clone(), toml::Value::String(c.convert(&text, &sub)));
                }
            }
            t.insert(into.into(), toml::Value::Table(m));
        }
        "env_http_headers" | "bearer_token_env_var" => codex_headers(t, k, val, c),
        "url" | "serverUrl" | "httpUrl" => {
            if let Some(u) = val.as_str()
                && (e.url.is_none() || k == "httpUrl")
            {
                e.url = Some(u.to_string());
                e.url_key = k.to_string();
            }
        }
        "type" | "transport" => e.ty = val.as_str().map(String::from),
        "disabled" => e.disabled |= val.as_bool() == Some(true),
        "enabled" => e.disabled |= val.as_bool() == Some(false),
        "timeout" | "tool_timeout_sec" | "startup_timeout_sec" | "startup_timeout_ms" => {
            timeout(t, k, val, &field, c)
        }
        "disabledTools" | "excludeTools" | "disabled_tools" => e.deny.extend(strings(val)),
        "includeTools" | "enabled_tools" => e.allow = Some(strings(val)),
        // What names the entry or is the host's own bookkeeping.
        "name" | "description" | "source" | "$schema" | "version" | "gallery" => {}
        "autoApprove" | "alwaysAllow" => c.notes.push(format!(
            "{field}: approvals are the host's; its entries through gavel are printed below"
        )),
        "trust" => c.notes.push(format!(
            "{field}: gavel's policy decides every call; the host's trust setting is not carried over"
        )),
        "env_vars" => c.notes.push(format!(
            "{field}: gavel passes its whole environment to the server, not only these variables"
        )),
        "envFile" => c.notes.push(format!(
            "{field}: env files are not supported by gavel; put the variables in env"
        )),
        _ => c.notes.push(format!(
            "{field}: not supported by gavel; not carried over"
        )),
    }
}

/// VS Code `inputs` the converted config reads: a note each, saying which
/// environment variable now carries it.
pub fn note_inputs(root: &Value, c: &mut Carried) {
    for i in root
        .get("inputs")
        .or_else(|| root.pointer("/mcp/inputs"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = i.get("id").and_then(Value::as_str)
            && c.inputs.iter().any(|x| x == id)
        {
            let var = super::vars::input_var(id);
            let desc = i.get("description").and_then(Value::as_str).unwrap_or("");
            c.notes.push(format!(
                "inputs.{id}: VS Code prompts for it; gavel reads it from ${var} ({desc})"
            ));
        }
    }
}

/// The one server entry that starts gavel on `config_out`, in `host`'s shape.
pub fn host_entry(host: Host, config_out: &Path, gavel_command: &str) -> Value {
    let args = json!(["run", "--config", config_out.display().to_string()]);
    match host {
        Host::Vscode | Host::ClaudeCode => {
            json!({"type": "stdio", "command": gavel_command, "args": args})
        }
        Host::Continue => json!({"name": "gavel", "command": gavel_command, "args": args}),
        _ => json!({"command": gavel_command, "args": args}),
    }
}
