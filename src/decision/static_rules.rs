//! `tools.allow` / `tools.deny` from servers.toml: globs on the upstream's own
//! tool name. Deny beats allow; an empty allow list allows every tool.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::codes::ReasonCode;
use super::{Action, ActionType, Decision};
use crate::config::ToolRules;

#[derive(Debug, thiserror::Error)]
#[error("servers.{server}.tools.{list}: invalid glob {pattern:?}: {source}")]
pub struct StaticRuleError {
    server: String,
    list: &'static str,
    pattern: String,
    source: globset::Error,
}

pub struct StaticRules {
    server: String,
    allow: Option<(GlobSet, Vec<String>)>,
    deny: (GlobSet, Vec<String>),
}

fn build(
    server: &str,
    list: &'static str,
    patterns: &[String],
) -> Result<GlobSet, StaticRuleError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|source| StaticRuleError {
            server: server.to_string(),
            list,
            pattern: p.clone(),
            source,
        })?;
        b.add(glob);
    }
    b.build().map_err(|source| StaticRuleError {
        server: server.to_string(),
        list,
        pattern: patterns.join(","),
        source,
    })
}

impl StaticRules {
    pub fn new(server: &str, rules: &ToolRules) -> Result<Self, StaticRuleError> {
        let allow = if rules.allow.is_empty() {
            None
        } else {
            Some((build(server, "allow", &rules.allow)?, rules.allow.clone()))
        };
        Ok(Self {
            server: server.to_string(),
            allow,
            deny: (build(server, "deny", &rules.deny)?, rules.deny.clone()),
        })
    }

    /// `Err(rule)` names the rule that refuses the tool.
    pub fn tool_allowed(&self, tool: &str) -> Result<(), String> {
        if let Some(i) = self.deny.0.matches(tool).first() {
            return Err(format!(
                "servers.{}.tools.deny[{:?}]",
                self.server, self.deny.1[*i]
            ));
        }
        if let Some((set, _)) = &self.allow
            && !set.is_match(tool)
        {
            return Err(format!(
                "servers.{}.tools.allow (no pattern matches)",
                self.server
            ));
        }
        Ok(())
    }

    pub fn decide(&self, action: &Action) -> Decision {
        if action.kind != ActionType::ToolCall {
            return Decision::allow("static");
        }
        match self.tool_allowed(&action.tool) {
            Ok(()) => Decision::allow("static"),
            Err(rule) => Decision {
                allow: false,
                reasons: vec![ReasonCode::StaticRule.into()],
                remediation: Some(format!(
                    "The tool {:?} of server {:?} is blocked by gavel's static rules in servers.toml ({rule}). \
                     Ask the person who administers gavel to change the rule if this tool is needed.",
                    action.tool, action.server
                )),
                policy_version: Some("static".into()),
                matched_rules: vec![rule],
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(allow: &[&str], deny: &[&str]) -> StaticRules {
        StaticRules::new(
            "fs",
            &ToolRules {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: deny.iter().map(|s| s.to_string()).collect(),
            },
        )
        .unwrap()
    }

    fn call(tool: &str) -> Action {
        Action {
            kind: ActionType::ToolCall,
            server: "fs".into(),
            tool: tool.into(),
            args: json!({}),
            annotations: json!({}),
            annotations_trusted: false,
            tool_digest: None,
            upstream_data_classes: vec![],
            trace: None,
            era: Default::default(),
        }
    }

    #[test]
    fn empty_rules_allow_everything() {
        assert!(rules(&[], &[]).decide(&call("anything")).allow);
    }

    #[test]
    fn deny_beats_allow() {
        let r = rules(&["*"], &["delete_*"]);
        assert!(r.decide(&call("read_file")).allow);
        let d = r.decide(&call("delete_file"));
        assert!(!d.allow);
        assert_eq!(d.reasons, vec!["static_rule"]);
        assert_eq!(
            d.matched_rules,
            vec![r#"servers.fs.tools.deny["delete_*"]"#]
        );
        assert!(d.remediation.unwrap().contains("delete_file"));
    }

    #[test]
    fn allow_list_restricts() {
        let r = rules(&["read_*", "list_*"], &[]);
        assert!(r.decide(&call("list_dir")).allow);
        let d = r.decide(&call("write_file"));
        assert!(!d.allow);
        assert!(d.matched_rules[0].contains("tools.allow"));
    }

    #[test]
    fn only_tool_calls_are_static_ruled() {
        let r = rules(&[], &["*"]);
        let mut a = call("x");
        a.kind = ActionType::ResourceRead;
        assert!(r.decide(&a).allow);
    }

    #[test]
    fn bad_glob_is_an_error_naming_the_field() {
        let e = StaticRules::new(
            "fs",
            &ToolRules {
                allow: vec![],
                deny: vec!["[".into()],
            },
        )
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("servers.fs.tools.deny"));
    }
}
