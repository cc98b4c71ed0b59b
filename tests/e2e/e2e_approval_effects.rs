//! End to end: what a human approval costs and leaves behind — a refused
//! approval still counts against the rate limit but gives back its budget,
//! an approval that cannot be recorded is not carried out, and `gavel
//! report` / `gavel replay` take a call that waited for a human by its
//! final step. The asking itself: tests/e2e/e2e_approval.rs.

use crate::common;

use common::approval::*;
use common::*;
use serde_json::{Value, json};

/// A refused approval gives back its budget charge (the call was not made)
/// but not its rate-limit charge: an agent that keeps asking for a call the
/// user keeps refusing is throttled, and the user is not asked again.
#[tokio::test(flavor = "multi_thread")]
async fn refused_approvals_still_count_against_the_rate_limit() {
    let s = setup("");
    add_config(
        &s,
        &format!(
            "[budget]\ncalls = 10\n\n[state]\npath = {:?}\n\n[[servers.fx.limits]]\nscope = \"tool\"\ntool = \"destructive_delete\"\nrate = 1\nper = \"1h\"\nburst = 2\n",
            s.path("state.sqlite").display().to_string()
        ),
    );
    let clock = TestClock::new(s.path("clock"));
    let mut host = TestHost::new();
    host.approve = false;
    let seen = host.seen.clone();
    let client = s.connect_on(&clock, host).await;
    for _ in 0..2 {
        let r = call(&client, "destructive_delete", json!({"path": "/"}))
            .await
            .unwrap();
        assert_eq!(reasons(&r), json!(["approval_declined"]));
    }
    let third = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(reasons(&third), json!(["rate_limited"]), "{}", text(&third));
    assert_eq!(
        seen.lock().unwrap().elicitations.len(),
        2,
        "the third was not asked"
    );
    // The budget got both refused calls back.
    call(&client, "echo", json!({"text": "x"})).await.unwrap();
    let echo = s
        .decisions()
        .into_iter()
        .rfind(|r| r["input"]["action"]["tool"] == "echo")
        .unwrap();
    assert_eq!(
        echo["input"]["context"]["budget"]["used"]["calls"], 0,
        "{echo}"
    );
    assert_eq!(deletes(&s), 0);
    client.cancel().await.unwrap();
}

/// A call whose approval is declined is not made, so it costs nothing: with
/// a budget of one call, a declined call leaves the budget for the next one.
#[tokio::test(flavor = "multi_thread")]
async fn a_declined_call_gives_back_its_budget() {
    let s = setup("");
    let mut cfg = std::fs::read_to_string(s.config()).unwrap();
    cfg.push_str(&format!(
        "\n[budget]\ncalls = 1\n\n[state]\npath = {:?}\n",
        s.path("state.sqlite").display().to_string()
    ));
    s.write_config(&cfg);
    let mut host = TestHost::new();
    host.approve = false;
    let client = s.connect(host).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(reasons(&r), json!(["approval_declined"]));
    let ok = call(&client, "echo", json!({"text": "still in budget"}))
        .await
        .unwrap();
    assert_ne!(ok.is_error, Some(true), "{}", text(&ok));
    let over = call(&client, "echo", json!({"text": "over"}))
        .await
        .unwrap();
    assert_eq!(reasons(&over), json!(["budget_exceeded"]));
    client.cancel().await.unwrap();
}

/// No record, no effect, for approvals too: the user approves, but the
/// decision log can no longer be written (here: reopened on SIGHUP onto
/// /dev/full while the question is open), so the call is refused with
/// `audit_unavailable` and never reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_that_cannot_be_recorded_is_not_carried_out() {
    let s = setup("");
    let mut host = TestHost::new();
    host.elicit_until = Some(s.path("answer-now"));
    let seen = host.seen.clone();
    let (client, pid, _child) = s.connect_with_pid(host).await;
    let pending = tokio::spawn(async move {
        let r = call(&client, "destructive_delete", json!({"path": "/tmp/x"})).await;
        (client, r)
    });
    eventually("the user is asked", || {
        seen.lock().unwrap().elicitations.len() == 1
    })
    .await;
    assert_eq!(steps(&s), ["requested"]);
    let log = s.path("decisions.jsonl");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    eventually("gavel reopened its decision log", || {
        s.log_text().contains("decision log reopened")
    })
    .await;
    std::fs::write(s.path("answer-now"), "").unwrap();
    let (client, r) = pending.await.unwrap();
    let r = r.unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(reasons(&r), json!(["audit_unavailable"]), "{}", text(&r));
    assert_eq!(deletes(&s), 0, "approved but unrecorded: never forwarded");
    client.cancel().await.unwrap();
}

