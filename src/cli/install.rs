//! `gavel install --host H`: import the host's servers into a servers.toml
//! (`cli::import`), then rewrite the host's own config in place so the host
//! launches gavel instead of them; `gavel uninstall --host H` puts the
//! original back, byte for byte.
//!
//! Why it is built this way:
//! - the original is copied to a timestamped backup before anything is
//!   written, and a record beside the config (`FILE.gavel-install.json`:
//!   backup, servers.toml, digest of what install wrote) is what makes
//!   install idempotent (the same config installed → nothing to do) and
//!   uninstall safe (a config edited since install is not overwritten
//!   without `--force`, and then the edited one is kept too);
//! - only the servers object changes: JSONC configs are edited through their
//!   syntax tree and Codex's TOML through `toml_edit`, so every comment and
//!   every other setting stays where it was;
//! - servers gavel cannot proxy (legacy SSE, extension-provided) stay in the
//!   host config, and the user is told.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use sha2::Digest;

use super::import::{self, Host, Imported};
use super::say;

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// The host whose config to rewrite (`continue`: use `gavel import`).
    #[arg(long, value_enum)]
    pub host: Host,
    /// The host's config file (default: the host's usual place; docs/config.md).
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// Where to write the servers.toml (default: gavel-servers.toml beside the host config).
    #[arg(long, value_name = "PATH")]
    pub servers: Option<PathBuf>,
    /// Show what would be written; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite an existing servers.toml.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct UninstallArgs {
    /// The host whose config `gavel install` rewrote.
    #[arg(long, value_enum)]
    pub host: Host,
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// Show what would be restored; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore even if the host config changed since install (the changed
    /// file is kept beside it).
    #[arg(long)]
    pub force: bool,
}

/// What install leaves beside the host config, for uninstall.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    host: String,
    backup: PathBuf,
    servers: PathBuf,
    /// SHA-256 of the host config as install wrote it.
    installed_sha256: String,
}

fn record_path(config: &Path) -> PathBuf {
    sibling(config, ".gavel-install.json")
}

