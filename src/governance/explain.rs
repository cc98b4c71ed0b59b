//! `gavel explain <bundle>`: what a policy says, in words, from the bundle
//! itself — its `# METADATA` titles and descriptions, its reason catalog,
//! the conditions under which each reason fires (the rule bodies, with the
//! data they compare against filled in), remediation and appeal path, the
//! limits kept in data, and per tool the policy names, what a plain call gets.
//!
//! The conditions are shown as the policy's own expressions rather than
//! paraphrased: a paraphrase that drifts from the Rego would be worse than
//! none. Data values are resolved so `max_calls_per_minute` reads as `60`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::doc::Doc;
use super::rego_facts::{Condition, Facts, analyze_module, data_at, short};
use super::{GovernanceError, ServerBundles};
use crate::bundle::Bundle;
use crate::bundle::lint::{parse_module, ref_prefix};
use crate::bundle::metadata;
use crate::config::Identity;

/// At most this many tools get a probe evaluation per server.
const MAX_TOOLS: usize = 100;
/// At most this many data settings are listed per bundle.
const MAX_SETTINGS: usize = 50;

/// Leaf settings under a bundle's roots (limits, lists), less what is shown
/// elsewhere (reasons, appeal path, classification).
fn settings(b: &Bundle) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        if out.len() >= MAX_SETTINGS {
            return;
        }
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    if matches!(k.as_str(), "reasons" | "appeal_path" | "classification") {
                        continue;
                    }
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            // A list of records (e.g. declared rate limits): one line per field.
            Value::Array(a) if a.iter().any(Value::is_object) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            other => out.push((prefix.to_string(), short(other))),
        }
    }
    let mut out = Vec::new();
    for root in &b.manifest.roots {
        let parts: Vec<String> = root
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if let Some(v) = data_at(&b.data, &parts) {
            walk(&format!("data.{}", parts.join(".")), v, &mut out);
        }
    }
    out
}

fn reason_catalog(b: &Bundle) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for root in &b.manifest.roots {
        let parts: Vec<String> = root
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if let Some(Value::Object(o)) = data_at(&b.data, &parts).and_then(|v| v.get("reasons")) {
            out.extend(o.clone());
        }
    }
    out
}

fn appeal_path(b: &Bundle) -> Option<String> {
    b.manifest.roots.iter().find_map(|root| {
        let parts: Vec<String> = root
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        data_at(&b.data, &parts)?
            .get("appeal_path")?
            .as_str()
            .map(String::from)
    })
}

/// The input a probe evaluation uses: a plain call of `tool` with no
/// arguments, at the start of a session, by `identity` (or a user nobody
/// configured, which the identity layer is expected to refuse).
pub fn probe_input(server: &str, tool: &str, identity: Option<&Identity>) -> Value {
    let (agent, user, env) = match identity {
        Some(i) => (
            json!({"id": i.agent.id, "scope": i.agent.scope, "owner_team": i.agent.owner_team, "client": {}}),
            json!({"id": i.user.id, "groups": i.user.groups, "data_classifications_authorized": i.user.data_classifications_authorized}),
            json!({"region": i.environment.region, "is_production": i.environment.is_production, "labels": i.environment.labels, "time": "2026-01-01T00:00:00Z"}),
        ),
        None => (
            json!({"id": "probe-agent", "scope": [], "client": {}}),
            json!({"id": "unknown-user", "groups": [], "data_classifications_authorized": []}),
            json!({"region": "", "is_production": false, "labels": {}, "time": "2026-01-01T00:00:00Z"}),
        ),
    };
    json!({
        "agent": agent, "user": user, "environment": env,
        "action": {"type": "tool_call", "server": server, "tool": tool, "args": {}, "annotations": {},
                   "annotations_trusted": false, "tool_digest": "", "data_classes_referenced": []},
        "context": {"session_id": "explain-probe", "turn_count": 0, "denied_count": 0, "tool_calls": {},
                    "cumulative_tokens": 0, "consecutive_same_tool": 0, "calls_last_minute": 0,
                    "data_classes_seen": [], "session_age_seconds": 0},
    })
}

