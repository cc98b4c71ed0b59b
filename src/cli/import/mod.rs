//! `gavel import`: an agent host's MCP config → a servers.toml that means
//! what the host config meant: its variables in gavel's syntax (`vars`), its
//! remote servers kept, its tool restrictions as `tools.allow`/`tools.deny`
//! (never wider), and everything that could not be carried over named.
//!
//! One file per format: `jsonc` (reading JSON with comments, bounded),
//! `fields` (the server entries of the JSON hosts: Claude Desktop, Claude
//! Code, Cursor, VS Code, Windsurf, Gemini CLI, Zed), `codex` (TOML),
//! `continue_yaml` (Continue); `restrict` translates tool lists,
//! `permissions` rewrites the host's own permission entries for the names
//! gavel gives tools. `gavel install` (`cli/install.rs`) builds on this.

mod codex;
mod continue_yaml;
mod fields;
pub mod jsonc;
mod permissions;
mod restrict;
mod vars;

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use toml::Table;

pub use vars::Syntax;

use super::say;

/// The hosts whose configs gavel reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Host {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    Vscode,
    Windsurf,
    Zed,
    Codex,
    Gemini,
    Continue,
}

impl Host {
    pub fn label(self) -> &'static str {
        match self {
            Host::ClaudeDesktop => "Claude Desktop",
            Host::ClaudeCode => "Claude Code",
            Host::Cursor => "Cursor",
            Host::Vscode => "VS Code",
            Host::Windsurf => "Windsurf",
            Host::Zed => "Zed",
            Host::Codex => "Codex CLI",
            Host::Gemini => "Gemini CLI",
            Host::Continue => "Continue",
        }
    }

    /// The host a file's name and place suggest, if they do.
    fn guess(path: &Path) -> Option<Host> {
        let name = path.file_name()?.to_str()?;
        let dir = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|d| d.to_str())
            .unwrap_or("");
        Some(match (dir, name) {
            (_, "claude_desktop_config.json") => Host::ClaudeDesktop,
            (_, ".mcp.json" | ".claude.json") => Host::ClaudeCode,
            (".cursor", "mcp.json") => Host::Cursor,
            (".vscode" | "User", "mcp.json" | "settings.json") => Host::Vscode,
            (_, "mcp_config.json") => Host::Windsurf,
            (".gemini", "settings.json") => Host::Gemini,
            ("zed", "settings.json") => Host::Zed,
            (".codex", "config.toml") => Host::Codex,
            (_, n) if n.ends_with(".yaml") || n.ends_with(".yml") => Host::Continue,
            _ => return None,
        })
    }

    /// The variable syntax of this host's config at `source`.
    fn syntax(self, source: &Path) -> Syntax {
        match self {
            Host::ClaudeCode => Syntax::ClaudeCode,
            Host::Cursor | Host::Vscode | Host::Windsurf => Syntax::vscode(source),
            Host::Gemini => Syntax::Gemini,
            Host::Continue => Syntax::Continue,
            Host::ClaudeDesktop | Host::Zed | Host::Codex => Syntax::Literal,
        }
    }
}

/// What a conversion gathers besides the servers: notes on what was not
/// carried over, the environment variables the result reads, VS Code inputs.
pub struct Carried {
    syntax: Syntax,
    pub notes: Vec<String>,
    pub required: Vec<String>,
    inputs: Vec<String>,
}

impl Carried {
    fn new(syntax: Syntax) -> Self {
        Carried {
            syntax,
            notes: Vec::new(),
            required: Vec::new(),
            inputs: Vec::new(),
        }
    }
}

/// One host server as gavel will run it.
pub struct Server {
    /// Its name in the host config.
    pub host_name: String,
    /// Its `[servers.NAME]` name.
    pub name: String,
    pub table: Table,
    /// gavel can proxy it (a legacy HTTP+SSE server cannot: `gavel install`
    /// leaves it in the host config).
    pub proxied: bool,
}

/// A host config, converted.
pub struct Imported {
    pub host: Host,
    pub servers: Vec<Server>,
    /// Host entries not imported at all (left in the host config by install).
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
    pub required_env: Vec<String>,
    /// The host's own permission entries rewritten for gavel's names.
    pub permissions: Vec<String>,
    /// The servers.toml text.
    pub toml: String,
    /// The keys down to the servers in the host config.
    pub key: Vec<String>,
}

impl Imported {
    /// Servers that will be enabled (they decide whether names get a prefix).
    pub fn enabled(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.table.get("enabled") != Some(&toml::Value::Boolean(false)))
            .count()
    }
}

/// A parsed host config: which host, its servers as JSON objects (a TOML or
/// YAML config is read into the same shape), and the whole document.
pub struct Parsed {
    pub host: Host,
    pub servers: Vec<(String, Value)>,
    /// The keys down to the servers (`["mcp", "servers"]`).
    pub key: Vec<String>,
    pub root: Value,
}

/// Host configs are small; a bigger file is not one.
pub const MAX_CONFIG_BYTES: usize = 8 << 20;