fn sibling(config: &Path, suffix: &str) -> PathBuf {
    let mut s = config.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A file name part for now: `20261207T043000Z`.
fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// `config` + `.gavel-<what>-<stamp>`, not yet taken.
fn fresh(config: &Path, what: &str) -> PathBuf {
    let base = sibling(config, &format!(".gavel-{what}-{}", stamp()));
    (1..)
        .map(|i| {
            if i == 1 {
                base.clone()
            } else {
                sibling(&base, &format!("-{i}"))
            }
        })
        .find(|p| !p.exists())
        .expect("a free name")
}

fn read_record(config: &Path) -> anyhow::Result<Option<Record>> {
    let path = record_path(config);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: not a gavel install record", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn host_flag(host: Host) -> String {
    use clap::ValueEnum;
    host.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The host's config file: `--config-file`, else where the host keeps it.
fn config_file(host: Host, given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => default_location(host)?,
    };
    if !path.is_file() {
        bail!(
            "{}: no such file ({}'s config); pass --config-file PATH",
            path.display(),
            host.label()
        );
    }
    // A config that is a symlink (a dotfiles checkout) is rewritten where it
    // points, so the link survives.
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// Where each host keeps its MCP config (docs/config.md, "gavel install").
fn default_location(host: Host) -> anyhow::Result<PathBuf> {
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let home = env("HOME")
        .or_else(|| env("USERPROFILE"))
        .context("neither HOME nor USERPROFILE is set; pass --config-file")?;
    let mac = cfg!(target_os = "macos");
    let win = cfg!(windows);
    let appdata = || env("APPDATA").unwrap_or_else(|| home.join("AppData/Roaming"));
    let xdg = env("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
    Ok(match host {
        Host::ClaudeDesktop if mac => {
            home.join("Library/Application Support/Claude/claude_desktop_config.json")
        }
        Host::ClaudeDesktop if win => appdata().join("Claude/claude_desktop_config.json"),
        Host::ClaudeDesktop => xdg.join("Claude/claude_desktop_config.json"),
        Host::ClaudeCode => PathBuf::from(".mcp.json"),
        Host::Cursor => home.join(".cursor/mcp.json"),
        Host::Vscode => PathBuf::from(".vscode/mcp.json"),
        Host::Windsurf => home.join(".codeium/windsurf/mcp_config.json"),
        Host::Zed if win => appdata().join("Zed/settings.json"),
        Host::Zed => xdg.join("zed/settings.json"),
        Host::Codex => env("CODEX_HOME")
            .unwrap_or_else(|| home.join(".codex"))
            .join("config.toml"),
        Host::Gemini => home.join(".gemini/settings.json"),
        Host::Continue => bail!(
            "gavel install does not rewrite Continue's YAML; run `gavel import` on it and add the printed entry"
        ),
    })
}

/// `gavel install`.
pub fn install(args: InstallArgs) -> anyhow::Result<()> {
    if args.host == Host::Continue {
        default_location(Host::Continue)?;
    }
    let config = config_file(args.host, args.config_file)?;
    let text = import::read(&config)?;
    if let Some(rec) = read_record(&config)? {
        if sha256(text.as_bytes()) == rec.installed_sha256 {
            say(format!(
                "{} already launches gavel on {}: nothing changed.",
                config.display(),
                rec.servers.display()
            ));
            return Ok(());
        }
        bail!(
            "{} changed since gavel was installed into it (the original is in {}); run `gavel uninstall --host {}` first",
            config.display(),
            rec.backup.display(),
            host_flag(args.host)
        );
    }
    let servers = args
        .servers
        .unwrap_or_else(|| config.with_file_name("gavel-servers.toml"));
    let servers = std::path::absolute(&servers).unwrap_or(servers);
    if servers.exists() && !args.force && !args.dry_run {
        bail!(
            "{} exists; pass --force to overwrite it, or --servers PATH",
            servers.display()
        );
    }
    let imported = import::import(&text, &config, Some(args.host))?;
    import::check_loads(&imported, &servers)?;
    let parsed = import::parse(&text, &config, Some(args.host))?;
    let entry = import::host_entry(args.host, &servers);
    let moved: Vec<&str> = imported
        .servers
        .iter()
        .filter(|s| s.proxied)
        .map(|s| s.host_name.as_str())
        .collect();
    let new_text = rewrite(args.host, &text, &parsed.key, &moved, &entry)
        .with_context(|| format!("rewriting {}", config.display()))?;
    if args.dry_run {
        say(format!(
            "# {} (not written)\n{}",
            servers.display(),
            imported.toml
        ));
        say(format!(
            "# {} would become (not written):\n{new_text}",
            config.display()
        ));
        import::report(&imported);
        return Ok(());
    }
    let backup = write_install(&config, &text, &new_text, &imported, &servers, args.host)?;
    say(format!(
        "{} now launches gavel on {} ({} servers moved there). The original is in {}; `gavel uninstall --host {}` restores it.",
        config.display(),
        servers.display(),
        moved.len(),
        backup.display(),
        host_flag(args.host)
    ));
    left_in_host(&imported);
    import::report(&imported);
    gemini_allow_list(args.host, &parsed.root);
    Ok(())
}

/// Writes, in this order, the backup of the original, the servers.toml, the
/// install record and the rewritten host config (so a crash part-way never
/// leaves a rewritten config without its backup and record); the backup's path.
fn write_install(
    config: &Path,
    text: &str,
    new_text: &str,
    imported: &Imported,
    servers: &Path,
    host: Host,
) -> anyhow::Result<PathBuf> {
    let backup = fresh(config, "backup");
    let mode = import::mode_of(config);
    let private = mode & import::OWNER_ONLY;
    import::write_private(&backup, text.as_bytes(), private)
        .with_context(|| format!("writing the backup {}", backup.display()))?;
    import::write_private(servers, imported.toml.as_bytes(), private)
        .with_context(|| format!("writing {}", servers.display()))?;
    let record = Record {
        host: host_flag(host),
        backup: backup.clone(),
        servers: servers.to_path_buf(),
        installed_sha256: sha256(new_text.as_bytes()),
    };
    crate::atomic_file::write(&record_path(config), &serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", record_path(config).display()))?;
    import::write_private(config, new_text.as_bytes(), mode)
        .with_context(|| format!("writing {}", config.display()))?;
    Ok(backup)
}

/// Says which servers stay in the host config, not behind gavel.
fn left_in_host(imported: &Imported) {
    let kept: Vec<&str> = imported
        .servers
        .iter()
        .filter(|s| !s.proxied)
        .map(|s| s.host_name.as_str())
        .chain(imported.skipped.iter().map(String::as_str))
        .collect();
    if !kept.is_empty() {
        say(format!(
            "warning: left in the host config, NOT behind gavel's policy: {}",
            kept.join(", ")
        ));
    }
}

/// Gemini CLI starts only the servers its allow-list names.
fn gemini_allow_list(host: Host, root: &Value) {
    if host != Host::Gemini {
        return;
    }
    for p in ["/mcp/allowed", "/allowMCPServers"] {
        if let Some(list) = root.pointer(p).and_then(Value::as_array)
            && !list.iter().any(|v| v == "gavel")
        {
            say(format!(
                "warning: {} does not name \"gavel\": add it, or Gemini CLI will not start gavel",
                p.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
}

/// The host config with the `moved` servers replaced by the gavel entry.
fn rewrite(
    host: Host,
    text: &str,
    key: &[String],
    moved: &[&str],
    entry: &Value,
) -> anyhow::Result<String> {
    if host == Host::Codex {
        return rewrite_toml(text, moved, entry);
    }
    let root = import::jsonc::tree(text).map_err(anyhow::Error::msg)?;
    let mut obj = root
        .object_value()
        .context("the file is not a JSON object")?;
    for k in key {
        obj = obj
            .get(k)
            .and_then(|p| p.value())
            .and_then(|v| v.as_object())
            .with_context(|| format!("\"{k}\" is not an object"))?;
    }
    for prop in obj.properties() {
        let name = prop.name().and_then(|n| n.decoded_value().ok());
        if name.is_some_and(|n| moved.contains(&n.as_str())) {
            prop.remove();
        }
    }
    match obj.get("gavel") {
        Some(p) => p.set_value(import::jsonc::input(entry)),
        None => {
            obj.append("gavel", import::jsonc::input(entry));
        }
    }
    Ok(root.to_string())
}

/// Codex's config.toml with `[mcp_servers.gavel]` in place of the moved servers.
fn rewrite_toml(text: &str, moved: &[&str], entry: &Value) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("not valid TOML")?;
    let servers = doc
        .get_mut("mcp_servers")
        .and_then(|i| i.as_table_mut())
        .context("[mcp_servers] is not a table")?;
    for name in moved {
        servers.remove(name);
    }
    let mut t = toml_edit::Table::new();
    t.insert(
        "command",
        toml_edit::value(entry["command"].as_str().unwrap_or("gavel")),
    );
    let mut args = toml_edit::Array::new();
    for a in entry["args"].as_array().into_iter().flatten() {
        args.push(a.as_str().unwrap_or_default());
    }
    t.insert("args", toml_edit::value(args));
    servers.insert("gavel", toml_edit::Item::Table(t));
    Ok(doc.to_string())
}

/// `gavel uninstall`.
pub fn uninstall(args: UninstallArgs) -> anyhow::Result<()> {
    let config = config_file(args.host, args.config_file)?;
    let Some(rec) = read_record(&config)? else {
        bail!(
            "{}: gavel was not installed into it (no {})",
            config.display(),
            record_path(&config).display()
        );
    };
    if rec.host != host_flag(args.host) {
        bail!(
            "{}: gavel was installed into it as a {} config (--host {}), not --host {}",
            config.display(),
            rec.host,
            rec.host,
            host_flag(args.host)
        );
    }
    let original = std::fs::read(&rec.backup)
        .with_context(|| format!("reading the backup {}", rec.backup.display()))?;
    let current =
        std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
    let changed = sha256(&current) != rec.installed_sha256;
    if changed && !args.force {
        bail!(
            "{} changed since gavel was installed into it; `--force` restores the original from {} anyway (the current file is kept beside it)",
            config.display(),
            rec.backup.display()
        );
    }
    if args.dry_run {
        say(format!(
            "# {} would be restored from {} (not written):\n{}",
            config.display(),
            rec.backup.display(),
            String::from_utf8_lossy(&original)
        ));
        return Ok(());
    }
    if changed {
        let keep = fresh(&config, "uninstalled");
        import::write_private(
            &keep,
            &current,
            import::mode_of(&config) & import::OWNER_ONLY,
        )
        .with_context(|| format!("writing {}", keep.display()))?;
        say(format!("The changed config is kept in {}.", keep.display()));
    }
    import::write_private(&config, &original, import::mode_of(&config))
        .with_context(|| format!("writing {}", config.display()))?;
    std::fs::remove_file(record_path(&config))
        .with_context(|| format!("removing {}", record_path(&config).display()))?;
    say(format!(
        "Restored {} from {}. {} is left in place.",
        config.display(),
        rec.backup.display(),
        rec.servers.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({"command": "/bin/gavel", "args": ["run", "--config", "/s.toml"]})
    }

    #[test]
    fn jsonc_rewrite_keeps_comments_and_the_servers_not_moved() {
        let text = "// top\n{\n  \"mcpServers\": {\n    // fs\n    \"fs\": {\"command\": \"a\"},\n    \"old\": {\"url\": \"https://x/sse\"},\n  },\n  \"other\": 1, // kept\n}\n";
        let out = rewrite(
            Host::Cursor,
            text,
            &["mcpServers".into()],
            &["fs"],
            &entry(),
        )
        .unwrap();
        assert!(
            out.starts_with("// top\n{") && out.contains("\"other\": 1, // kept"),
            "{out}"
        );
        let v = import::jsonc::parse(&out).unwrap();
        let keys: Vec<&String> = v["mcpServers"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["gavel", "old"]);
        assert!(
            out.find("\"command\"").unwrap() < out.find("\"args\"").unwrap(),
            "{out}"
        );
        // An entry already named gavel is replaced, not doubled.
        let again = rewrite(Host::Cursor, &out, &["mcpServers".into()], &[], &entry()).unwrap();
        assert_eq!(again.matches("\"gavel\"").count(), 1, "{again}");
    }

    #[test]
    fn toml_rewrite_keeps_comments() {
        let text = "# mine\nmodel = \"m\"\n\n[mcp_servers.a]\ncommand = \"a\" # inline\n\n[mcp_servers.b]\nurl = \"https://b/mcp\"\n";
        let out = rewrite(Host::Codex, text, &["mcp_servers".into()], &["a"], &entry()).unwrap();
        assert!(out.starts_with("# mine\nmodel = \"m\""), "{out}");
        let t: toml::Table = toml::from_str(&out).unwrap();
        let keys: Vec<&String> = t["mcp_servers"].as_table().unwrap().keys().collect();
        assert_eq!(keys, ["b", "gavel"]);
        assert_eq!(
            t["mcp_servers"]["gavel"]["command"].as_str(),
            Some("/bin/gavel")
        );
    }

    #[test]
    fn backups_get_fresh_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        let a = fresh(&f, "backup");
        std::fs::write(&a, "x").unwrap();
        let b = fresh(&f, "backup");
        assert_ne!(a, b);
        assert!(
            a.to_string_lossy().contains("c.json.gavel-backup-2"),
            "{}",
            a.display()
        );
    }
}
