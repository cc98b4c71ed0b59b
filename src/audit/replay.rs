//! `gavel replay`: re-decide every logged input with a candidate policy and
//! report what would change — the check to run before shipping a policy.
//!
//! Each record's logged `input` (with its counter snapshot) is evaluated by
//! the server's layers as they would be with the candidate bundles in place
//! (`--config`: the configured bundles, candidates replacing those of the
//! same name; no config: exactly the candidates). The replayed decision is
//! compared with the logged `result.allow`:
//!
//! - gavel-side outcomes stand: a record decided by static rules (`path`
//!   `gavel/static`) is counted apart, and a logged gavel-side deny (rate
//!   limit, budget, approval) keeps denying whatever the policy says;
//! - a record is `not_replayable` — counted, never a flip — when masking
//!   removed or changed an input path the server's policy reads, or when the
//!   policy calls a non-deterministic builtin (`time.now_ns`, `rand.*`,
//!   `uuid.*`, …; `bundle::deps`);
//! - a line that is not a decision record is `malformed` (line numbers kept).
//!
//! Streams the log line by line; the groups it keeps are bounded.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::bundle::Bundle;
use crate::bundle::deps::{Deps, analyze};
use crate::decision::engine::{EngineOptions, PolicyEngine};

const MAX_GROUPS: usize = 1000;
const MAX_EXAMPLES: usize = 3;
const MAX_MALFORMED_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("server {server:?}: the candidate policy does not load: {message}")]
    Engine { server: String, message: String },
    #[error("{0}")]
    Setup(String),
    #[error("reading the decision log: {0}")]
    Io(#[from] std::io::Error),
}

/// Which bundles decide for a server.
pub enum Bundles {
    /// The same set for every server: exactly the candidates.
    Only(Vec<Arc<Bundle>>),
    /// Per server (from a config), candidates already substituted.
    PerServer(BTreeMap<String, Vec<Arc<Bundle>>>),
}

#[derive(Debug, Default, Serialize, Clone, PartialEq)]
pub struct Group {
    pub count: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub total: u64,
    pub unchanged: u64,
    pub allow_to_deny: u64,
    pub deny_to_allow: u64,
    /// Same allow/deny, different reason codes.
    pub reasons_changed: u64,
    pub not_replayable: BTreeMap<String, u64>,
    /// Decided by gavel's static rules; the policy never saw them.
    pub gavel_side: u64,
    pub other_server: u64,
    /// Approval-step records (not decisions; skipped).
    pub approval_steps: u64,
    pub malformed: u64,
    pub malformed_lines: Vec<u64>,
    /// `"<direction> <server>/<tool>"` → count and example decision ids.
    pub by_tool: BTreeMap<String, Group>,
    /// `"<direction> <reason>"` (the deny side's reasons) → count, examples.
    pub by_reason: BTreeMap<String, Group>,
    /// Revisions that produced the log: bundle → revisions seen.
    pub logged_revisions: BTreeMap<String, Vec<String>>,
}

impl Summary {
    pub fn flips(&self) -> u64 {
        self.allow_to_deny + self.deny_to_allow
    }
}

struct ServerEngine {
    engine: PolicyEngine,
    deps: Vec<Deps>,
}

pub struct Replayer {
    bundles: Bundles,
    only_server: Option<String>,
    opts: EngineOptions,
    engines: HashMap<String, ServerEngine>,
    pub summary: Summary,
}

fn add(groups: &mut BTreeMap<String, Group>, key: String, id: &str) {
    if !groups.contains_key(&key) && groups.len() >= MAX_GROUPS {
        return;
    }
    let g = groups.entry(key).or_default();
    g.count += 1;
    if g.examples.len() < MAX_EXAMPLES && !id.is_empty() {
        g.examples.push(id.to_string());
    }
}