/// Reads `source` as `host`'s config (or guesses the host), naming every
/// format tried when none fits.
pub fn parse(text: &str, source: &Path, host: Option<Host>) -> anyhow::Result<Parsed> {
    if text.len() > MAX_CONFIG_BYTES {
        bail!(
            "{}: {} bytes is larger than any host config ({} MiB at most)",
            source.display(),
            text.len(),
            MAX_CONFIG_BYTES >> 20
        );
    }
    let host = host.or_else(|| Host::guess(source));
    let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut tried = Vec::new();
    let formats: &[&str] = match (host, ext) {
        (Some(Host::Codex), _) | (None, "toml") => &["toml"],
        (Some(Host::Continue), _) | (None, "yaml" | "yml") => &["yaml"],
        (Some(_), _) => &["json"],
        (None, _) => &["json", "toml", "yaml"],
    };
    for f in formats {
        let found = match *f {
            "json" => jsonc::parse(text).map(|root| fields::find(root, host)),
            "toml" => codex::parse(text),
            _ => continue_yaml::parse(text),
        };
        match found {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => tried.push(format!("{}: parsed, but {}", label(f), expected(f))),
            Err(e) => tried.push(format!("{}: {e}", label(f))),
        }
    }
    bail!(
        "{}: not an MCP host config{}. Tried:\n  - {}",
        source.display(),
        host.map(|h| format!(" for {}", h.label()))
            .unwrap_or_default(),
        tried.join("\n  - ")
    )
}

fn label(format: &str) -> &'static str {
    match format {
        "json" => {
            "JSON/JSONC (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf, Gemini CLI, Zed)"
        }
        "toml" => "TOML (Codex CLI config.toml)",
        _ => "YAML (Continue)",
    }
}

fn expected(format: &str) -> &'static str {
    match format {
        "json" => {
            "it has no \"mcpServers\" object, no \"servers\" or \"mcp\": {\"servers\"} (VS Code) and no \"context_servers\" (Zed)"
        }
        "toml" => "it has no [mcp_servers.NAME] table",
        _ => "it has no mcpServers list",
    }
}

/// Converts the host config `text` read from `source`.
pub fn import(text: &str, source: &Path, host: Option<Host>) -> anyhow::Result<Imported> {
    let parsed = parse(text, source, host)?;
    let mut carried = Carried::new(parsed.host.syntax(source));
    if host.is_none() && Host::guess(source).is_none() {
        carried.notes.push(format!(
            "read as a {} config (told by its contents); hosts read variables and some fields differently: pass --host if it is another host's",
            parsed.host.label()
        ));
    }
    let mut servers: Vec<Server> = Vec::new();
    let mut skipped = Vec::new();
    for (host_name, v) in &parsed.servers {
        match fields::server(parsed.host, &parsed.root, host_name, v, &mut carried) {
            Some(mut s) => {
                s.name = unique(&s.name, &servers);
                if s.name != *host_name {
                    carried.notes.push(format!(
                        "{host_name}: named {:?} in gavel (letters, digits, '-' and '_', unique)",
                        s.name
                    ));
                }
                servers.push(s)
            }
            None => skipped.push(host_name.clone()),
        }
    }
    if servers.is_empty() {
        bail!(
            "{}: no server of this {} config can be imported{}",
            source.display(),
            parsed.host.label(),
            if carried.notes.is_empty() {
                String::new()
            } else {
                format!(":\n  - {}", carried.notes.join("\n  - "))
            }
        );
    }
    fields::note_inputs(&parsed.root, &mut carried);
    let toml = render(&servers, source, parsed.host)?;
    let mut imported = Imported {
        host: parsed.host,
        servers,
        skipped,
        notes: carried.notes,
        required_env: carried.required,
        permissions: Vec::new(),
        toml,
        key: parsed.key.clone(),
    };
    imported.permissions = permissions::rewritten(&imported, &parsed, source);
    Ok(imported)
}

/// `name`, or `name-2`, `name-3`… if an earlier server took it.
fn unique(name: &str, taken: &[Server]) -> String {
    let free = |n: &str| !taken.iter().any(|s| s.name == n);
    if free(name) {
        return name.to_string();
    }
    (2..)
        .map(|i| {
            let mut base = name.to_string();
            base.truncate(28);
            format!("{base}-{i}")
        })
        .find(|n| free(n))
        .expect("an unused name")
}

fn render(servers: &[Server], source: &Path, host: Host) -> anyhow::Result<String> {
    let mut t = Table::new();
    for s in servers {
        t.insert(s.name.clone(), toml::Value::Table(s.table.clone()));
    }
    let mut out = Table::new();
    out.insert("servers".into(), toml::Value::Table(t));
    let body = toml::to_string_pretty(&out).context("rendering servers.toml")?;
    Ok(format!(
        "# Imported by `gavel import` from {} ({}).\n# Review, add policy (docs/config.md), then point your host at gavel.\n\n{body}",
        crate::text::escape_controls(&source.display().to_string()),
        host.label()
    ))
}

