//! `[agent_tools]`: gavel's own tools and resources beside the upstreams'
//! (`gavel__check`, `gavel__limits`, `gavel__why`, the `gavel://policy/…`
//! resources), off unless enabled. `gavel policy-server` serves them alone
//! whatever this table says (it sets [`AgentToolsMode::Only`]).

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Ctx, ServerConfig};

/// `[agent_tools]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgentTools {
    pub enabled: Option<Spanned<bool>>,
}

/// Whether a session offers gavel's agent tools, and beside what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentToolsMode {
    /// Not offered (the default): `tools/list` shows the upstreams' tools only.
    #[default]
    Off,
    /// `[agent_tools] enabled = true`: beside the upstreams' tools.
    Beside,
    /// `gavel policy-server`: the agent tools only; upstream tools are never
    /// listed or called (upstreams still start: their lists are what a
    /// `check` decides against).
    Only,
}

impl AgentToolsMode {
    pub fn enabled(self) -> bool {
        self != AgentToolsMode::Off
    }
}

/// The reserved name prefix of the agent tools (`gavel__check`, …): a
/// server whose `prefix` is `gavel` would put every one of its tools under
/// it, all withheld — refused here, where it can be fixed.
pub(super) fn parse(
    ctx: &Ctx,
    raw: &RawAgentTools,
    servers: &std::collections::BTreeMap<String, ServerConfig>,
) -> Result<AgentToolsMode, ConfigError> {
    let Some(enabled) = &raw.enabled else {
        return Ok(AgentToolsMode::Off);
    };
    if !*enabled.get_ref() {
        return Ok(AgentToolsMode::Off);
    }
    if servers.values().filter(|s| s.enabled).count() > 1
        && let Some(s) = servers
            .values()
            .find(|s| s.enabled && s.prefix.eq_ignore_ascii_case("gavel"))
    {
        return Err(ctx.at(
            enabled.span().start,
            "agent_tools.enabled",
            format!(
                "server {:?} has the prefix \"gavel\", which [agent_tools] reserves for gavel's own tools (gavel__check, …); give it another prefix (servers.{}.prefix)",
                s.name, s.name
            ),
        ));
    }
    Ok(AgentToolsMode::Beside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, std::path::Path::new("/x/servers.toml"), &|_| None)
    }

    #[test]
    fn off_unless_enabled_and_the_gavel_prefix_is_refused_while_on() {
        let two =
            "[servers.a]\ncommand = \"x\"\n\n[servers.b]\ncommand = \"x\"\nprefix = \"gavel\"\n";
        assert_eq!(load(two).unwrap().agent_tools, AgentToolsMode::Off);
        let off = format!("[agent_tools]\nenabled = false\n\n{two}");
        assert_eq!(load(&off).unwrap().agent_tools, AgentToolsMode::Off);
        let on = format!("[agent_tools]\nenabled = true\n\n{two}");
        let e = load(&on).unwrap_err().to_string();
        assert!(
            e.contains("agent_tools.enabled") && e.contains("servers.b.prefix"),
            "{e}"
        );
        // One server is never prefixed: its name cannot reach the reserved space.
        let one = "[agent_tools]\nenabled = true\n\n[servers.gavel]\ncommand = \"x\"\n";
        assert_eq!(load(one).unwrap().agent_tools, AgentToolsMode::Beside);
        let unknown = "[agent_tools]\nenable = true\n";
        assert!(load(unknown).unwrap_err().to_string().contains("enable"));
    }
}
