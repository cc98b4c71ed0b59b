//! Codex CLI's `config.toml`: `[mcp_servers.NAME]` tables (`command`,
//! `args`, `env`, `cwd`, `url`, `bearer_token_env_var`, `http_headers`,
//! `env_http_headers`, `enabled`, `enabled_tools`/`disabled_tools`,
//! `startup_timeout_sec`, `tool_timeout_sec`), read into the JSON shape
//! `fields` carries. Codex does not expand variables in it.

use serde_json::Value;

use super::{Host, Parsed};

/// `Ok(None)`: TOML, but without `[mcp_servers]`.
pub fn parse(text: &str) -> Result<Option<Parsed>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
    let root = serde_json::to_value(&table).map_err(|e| e.to_string())?;
    let Some(servers) = root.get("mcp_servers").and_then(Value::as_object) else {
        return Ok(None);
    };
    let servers = servers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Some(Parsed {
        host: Host::Codex,
        servers,
        key: vec!["mcp_servers".into()],
        root,
    }))
}
