//! Policy queries: the decision a request *would* get (`gavel__check`), by
//! the steps of [`Enforcer::decide`] themselves — the same input
//! (`input_for`), the same evaluation (`evaluate`: static rules, then the
//! server's layers, the approval flag as the policy sets it) and the same
//! guard, which here only reads the headroom ([`Guard::peek`]) — with the
//! effects switched off: nothing is charged, no decision is recorded or
//! counted, no human is asked. What is written instead is a query record
//! (its own kind in the decision log, `"query"`; docs/decision-log.md), so
//! an auditor sees what an agent asked about.
//!
//! What a prediction cannot know: a human's answer to an approval the
//! decision asks for (it says that one will be asked, or that a remembered
//! approval would answer), and anything that changes between the query and
//! the call — a limit or budget spent by other calls, a policy activated,
//! the session's own counters (the call itself is one more turn).
//!
//! [`Guard::peek`]: crate::decision::guard::Guard::peek

use std::time::Instant;

use serde_json::{Value, json};

use super::active::Policy;
use super::engine::PolicyEngine;
use super::{Action, ActionType, Decision, DecisionContext, Enforcer, ServerPolicy, record};

/// What a policy query answers: the decision the request would get now,
/// and the id of the query record that logged the question.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub decision: Decision,
    pub query_id: String,
}

impl Enforcer {
    /// The decision `action` would get from [`Enforcer::decide`] in `ctx`
    /// now, without its effects; `kind` names the query in its record
    /// (`check`). A query record that cannot be written turns the answer
    /// into what the call would get then too (`audit_unavailable`, unless
    /// `[log] on_write_error = "allow"`).
    pub fn query(&self, action: &Action, ctx: &DecisionContext, kind: &str) -> Prediction {
        let start = Instant::now();
        let now = self.now_rfc3339();
        let sp = self.servers.get(&action.server);
        // The persona picks the policy exactly as it does for the call.
        let (pick, active) = self.policy_for(action, ctx, sp);
        let policy = active.as_ref().map(|a| &a.policy);
        let engine = super::decide::engine_of(policy);
        // A prediction shows the budget whatever the policy reads.
        let input = self.input_for(action, ctx, sp, engine, &now, true);
        let mut ev = match pick.refusal() {
            Some(d) => super::decide::Evaluated::by_gavel(d, "persona"),
            None => self.evaluate(action, sp, policy, &input, false),
        };
        self.peek(action, ctx, sp, engine, &mut ev.decision);
        let query_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut decision = ev.decision;
        let event = crate::audit::record::DecisionRecord {
            decision_id: None,
            timestamp: &now,
            path: &ev.path,
            input: std::borrow::Cow::Owned(input),
            result: json!(decision),
            bundles: ev.bundles,
            labels: self.decision_labels(ev.policy, ev.fail_open, pick.label()),
            eval_ns: ev.eval_ns,
            decision_ns: start.elapsed().as_nanos() as u64,
            upstream_classes: (action.kind == ActionType::ToolCall)
                .then_some(action.upstream_data_classes.as_slice()),
            trace: None,
        }
        .event();
        if let Err(e) = self.log_query(query_event(event, &query_id, kind, ctx), engine) {
            self.unrecorded(&mut decision, &e);
        }
        Prediction { decision, query_id }
    }

    /// The guard step of a query: [`Enforcer::decide`]'s `charge`, reading
    /// instead of charging.
    fn peek(
        &self,
        action: &Action,
        ctx: &DecisionContext,
        sp: Option<&ServerPolicy>,
        engine: Option<&PolicyEngine>,
        d: &mut Decision,
    ) {
        if action.kind != ActionType::ToolCall {
            return;
        }
        let limits = super::decide::limits_for(action, sp, engine);
        self.guard.peek(
            &self.who(action, ctx),
            &limits,
            super::decide::arg_tokens(action),
            d,
        );
    }

    /// Writes a query record, finished like a decision record (the bundle's
    /// `log.drop`/`log.mask` rules, gavel's masking).
    fn log_query(
        &self,
        event: Value,
        engine: Option<&PolicyEngine>,
    ) -> Result<(), record::RecordError> {
        let Some(log) = &self.log else { return Ok(()) };
        let rules = engine.map(|e| move |ev: &Value| e.log_rules(ev).map_err(|e| e.to_string()));
        let id = event["query_id"].as_str().map(str::to_string);
        crate::audit::record::write_event(
            event,
            id.as_deref(),
            log,
            rules.as_ref().map(|f| f as crate::audit::record::LogRules),
            &crate::audit::mask::MaskSettings {
                secret_fields: &self.config.log.secret_fields,
                max_arg_bytes: self.config.log.max_arg_bytes,
            },
        )
    }