/// Writes the explanation of one server's policy into `doc`.
/// How the per-tool outcomes are obtained.
pub enum Probe<'a> {
    /// Evaluate each named tool with this engine.
    Engine(&'a crate::decision::engine::PolicyEngine),
    /// The policy cannot be evaluated (the reason is shown; the rest of the
    /// explanation is still written).
    Unavailable(&'a str),
    /// Leave the per-tool outcomes out.
    Skip,
}

pub fn explain_server(
    doc: &mut Doc,
    sb: &ServerBundles,
    probe: Probe<'_>,
    identity: Option<&Identity>,
) -> Result<(), GovernanceError> {
    doc.heading(1, format!("Server `{}`", sb.server));
    if sb.bundles.is_empty() {
        doc.para("No policy bundle: only gavel's static rules (servers.<name>.tools) apply; every other request is allowed.");
        return Ok(());
    }
    let own = layers_of_server(doc, sb);
    let all_tools = explain_bundles_of_server(doc, sb, own)?;
    match probe {
        Probe::Unavailable(why) => {
            doc.heading(2, "Tools the policy names");
            doc.para(format!(
                "The policy cannot be evaluated, so no per-tool outcome is shown (gavel would deny every request to this server): {why}"
            ));
        }
        Probe::Engine(engine) => {
            doc.heading(2, "Tools the policy names");
            probe_tools(doc, &sb.server, engine, identity, &all_tools);
        }
        Probe::Skip => {}
    }
    Ok(())
}

/// The server's layers, how they combine, and which are the org-wide ones
/// (explained once elsewhere). Returns how many are the server's own.
fn layers_of_server(doc: &mut Doc, sb: &ServerBundles) -> usize {
    let layers: Vec<String> = sb
        .bundles
        .iter()
        .map(|b| format!("`{}` ({})", b.name, layer_of(b)))
        .collect();
    doc.para(format!(
        "Decided by {} bundle(s): {}. A request is allowed only when every identity, resource, workflow and compliance layer allows it; an override layer may waive resource and workflow reasons only.",
        sb.bundles.len(),
        layers.join(", ")
    ));
    let own = sb.bundles.len() - sb.shared.min(sb.bundles.len());
    if own < sb.bundles.len() {
        let shared: Vec<String> = sb.bundles[own..]
            .iter()
            .map(|b| format!("`{}`", b.name))
            .collect();
        doc.para(format!(
            "The org-wide layers {} are explained once, under \"Org-wide layers\".",
            shared.join(", ")
        ));
    }
    own
}

/// Explains the server's own bundles; returns every tool any of its bundles
/// names, with where (`bundle: rule`).
fn explain_bundles_of_server(
    doc: &mut Doc,
    sb: &ServerBundles,
    own: usize,
) -> Result<BTreeMap<String, BTreeSet<String>>, GovernanceError> {
    let mut all_tools: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, b) in sb.bundles.iter().enumerate() {
        // Shared layers are analysed for tool names but written out once.
        let mut scratch = Doc::default();
        let facts = explain_bundle(if i < own { &mut *doc } else { &mut scratch }, b)?;
        for (t, via) in facts.tools {
            all_tools
                .entry(t)
                .or_default()
                .extend(via.into_iter().map(|v| format!("{}: {v}", b.name)));
        }
    }
    Ok(all_tools)
}

/// What a plain call of each named tool gets from `engine` (at most
/// [`MAX_TOOLS`]).
fn probe_tools(
    doc: &mut Doc,
    server: &str,
    engine: &crate::decision::engine::PolicyEngine,
    identity: Option<&Identity>,
    all_tools: &BTreeMap<String, BTreeSet<String>>,
) {
    if all_tools.is_empty() {
        doc.para("The policy names no tool: its rules apply to every tool alike.");
        return;
    }
    doc.para(format!(
        "What a plain call (no arguments, fresh session) gets, as {}:",
        match identity {
            Some(i) => format!("the configured user `{}` (groups {:?})", i.user.id, i.user.groups),
            None => "an unconfigured user (`unknown-user`, no groups; pass --config for the configured identity)".into(),
        }
    ));
    for (tool, via) in all_tools.iter().take(MAX_TOOLS) {
        let verdict = match engine.decide(&probe_input(server, tool, identity)) {
            Ok(o) if o.decision.allow => match &o.decision.require_approval {
                Some(a) => format!("allowed after a human's approval ({})", a.reason),
                None => "allowed".to_string(),
            },
            Ok(o) => format!("denied ({})", o.decision.reasons.join(", ")),
            Err(e) => format!("cannot be decided: {e}"),
        };
        let via: Vec<&str> = via.iter().map(String::as_str).collect();
        doc.bullet(0, format!("`{tool}`: {verdict} — {}", via.join("; ")));
    }
    if all_tools.len() > MAX_TOOLS {
        doc.bullet(0, format!("… and {} more", all_tools.len() - MAX_TOOLS));
    }
}

/// The layers every server shares, written once.
pub fn explain_shared(
    doc: &mut Doc,
    bundles: &[std::sync::Arc<Bundle>],
) -> Result<(), GovernanceError> {
    if bundles.is_empty() {
        return Ok(());
    }
    doc.heading(1, "Org-wide layers");
    doc.para("These bundles ([policy] shared_bundles) are part of every server's policy above.");
    for b in bundles {
        explain_bundle(doc, b)?;
    }
    Ok(())
}

