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
//! - the request's data classes (`input.action.data_classes_referenced`) are
//!   recomputed with the candidate's classification data, plus the classes
//!   the upstream declared (`upstream_data_classes` in the record; a record
//!   from before that field keeps its logged classes); when masking hid an
//!   argument the candidate's classification reads, the record is
//!   `not_replayable` (`masked_classification_input`);
//! - what the session had seen (`input.context.data_classes_seen`) is
//!   replayed as logged, never recomputed: the answers it came from are not
//!   in the log, and the candidate decides on the same session history;
//! - a decision that allowed only with a human's approval ends as its final
//!   approval step says (approved, remembered → allowed; declined, timed
//!   out, unavailable → denied): that is the logged outcome, and where the
//!   candidate asks for approval too, the logged answer stands for it; one
//!   whose approval never settled is `not_replayable`
//!   (`approval_unsettled`);
//! - a decision that allows both times but gains or loses `require_approval`
//!   is reported as "approval added/removed" (not a flip);
//! - a line that is not a decision record is `malformed` (line numbers
//!   kept), and so is a line over [`MAX_LINE_BYTES`] (counted in `too_long`;
//!   it is skipped without being held in memory);
//! - with exactly the candidates (no config) and no `--server`, a log that
//!   holds several servers is refused, naming them: one bundle would decide
//!   for servers it was never written for.
//!
//! Streams the log line by line; the groups it keeps are bounded.

mod compare;
mod render;
mod results;
use compare::{Logged, Replayed};
pub use render::render;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use crate::audit::read::MAX_LINE_BYTES;
use crate::audit::read::{self, Bad, Entry, LogReader};
use crate::bundle::Bundle;
use crate::bundle::deps::{Deps, analyze_set};
use crate::decision::engine::{EngineOptions, PolicyEngine};

/// Server names remembered for the several-servers error.
const MAX_SERVERS_NAMED: usize = 50;
const MAX_GROUPS: usize = 1000;
const MAX_EXAMPLES: usize = 3;
const MAX_MALFORMED_LINES: usize = 20;
/// Decisions held for their final approval step; more are not replayable.
const MAX_PENDING_APPROVALS: usize = 10_000;

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
    /// Decided as another persona (or as none) than `--persona` names.
    pub other_persona: u64,
    /// Approval-step records (not decisions; the final one settles its
    /// decision).
    pub approval_steps: u64,
    /// Allowed both times, and the candidate now asks for a human approval
    /// where the logged decision did not (or no longer asks).
    pub approval_added: u64,
    pub approval_removed: u64,
    pub malformed: u64,
    pub malformed_lines: Vec<u64>,
    /// Malformed because longer than [`MAX_LINE_BYTES`].
    pub too_long: u64,
    /// `"<direction> <server>/<tool>"` → count and example decision ids.
    pub by_tool: BTreeMap<String, Group>,
    /// `"<direction> <reason>"` (the deny side's reasons) → count, examples.
    pub by_reason: BTreeMap<String, Group>,
    /// `"approval added|removed <server>/<tool>"` → count, examples.
    pub by_approval: BTreeMap<String, Group>,
    /// Revisions that produced the log: bundle → revisions seen.
    pub logged_revisions: BTreeMap<String, Vec<String>>,
    /// Result records (`result_of`), re-decided apart (`results`).
    pub results: results::ResultSummary,
}

impl Summary {
    pub fn flips(&self) -> u64 {
        self.allow_to_deny + self.deny_to_allow
    }

    /// Counts `n` records that cannot be replayed faithfully, and why.
    fn unreplayable(&mut self, why: &str, n: u64) {
        *self.not_replayable.entry(why.into()).or_default() += n;
    }

    pub fn not_replayable_total(&self) -> u64 {
        self.not_replayable.values().sum()
    }

    /// Records the candidate actually re-decided.
    pub fn replayed(&self) -> u64 {
        self.unchanged + self.flips()
    }
}

struct ServerEngine {
    engine: PolicyEngine,
    deps: Vec<Deps>,
}

