//! `gavel explain --decision ID --log FILE`: one logged decision in words —
//! outcome, reasons with their catalog texts, the rules that matched, what
//! the agent was told to do — and which inputs mattered, found by
//! re-evaluating the logged input against the bundles with one field changed
//! at a time ([`super::counterfactual`]).
//!
//! The re-evaluation covers the policy engine only: gavel's static rules
//! (`servers.<name>.tools`) are not re-run, and a record they decided says
//! so. When the given bundles are not the ones that made the decision
//! (digests differ) the explanation says that too, since the counterfactuals
//! then describe the given policy, not the logged one.

use serde_json::Value;

use super::counterfactual::{self, Outcome};
use super::doc::Doc;
use super::{GovernanceError, ServerBundles};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

fn outcome_text(o: &Outcome) -> String {
    if o.allow && o.approval {
        "allowed after a human's approval".into()
    } else if o.allow {
        "allowed".into()
    } else if o.reasons.is_empty() {
        "denied".into()
    } else {
        format!("denied ({})", o.reasons.join(", "))
    }
}

/// The server a record was decided for (`path`, in logs written before
/// gavel wrote OPA decision paths, was the first bundle's name,
/// or `gavel/static`).
pub fn server_of(record: &Value) -> &str {
    record["input"]["action"]["server"]
        .as_str()
        .or(record["path"].as_str())
        .unwrap_or("?")
}

/// One logged decision to explain, and what to re-evaluate it with.
pub struct Explain<'a> {
    /// The decision-log record.
    pub record: &'a Value,
    /// Its line in the log.
    pub line: usize,
    /// The bundles to re-evaluate with; `None` when the caller has none for
    /// this server.
    pub bundles: Option<&'a ServerBundles>,
    pub config: Option<&'a crate::config::Config>,
    /// Re-evaluations allowed for the counterfactuals.
    pub budget: usize,
}

/// Explains one logged decision: what was decided, why, and which inputs
/// mattered.
pub fn explain_record(doc: &mut Doc, e: &Explain) -> Result<(), GovernanceError> {
    let result = &e.record["result"];
    let logged = Outcome {
        allow: result["allow"].as_bool().unwrap_or(false),
        reasons: strings(&result["reasons"]),
        approval: result["require_approval"].is_object(),
    };
    what_was_decided(doc, e.record, e.line, &logged);
    why(doc, result, &logged);
    which_inputs_mattered(doc, e, &logged);
    Ok(())
}

/// The heading and who asked for what, when, with which outcome.
fn what_was_decided(doc: &mut Doc, record: &Value, line: usize, logged: &Outcome) {
    let id = record["decision_id"].as_str().unwrap_or("?");
    let result = &record["result"];
    let action = &record["input"]["action"];
    doc.heading(1, format!("Decision `{id}`"));
    doc.para(format!(
        "{} {} `{}` on server `{}` at {} (log line {line}): **{}**.",
        action["type"].as_str().unwrap_or("request"),
        if action["type"] == "tool_call" {
            "of tool"
        } else {
            "for"
        },
        action["tool"].as_str().unwrap_or("?"),
        server_of(record),
        record["timestamp"].as_str().unwrap_or("?"),
        if logged.allow { "allowed" } else { "denied" },
    ));
    let who = &record["input"]["user"];
    doc.para(format!(
        "User `{}` (groups {}), agent `{}`; policy {} (decided by: {}).",
        who["id"].as_str().unwrap_or("(not in the log)"),
        who["groups"],
        record["input"]["agent"]["id"].as_str().unwrap_or("?"),
        result["policy_version"].as_str().unwrap_or("?"),
        record["labels"]["policy"].as_str().unwrap_or("?"),
    ));
}