fn layer_of(b: &Bundle) -> String {
    b.manifest
        .gavel("layer")
        .and_then(Value::as_str)
        .unwrap_or("resource")
        .to_string()
}

/// Explains one bundle (what it is for, its rules, when it allows and
/// denies, what it tells the agent, its settings and data classes); returns
/// the facts found in its modules.
fn explain_bundle(doc: &mut Doc, b: &Bundle) -> Result<Facts, GovernanceError> {
    let annotations = metadata::parse_bundle(b)?;
    let mut facts = Facts::default();
    let mut packages = BTreeSet::new();
    for m in &b.modules {
        if m.path.ends_with("_test.rego") {
            continue;
        }
        let module = parse_module(&b.source, &m.path, &m.text, b.manifest.rego_v0())?;
        packages.insert(ref_prefix(&module.package.refr).0.join("."));
        analyze_module(&m.path, &m.text, &module, &b.data, &mut facts);
    }
    let pkg_doc = packages
        .iter()
        .find_map(|p| metadata::for_package(&annotations, p));
    bundle_header(doc, b, pkg_doc);
    facts.rule_docs = annotations
        .into_iter()
        .filter(|a| a.rule.is_some())
        .collect();
    rule_docs(doc, &facts.rule_docs);
    allowed_and_denied_when(doc, b, &facts);
    on_deny(doc, b, &facts);
    settings_and_data_classes(doc, b);
    Ok(facts)
}

/// The bundle's title (its package's `# METADATA`, else its name), layer,
/// revision, roots and description.
fn bundle_header(doc: &mut Doc, b: &Bundle, pkg_doc: Option<&metadata::Annotation>) {
    let title = pkg_doc
        .and_then(|a| a.title.clone())
        .unwrap_or_else(|| b.name.clone());
    doc.heading(2, format!("{title} — bundle `{}`", b.name));
    doc.para(format!(
        "Layer {}, revision {}, roots {}.",
        layer_of(b),
        if b.manifest.revision.is_empty() {
            "(none)"
        } else {
            &b.manifest.revision
        },
        b.manifest.roots.join(", ")
    ));
    match pkg_doc.and_then(|a| a.description.as_deref()) {
        Some(d) => doc.para(d.to_string()),
        None => doc.para("(No `# METADATA` description on its package: add one so this explanation can say what the policy is for.)"),
    }
}

/// The rules' own `# METADATA` titles and descriptions.
fn rule_docs(doc: &mut Doc, rule_docs: &[metadata::Annotation]) {
    for a in rule_docs {
        let text: Vec<&str> = [a.title.as_deref(), a.description.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !text.is_empty() {
            doc.bullet(
                0,
                format!(
                    "Rule `{}`: {}",
                    a.rule.as_deref().unwrap_or(""),
                    text.join(" — ")
                ),
            );
        }
    }
}

/// The conditions of allowing, and every reason code (found in the rules or
/// in the catalog) with its text and conditions.
fn allowed_and_denied_when(doc: &mut Doc, b: &Bundle, facts: &Facts) {
    if !facts.allow_when.is_empty() {
        doc.heading(3, "Allowed when");
        for c in &facts.allow_when {
            condition(doc, c);
        }
    }
    let catalog = reason_catalog(b);
    let mut codes: BTreeSet<&String> = facts.reasons.keys().collect();
    codes.extend(catalog.keys());
    if !codes.is_empty() {
        doc.heading(3, "Denied when");
        for code in codes {
            let text = catalog
                .get(code)
                .and_then(Value::as_str)
                .map(|t| format!(": {t}"))
                .unwrap_or_else(|| " (not in the reason catalog)".into());
            doc.bullet(0, format!("`{code}`{text}"));
            for c in facts.reasons.get(code).into_iter().flatten() {
                condition_nested(doc, c);
            }
        }
    }
}

/// What a denied agent is told: remediation and appeal path.
fn on_deny(doc: &mut Doc, b: &Bundle, facts: &Facts) {
    doc.heading(3, "On deny");
    if facts.remediation.is_empty() {
        doc.bullet(0, "Remediation: none given by the policy.");
    }
    for r in &facts.remediation {
        doc.bullet(0, format!("Remediation: {r}"));
    }
    match appeal_path(b) {
        Some(a) => doc.bullet(0, format!("Appeal: {a}")),
        None => doc.bullet(0, "Appeal: no appeal path in the bundle's data."),
    }
}

/// The bundle's settings (data) and its classification of tools and paths.
fn settings_and_data_classes(doc: &mut Doc, b: &Bundle) {
    let settings = settings(b);
    if !settings.is_empty() {
        doc.heading(3, "Limits and settings (data)");
        for (k, v) in settings {
            doc.bullet(0, format!("`{k}` = `{v}`"));
        }
    }
    let Some(cls) = b.manifest.roots.iter().find_map(|r| {
        data_at(&b.data, &r.split('/').map(String::from).collect::<Vec<_>>())?.get("classification")
    }) else {
        return;
    };
    doc.heading(3, "Data classes");
    for (tool, classes) in cls
        .get("tools")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        doc.bullet(0, format!("tool `{tool}` touches {}", short(classes)));
    }
    for p in cls
        .get("paths")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        doc.bullet(
            0,
            format!(
                "paths under `{}` touch {}",
                p["prefix"].as_str().unwrap_or("?"),
                short(&p["classes"])
            ),
        );
    }
}