/// `/input/action/args/content` → `["action","args","content"]`.
fn pointer_under_input(p: &str) -> Option<Vec<String>> {
    let rest = p.strip_prefix("/input")?;
    Some(
        rest.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

impl Replayer {
    pub fn new(bundles: Bundles, only_server: Option<String>, opts: EngineOptions) -> Self {
        Replayer {
            bundles,
            only_server,
            opts,
            engines: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// Builds the server's engine on first use; false when the config has
    /// no such server.
    fn ensure_engine(&mut self, server: &str) -> Result<bool, ReplayError> {
        if !self.engines.contains_key(server) {
            let set = match &self.bundles {
                Bundles::Only(b) => b.clone(),
                Bundles::PerServer(m) => match m.get(server) {
                    Some(b) => b.clone(),
                    None => return Ok(false),
                },
            };
            let deps = set
                .iter()
                .map(|b| analyze(b))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ReplayError::Engine {
                    server: server.into(),
                    message: e.to_string(),
                })?;
            let engine =
                PolicyEngine::build(server, set, &self.opts).map_err(|e| ReplayError::Engine {
                    server: server.into(),
                    message: e.to_string(),
                })?;
            self.engines
                .insert(server.to_string(), ServerEngine { engine, deps });
        }
        Ok(true)
    }

    /// Replays one log line (1-based `line_no` for the report).
    pub fn line(&mut self, line_no: u64, line: &str) -> Result<(), ReplayError> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let rec: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => return self.malformed(line_no),
        };
        // Approval steps (front::approval) belong to a decision record.
        if rec.get("approval").is_some() {
            self.summary.approval_steps += 1;
            return Ok(());
        }
        let (Some(input), Some(allow)) = (
            rec.get("input"),
            rec.pointer("/result/allow").and_then(Value::as_bool),
        ) else {
            return self.malformed(line_no);
        };
        let Some(server) = input.pointer("/action/server").and_then(Value::as_str) else {
            return self.malformed(line_no);
        };
        if self.only_server.as_deref().is_some_and(|s| s != server) {
            self.summary.other_server += 1;
            return Ok(());
        }
        let s = &mut self.summary;
        s.total += 1;
        if let Some(Value::Object(b)) = rec.get("bundles") {
            for (name, info) in b {
                let rev = info["revision"].as_str().unwrap_or("").to_string();
                let seen = s.logged_revisions.entry(name.clone()).or_default();
                if !seen.contains(&rev) && seen.len() < MAX_EXAMPLES * 10 {
                    seen.push(rev);
                }
            }
        }
        if rec.get("path").and_then(Value::as_str) == Some("gavel/static") {
            s.gavel_side += 1;
            return Ok(());
        }
        let id = rec["decision_id"].as_str().unwrap_or("").to_string();
        let logged_reasons: Vec<String> = rec
            .pointer("/result/reasons")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let gavel_denied = !allow
            && logged_reasons
                .iter()
                .any(|r| crate::decision::codes::is_after_policy(r));
        let masked: Vec<Vec<String>> = ["masked", "erased"]
            .iter()
            .filter_map(|k| rec.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|p| p.as_str().and_then(pointer_under_input))
            .collect();
        if !self.ensure_engine(server)? {
            self.summary.total -= 1;
            self.summary.other_server += 1;
            return Ok(());
        }
        let se = &self.engines[server];
        if se.deps.iter().any(|d| d.impure) {
            *self
                .summary
                .not_replayable
                .entry("non_deterministic_builtin".into())
                .or_default() += 1;
            return Ok(());
        }
        let reads_masked = masked.iter().any(|m| {
            se.deps.iter().any(|d| {
                d.whole_input
                    || d.input_paths
                        .iter()
                        .any(|p| p.starts_with(m) || m.starts_with(p))
            })
        });
        if reads_masked {
            *self
                .summary
                .not_replayable
                .entry("masked_input".into())
                .or_default() += 1;
            return Ok(());
        }
        let (now_allow, now_reasons) = match se.engine.decide(input) {
            Ok(out) => (out.combined.allow && !gavel_denied, out.combined.reasons),
            Err(e) => (false, vec![e.reason_code().to_string()]),
        };
        let tool = input
            .pointer("/action/tool")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let s = &mut self.summary;
        let dir = match (allow, now_allow) {
            (true, false) => {
                s.allow_to_deny += 1;
                "allow→deny"
            }
            (false, true) => {
                s.deny_to_allow += 1;
                "deny→allow"
            }
            _ => {
                s.unchanged += 1;
                let (mut a, mut b) = (logged_reasons.clone(), now_reasons.clone());
                a.sort();
                b.sort();
                if !allow && a != b && !gavel_denied {
                    s.reasons_changed += 1;
                }
                return Ok(());
            }
        };
        add(&mut s.by_tool, format!("{dir} {server}/{tool}"), &id);
        let deny_reasons = if now_allow {
            &logged_reasons
        } else {
            &now_reasons
        };
        if deny_reasons.is_empty() {
            add(&mut s.by_reason, format!("{dir} (no reason code)"), &id);
        }
        for r in deny_reasons {
            add(&mut s.by_reason, format!("{dir} {r}"), &id);
        }
        Ok(())
    }

    fn malformed(&mut self, line_no: u64) -> Result<(), ReplayError> {
        self.summary.malformed += 1;
        if self.summary.malformed_lines.len() < MAX_MALFORMED_LINES {
            self.summary.malformed_lines.push(line_no);
        }
        Ok(())
    }

    /// Replays a whole log; `progress` is called every 1000 records.
    pub fn run(
        &mut self,
        reader: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> Result<(), ReplayError> {
        for (i, line) in reader.lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                // Not UTF-8: a damaged line, not the end of the log.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.malformed(i as u64 + 1)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.line(i as u64 + 1, &line)?;
            if (i + 1) % 1000 == 0 {
                progress(i as u64 + 1);
            }
        }
        Ok(())
    }
}

/// Plain-text report.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!("replayed {} decision records", s.total));
    line(format!("  unchanged          {}", s.unchanged));
    line(format!("  allow → deny       {}", s.allow_to_deny));
    line(format!("  deny → allow       {}", s.deny_to_allow));
    line(format!(
        "  reasons changed    {} (still denied)",
        s.reasons_changed
    ));
    let nr: u64 = s.not_replayable.values().sum();
    let why: Vec<String> = s
        .not_replayable
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    line(format!(
        "  not replayable     {nr}{}",
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        }
    ));
    line(format!("  gavel-side (static rules) {}", s.gavel_side));
    if s.other_server > 0 {
        line(format!("  other servers (skipped) {}", s.other_server));
    }
    if s.malformed > 0 {
        let lines: Vec<String> = s.malformed_lines.iter().map(u64::to_string).collect();
        line(format!(
            "  malformed lines    {} (lines {})",
            s.malformed,
            lines.join(", ")
        ));
    }
    for (title, groups) in [("by tool", &s.by_tool), ("by reason", &s.by_reason)] {
        if groups.is_empty() {
            continue;
        }
        line(format!("flips {title}:"));
        for (k, g) in groups {
            line(format!(
                "  {k}  {}  e.g. {}",
                g.count,
                g.examples.join(", ")
            ));
        }
    }
    if !s.logged_revisions.is_empty() {
        let revs: Vec<String> = s
            .logged_revisions
            .iter()
            .map(|(b, r)| format!("{b}@{}", r.join("|")))
            .collect();
        line(format!("logged with: {}", revs.join(", ")));
    }
    out
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