/// The logged reasons with their catalog texts, the rules that matched and
/// what the agent was told.
fn why(doc: &mut Doc, result: &Value, logged: &Outcome) {
    doc.heading(2, "Why");
    if logged.reasons.is_empty() {
        doc.bullet(0, "No reason codes: every layer allowed.");
    }
    for r in &logged.reasons {
        match result["reason_texts"][r].as_str() {
            Some(t) => doc.bullet(0, format!("`{r}`: {t}")),
            None => doc.bullet(0, format!("`{r}`")),
        }
    }
    let matched = strings(&result["matched_rules"]);
    if !matched.is_empty() {
        doc.bullet(
            0,
            format!(
                "Matched rules: {}",
                matched
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    for m in result["policy_metadata"].as_array().into_iter().flatten() {
        doc.bullet(
            0,
            format!(
                "Bundle `{}` reported its own version {} and matched rules {}",
                m["bundle"].as_str().unwrap_or("?"),
                m["policy_version"].as_str().unwrap_or("(none)"),
                strings(&m["matched_rules"])
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if let Some(r) = result["remediation"].as_str() {
        doc.bullet(0, format!("Remediation given: {r}"));
    }
    if let Some(a) = result["appeal_path"].as_str() {
        doc.bullet(0, format!("Appeal path given: {a}"));
    }
}

/// Re-evaluates the logged input with the given bundles, then with one
/// field changed at a time; says why when it cannot.
fn which_inputs_mattered(doc: &mut Doc, e: &Explain, logged: &Outcome) {
    let record = e.record;
    let mut masked = strings(&record["masked"]);
    masked.extend(strings(&record["erased"]));
    doc.heading(2, "Which inputs mattered");
    let Some(sb) = e.bundles.filter(|sb| !sb.bundles.is_empty()) else {
        doc.para("No policy bundles for this server were given (pass --bundle or --config), so the inputs could not be re-evaluated.");
        return;
    };
    let engine = match super::build_engine(sb, e.config) {
        Ok(engine) => engine,
        Err(err) => {
            doc.para(format!(
                "These bundles cannot be evaluated, so the inputs could not be re-evaluated: {err}"
            ));
            return;
        }
    };
    provenance_notes(doc, record, sb);
    let input = &record["input"];
    let mut decide = |i: &Value| {
        engine.decide(i).map(|o| Outcome {
            allow: o.decision.allow,
            reasons: o.decision.reasons,
            approval: o.decision.require_approval.is_some(),
        })
    };
    let baseline = match decide(input) {
        Ok(o) => o,
        Err(err) => {
            doc.para(format!(
                "The logged input cannot be re-evaluated with these bundles: {err}"
            ));
            return;
        }
    };
    doc.para(format!(
        "Re-evaluated unchanged: {}{}.",
        outcome_text(&baseline),
        if baseline == *logged {
            ", as logged"
        } else {
            " — differs from the log"
        }
    ));
    let cf = counterfactual::explore(input, &baseline, &masked, e.budget, &mut decide);
    counterfactual_findings(doc, &cf, &masked, e.budget);
}

/// Notes that the findings may not describe the logged decision: other
/// bundles than the logged ones (by digest), or a decision the policy engine
/// did not make.
fn provenance_notes(doc: &mut Doc, record: &Value, sb: &ServerBundles) {
    let mut differing = Vec::new();
    for b in &sb.bundles {
        match record["bundles"][&b.name]["digest"].as_str() {
            Some(d) if d == b.digest => {}
            Some(_) => differing.push(format!("`{}` (digest differs from the logged one)", b.name)),
            None => differing.push(format!("`{}` (not in the record)", b.name)),
        }
    }
    if !differing.is_empty() {
        doc.para(format!(
            "Note: re-evaluating with bundles that did not make this decision: {}. The findings describe the given policy.",
            differing.join(", ")
        ));
    }
    if record["labels"]["policy"] != "rego" {
        doc.para(format!(
            "Note: this decision was made by {} rather than the policy engine; only the policy part is re-evaluated here.",
            match record["labels"]["policy"].as_str() {
                Some("static") => "gavel's static rules (servers.<name>.tools)",
                Some("unavailable") => "a fail-closed policy error",
                Some("none") => "the absence of a policy",
                _ => "something other than the bundles",
            }
        ));
    }
}

/// The single-field changes that flipped the outcome, and what was not
/// tried (masked in the log, beyond the budget, failed).
fn counterfactual_findings(
    doc: &mut Doc,
    cf: &counterfactual::Counterfactuals,
    masked: &[String],
    budget: usize,
) {
    doc.para(format!(
        "{} re-evaluations over {} input fields (budget {budget}), each with one field removed or changed:",
        cf.evaluations, cf.leaves
    ));
    if cf.flips.is_empty() {
        doc.bullet(0, "No single-field change alters the outcome.");
    }
    for f in &cf.flips {
        doc.bullet(
            0,
            format!(
                "`{}` (logged `{}`): {} → {}",
                f.field,
                f.value,
                f.change,
                outcome_text(&f.outcome)
            ),
        );
    }
    // What the log hid: the record's masked/erased pointers, and any leaf
    // carrying the redaction marker. Their real values are unknown.
    let mut hidden: Vec<String> = masked
        .iter()
        .map(|p| format!("input{}", p.trim_start_matches("/input").replace('/', ".")))
        .collect();
    for m in &cf.masked {
        if !hidden.iter().any(|h| m.starts_with(h.as_str())) {
            hidden.push(m.clone());
        }
    }
    if !hidden.is_empty() {
        doc.bullet(
            0,
            format!(
                "Not tried (masked or erased in the log, real value unknown): {}",
                hidden.join(", ")
            ),
        );
    }
    if cf.untried > 0 {
        doc.bullet(
            0,
            format!(
                "Not tried: {} changes beyond the budget of {budget} evaluations.",
                cf.untried
            ),
        );
    }
    for (what, e) in &cf.errors {
        doc.bullet(0, format!("{what}: evaluation failed: {e}"));
    }
}
