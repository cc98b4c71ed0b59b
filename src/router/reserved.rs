//! The names gavel keeps for its own agent tools (`[agent_tools]`,
//! `gavel policy-server`): tool names under the prefix `gavel__` and
//! resource URIs under `gavel://`. While the agent tools are on, an
//! upstream's tool or resource with such a name is withheld and logged,
//! like a name collision: the agent must never mistake an upstream's tool
//! for gavel's answer about its own policy. Compared without regard to
//! ASCII case (`GAVEL__check` would read as gavel's to a model too).

/// The prefix of every agent tool's name.
pub const TOOL_PREFIX: &str = "gavel__";
/// The scheme of every agent resource's URI.
pub const URI_PREFIX: &str = "gavel://";

/// Whether an exposed tool name is gavel's to give.
pub fn is_reserved_tool(exposed: &str) -> bool {
    starts_with_ignore_case(exposed, TOOL_PREFIX)
}

/// Whether a resource URI is gavel's to give.
pub fn is_reserved_uri(uri: &str) -> bool {
    starts_with_ignore_case(uri, URI_PREFIX)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Withholds an upstream's `name` that lies in gavel's reserved space, and
/// logs it (at startup as an error: the operator can rename the server's
/// prefix or the tool).
pub(super) fn withhold(withheld: &mut Vec<String>, name: &str, server: &str, startup: bool) {
    let msg = format!(
        "{name:?} from server {server:?} is in the name space gavel reserves for its agent tools ({TOOL_PREFIX}…, {URI_PREFIX}…); withheld"
    );
    if startup {
        tracing::error!(
            "reserved name at startup: {msg}. Give the server another prefix in servers.toml"
        );
    } else {
        tracing::warn!("reserved name: {msg}");
    }
    withheld.push(format!("{name} (server {server}, reserved)"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_space_is_the_prefix_in_any_case() {
        for name in ["gavel__check", "GAVEL__check", "Gavel__why", "gavel__"] {
            assert!(is_reserved_tool(name), "{name}");
        }
        for name in [
            "gavel_check",
            "gavelcheck",
            "fx__gavel__check",
            "gave",
            "",
            "check",
        ] {
            assert!(!is_reserved_tool(name), "{name}");
        }
        assert!(is_reserved_uri("gavel://policy/fx"));
        assert!(is_reserved_uri("GAVEL://policy/fx"));
        assert!(!is_reserved_uri("file:///gavel://x"));
        assert!(!is_reserved_uri("gavel:/x"));
    }

    #[test]
    fn a_withheld_name_is_listed_with_its_server() {
        let mut w = vec![];
        withhold(&mut w, "gavel__check", "fx", false);
        assert_eq!(w, vec!["gavel__check (server fx, reserved)".to_string()]);
    }
}