pub struct Replayer {
    bundles: Bundles,
    only_server: Option<String>,
    /// `--persona`: only records with this `labels.persona`.
    only_persona: Option<String>,
    opts: EngineOptions,
    engines: HashMap<String, ServerEngine>,
    max_line_bytes: usize,
    /// Servers in the log, kept only to refuse an ambiguous `Only` replay.
    servers_seen: std::collections::BTreeSet<String>,
    /// Decisions waiting for their final approval step, by decision id.
    pending: HashMap<String, (Logged, Replayed)>,
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

/// The reason codes of a record's `result`.
fn reasons_of(rec: &Value) -> Vec<String> {
    rec.pointer("/result/reasons")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
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

/// A decision record's `input`, `result.allow` and server; `None`: not a
/// decision record.
fn decided(rec: &Value) -> Option<(&Value, bool, &str)> {
    let input = rec.get("input")?;
    let allow = rec.pointer("/result/allow").and_then(Value::as_bool)?;
    let server = input.pointer("/action/server").and_then(Value::as_str)?;
    Some((input, allow, server))
}

/// The input paths masking removed or changed (`masked`, `erased`), under
/// `input`.
fn masked_paths(rec: &Value) -> Vec<Vec<String>> {
    ["masked", "erased"]
        .iter()
        .filter_map(|k| rec.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.as_str().and_then(pointer_under_input))
        .collect()
}

/// Whether a masked path hides something the classification reads: the
/// tool, the path root, or a classified argument.
fn hides_classification_input(m: &[String]) -> bool {
    let under_args = m.first().is_some_and(|s| s == "action")
        && match m.get(1).map(String::as_str) {
            None => true,
            Some("tool" | "path_root") => true,
            Some("args") => m
                .get(2)
                .is_none_or(|k| PolicyEngine::CLASSIFIED_ARGS.contains(&k.as_str())),
            _ => false,
        };
    under_args || m.is_empty()
}

/// The input the candidate decides: the logged one, its data classes
/// recomputed with the candidate's classification. `Err`: why the record is
/// not replayable.
fn candidate_input<'a>(
    se: &ServerEngine,
    rec: &Value,
    input: &'a Value,
) -> Result<Cow<'a, Value>, &'static str> {
    if se.deps.iter().any(|d| d.nondeterministic) {
        return Err("non_deterministic_builtin");
    }
    let masked = masked_paths(rec);
    let reads_masked = masked.iter().any(|m| {
        se.deps.iter().any(|d| {
            d.whole_input
                || d.input_paths
                    .iter()
                    .any(|p| p.starts_with(m) || m.starts_with(p))
        })
    });
    if reads_masked {
        return Err("masked_input");
    }
    if input.pointer("/action/data_classes_referenced").is_none() {
        return Ok(Cow::Borrowed(input));
    }
    if se.engine.classifies() && masked.iter().any(|m| hides_classification_input(m)) {
        return Err("masked_classification_input");
    }
    let mut replayed = input.clone();
    replayed["action"]["data_classes_referenced"] =
        serde_json::json!(candidate_classes(se, rec, &input["action"]));
    Ok(Cow::Owned(replayed))
}

/// The candidate's classification of the logged action, plus the classes
/// the upstream declared.
fn candidate_classes(se: &ServerEngine, rec: &Value, action: &Value) -> Vec<String> {
    // The root the live decision canonicalized paths against.
    let root = action["path_root"]
        .as_str()
        .and_then(|r| crate::decision::paths::PathRoot::new(std::path::Path::new(r)).ok());
    let mut classes = se.engine.classify(
        action["tool"].as_str().unwrap_or(""),
        &action["args"],
        root.as_ref(),
    );
    // The upstream's own classes; an older record without them keeps
    // what it logged (the candidate can then only add).
    let upstream = rec
        .get("upstream_data_classes")
        .or_else(|| action.get("data_classes_referenced"));
    for c in upstream
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !classes.iter().any(|x| x == c) {
            classes.push(c.to_string());
        }
    }
    classes
}

/// The candidate's decision of `input`; a logged gavel-side denial stands.
fn redecide(se: &ServerEngine, input: &Value, gavel_denied: bool) -> Replayed {
    match se.engine.decide(input) {
        Ok(out) => Replayed {
            allow: out.decision.allow && !gavel_denied,
            reasons: out.decision.reasons,
            approval: out.decision.require_approval.is_some(),
        },
        Err(e) => Replayed {
            allow: false,
            reasons: vec![e.reason_code().to_string()],
            approval: false,
        },
    }
}

