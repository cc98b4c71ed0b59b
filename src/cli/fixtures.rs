//! `gavel test --config servers.toml --server NAME FIXTURE…`: fixture cases
//! decided by the server's whole layered decision — the enforcer the proxy
//! decides with (`Enforcer::decide`: static rules, every bundle the config
//! gives the server and the shared layers combined, limits and budgets) —
//! so a team tests the combined effect of identity + resource + workflow +
//! compliance + override, not each bundle alone.
//!
//! A fixture file (YAML, or JSON) holds cases; each gives a partial policy
//! input, merged onto what the config gives (its `[identity]`, the
//! server's name, an empty session), and the expected decision:
//!
//! ```yaml
//! server: filesystem            # optional; must then be --server
//! cases:
//!   - name: a read inside demo-data is allowed
//!     input:
//!       action: {tool: read_text_file, args: {path: notes.txt}}
//!     expect: {allow: true}
//!   - name: traversal is refused
//!     input:
//!       action: {tool: read_text_file, args: {path: ../secrets}}
//!       user: {groups: [engineering]}
//!     expect: {allow: false, reasons: [path_outside_scope]}
//! ```
//!
//! `input` takes the input contract's fields gavel does not compute itself:
//! `action` (`type`, `tool`, `args`, `annotations`, `annotations_trusted`,
//! `tool_digest`, `data_classes_referenced` — classes the upstream
//! declares, added to the bundle's classification), `agent`, `user`,
//! `environment` (with `time`, RFC 3339, the decision's clock) and
//! `context` (the session's counters, and `data_classes_seen`: what its
//! earlier answers carried). `expect` takes `allow` (required),
//! `reasons` (the exact set) and `require_approval` (whether the decision
//! asks a human). The cases of a file run in order against one fresh,
//! private state store — as one agent's successive calls, so a file can
//! show the call a rate limit refuses — and nothing is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bundle::testrun::{Outcome, TestReport, TestResult, report};
use crate::config::{Config, Identity};
use crate::decision::{Action, ActionType, DecisionContext, Enforcer};
use crate::state::clock::ManualClock;

