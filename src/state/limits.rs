//! Rate limits as declared: in bundle data at `data.<package>.limits` (so a
//! limit ships and is pinned with its policy) and in `servers.toml`
//! (`[[servers.NAME.limits]]`), which can only add limits — every declared
//! limit applies, so config can tighten a bundle's limits, never loosen them.
//!
//! ```json
//! "limits": [
//!   {"scope": "tool", "tool": "search", "rate": 10, "per": "1m", "burst": 5},
//!   {"scope": "server", "rate": 600, "per": "1h"},
//!   {"scope": "user", "rate": 100, "per": "1m"},
//!   {"scope": "agent", "rate": 100, "per": "1m"}
//! ]
//! ```
//!
//! A limit counts `tools/call` requests the policy allowed, keyed by what its
//! scope names: the tool (all users together) or the server — both of one
//! server — or the user or the agent. A user or agent limit declared in a
//! bundle is that bundle's: one limit per user (agent) across every server
//! the bundle decides for — so the shared workflow layer's "120 a minute per
//! user" is 120 a minute for the user, not for the user on each server. One
//! declared in `[[servers.NAME.limits]]` belongs to that server alone.

use serde::Deserialize;

use super::Rate;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub scope: String,
    #[serde(default)]
    pub tool: Option<String>,
    pub rate: f64,
    pub per: String,
    #[serde(default)]
    pub burst: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    Tool(String),
    Server,
    User,
    Agent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub scope: Scope,
    pub rate: Rate,
    /// Where it was declared (bundle name or `servers.toml`), for messages.
    pub source: String,
    /// The bundle that declared it, as `name[roots]` (None: `servers.toml`).
    /// User and agent limits of a bundle are shared by every server it
    /// decides for.
    pub bundle: Option<String>,
}

impl Limit {
    /// Parses one declared limit; the error names what is wrong and how to
    /// write it.
    pub fn parse(v: &serde_json::Value, source: &str) -> Result<Limit, String> {
        let spec: LimitSpec = serde_json::from_value(v.clone()).map_err(|e| {
            format!("{source}: limit {v}: {e}; write {{\"scope\": \"tool\"|\"server\"|\"user\"|\"agent\", \"tool\": \"name\" (tool scope), \"rate\": 10, \"per\": \"1m\", \"burst\": 5}}")
        })?;
        let scope = match (spec.scope.as_str(), &spec.tool) {
            ("tool", Some(t)) => Scope::Tool(t.clone()),
            ("tool", None) => {
                return Err(format!(
                    "{source}: limit {v}: a tool limit names its \"tool\""
                ));
            }
            ("server", None) => Scope::Server,
            ("user", None) => Scope::User,
            ("agent", None) => Scope::Agent,
            (s, Some(_)) if ["server", "user", "agent"].contains(&s) => {
                return Err(format!(
                    "{source}: limit {v}: \"tool\" only goes with scope \"tool\""
                ));
            }
            (s, _) => {
                return Err(format!(
                    "{source}: limit {v}: unknown scope {s:?} (tool, server, user, agent)"
                ));
            }
        };
        let period = humantime::parse_duration(&spec.per)
            .map_err(|e| {
                format!(
                    "{source}: limit {v}: per {:?}: {e} (e.g. \"1s\", \"1m\", \"1h\", \"1day\")",
                    spec.per
                )
            })?
            .as_secs_f64();
        if !(spec.rate.is_finite() && spec.rate > 0.0) || period <= 0.0 {
            return Err(format!(
                "{source}: limit {v}: rate and per must be positive"
            ));
        }
        let burst = spec
            .burst
            .unwrap_or_else(|| spec.rate.ceil().max(1.0) as u64);
        if burst == 0 {
            return Err(format!("{source}: limit {v}: burst must be at least 1"));
        }
        Ok(Limit {
            scope,
            rate: Rate {
                rate: spec.rate,
                period_s: period,
                burst,
            },
            source: source.to_string(),
            bundle: None,
        })
    }

