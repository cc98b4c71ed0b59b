//! The schema lint of a server's whole policy (`gavel lint`, and the proxy
//! at start and on every activation): each bundle's [`schema::Facts`] held
//! against the tools the server offers, the `tools.allow`/`deny` globs of
//! servers.toml, and — knowing the layers — whether the policy allows a
//! tool nobody named.
//!
//! The enforcer keeps the last tool list of each server (any session's
//! upstream reports it; an unchanged list does nothing) and the last
//! findings. New findings are logged as warnings, once; `gavel status` shows
//! a bounded summary. A bundle shared by several servers is held against
//! the union of their tools (a shared layer may name any of them), and only
//! once all of those servers have listed theirs.
//!
//! **Allows by default** (check 4): no `tools.allow` list in servers.toml,
//! and every layer of the server except `override` allows by default in the
//! sense of [`schema::facts`] — an allowing decision that does not test the
//! tool name, and no denial on a negated tool test. Then every offered tool
//! that no rule names (and no `tools.deny` glob matches) is allowed without
//! anyone having looked at it: a warning per tool.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::engine::Layer;
use super::{Enforcer, Policy};
use crate::bundle::lint::schema::{self, Check, Facts, SchemaFinding, Severity, ToolInfo};
use crate::sync::Recover;

/// Findings per server shown by `gavel status` (the log has every one).
pub const STATUS_CAP: usize = 20;

/// What the enforcer remembers for the schema lint.
#[derive(Default)]
pub struct ToolLint {
    tools: Mutex<BTreeMap<String, Arc<Vec<ToolInfo>>>>,
    findings: Mutex<BTreeMap<String, Vec<SchemaFinding>>>,
}

/// The lint's view of a `tools/list` answer.
pub fn tool_infos(tools: &[rmcp::model::Tool]) -> Vec<ToolInfo> {
    tools
        .iter()
        .map(|t| ToolInfo::from_schema(&t.name, &t.input_schema))
        .collect()
}

impl Enforcer {
    /// The tools `server` offers now (an upstream has listed them). Runs the
    /// lint again when they differ from the last list seen.
    pub fn note_tools(&self, server: &str, tools: &[rmcp::model::Tool]) {
        let infos = tool_infos(tools);
        {
            let mut known = self.tool_lint.tools.lock().recover();
            if known.get(server).is_some_and(|k| **k == infos) {
                return;
            }
            known.insert(server.to_string(), Arc::new(infos));
        }
        self.relint();
    }

    /// Lints again and logs each finding not logged before.
    pub(crate) fn relint(&self) {
        let now = self.lint_tools();
        let mut last = self.tool_lint.findings.lock().recover();
        for (server, found) in &now {
            let before = last.get(server);
            for f in found
                .iter()
                .filter(|f| before.is_none_or(|b| !b.contains(f)))
            {
                tracing::warn!(
                    server = %server, bundle = %f.bundle, check = ?f.check,
                    "lint {}: {}:{}: {}", f.severity, f.file, f.line, f.message
                );
            }
        }
        *last = now;
    }

