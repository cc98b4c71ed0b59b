//! `gavel import`: write the servers.toml converted from an agent host's
//! MCP config (`config::import`) and say what to do next.

use std::path::Path;

use anyhow::Context;

use super::say;

pub fn run(file: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if output.exists() && !force {
        anyhow::bail!("{} exists; pass --force to overwrite it", output.display());
    }
    let gavel = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(String::from))
        .unwrap_or_else(|| "gavel".into());
    let abs_out = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    let r = crate::config::import::import_host_config(&text, file, &abs_out, &gavel)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Refuse to write something gavel itself would not load.
    crate::config::Config::from_toml_str(&r.toml, &abs_out, &|_| Some(String::new()))
        .map_err(|e| anyhow::anyhow!("internal error: the generated config does not load: {e}"))?;
    crate::atomic_file::write(&abs_out, r.toml.as_bytes())
        .with_context(|| format!("writing {}", abs_out.display()))?;
    say(format!("Wrote {}.", abs_out.display()));
    if r.not_carried.is_empty() {
        say("Every field was carried over.");
    } else {
        say("Not carried over:");
        for n in &r.not_carried {
            say(format!("  - {n}"));
        }
    }
    if !r.required_env.is_empty() {
        say(format!(
            "Set these environment variables for gavel: {}",
            r.required_env.join(", ")
        ));
    }
    say(format!(
        "\nReplace the servers in your host config with this one entry:\n{}",
        serde_json::to_string_pretty(&r.host_entry)?
    ));
    Ok(())
}