    /// `gavel__limits` for one server and tool: the rate limits that apply
    /// to `tool` for who is asking, each with the calls it would still
    /// allow now (read, never charged), and the budget as the policy input
    /// has it. `Err`: the state store cannot say.
    pub fn headroom(&self, server: &str, tool: &str, ctx: &DecisionContext) -> Value {
        let sp = self.servers.get(server);
        let active = sp.map(|s| s.active.load_full());
        let engine = match active.as_ref().map(|a| &a.policy) {
            Some(Policy::Rego(e)) => Some(e.as_ref()),
            _ => None,
        };
        let action = Action::new(ActionType::ToolCall, server, tool, json!({}));
        let limits = super::decide::limits_for(&action, sp, engine);
        match self.guard.headroom(&self.who(&action, ctx), &limits) {
            Ok(v) => json!(v),
            Err(e) => json!({"error": e}),
        }
    }

    /// `input.context.budget` for who is asking (None: no `[budget]`).
    pub fn budget_for(&self, ctx: &DecisionContext) -> Option<Value> {
        let action = Action::new(ActionType::ToolCall, "", "", json!({}));
        self.guard.budget_view(&self.who(&action, ctx))
    }
}

/// A decision-shaped event made a query record: no `decision_id` (nothing
/// was decided), its own `query_id`, and `query` saying what was asked and
/// by which session — the key every reader of the log tells it apart by.
fn query_event(mut event: Value, query_id: &str, kind: &str, ctx: &DecisionContext) -> Value {
    if let Some(o) = event.as_object_mut() {
        o.remove("decision_id");
        o.insert("query_id".into(), json!(query_id));
        o.insert(
            "query".into(),
            json!({"kind": kind, "session_id": ctx.session_id}),
        );
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query record is told apart from a decision by its `query` key and
    /// has no decision id (`gavel explain --decision`, replay and report
    /// must never take it for a decision).
    #[test]
    fn a_query_record_has_no_decision_id_and_says_what_was_asked() {
        let event = json!({"decision_id": null, "path": "fx/decision", "input": {}, "result": {"allow": true}});
        let ctx = DecisionContext {
            session_id: "s1".into(),
            ..Default::default()
        };
        let q = query_event(event, "q-1", "check", &ctx);
        assert!(q.get("decision_id").is_none(), "{q}");
        assert_eq!(q["query_id"], "q-1");
        assert_eq!(q["query"], json!({"kind": "check", "session_id": "s1"}));
        assert_eq!(q["result"]["allow"], true);
    }

    /// A query writes one query record and nothing else (no decision
    /// record, no budget or rate-limit charge), and predicts the decision
    /// the same action then gets from `decide` — here the budget's refusal
    /// too, once it is spent.
    #[test]
    fn a_query_predicts_decide_and_records_only_the_question() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("b");
        std::fs::create_dir_all(b.join("p")).unwrap();
        std::fs::write(
            b.join(".manifest"),
            json!({"revision": "1", "roots": ["p"]}).to_string(),
        )
        .unwrap();
        std::fs::write(
            b.join("p/policy.rego"),
            "package p\ndecision := {\"allow\": true} if input.action.tool == \"echo\"\n\
             decision := {\"allow\": false, \"reasons\": [\"nope\"], \"remediation\": \"r\"} if input.action.tool != \"echo\"\n",
        )
        .unwrap();
        let log = d.path().join("decisions.jsonl");
        let toml = format!(
            "[log]\ndecisions = {:?}\n\n[budget]\ncalls = 1\n\n[state]\npath = {:?}\n\n[servers.fx]\ncommand = \"x\"\nbundle = {:?}\n",
            log.display().to_string(),
            d.path().join("state.sqlite").display().to_string(),
            b.display().to_string()
        );
        let config = crate::config::test_config(&toml, &d.path().join("servers.toml"));
        let e = Enforcer::from_config(&config).unwrap();
        let ctx = DecisionContext::default();
        let echo = Action::new(ActionType::ToolCall, "fx", "echo", json!({}));
        let other = Action::new(ActionType::ToolCall, "fx", "other", json!({}));
        let lines = || -> Vec<Value> {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        for _ in 0..3 {
            let p = e.query(&echo, &ctx, "check");
            assert!(
                p.decision.allow && p.decision.decision_id.is_none(),
                "{:?}",
                p.decision
            );
        }
        let denied = e.query(&other, &ctx, "check").decision;
        let written = lines();
        assert_eq!(written.len(), 4);
        assert!(
            written.iter().all(|r| r["query"]["kind"] == "check"),
            "{written:?}"
        );
        assert_eq!(
            e.budget_for(&ctx).unwrap()["used"]["calls"],
            0,
            "nothing charged"
        );

        let real = e.decide(&other, &ctx).decision().clone();
        assert_eq!(
            (real.allow, &real.reasons, &real.remediation),
            (denied.allow, &denied.reasons, &denied.remediation)
        );
        assert!(
            e.decide(&echo, &ctx).decision().allow,
            "the budget's one call"
        );
        let spent = e.query(&echo, &ctx, "check").decision;
        let real = e.decide(&echo, &ctx).decision().clone();
        assert_eq!(spent.reasons, vec!["budget_exceeded".to_string()]);
        assert_eq!(
            (spent.allow, &spent.reasons, &spent.remediation),
            (real.allow, &real.reasons, &real.remediation)
        );
        assert_eq!(e.budget_for(&ctx).unwrap()["used"]["calls"], 1);
    }
}
