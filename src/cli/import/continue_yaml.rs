//! Continue's YAML config (`config.yaml`, or a block file in
//! `.continue/mcpServers/`): `mcpServers` is a *list* of entries with a
//! `name` (`command`, `args`, `env`, `cwd`, `type`, `url`), read into the JSON
//! shape `fields` carries. `${{ secrets.NAME }}` is handled by `vars`.

use serde_json::Value;

use super::{Host, Parsed};

/// `Ok(None)`: YAML, but without an `mcpServers` list.
pub fn parse(text: &str) -> Result<Option<Parsed>, String> {
    let root: Value = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let Some(list) = root.get("mcpServers").and_then(Value::as_array) else {
        return Ok(None);
    };
    let servers = list
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("server-{}", i + 1));
            (name, s.clone())
        })
        .collect();
    Ok(Some(Parsed {
        host: Host::Continue,
        servers,
        key: vec!["mcpServers".into()],
        root,
    }))
}