impl Replayer {
    pub fn new(bundles: Bundles, only_server: Option<String>, opts: EngineOptions) -> Self {
        Replayer {
            bundles,
            only_server,
            only_persona: None,
            opts,
            engines: HashMap::new(),
            max_line_bytes: MAX_LINE_BYTES,
            servers_seen: Default::default(),
            pending: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// Replays only the decisions made as `persona` (`labels.persona`);
    /// the others are counted in `other_persona`.
    pub fn with_persona(mut self, persona: Option<String>) -> Self {
        self.only_persona = persona;
        self
    }

    /// A smaller line bound (tests).
    pub fn with_max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    /// With exactly the candidates and no `--server`, every record must be
    /// of one server: remembers the servers seen, and says whether this
    /// record may be replayed (false once a second one appeared).
    fn one_server_only(&mut self, server: &str) -> bool {
        if !matches!(self.bundles, Bundles::Only(_)) || self.only_server.is_some() {
            return true;
        }
        if !self.servers_seen.contains(server) && self.servers_seen.len() < MAX_SERVERS_NAMED {
            self.servers_seen.insert(server.to_string());
        }
        self.servers_seen.len() <= 1
    }

    /// The error for a replay of exactly the candidates over a log of
    /// several servers, if that is what happened.
    fn ambiguity(&self) -> Option<ReplayError> {
        (self.servers_seen.len() > 1).then(|| {
            let names: Vec<&str> = self.servers_seen.iter().map(String::as_str).collect();
            ReplayError::Setup(format!(
                "the log holds decisions of several servers ({}{}): the candidate bundle would decide for all of them. Give --server NAME to replay one of them, or --config servers.toml to replay each server with its own layers",
                names.join(", "),
                if names.len() >= MAX_SERVERS_NAMED { ", …" } else { "" }
            ))
        })
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
            // Together: a rule of one bundle may be reached from another.
            let refs: Vec<&crate::bundle::Bundle> = set.iter().map(|b| b.as_ref()).collect();
            let deps = analyze_set(&refs).map_err(|e| ReplayError::Engine {
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
        self.entry(line_no, read::classify(line.as_bytes()))
    }

    /// Replays one classified line: a bad one is counted, never an error.
    fn entry(&mut self, line_no: u64, entry: Entry) -> Result<(), ReplayError> {
        match entry {
            Entry::Blank => Ok(()),
            Entry::Record(rec) => self.record(line_no, rec),
            Entry::Bad(why) => {
                if matches!(why, Bad::TooLong) {
                    self.summary.too_long += 1;
                }
                self.malformed(line_no)
            }
        }
    }

    /// Replays one record: an approval step settles its decision; a
    /// decision of a server being replayed is re-decided by the candidate
    /// unless it cannot be faithfully (see the module doc), then compared.
    fn record(&mut self, line_no: u64, rec: Value) -> Result<(), ReplayError> {
        // A policy query (`gavel__check`) decided nothing, and shadow records
        // (decision::shadow) are no decision — the live record beside them
        // is what is replayed.
        if rec.get("query").is_some() || rec.get("shadow").is_some() {
            return Ok(());
        }
        // Result records belong to a decision record too (`results`).
        if rec.get("result_of").is_some() {
            return self.result_record(&rec);
        }
        // Approval steps (host::approval) belong to a decision record.
        if let Some(step) = rec.get("approval") {
            self.summary.approval_steps += 1;
            if step["final"] == true {
                self.settle(&rec);
            }
            return Ok(());
        }
        let Some((input, allow, server)) = decided(&rec) else {
            return self.malformed(line_no);
        };
        if let Some(p) = &self.only_persona
            && crate::governance::persona::of_record(&rec) != Some(p.as_str())
        {
            self.summary.other_persona += 1;
            return Ok(());
        }
        if !self.replays_server(server) {
            return Ok(());
        }
        self.summary.total += 1;
        self.note_revisions(&rec);
        if rec.get("path").and_then(Value::as_str) == Some("gavel/static") {
            self.summary.gavel_side += 1;
            return Ok(());
        }
        let logged = Logged::of(&rec, server, allow);
        if !self.ensure_engine(server)? {
            self.summary.total -= 1;
            self.summary.other_server += 1;
            return Ok(());
        }
        let replayed = {
            let se = &self.engines[server];
            candidate_input(se, &rec, input).map(|i| redecide(se, &i, logged.gavel_denied))
        };
        match replayed {
            Err(why) => self.summary.unreplayable(why, 1),
            // Its outcome is the human's answer, in the final approval step.
            Ok(now) if allow && logged.approval => self.defer(logged, now),
            Ok(now) => self.compare(logged, now),
        }
        Ok(())
    }

    /// Whether a decision of `server` is replayed: not when `--server` names
    /// another (counted), nor once a replay of exactly the candidates has
    /// seen a second server (refused at the end of the run, naming every
    /// server).
    fn replays_server(&mut self, server: &str) -> bool {
        if self.only_server.as_deref().is_some_and(|s| s != server) {
            self.summary.other_server += 1;
            return false;
        }
        self.one_server_only(server)
    }

    /// Remembers the bundle revisions that produced the log (bounded).
    fn note_revisions(&mut self, rec: &Value) {
        let Some(Value::Object(b)) = rec.get("bundles") else {
            return;
        };
        let revisions = &mut self.summary.logged_revisions;
        for (name, info) in b {
            if !revisions.contains_key(name) && revisions.len() >= MAX_GROUPS {
                continue;
            }
            let rev = info["revision"].as_str().unwrap_or("").to_string();
            let seen = revisions.entry(name.clone()).or_default();
            if !seen.contains(&rev) && seen.len() < MAX_EXAMPLES * 10 {
                seen.push(rev);
            }
        }
    }

    fn malformed(&mut self, line_no: u64) -> Result<(), ReplayError> {
        self.summary.malformed += 1;
        if self.summary.malformed_lines.len() < MAX_MALFORMED_LINES {
            self.summary.malformed_lines.push(line_no);
        }
        Ok(())
    }

    /// Replays a whole log, read by the one log reader
    /// ([`crate::audit::read`]: each line bounded, the rest of a longer one
    /// skipped without being kept); `progress` is called every 1000 lines.
    pub fn run(
        &mut self,
        reader: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> Result<(), ReplayError> {
        let mut log = LogReader::new(reader).with_max_line_bytes(self.max_line_bytes);
        while let Some(line) = log.next_line()? {
            self.entry(line.number, line.entry)?;
            if line.number.is_multiple_of(1000) {
                progress(line.number);
            }
        }
        // A decision whose approval never settled (gavel stopped while
        // asking, or the log was cut) has no outcome to compare with.
        let left = self.pending.len() as u64;
        self.pending.clear();
        self.unsettled(left);
        match self.ambiguity() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