use super::ExitStatus;
use super::test::TestArgs;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    input: Input,
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    action: ActionIn,
    agent: Option<AgentIn>,
    user: Option<UserIn>,
    environment: Option<EnvIn>,
    context: Option<ContextIn>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    server: Option<String>,
    tool: Option<String>,
    args: Option<Value>,
    annotations: Option<Value>,
    annotations_trusted: Option<bool>,
    tool_digest: Option<String>,
    #[serde(default)]
    data_classes_referenced: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentIn {
    id: Option<String>,
    scope: Option<Vec<String>>,
    owner_team: Option<String>,
    client: Option<ClientIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientIn {
    name: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIn {
    id: Option<String>,
    groups: Option<Vec<String>>,
    data_classifications_authorized: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvIn {
    region: Option<String>,
    is_production: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
    time: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ContextIn {
    session_id: Option<String>,
    turn_count: Option<u64>,
    denied_count: Option<u64>,
    tool_calls: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    cumulative_tokens: Option<u64>,
    consecutive_same_tool: Option<u64>,
    calls_last_minute: Option<u64>,
    session_age_seconds: Option<f64>,
    /// `[{class, server, tool}]`: what the session's earlier answers carried.
    data_classes_seen: Option<Vec<crate::decision::seen::SeenClass>>,
}

#[derive(Deserialize, serde::Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct Expect {
    allow: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    require_approval: Option<bool>,
}

/// Bound on a fixture file (it is read whole).
const MAX_FIXTURE_BYTES: u64 = 16 * 1024 * 1024;

pub fn run(
    config: &Path,
    server: &str,
    a: &TestArgs,
    run: Option<&regex::Regex>,
) -> anyhow::Result<()> {
    let cfg: Config = super::load_config(config)?;
    if !cfg.servers.contains_key(server) {
        let names: Vec<&String> = cfg.servers.keys().collect();
        bail!(
            "--server {server:?}: {} has no such server (it has {names:?})",
            config.display()
        );
    }
    let mut all = TestReport::default();
    for path in &a.paths {
        let (file, text) = read(path)?;
        if let Some(s) = &file.server
            && s != server
        {
            bail!(
                "{}: the fixtures are for server {s:?}, not --server {server:?}",
                path.display()
            );
        }
        // A fresh enforcer (and state store) per file: files do not share
        // rate-limit or budget state.
        let state = StateDir::new()?;
        let (enforcer, clock) = enforcer(cfg.clone(), server, &state.0)?;
        let rows = case_rows(&text, &file.cases);
        for (case, row) in file.cases.iter().zip(rows) {
            let full = format!("{}#{}", path.display(), case.name);
            if run.is_some_and(|re| !re.is_match(&full)) {
                continue;
            }
            let r = decide_case(&enforcer, &clock, server, path, row, case)
                .with_context(|| format!("{}: case {:?}", path.display(), case.name))?;
            all.results.push(r);
        }
    }
    if a.format == "json" {
        println!("{}", report::json(&all)); // stdout-ok
    } else {
        print!("{}", report::pretty(&all, a.verbose)); // stdout-ok
    }
    if all.results.is_empty() && a.fail_on_empty {
        return Err(ExitStatus::new(1, "no fixture cases were run").into());
    }
    if all.failed() > 0 {
        return Err(ExitStatus::new(2, "").into());
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<(File, String)> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX_FIXTURE_BYTES {
        bail!(
            "{}: {} bytes; a fixture file may have at most {MAX_FIXTURE_BYTES}",
            path.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File = yaml_serde::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a fixture file ({e}); see docs/policy.md, \"Testing the layered decision\"",
            path.display()
        )
    })?;
    if file.cases.is_empty() {
        bail!("{}: no cases", path.display());
    }
    let mut seen = std::collections::HashSet::new();
    for c in &file.cases {
        if !seen.insert(&c.name) {
            bail!("{}: two cases are named {:?}", path.display(), c.name);
        }
    }
    Ok((file, text))
}

/// The line of each case's `name:` (for `file:row:` in the report): the
/// first line at or after the previous case's that names it.
fn case_rows(text: &str, cases: &[Case]) -> Vec<u32> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    cases
        .iter()
        .map(|c| {
            match (from..lines.len())
                .find(|&i| lines[i].contains("name") && lines[i].contains(c.name.as_str()))
            {
                Some(i) => {
                    from = i + 1;
                    (i + 1) as u32
                }
                None => 0,
            }
        })
        .collect()
}

/// A state directory of the run's own, removed afterwards: fixtures never
/// charge the configured state store.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> anyhow::Result<Self> {
        let d = std::env::temp_dir().join(format!("gavel-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(Self(d))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The enforcer of `server` alone, as the proxy builds it, with no decision
/// log, a private state store and a clock the cases set.
fn enforcer(
    mut cfg: Config,
    server: &str,
    state: &Path,
) -> anyhow::Result<(Enforcer, Arc<ManualClock>)> {
    cfg.servers.retain(|n, _| n == server);
    cfg.log.decisions = None;
    cfg.redis_url = None;
    cfg.state_path = Some(state.join("state.sqlite"));
    let clock = Arc::new(ManualClock::new(now()));
    let enforcer = Enforcer::from_config_with_clock(&cfg, clock.clone())?;
    for (name, status) in enforcer.policy_status() {
        if let Err(why) = status {
            bail!("server {name:?}: its policy cannot be loaded: {why}");
        }
    }
    Ok((enforcer, clock))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn decide_case(
    enforcer: &Enforcer,
    clock: &ManualClock,
    server: &str,
    path: &Path,
    row: u32,
    case: &Case,
) -> anyhow::Result<TestResult> {
    let (action, ctx) = request(enforcer, server, &case.input)?;
    if let Some(t) = case
        .input
        .environment
        .as_ref()
        .and_then(|e| e.time.as_ref())
    {
        let at = humantime::parse_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("input.environment.time {t:?}: {e}"))?;
        clock.set(
            at.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
    }
    let start = Instant::now();
    let verdict = enforcer.decide(&action, &ctx);
    let duration_ns = start.elapsed().as_nanos() as u64;
    let d = verdict.decision();
    let actual = json!({
        "allow": d.allow,
        "reasons": d.reasons,
        "require_approval": d.require_approval.is_some(),
        "matched_rules": d.matched_rules,
    });
    let e = &case.expect;
    let mut ok = d.allow == e.allow;
    if let Some(want) = &e.reasons {
        let got: std::collections::BTreeSet<&String> = d.reasons.iter().collect();
        ok &= got == want.iter().collect();
    }
    if let Some(want) = e.require_approval {
        ok &= d.require_approval.is_some() == want;
    }
    Ok(TestResult {
        package: String::new(),
        name: format!("{}#{}", path.display(), case.name),
        file: path.display().to_string(),
        row,
        col: 0,
        outcome: if ok { Outcome::Pass } else { Outcome::Fail },
        error: None,
        sub_results: BTreeMap::new(),
        output: String::new(),
        duration_ns,
        expected: Some(serde_json::to_value(e).unwrap_or(Value::Null)),
        actual: Some(actual),
    })
}

/// The action and session of a case: its partial input over the config's.
fn request(
    enforcer: &Enforcer,
    server: &str,
    input: &Input,
) -> anyhow::Result<(Action, DecisionContext)> {
    let a = &input.action;
    if let Some(s) = &a.server
        && s != server
    {
        bail!("input.action.server {s:?}: the fixtures test server {server:?}");
    }
    let kind = match a.kind.as_deref().unwrap_or("tool_call") {
        "tool_call" => ActionType::ToolCall,
        "resource_read" => ActionType::ResourceRead,
        "resource_subscribe" => ActionType::ResourceSubscribe,
        "prompt_get" => ActionType::PromptGet,
        "completion" => ActionType::Completion,
        "sampling_request" => ActionType::SamplingRequest,
        "elicitation_request" => ActionType::ElicitationRequest,
        "policy_query" => ActionType::PolicyQuery,
        other => bail!(
            "input.action.type {other:?}: one of tool_call, resource_read, resource_subscribe, prompt_get, completion, sampling_request, elicitation_request, policy_query"
        ),
    };
    let Some(tool) = &a.tool else {
        bail!("input.action.tool is missing (the tool, prompt, resource URI or method)");
    };
    let mut action = Action::new(
        kind,
        server,
        tool.clone(),
        a.args.clone().unwrap_or_else(|| json!({})),
    );
    if let Some(ann) = &a.annotations {
        action.annotations = ann.clone();
    }
    action.annotations_trusted = a
        .annotations_trusted
        .unwrap_or_else(|| enforcer.annotations_trusted(server));
    action.tool_digest = a.tool_digest.clone();
    action.upstream_data_classes = a.data_classes_referenced.clone();
    Ok((action, context(enforcer.configured_identity(), input)))
}

fn context(configured: &Identity, input: &Input) -> DecisionContext {
    let mut id = configured.clone();
    let mut ctx = DecisionContext {
        session_id: "gavel-test".into(),
        ..Default::default()
    };
    if let Some(ag) = &input.agent {
        set(&mut id.agent.id, &ag.id);
        set(&mut id.agent.scope, &ag.scope);
        if ag.owner_team.is_some() {
            id.agent.owner_team = ag.owner_team.clone();
        }
        ctx.client = ag
            .client
            .as_ref()
            .map(|c| (c.name.clone(), c.version.clone()));
    }
    if let Some(u) = &input.user {
        set(&mut id.user.id, &u.id);
        set(&mut id.user.groups, &u.groups);
        set(
            &mut id.user.data_classifications_authorized,
            &u.data_classifications_authorized,
        );
    }
    if let Some(e) = &input.environment {
        if e.region.is_some() {
            id.environment.region = e.region.clone();
        }
        set(&mut id.environment.is_production, &e.is_production);
        set(&mut id.environment.labels, &e.labels);
    }
    if let Some(c) = &input.context {
        set(&mut ctx.session_id, &c.session_id);
        set(&mut ctx.session_age_seconds, &c.session_age_seconds);
        let k = &mut ctx.counters;
        set(&mut k.turn_count, &c.turn_count);
        set(&mut k.denied_count, &c.denied_count);
        set(&mut k.tool_calls, &c.tool_calls);
        set(&mut k.cumulative_tokens, &c.cumulative_tokens);
        set(&mut k.consecutive_same_tool, &c.consecutive_same_tool);
        set(&mut k.calls_last_minute, &c.calls_last_minute);
        for e in c.data_classes_seen.iter().flatten() {
            k.data_classes_seen
                .add(&e.server, &e.tool, std::slice::from_ref(&e.class));
        }
    }
    ctx.identity = Some(Arc::new(id));
    ctx
}

fn set<T: Clone>(field: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        *field = v.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case's partial input changes only the fields it gives; the rest is
    /// the config's identity and an empty session.
    #[test]
    fn a_partial_input_is_merged_onto_the_configured_identity() {
        let mut configured = Identity::default();
        configured.user.id = "alice".into();
        configured.user.groups = vec!["engineering".into()];
        configured.environment.region = Some("eu-west-1".into());
        let input: Input = yaml_serde::from_str(
            "action: {tool: t}\nuser: {groups: [marketing]}\ncontext: {calls_last_minute: 7, data_classes_seen: [{class: confidential, server: fs, tool: read}]}\nagent: {client: {name: c, version: '1'}}\n",
        )
        .unwrap();
        let ctx = context(&configured, &input);
        let id = ctx.identity.as_deref().unwrap();
        assert_eq!(id.user.id, "alice");
        assert_eq!(id.user.groups, ["marketing"]);
        assert_eq!(id.environment.region.as_deref(), Some("eu-west-1"));
        assert_eq!(ctx.counters.calls_last_minute, 7);
        assert_eq!(ctx.counters.turn_count, 0);
        assert!(ctx.counters.data_classes_seen.contains("confidential"));
        assert_eq!(ctx.client, Some(("c".into(), "1".into())));
        let bad = yaml_serde::from_str::<Input>("user: {group: [x]}\n");
        let Err(e) = bad else {
            panic!("an unknown field is refused")
        };
        assert!(e.to_string().contains("unknown field `group`"), "{e}");
    }
}