    /// Parses a `limits` list (absent: none).
    pub fn parse_list(v: Option<&serde_json::Value>, source: &str) -> Result<Vec<Limit>, String> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(vec![]),
            Some(serde_json::Value::Array(items)) => {
                items.iter().map(|i| Limit::parse(i, source)).collect()
            }
            Some(other) => Err(format!("{source}: limits must be a list, got {other}")),
        }
    }

    /// Whether it applies to a call of `tool`.
    pub fn applies(&self, tool: &str) -> bool {
        !matches!(&self.scope, Scope::Tool(t) if t != tool)
    }

    /// The store key: the limit's own identity (where it was declared,
    /// scope, rate) plus what it counts. Tool and server limits count one
    /// server's calls; a bundle's user and agent limits count the user's
    /// (agent's) calls on every server (`rlb:<bundle>:…`); `servers.toml`
    /// user and agent limits, one server's.
    pub fn key(&self, server: &str, tool: &str, user: &str, agent: &str) -> String {
        let rate = format!(
            "{}/{}s/{}",
            self.rate.rate, self.rate.period_s, self.rate.burst
        );
        let who = match &self.scope {
            Scope::Tool(_) => return format!("rl:{server}:tool:{tool}:{rate}"),
            Scope::Server => return format!("rl:{server}:server:{rate}"),
            Scope::User => format!("user:{user}"),
            Scope::Agent => format!("agent:{agent}"),
        };
        match &self.bundle {
            Some(b) => format!("rlb:{b}:{who}:{rate}"),
            None => format!("rl:{server}:{who}:{rate}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user_limit() -> Limit {
        Limit::parse(
            &json!({"scope": "user", "rate": 1, "per": "1s", "burst": 3}),
            "b",
        )
        .unwrap()
    }

    #[test]
    fn a_tool_limit_parses_with_a_burst_of_its_rate_and_counts_its_tool_on_one_server() {
        let l = Limit::parse(
            &json!({"scope": "tool", "tool": "echo", "rate": 2, "per": "1m"}),
            "b",
        )
        .unwrap();
        assert_eq!(
            l.rate,
            Rate {
                rate: 2.0,
                period_s: 60.0,
                burst: 2
            }
        );
        assert!(l.applies("echo") && !l.applies("add"));
        assert_eq!(l.key("fx", "echo", "ada", "a1"), "rl:fx:tool:echo:2/60s/2");
        // Tool and server limits stay one server's even in a bundle.
        let tool = Limit {
            bundle: Some("workflow".into()),
            ..l.clone()
        };
        assert_eq!(
            tool.key("fx", "echo", "ada", "a1"),
            "rl:fx:tool:echo:2/60s/2"
        );
    }

    #[test]
    fn a_user_limit_from_servers_toml_counts_the_user_on_one_server() {
        let u = user_limit();
        assert!(u.applies("anything"));
        assert_eq!(u.key("fx", "echo", "ada", "a1"), "rl:fx:user:ada:1/1s/3");
    }

    #[test]
    fn a_bundles_user_and_agent_limits_count_across_every_server() {
        let shared = Limit {
            bundle: Some("workflow".into()),
            ..user_limit()
        };
        assert_eq!(
            shared.key("fx", "echo", "ada", "a1"),
            shared.key("fy", "add", "ada", "a1")
        );
        assert_eq!(
            shared.key("fx", "echo", "ada", "a1"),
            "rlb:workflow:user:ada:1/1s/3"
        );
        assert_ne!(
            shared.key("fx", "echo", "ada", "a1"),
            shared.key("fx", "echo", "bob", "a1"),
            "per user"
        );
        let agent = Limit {
            scope: Scope::Agent,
            ..shared.clone()
        };
        assert_eq!(
            agent.key("fx", "x", "ada", "a1"),
            agent.key("fy", "y", "bob", "a1")
        );
    }

    #[test]
    fn a_wrong_limit_is_refused_naming_what_is_wrong_and_where() {
        for (bad, says) in [
            (
                json!({"scope": "tool", "rate": 1, "per": "1s"}),
                "names its \"tool\"",
            ),
            (
                json!({"scope": "user", "tool": "x", "rate": 1, "per": "1s"}),
                "only goes with",
            ),
            (
                json!({"scope": "team", "rate": 1, "per": "1s"}),
                "unknown scope",
            ),
            (
                json!({"scope": "user", "rate": 0, "per": "1s"}),
                "must be positive",
            ),
            (
                json!({"scope": "user", "rate": 1, "per": "soon"}),
                "per \"soon\"",
            ),
            (
                json!({"scope": "user", "rate": 1, "per": "1s", "burst": 0}),
                "at least 1",
            ),
            (
                json!({"scope": "user", "rate": 1, "per": "1s", "extra": 1}),
                "unknown field",
            ),
        ] {
            let e = Limit::parse(&bad, "bundle x").unwrap_err();
            assert!(e.contains(says) && e.contains("bundle x"), "{e}");
        }
    }

    #[test]
    fn a_limits_list_is_a_list_or_absent() {
        assert!(Limit::parse_list(Some(&json!({"a": 1})), "b").is_err());
        assert_eq!(Limit::parse_list(None, "b").unwrap(), vec![]);
    }
}