    /// The findings of every server whose tools are known, by server.
    pub fn lint_tools(&self) -> BTreeMap<String, Vec<SchemaFinding>> {
        let known = self.tool_lint.tools.lock().recover().clone();
        // Each server's own policy, and each persona's for it.
        let mut engines: Vec<(&str, Arc<super::engine::PolicyEngine>)> = self
            .servers
            .iter()
            .filter_map(|(name, sp)| match &sp.active.load().policy {
                Policy::Rego(e) => Some((name.as_str(), e.clone())),
                _ => None,
            })
            .collect();
        engines.extend(self.persona_engines());
        // The servers each bundle (name, digest) serves.
        let mut users: HashMap<(String, String), Vec<&str>> = HashMap::new();
        for (server, e) in &engines {
            for (b, _, _) in e.sources() {
                let u = users.entry((b.name.clone(), b.digest.clone())).or_default();
                if !u.contains(server) {
                    u.push(server);
                }
            }
        }
        let mut facts_cache = HashMap::new();
        let mut out = BTreeMap::new();
        for (server, tools) in &known {
            let mut found = self.config_globs(server, tools);
            for (_, e) in engines.iter().filter(|(s, _)| *s == server.as_str()) {
                let universe = |b: &crate::bundle::Bundle| -> Option<Vec<ToolInfo>> {
                    let mut all = Vec::new();
                    for u in users.get(&(b.name.clone(), b.digest.clone()))? {
                        all.extend(known.get(*u)?.iter().cloned());
                    }
                    Some(all)
                };
                found.extend(self.policy_findings(server, e, tools, &universe, &mut facts_cache));
            }
            // Errors first, then by place.
            found.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.cmp(b)));
            found.dedup();
            out.insert(server.clone(), found);
        }
        out
    }

    /// Checks 1–4 over one server's bundles.
    fn policy_findings(
        &self,
        server: &str,
        engine: &super::engine::PolicyEngine,
        tools: &[ToolInfo],
        universe: &dyn Fn(&crate::bundle::Bundle) -> Option<Vec<ToolInfo>>,
        cache: &mut HashMap<(String, String), Option<Facts>>,
    ) -> Vec<SchemaFinding> {
        let mut found = Vec::new();
        let mut layers = Vec::new();
        for (b, layer, rule) in engine.sources() {
            let key = (b.name.clone(), b.digest.clone());
            let facts = cache
                .entry(key)
                .or_insert_with(|| schema::facts(&b, rule).ok())
                .clone();
            let Some(facts) = facts else { continue };
            match universe(&b) {
                Some(all) => found.extend(schema::judge(&b.name, &facts, &all)),
                // Not every server using it has listed its tools yet.
                None => {
                    let only_prefix = Facts {
                        prefix_tests: facts.prefix_tests.clone(),
                        ..Facts::default()
                    };
                    found.extend(schema::judge(&b.name, &only_prefix, &[]))
                }
            }
            layers.push((b.name.clone(), layer, facts));
        }
        found.extend(self.unmentioned(server, &layers, tools));
        found
    }

    /// Check 4: the tools a policy that allows by default never names.
    fn unmentioned(
        &self,
        server: &str,
        layers: &[(String, Layer, Facts)],
        tools: &[ToolInfo],
    ) -> Vec<SchemaFinding> {
        let Some(rules) = self.config.servers.get(server).map(|s| &s.tools) else {
            return vec![];
        };
        let deciding: Vec<_> = layers
            .iter()
            .filter(|(_, l, _)| *l != Layer::Override)
            .collect();
        if !rules.allow.is_empty()
            || deciding.is_empty()
            || deciding.iter().any(|(_, _, f)| f.default_allow.is_none())
        {
            return vec![];
        }
        // Named where a rule about it would be: the resource layer if any.
        let (bundle, _, facts) = deciding
            .iter()
            .find(|(_, l, _)| *l == Layer::Resource)
            .unwrap_or(&deciding[0]);
        let at = facts.default_allow.clone().unwrap_or(schema::Site {
            file: String::new(),
            line: 0,
        });
        let deny = globs(&rules.deny);
        tools
            .iter()
            .filter(|t| !layers.iter().any(|(_, _, f)| f.tools.iter().any(|r| r.name == t.name)))
            .filter(|t| !deny.iter().any(|(_, g)| g.is_match(&t.name)))
            .map(|t| SchemaFinding {
                severity: Severity::Warning,
                check: Check::UnmentionedTool,
                bundle: bundle.clone(),
                file: at.file.clone(),
                line: at.line,
                message: format!(
                    "tool {:?} is offered by the server but no rule names it, and the policy allows by default (allow unless a rule matches): it is allowed unreviewed; allow or deny it by name, or allow-list the tools",
                    crate::text::escape_controls(&t.name)
                ),
            })
            .collect()
    }

    /// `tools.allow`/`tools.deny` globs that match no tool the server offers.
    fn config_globs(&self, server: &str, tools: &[ToolInfo]) -> Vec<SchemaFinding> {
        let Some(cfg) = self.config.servers.get(server) else {
            return vec![];
        };
        let file = self
            .config
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "servers.toml".into());
        let text = self
            .config
            .source
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let mut out = Vec::new();
        for (list, patterns) in [("allow", &cfg.tools.allow), ("deny", &cfg.tools.deny)] {
            for (pattern, glob) in globs(patterns) {
                if tools.iter().any(|t| glob.is_match(&t.name)) {
                    continue;
                }
                let quoted = format!("{pattern:?}");
                let line = text
                    .as_deref()
                    .and_then(|t| t.lines().position(|l| l.contains(&quoted)))
                    .map_or(0, |i| i + 1);
                out.push(SchemaFinding {
                    severity: Severity::Error,
                    check: Check::ConfigGlob,
                    bundle: "-".into(),
                    file: file.clone(),
                    line,
                    message: format!(
                        "servers.{server}.tools.{list}: {quoted} matches no tool the server offers: it never applies (a typo, or a tool the server no longer has)"
                    ),
                });
            }
        }
        out
    }

    /// `gavel status`'s view of one server's lint: counts and the first
    /// [`STATUS_CAP`] findings.
    pub(crate) fn lint_status(&self, server: &str) -> Value {
        let all = self.tool_lint.findings.lock().recover();
        let Some(found) = all.get(server) else {
            return json!({"checked": false});
        };
        let count = |s: Severity| found.iter().filter(|f| f.severity == s).count();
        json!({
            "checked": true,
            "errors": count(Severity::Error),
            "warnings": count(Severity::Warning),
            "findings": found.iter().take(STATUS_CAP).collect::<Vec<_>>(),
        })
    }
}

/// The patterns that compile (the static rules refused the others at load).
fn globs(patterns: &[String]) -> Vec<(String, globset::GlobMatcher)> {
    patterns
        .iter()
        .filter_map(|p| Some((p.clone(), globset::Glob::new(p).ok()?.compile_matcher())))
        .collect()
}

#[cfg(test)]
#[path = "tool_lint_tests.rs"]
mod tests;
