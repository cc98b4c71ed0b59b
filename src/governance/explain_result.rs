//! `gavel explain --decision` for result decisions (docs/policy.md,
//! "Result policy"): a result record in words — which request it belongs
//! to (`result_of`), its outcome, what was redacted and filtered by which
//! rule (counts only: the log never holds the removed values), why a
//! result was denied or withheld — and, for a request decision, the result
//! records that follow it.

use std::path::Path;

use serde_json::Value;

use super::GovernanceError;
use super::doc::Doc;

/// At most this many result records are listed under one request.
const MAX_LISTED: usize = 100;

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("?")
}

/// Explains one result record (line `line` of the log).
pub fn explain_result(doc: &mut Doc, record: &Value, line: usize) {
    let id = str_of(record, "decision_id");
    doc.heading(1, format!("Result decision `{id}`"));
    describe(doc, record, line);
}

/// The body shared by a result record on its own and one listed under its
/// request.
fn describe(doc: &mut Doc, record: &Value, line: usize) {
    let result = &record["result"];
    let action = &record["input"]["action"];
    if str_of(action, "type") == "resource_list" {
        doc.para(list_sentence(record, line));
    } else {
        doc.para(request_sentence(record, line));
    }
    describe_changes(doc, result);
}

/// A resource list's decision (docs/policy.md, "Resource lists"): it
/// answers no request.
fn list_sentence(record: &Value, line: usize) -> String {
    format!(
        "The resource list of server `{}` as one session is shown it, decided at {} (log line {line}) by `{}`: **{}**.",
        str_of(&record["input"]["action"], "server"),
        str_of(record, "timestamp"),
        str_of(record, "path"),
        match str_of(&record["result"], "outcome") {
            "pass" => "listed as the server sent it",
            "modified" => "listed, filtered or redacted",
            "deny" => "denied — none of the server's resources are listed",
            "error" => "not decidable — none of the server's resources are listed (fail closed)",
            other => other,
        }
    )
}

fn request_sentence(record: &Value, line: usize) -> String {
    let action = &record["input"]["action"];
    format!(
        "The result of request `{}` ({} `{}` on server `{}`), decided at {} (log line {line}) by `{}`: **{}**.",
        str_of(record, "result_of"),
        str_of(action, "type"),
        str_of(action, "tool"),
        str_of(action, "server"),
        str_of(record, "timestamp"),
        str_of(record, "path"),
        match str_of(&record["result"], "outcome") {
            "pass" => "passed unchanged",
            "modified" => "passed, redacted or filtered",
            "deny" => "denied — the request had been carried out; its result was withheld",
            "error" => "withheld — a result rule failed (fail closed)",
            other => other,
        }
    )
}

/// What a result decision removed or why it failed.
fn describe_changes(doc: &mut Doc, result: &Value) {
    let reasons: Vec<&str> = result["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !reasons.is_empty() {
        doc.bullet(0, format!("Reasons: {}", reasons.join(", ")));
    }
    if let Some(e) = result["error"].as_str() {
        doc.bullet(0, format!("Error: {e}"));
    }
    for r in result["redactions"].as_array().into_iter().flatten() {
        let what = match (r.get("pattern"), r.get("pointer")) {
            (Some(p), _) => format!("pattern `{}`", p.as_str().unwrap_or("?")),
            (_, Some(p)) => format!(
                "pointer `{}` of structuredContent",
                p.as_str().unwrap_or("?")
            ),
            _ => "?".into(),
        };
        doc.bullet(
            0,
            format!(
                "Redacted {what} (rule `{}`, bundle `{}`): {} match(es).",
                str_of(r, "rule"),
                str_of(r, "bundle"),
                r["count"]
            ),
        );
    }
    for f in result["filtered"].as_array().into_iter().flatten() {
        doc.bullet(
            0,
            format!(
                "Filtered {} items by `{}` (bundle `{}`): {} evaluated, {} dropped.",
                str_of(f, "items"),
                str_of(f, "rule"),
                str_of(f, "bundle"),
                f["evaluated"],
                f["dropped"]
            ),
        );
    }
}

/// Lists the result records of request `id` in `log` (none: says so when
/// the request was allowed).
pub fn explain_results_of(doc: &mut Doc, log: &Path, id: &str) -> Result<(), GovernanceError> {
    let mut found: Vec<(usize, Value)> = Vec::new();
    let mut more = false;
    crate::audit::read::for_each_record(log, |line, v| {
        if v.get("result_of").and_then(Value::as_str) == Some(id) {
            if found.len() < MAX_LISTED {
                found.push((line, v));
            } else {
                more = true;
                return Ok::<_, GovernanceError>(false);
            }
        }
        Ok(true)
    })?;
    if found.is_empty() {
        return Ok(());
    }
    doc.heading(2, "Results");
    for (line, r) in &found {
        doc.heading(3, format!("Result decision `{}`", str_of(r, "decision_id")));
        describe(doc, r, *line);
    }
    if more {
        doc.para(format!(
            "(only the first {MAX_LISTED} result records are listed)"
        ));
    }
    Ok(())
}
