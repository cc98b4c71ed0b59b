//! Result records in `gavel replay` (docs/policy.md, "Result policy"): each
//! logged result re-decided with the candidate's result rules
//! (`decision::result::replay`) and compared with what the log says. A
//! candidate that redacts or filters more than the logged policy shows as
//! matches or items in the logged output that it would remove; one that
//! now denies, or fails, shows as a denial. Replay cannot see what the
//! logged policy already removed, so "redacts less" is reported from the
//! logged counts only (the values themselves are gone).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Group, ReplayError, Replayer, add};

/// What replaying the result records found.
#[derive(Debug, Default, Serialize)]
pub struct ResultSummary {
    pub total: u64,
    pub unchanged: u64,
    /// The candidate would redact more of the logged output (matches of a
    /// pattern, or pointers, still present in it).
    pub redacts_more: u64,
    /// The logged policy redacted something the candidate no longer asks for.
    pub redacts_less: u64,
    /// The candidate would drop items the logged output still shows.
    pub filters_more: u64,
    /// A result the log passed, the candidate denies (or fails on).
    pub pass_to_deny: u64,
    /// Denied or withheld results (recorded without their output), and
    /// results whose logged output masking changed.
    pub not_replayable: u64,
    /// `"<change> <server>/<tool> <pattern|pointer|rule>"` → count, examples.
    pub by_change: BTreeMap<String, Group>,
}

fn count(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// What a redaction entry redacts: its pattern or pointer.
fn what(r: &Value) -> String {
    r.get("pattern")
        .or(r.get("pointer"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl Replayer {
    /// Replays one result record (it has `result_of`).
    pub(super) fn result_record(&mut self, rec: &Value) -> Result<(), ReplayError> {
        let Some(input) = rec.get("input") else {
            return Ok(());
        };
        let Some(server) = input.pointer("/action/server").and_then(Value::as_str) else {
            return Ok(());
        };
        if !self.replays_server(server) || !self.ensure_engine(server)? {
            return Ok(());
        }
        let s = &mut self.summary.results;
        s.total += 1;
        let logged_outcome = rec
            .pointer("/result/outcome")
            .and_then(Value::as_str)
            .unwrap_or("");
        // Masking (secret-named fields, `log.mask`) changed the output:
        // what the candidate would see is not what the logged policy saw.
        let masked = ["masked", "erased"]
            .iter()
            .filter_map(|k| rec.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .any(|p| p.starts_with("/input/output"));
        let engine = &self.engines[server].engine;
        let replayed = (!masked)
            .then(|| crate::decision::result::replay::replay(engine, input))
            .flatten();
        let Some(now) = replayed else {
            s.not_replayable += 1;
            return Ok(());
        };
        let id = rec.get("decision_id").and_then(Value::as_str).unwrap_or("");
        let tool = input
            .pointer("/action/tool")
            .and_then(Value::as_str)
            .unwrap_or("");
        let at = format!("{server}/{tool}");
        let changes = changes(s, rec, &now, &at, logged_outcome);
        if changes.is_empty() {
            s.unchanged += 1;
        }
        for c in changes {
            add(&mut s.by_change, c, id);
        }
        Ok(())
    }
}

/// What changed between the logged result and the candidate's replay of it
/// (`now`), each change counted in `s` and described for the report at
/// `at` (`server/tool`): a pass that now denies, redactions added or no
/// longer made, items now filtered out. Empty: unchanged. Apart from
/// [`Replayer::result_record`], which decides whether a record can be
/// replayed at all, because this is the comparison alone.
fn changes(
    s: &mut ResultSummary,
    rec: &Value,
    now: &crate::decision::result::replay::Replayed,
    at: &str,
    logged_outcome: &str,
) -> Vec<String> {
    let mut changes: Vec<String> = Vec::new();
    if matches!(now.outcome, "deny" | "error") && !matches!(logged_outcome, "deny" | "error") {
        s.pass_to_deny += 1;
        changes.push(format!(
            "pass → {} {at} {}",
            now.outcome,
            now.reasons.join(",")
        ));
    }
    let more: Vec<&Value> = now
        .redactions
        .iter()
        .filter(|r| count(r, "count") > 0)
        .collect();
    if !more.is_empty() {
        s.redacts_more += 1;
        changes.extend(
            more.iter()
                .map(|r| format!("redacts more {at} {}", what(r))),
        );
    }
    let asked: Vec<String> = now.redactions.iter().map(what).collect();
    let less: Vec<String> = rec
        .pointer("/result/redactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| count(r, "count") > 0 && !asked.contains(&what(r)))
        .map(what)
        .collect();
    if !less.is_empty() {
        s.redacts_less += 1;
        changes.extend(less.iter().map(|w| format!("redacts less {at} {w}")));
    }
    let dropped: Vec<&Value> = now
        .filtered
        .iter()
        .filter(|f| count(f, "dropped") > 0)
        .collect();
    if !dropped.is_empty() {
        s.filters_more += 1;
        changes.extend(dropped.iter().map(|f| {
            let rule = f.get("rule").and_then(Value::as_str).unwrap_or("");
            format!("filters more {at} {rule}")
        }));
    }
    changes
}

/// The report's lines for result records (none without any).
pub(super) fn render(s: &ResultSummary, line: &mut dyn FnMut(String)) {
    if s.total == 0 {
        return;
    }
    line(format!("replayed {} result records", s.total));
    line(format!("  unchanged          {}", s.unchanged));
    line(format!("  redacts more       {}", s.redacts_more));
    line(format!(
        "  redacts less       {} (from the logged counts: the values are gone)",
        s.redacts_less
    ));
    line(format!("  filters more       {}", s.filters_more));
    line(format!("  pass → deny/error  {}", s.pass_to_deny));
    line(format!(
        "  not replayable     {} (denied or withheld: recorded without output; or masked)",
        s.not_replayable
    ));
    if !s.by_change.is_empty() {
        line("result changes:".into());
        for (k, g) in &s.by_change {
            line(format!(
                "  {k}  {}  e.g. {}",
                g.count,
                g.examples.join(", ")
            ));
        }
    }
}