fn condition(doc: &mut Doc, c: &Condition) {
    doc.bullet(0, describe(c));
}

fn condition_nested(doc: &mut Doc, c: &Condition) {
    doc.bullet(1, format!("when {}", describe(c)));
}

fn describe(c: &Condition) -> String {
    let when = if c.when.is_empty() {
        "always".to_string()
    } else {
        c.when.join(" and ")
    };
    let mut s = format!("{when} (rule `{}`, {}:{})", c.rule, c.file, c.line);
    if !c.where_.is_empty() {
        s.push_str(&format!(", where {}", c.where_.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::doc::Format;
    use std::path::PathBuf;

    fn bundles(names: &[&str]) -> ServerBundles {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundles");
        let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
        crate::governance::bundles_from_paths(&paths).unwrap()
    }

    #[test]
    fn workflow_bundle_reads_in_plain_terms() {
        let sb = bundles(&["workflow"]);
        let mut doc = Doc::default();
        explain_server(&mut doc, &sb, Probe::Skip, None).unwrap();
        let md = doc.render(Format::Markdown);
        for needle in [
            "Runaway-agent brakes",
            "Stops loops",
            "`too_many_calls_per_minute`: the agent is calling tools faster than allowed",
            "`data.gavel.workflow.max_calls_per_minute = 60`",
            "`input.context.calls_last_minute >= data.gavel.workflow.max_calls_per_minute`",
            "Remediation: Stop and check with the user",
            "`data.gavel.workflow.max_session_tokens` = `200000`",
        ] {
            assert!(md.contains(needle), "{needle} missing from:\n{md}");
        }
        // `else := full_decision` is not an unconditional allow.
        assert!(!md.contains("- always"), "{md}");
    }

    #[test]
    fn lists_of_records_in_data_read_field_by_field() {
        let mut b = (*bundles(&["workflow"]).bundles[0]).clone();
        b.data["gavel"]["workflow"]["limits"] =
            json!([{"scope": "user", "rate": 120, "per": "1m"}]);
        let s = settings(&b);
        assert!(
            s.contains(&("data.gavel.workflow.limits[0].rate".into(), "120".into())),
            "{s:?}"
        );
        assert!(
            s.contains(&("data.gavel.workflow.limits[0].per".into(), "\"1m\"".into())),
            "{s:?}"
        );
    }

    #[test]
    fn tools_are_found_and_probed() {
        let sb = bundles(&["filesystem"]);
        let engine = crate::governance::build_engine(&sb, None).unwrap();
        let mut doc = Doc::default();
        explain_server(&mut doc, &sb, Probe::Engine(&engine), None).unwrap();
        let text = doc.render(Format::Text);
        // A plain read with no path is allowed; move_file is refused as destructive.
        assert!(
            text.contains("- read_file: allowed — filesystem: in read_tools"),
            "{text}"
        );
        assert!(
            text.contains("- move_file: denied (destructive_operation)"),
            "{text}"
        );
        assert!(
            text.contains("Appeal: https://access.example.com/request?resource=filesystem"),
            "{text}"
        );
        assert!(
            text.contains("paths under confidential touch [\"confidential\"]"),
            "{text}"
        );
    }

    #[test]
    fn decision_literal_reasons_and_data_lists() {
        let sb = bundles(&["time"]);
        let engine = crate::governance::build_engine(&sb, None).unwrap();
        let mut doc = Doc::default();
        explain_server(&mut doc, &sb, Probe::Engine(&engine), None).unwrap();
        let md = doc.render(Format::Markdown);
        assert!(md.contains("### Allowed when"), "{md}");
        assert!(
            md.contains("`action_not_permitted` (not in the reason catalog)"),
            "{md}"
        );
        assert!(md.contains("`get_current_time`: allowed"), "{md}");
        let sb = bundles(&["everything"]);
        let engine = crate::governance::build_engine(&sb, None).unwrap();
        let mut doc = Doc::default();
        explain_server(&mut doc, &sb, Probe::Engine(&engine), None).unwrap();
        let md = doc.render(Format::Markdown);
        assert!(
            md.contains(
                "`get-env`: denied (tool_blocked) — everything: in `data.mcp.everything.blocked`"
            ),
            "{md}"
        );
    }
}