/// `gavel report` and `gavel replay` on a real log with approvals: a
/// decision that waited for a human is counted once, with its final outcome
/// (approved: allowed; declined: denied), not once when asked and again when
/// settled.
#[tokio::test(flavor = "multi_thread")]
async fn report_and_replay_take_an_approved_and_a_declined_call_by_their_final_step() {
    let s = setup("");
    let yes = s.connect(TestHost::new()).await;
    call(&yes, "destructive_delete", json!({"path": "/tmp/a"}))
        .await
        .unwrap();
    yes.cancel().await.unwrap();
    let mut host = TestHost::new();
    host.approve = false;
    let no = s.connect(host).await;
    call(&no, "destructive_delete", json!({"path": "/tmp/b"}))
        .await
        .unwrap();
    no.cancel().await.unwrap();
    assert_eq!(deletes(&s), 1);
    let page = s.path("report.html");
    let out = gavel_cmd(&[
        "report",
        s.path("decisions.jsonl").to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    let summary = stdout_ok(out);
    assert!(
        summary.contains("2 decisions (1 denied)"),
        "{summary}\n{:#?}",
        s.decisions()
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"total\" data-value=\"2\""), "{summary}");
    assert!(
        !html.contains("approval-unsettled"),
        "every approval settled"
    );

    // Replay: the producing policy changes nothing (the logged answers
    // stand); a candidate that drops the approval lets the declined call
    // through — one deny→allow flip — and keeps the approved one allowed.
    let replay = |bundle: &std::path::Path| {
        let out = gavel_cmd(&[
            "replay",
            "--log",
            s.path("decisions.jsonl").to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "--json",
        ]);
        serde_json::from_str::<Value>(&stdout_ok(out)).unwrap()
    };
    let same = replay(&s.path("policy"));
    assert_eq!(
        (
            &same["total"],
            &same["unchanged"],
            &same["allow_to_deny"],
            &same["deny_to_allow"]
        ),
        (&json!(2), &json!(2), &json!(0), &json!(0)),
        "{same:#}"
    );
    assert_eq!(
        same["approval_steps"], 4,
        "two asked, two settled: {same:#}"
    );
    let lax = common::policy::bundle(
        s.dir.path(),
        "lax",
        "fx",
        json!({"revision": "2"}),
        "package fx\n\ndecision := {\"allow\": true}\n",
    );
    let r = replay(&lax);
    assert_eq!(
        (&r["unchanged"], &r["allow_to_deny"], &r["deny_to_allow"]),
        (&json!(1), &json!(0), &json!(1)),
        "{r:#}"
    );
    assert_eq!(
        r["by_reason"]["deny→allow approval_declined"]["count"], 1,
        "{r:#}"
    );
    assert_eq!(r["approval_removed"], 1, "{r:#}");
}

/// Approval for the prompt `greet`, remembered for any arguments
/// (`scope = "tool"`), and the same for completing its arguments.
const SAME_NAME: &str = r#"package fx

needs_approval if {
	input.action.type in {"prompt_get", "completion"}
	input.action.tool == "greet"
}

decision := {"allow": true} if not needs_approval

decision := {
	"allow": true,
	"require_approval": {"reason": "greeting needs a human", "remember_seconds": 600, "scope": "tool"},
} if needs_approval
"#;

/// A remembered approval covers its action type only: approving
/// `prompts/get greet` (for any arguments) does not let
/// `completion/complete` on the same name through unasked — the key used to
/// be (user, agent, server, name), so one type's approval passed the other.
#[tokio::test(flavor = "multi_thread")]
async fn a_remembered_approval_covers_its_action_type_only() {
    use rmcp::model::{ArgumentInfo, CompleteRequestParams, GetPromptRequestParams, Reference};
    let s = Setup::with(|s| {
        let b = common::policy::bundle(s.dir.path(), "policy", "fx", json!({}), SAME_NAME);
        format!(
            "[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n",
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            b.display().to_string()
        )
    });
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let asked = || seen.lock().unwrap().elicitations.len();
    for name in ["al", "bo"] {
        let mut gp = GetPromptRequestParams::new("greet");
        gp.arguments = json!({"name": name}).as_object().cloned();
        client.peer().get_prompt(gp).await.unwrap();
    }
    assert_eq!(asked(), 1, "the prompt, remembered for any arguments");
    client
        .peer()
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("greet"),
            ArgumentInfo::new("name", "al"),
        ))
        .await
        .unwrap();
    assert_eq!(asked(), 2, "completion is another action type: asked");
    assert_eq!(
        steps(&s),
        vec![
            "requested",
            "approved",
            "remembered",
            "requested",
            "approved"
        ]
    );
    client.cancel().await.unwrap();
}