/// The gavel binary a host entry should start: this one.
pub fn gavel_command() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(String::from))
        .unwrap_or_else(|| "gavel".into())
}

/// Refuses a generated servers.toml that gavel itself would not load. The
/// variables it reads are not known here, so it is loaded with the variables
/// unset (defaults apply) and the required ones set to a word, then to a URL
/// (a variable may be a whole `url`): it must load with one of them.
pub fn check_loads(imported: &Imported, out: &Path) -> anyhow::Result<()> {
    let required = |v: &str, value: &str| {
        imported
            .required_env
            .iter()
            .any(|r| r == v)
            .then(|| value.to_string())
    };
    type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
    let envs: [Env; 3] = [&|v| required(v, "x"), &|_| Some("x".into()), &|v| {
        required(v, "https://x.example")
    }];
    let mut first = None;
    for env in envs {
        match crate::config::Config::from_toml_str(&imported.toml, out, env) {
            Ok(_) => return Ok(()),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    bail!(
        "the servers.toml converted from this config does not load: {}",
        first.expect("tried")
    )
}

/// What the user must know about an import: notes, variables, the names
/// tools get, rewritten permission entries.
pub fn report(imported: &Imported) {
    if imported.notes.is_empty() {
        say("Every field was carried over.");
    } else {
        say("Not carried over as it was:");
        for n in &imported.notes {
            say(format!("  - {}", crate::text::escape_controls(n)));
        }
    }
    if !imported.required_env.is_empty() {
        say(format!(
            "Set these environment variables for gavel: {}",
            imported.required_env.join(", ")
        ));
    }
    if imported.enabled() > 1 {
        say(format!(
            "warning: {} servers are enabled, so gavel names their tools and prompts SERVER__NAME (e.g. {}__<tool>): anything that names a tool (host permissions, prompts, scripts) must use the new names.",
            imported.enabled(),
            imported.servers[0].name
        ));
    }
    if !imported.permissions.is_empty() {
        say("Host permission entries, rewritten for the tools' names through gavel:");
        for p in &imported.permissions {
            say(format!("  {}", crate::text::escape_controls(p)));
        }
    }
}

/// `gavel import FILE -o OUT [--host H] [--force]`.
pub fn run(file: &Path, output: &Path, force: bool, host: Option<Host>) -> anyhow::Result<()> {
    let text = read(file)?;
    if output.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", output.display());
    }
    let abs_out = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    let imported = import(&text, file, host)?;
    check_loads(&imported, &abs_out)?;
    write_private(&abs_out, imported.toml.as_bytes(), OWNER_ONLY)
        .with_context(|| format!("writing {}", abs_out.display()))?;
    say(format!(
        "Wrote {} ({} servers from a {} config).",
        abs_out.display(),
        imported.servers.len(),
        imported.host.label()
    ));
    report(&imported);
    say(format!(
        "\nReplace the servers in your host config with this one entry (or run `gavel install --host …`):\n{}",
        entry_text(&imported, &abs_out)?
    ));
    Ok(())
}

/// The one server entry that starts gavel on `config_out`, in `host`'s shape.
pub fn host_entry(host: Host, config_out: &Path) -> Value {
    fields::host_entry(host, config_out, &gavel_command())
}

/// The gavel entry as it is written in the host's config format.
fn entry_text(imported: &Imported, out: &Path) -> anyhow::Result<String> {
    let entry = host_entry(imported.host, out);
    Ok(match imported.host {
        Host::Codex => {
            let mut gavel = Table::new();
            gavel.insert("gavel".into(), toml::Value::try_from(&entry)?);
            let mut root = Table::new();
            root.insert("mcp_servers".into(), toml::Value::Table(gavel));
            toml::to_string(&root)?
        }
        Host::Continue => yaml_serde::to_string(&serde_json::json!({"mcpServers": [entry]}))?,
        _ => {
            let mut v = serde_json::json!({"gavel": entry});
            for k in imported.key.iter().rev() {
                v = serde_json::json!({ k.as_str(): v });
            }
            serde_json::to_string_pretty(&v)?
        }
    })
}

/// Mode of what holds a host config's secrets (its env and headers): the
/// servers.toml and the backup.
pub const OWNER_ONLY: u32 = 0o600;

/// Writes `bytes` to `path` as `atomic_file::write` does (a synced temporary
/// file renamed over it), the temporary file created with `mode` (Unix) so
/// the secrets a host config holds are never readable by others, not even
/// for a moment.
pub fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    crate::atomic_file::write_with_mode(path, bytes, Some(mode))
}

/// The permission bits of `path` (Unix), for writing it back as it was.
pub fn mode_of(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(OWNER_ONLY)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        OWNER_ONLY
    }
}

/// A host config's text, bounded.
pub fn read(file: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    if meta.len() > MAX_CONFIG_BYTES as u64 {
        bail!(
            "{}: {} bytes is larger than any host config",
            file.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

#[cfg(test)]
mod tests;
