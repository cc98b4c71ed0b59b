//! `input.context.budget` is read before the policy only when a rule may
//! read it (`PolicyEngine::reads_budget`, from `bundle::deps`); otherwise
//! the decision record gets the totals the charge's transaction found, and
//! the store is not read for it.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

/// An enforcer for server `fx` deciding with `rego`, a budget of 3 calls a
/// day and a decision log; returns it and the log's path.
fn enforcer(dir: &Path, rego: &str) -> (Enforcer, std::path::PathBuf) {
    enforcer_with(dir, rego, "")
}

/// [`enforcer`] with `extra` lines in the server's table.
fn enforcer_with(dir: &Path, rego: &str, extra: &str) -> (Enforcer, std::path::PathBuf) {
    let b = super::enforcer_tests::write_bundle(dir, rego);
    let log = dir.join("decisions.jsonl");
    let toml = format!(
        "[log]\ndecisions = {:?}\n\n[budget]\ncalls = 3\n\n[state]\npath = {:?}\n\n[servers.fx]\ncommand = \"x\"\nbundle = {:?}\n{extra}",
        log.display().to_string(),
        dir.join("state.sqlite").display().to_string(),
        b.display().to_string()
    );
    let config = crate::config::test_config(&toml, &dir.join("servers.toml"));
    (Enforcer::from_config(&config).unwrap(), log)
}

fn budgets_recorded(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["input"]["context"]["budget"].clone())
        .collect()
}

fn echo() -> Action {
    Action::new(ActionType::ToolCall, "fx", "echo", json!({}))
}

#[test]
fn a_policy_that_reads_the_budget_sees_it_before_deciding() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = enforcer(
        d.path(),
        "package p\ndefault decision := {\"allow\": false, \"reasons\": [\"thrifty\"], \"remediation\": \"r\"}\n\
         decision := {\"allow\": true} if input.context.budget.used.calls < 2\n",
    );
    let ctx = DecisionContext::default();
    assert!(e.decide(&echo(), &ctx).decision().allow);
    assert!(e.decide(&echo(), &ctx).decision().allow);
    let third = e.decide(&echo(), &ctx).decision().clone();
    assert_eq!(third.reasons, vec!["thrifty".to_string()], "{third:?}");
    assert_eq!(e.budget_reads(), 3, "read before each decision");
    let seen: Vec<Value> = budgets_recorded(&log)
        .iter()
        .map(|b| b["used"]["calls"].clone())
        .collect();
    assert_eq!(seen, vec![json!(0), json!(1), json!(2)]);
}

#[test]
fn a_policy_that_does_not_read_the_budget_causes_no_read() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = enforcer(
        d.path(),
        "package p\ndecision := {\"allow\": true} if input.action.tool == \"echo\"\n",
    );
    let ctx = DecisionContext::default();
    for _ in 0..3 {
        assert!(e.decide(&echo(), &ctx).decision().allow);
    }
    let spent = e.decide(&echo(), &ctx).decision().clone();
    assert_eq!(spent.reasons, vec!["budget_exceeded".to_string()]);
    assert_eq!(e.budget_reads(), 0, "the charge's transaction was enough");
    // The record still says what the budget was before each call, as a
    // read would have, for replay and audit.
    let recorded = budgets_recorded(&log);
    let used: Vec<Value> = recorded
        .iter()
        .map(|b| b["used"]["calls"].clone())
        .collect();
    assert_eq!(used, vec![json!(0), json!(1), json!(2), json!(3)]);
    assert_eq!(recorded[3]["limit"]["calls"], 3);
    assert_eq!(recorded[3]["used_fraction"], 1.0);
    // A call the policy refuses is not charged: its record's budget is read.
    let other = Action::new(ActionType::ToolCall, "fx", "other", json!({}));
    assert!(!e.decide(&other, &ctx).decision().allow);
    assert_eq!(e.budget_reads(), 1);
    assert_eq!(budgets_recorded(&log)[4]["used"]["calls"], 3);
}

#[test]
fn the_dependency_analysis_says_which_policies_read_the_budget() {
    let d = tempfile::tempdir().unwrap();
    for (rego, reads) in [
        ("decision := {\"allow\": true}", false),
        (
            "decision := {\"allow\": input.context.turn_count < 5}",
            false,
        ),
        (
            "decision := {\"allow\": input.context.budget.used_fraction < 0.9}",
            true,
        ),
        ("decision := {\"allow\": count(input.context) > 0}", true),
        ("decision := {\"allow\": count(input) > 0}", true),
    ] {
        let dir = d.path().join(format!("{}", rego.len()));
        let (e, _) = enforcer(&dir, &format!("package p\n{rego}\n"));
        let active = e.active("fx").unwrap();
        let Policy::Rego(engine) = &active.policy else {
            panic!("{rego}: no engine")
        };
        assert_eq!(engine.reads_budget(), reads, "{rego}");
    }
}

/// A shadow whose rules read the budget adds no read before the live
/// decision: it is evaluated with the budget the record shows (the charge's
/// own view), and diverges exactly where that budget says it would.
#[test]
fn a_shadow_that_reads_the_budget_adds_no_read_and_sees_the_records_view() {
    let d = tempfile::tempdir().unwrap();
    let shadow = super::enforcer_tests::write_bundle(
        &d.path().join("shadow"),
        "package p\ndefault decision := {\"allow\": false, \"reasons\": [\"shadow_thrifty\"]}\n\
         decision := {\"allow\": true} if input.context.budget.used.calls < 1\n",
    );
    let (e, log) = enforcer_with(
        d.path(),
        "package p\ndecision := {\"allow\": true}\n",
        &format!("shadow_bundles = [{:?}]\n", shadow.display().to_string()),
    );
    let ctx = DecisionContext::default();
    assert!(e.decide(&echo(), &ctx).decision().allow);
    let second = e.decide(&echo(), &ctx).decision().clone();
    assert!(second.allow, "a shadow never decides: {second:?}");
    assert_eq!(e.budget_reads(), 0, "no read before the live policy");
    // The shadow queue drains on its own thread, in batches.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let shadows = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let found: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["path"] == "gavel/shadow")
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        shadows.len(),
        1,
        "only the second call diverges: {shadows:?}"
    );
    assert_eq!(shadows[0]["decision_id"], json!(second.decision_id));
    assert_eq!(shadows[0]["result"]["reasons"], json!(["shadow_thrifty"]));
    assert_eq!(budgets_recorded(&log)[1]["used"]["calls"], 1);
}
