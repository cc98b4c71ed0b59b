//! End to end: budgets across calls, sessions and processes, through the real
//! binary on a clock the test drives (`GAVEL_TEST_CLOCK_FILE`): the charge
//! reaches the store before the call is forwarded (gavel killed while the
//! upstream holds a call), two processes at once spend one burst and one
//! budget exactly, token budgets count arguments and results, and budgets
//! per agent and per user and agent, with their periods; a `kill -9` right
//! after answered calls loses none of them, nor does one between the
//! charges and their ledger write, and a result's tokens (counted
//! in memory, written with the next charge or shortly after) reach the
//! store when gavel ends.

use crate::common;

use common::lab::*;
use common::*;
use serde_json::{Value, json};

/// The budget the policy saw for the `n`th call of `tool`.
fn budget_seen(lab: &Lab, tool: &str, n: usize) -> Value {
    lab.tool_decisions(tool)[n]["input"]["context"]["budget"].clone()
}

/// gavel is killed with SIGKILL while the upstream holds a call it has
/// received (its record file says so) and not answered: the call was
/// charged before it was forwarded, so a new gavel counts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_held_upstream_when_gavel_is_killed_is_already_charged() {
    let lab = Lab::new(json!({}), "[budget]\nper = \"user\"\ncalls = 2\n");
    let (client, pid, mut child) = lab.connect_with_pid().await;
    let peer = client.peer().clone();
    let held = tokio::spawn(async move {
        let mut p = rmcp::model::CallToolRequestParams::new("slow");
        p.arguments = json!({"ms": 600_000}).as_object().cloned();
        peer.call_tool(p).await
    });
    let record = lab.s.path("r.jsonl");
    eventually("the upstream holds the slow call", || {
        recorded_calls(&record)
            .iter()
            .any(|c| c["params"]["name"] == "slow")
    })
    .await;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    let outcome = tokio::time::timeout(PATIENCE, held).await.unwrap().unwrap();
    assert!(
        outcome.is_err(),
        "the held call never answered: {outcome:?}"
    );
    drop(client);

    let again = lab.connect().await;
    let first = call(&again, "echo", json!({"text": "x"})).await.unwrap();
    assert!(allowed(&first), "{}", text(&first));
    assert_eq!(
        budget_seen(&lab, "echo", 0)["used"]["calls"],
        1,
        "the call in flight at the kill was charged"
    );
    let second = call(&again, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(decision(&second)["reasons"], json!(["budget_exceeded"]));
    again.cancel().await.unwrap();
}

/// Two gavel processes, each sending ten calls at once, against one burst
/// (7) and one budget (12 calls): exactly 7 pass the burst, exactly 12 are
/// charged, and the upstreams received exactly the allowed calls.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_at_once_spend_one_burst_and_one_budget_exactly() {
    let lab = Lab::new(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1h", "burst": 7}]}),
        "[budget]\ncalls = 12\n",
    );
    let a = lab.connect().await;
    let b = lab.connect().await;
    let at_once = |tool: &'static str, args: Value| {
        let calls = (0..20u32).map(|i| {
            let c = if i.is_multiple_of(2) { &a } else { &b };
            call(c, tool, args.clone())
        });
        futures::future::join_all(calls)
    };
    let results = at_once("echo", json!({"text": "x"})).await;
    let (ok, refused): (Vec<_>, Vec<_>) =
        results.into_iter().map(|r| r.unwrap()).partition(allowed);
    assert_eq!(ok.len(), 7, "the burst, across both processes");
    assert!(
        refused
            .iter()
            .all(|r| decision(r)["reasons"] == json!(["rate_limited"]))
    );
    // 7 of the budget's 12 are spent; 5 more calls of another tool pass.
    let results = at_once("add", json!({"a": 1, "b": 2})).await;
    let (ok, refused): (Vec<_>, Vec<_>) =
        results.into_iter().map(|r| r.unwrap()).partition(allowed);
    assert_eq!(ok.len(), 5, "the rest of the budget, across both processes");
    assert!(
        refused
            .iter()
            .all(|r| decision(r)["reasons"] == json!(["budget_exceeded"]))
    );
    let calls = recorded_calls(&lab.s.path("r.jsonl"));
    let reached = |tool: &str| calls.iter().filter(|c| c["params"]["name"] == tool).count();
    assert_eq!((reached("echo"), reached("add")), (7, 5));
    // The budget used is exactly what was allowed.
    let last = call(&a, "echo_meta", json!({})).await.unwrap();
    assert_eq!(decision(&last)["reasons"], json!(["budget_exceeded"]));
    assert_eq!(budget_seen(&lab, "echo_meta", 0)["used"]["calls"], 12);
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// A token budget counts the arguments' tokens when the call is decided and
/// the result's once it returns (4 bytes a token): the second call fits on
/// its arguments alone but not after the first one's result.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_budget_counts_arguments_and_results() {
    let lab = Lab::new(json!({}), "[budget]\ntokens = 30\n");
    let client = lab.connect().await;
    // {"text":"<40 x>"}: 51 bytes, 13 tokens; the echoed text: 40 bytes, 10.
    let args = json!({"text": "x".repeat(40)});
    let first = call(&client, "echo", args.clone()).await.unwrap();
    assert!(allowed(&first), "{}", text(&first));
    let second = call(&client, "echo", args).await.unwrap();
    let d = decision(&second);
    assert_eq!(
        d["reasons"],
        json!(["budget_exceeded"]),
        "13 + 10 + 13 > 30"
    );
    assert!(
        d["remediation"].as_str().unwrap().contains("30 tokens"),
        "{d}"
    );
    let seen = budget_seen(&lab, "echo", 1);
    assert_eq!(seen["used"], json!({"calls": 1, "tokens": 23}), "{seen}");
    assert_eq!(seen["limit"], json!({"calls": null, "tokens": 30}));
    // A call with small arguments still fits: {"text":""} is 3 tokens, 26 ≤ 30.
    let small = call(&client, "echo", json!({"text": ""})).await.unwrap();
    assert!(allowed(&small), "{}", text(&small));
    client.cancel().await.unwrap();
}

/// `per = "agent"`: every user of one agent spends one budget (UTC day here);
/// another agent has its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_per_agent_is_shared_by_its_users() {
    let lab = Lab::new(json!({}), "[budget]\nper = \"agent\"\ncalls = 3\n");
    let ada_bot = lab.connect_as("ada", "bot").await;
    let bob_bot = lab.connect_as("bob", "bot").await;
    let ada_other = lab.connect_as("ada", "other").await;
    for c in [&ada_bot, &ada_bot, &bob_bot] {
        let r = call(c, "echo", json!({"text": "x"})).await.unwrap();
        assert!(allowed(&r), "{}", text(&r));
    }
    let over = call(&bob_bot, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(decision(&over)["reasons"], json!(["budget_exceeded"]));
    let other = call(&ada_other, "echo", json!({"text": "x"}))
        .await
        .unwrap();
    assert!(allowed(&other), "another agent, another budget");
    // The clock is 2027-01-15T08:00:00Z: the UTC day ends at midnight.
    let seen = budget_seen(&lab, "echo", 0);
    assert_eq!(seen["period"], "day:2027-01-15");
    assert_eq!(seen["period_ends"], "2027-01-16T00:00:00Z");
    for c in [ada_bot, bob_bot, ada_other] {
        c.cancel().await.unwrap();
    }
}

/// `per = "user_agent"`: each (user, agent) pair has its own budget (ISO
/// week here); it renews when the week does.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_per_user_and_agent_is_the_pairs_own() {
    let lab = Lab::new(
        json!({}),
        "[budget]\nper = \"user_agent\"\nperiod = \"week\"\ncalls = 1\n",
    );
    let ada_bot = lab.connect_as("ada", "bot").await;
    let ada_other = lab.connect_as("ada", "other").await;
    let bob_bot = lab.connect_as("bob", "bot").await;
    let first = call(&ada_bot, "echo", json!({"text": "x"})).await.unwrap();
    assert!(allowed(&first));
    let over = call(&ada_bot, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(decision(&over)["reasons"], json!(["budget_exceeded"]));
    for c in [&ada_other, &bob_bot] {
        let r = call(c, "echo", json!({"text": "x"})).await.unwrap();
        assert!(allowed(&r), "another pair, another budget: {}", text(&r));
    }
    // Friday 2027-01-15 is in ISO week 2, which ends on Monday the 18th.
    let seen = budget_seen(&lab, "echo", 0);
    assert_eq!(seen["period"], "week:2027-W02");
    assert_eq!(seen["period_ends"], "2027-01-18T00:00:00Z");
    assert!(
        decision(&over)["remediation"]
            .as_str()
            .unwrap()
            .contains("renews at 2027-01-18T00:00:00Z"),
        "{}",
        decision(&over)
    );
    lab.advance(3.0 * 86_400.0);
    let renewed = call(&ada_bot, "echo", json!({"text": "x"})).await.unwrap();
    assert!(allowed(&renewed), "a new week: {}", text(&renewed));
    for c in [ada_bot, ada_other, bob_bot] {
        c.cancel().await.unwrap();
    }
}

/// `utc_offset` and `week_starts`: a weekly budget on a Sunday-to-Saturday
/// week at UTC-8 renews at that local midnight — a day before the ISO week
/// (Monday 00:00 UTC) would.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_week_begins_where_the_config_says() {
    let lab = Lab::new(
        json!({}),
        "[budget]\nperiod = \"week\"\nutc_offset = \"-08:00\"\nweek_starts = \"sunday\"\ncalls = 1\n",
    );
    let c = lab.connect_as("ada", "bot").await;
    let first = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert!(allowed(&first), "{}", text(&first));
    // 2027-01-15T08:00Z is Friday 00:00 at UTC-8: the week began on Sunday
    // the 10th and ends at local midnight before Sunday the 17th.
    let seen = budget_seen(&lab, "echo", 0);
    assert_eq!(seen["period"], "week:2027-01-10/sun@-08:00");
    assert_eq!(seen["period_ends"], "2027-01-17T08:00:00Z");
    let over = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(decision(&over)["reasons"], json!(["budget_exceeded"]));
    assert!(
        decision(&over)["remediation"]
            .as_str()
            .unwrap()
            .contains("renews at 2027-01-17T08:00:00Z"),
        "{}",
        decision(&over)
    );
    // Just past the local week's end (still ISO week 2 in UTC).
    lab.advance(2.0 * 86_400.0 + 1.0);
    let renewed = call(&c, "echo", json!({"text": "x"})).await.unwrap();
    assert!(allowed(&renewed), "a new local week: {}", text(&renewed));
    assert_eq!(
        budget_seen(&lab, "echo", 2)["period"],
        "week:2027-01-17/sun@-08:00"
    );
    c.cancel().await.unwrap();
}

/// A decision that waits on the state store (another process holds the
/// lock of its shared tables: the rate limits' and the budget's one
/// `flock`) waits off gavel's event loop: meanwhile the session is still
/// served (a tools/list sent after the call is answered; decisions of one
/// session stay in order, so it is not another call); once the lock goes,
/// the waiting call is decided and allowed. (SQLite is the budget's ledger,
/// written behind: its write lock no longer holds a decision.)
#[tokio::test(flavor = "multi_thread")]
async fn a_decision_waiting_on_the_store_does_not_stall_the_process() {
    use std::os::fd::AsRawFd;
    let lab = Lab::new(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 10, "per": "1m"}]}),
        "[budget]\ncalls = 100\n",
    );
    let client = lab.connect().await;
    // The tables exist once gavel has started; take their lock.
    let rates = std::fs::File::open(lab.s.path("state.rates")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(rates.as_raw_fd(), libc::LOCK_EX) }, 0);
    let peer = client.peer().clone();
    let waiting = tokio::spawn(async move {
        let mut p = rmcp::model::CallToolRequestParams::new("echo");
        p.arguments = json!({"text": "waited"}).as_object().cloned();
        peer.call_tool(p).await
    });
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert!(
        !waiting.is_finished(),
        "the echo call is still waiting for the lock"
    );
    // SAFETY: as above.
    unsafe { libc::flock(rates.as_raw_fd(), libc::LOCK_UN) };
    let echoed = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(allowed(&echoed), "{}", decision(&echoed));
    assert_eq!(text(&echoed), "waited");
    client.cancel().await.unwrap();
}

/// The budget's calls in the lab's ledger (SQLite), read by the test
/// (None: no row yet).
fn ledger_calls(lab: &Lab) -> Option<i64> {
    let conn = rusqlite::Connection::open(lab.s.path("state.sqlite")).unwrap();
    conn.query_row(
        "SELECT calls FROM budget WHERE key = 'budget:user:ada'",
        [],
        |r| r.get(0),
    )
    .ok()
}

/// gavel is killed with SIGKILL between the charges (in the shared budget
/// table) and their ledger write: its ledger writer is stalled
/// (`GAVEL_TEST_LEDGER_STALL`, the fault-injection hook), so the ledger has
/// no row when the kill comes. A new gavel counts every call exactly —
/// the table's pages outlive the process — refuses at the limit, and
/// writes the dead gavel's counts to the ledger.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_between_the_charge_and_its_ledger_write_loses_nothing() {
    let lab = Lab::new(json!({}), "[budget]\ncalls = 4\n");
    let mut cmd = lab.command();
    cmd.env("GAVEL_TEST_LEDGER_STALL", "1");
    let (client, pid, mut child) = connect_with_pid(cmd, TestHost::new()).await;
    for _ in 0..3 {
        let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
        assert!(allowed(&r), "{}", text(&r));
    }
    assert_eq!(ledger_calls(&lab), None, "nothing reached the ledger yet");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    drop(client);
    let log = lab.s.log_text();
    assert!(log.contains("GAVEL_TEST_LEDGER_STALL is set"), "{log}");

    let again = lab.connect().await;
    let fourth = call(&again, "echo", json!({"text": "x"})).await.unwrap();
    assert!(allowed(&fourth), "{}", text(&fourth));
    assert_eq!(
        budget_seen(&lab, "echo", 3)["used"]["calls"],
        3,
        "every call of the killed gavel counted"
    );
    let fifth = call(&again, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(decision(&fifth)["reasons"], json!(["budget_exceeded"]));
    eventually("the ledger holds exactly the four calls", || {
        ledger_calls(&lab) == Some(4)
    })
    .await;
    again.cancel().await.unwrap();
}

/// gavel is killed with SIGKILL right after five calls were answered: a new
/// gavel counts exactly the five calls, every argument token and every
/// result token — a result's tokens are in the shared table before its
/// answer reaches the host when no other process holds the table's lock, as
/// here (docs/config.md, durability of budget counters).
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_right_after_answered_calls_loses_no_call() {
    let lab = Lab::new(json!({}), "[budget]\ncalls = 100\ntokens = 100000\n");
    let (client, pid, mut child) = lab.connect_with_pid().await;
    // {"text":"<40 x>"}: 13 tokens of arguments, 10 of result.
    let args = json!({"text": "x".repeat(40)});
    for _ in 0..5 {
        let r = call(&client, "echo", args.clone()).await.unwrap();
        assert!(allowed(&r), "{}", text(&r));
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    drop(client);

    let again = lab.connect().await;
    let sixth = call(&again, "echo", args).await.unwrap();
    assert!(allowed(&sixth), "{}", text(&sixth));
    let used = &budget_seen(&lab, "echo", 5)["used"];
    assert_eq!(used["calls"], 5, "every answered call was charged: {used}");
    assert_eq!(
        used["tokens"],
        5 * 23,
        "every argument and result token, exactly once: {used}"
    );
    again.cancel().await.unwrap();
}

/// A result's tokens reach the store when gavel ends (its session closed by
/// the host): the next gavel's first call sees arguments and result
/// exactly.
#[tokio::test(flavor = "multi_thread")]
async fn result_tokens_reach_the_store_when_gavel_ends() {
    let lab = Lab::new(json!({}), "[budget]\ntokens = 1000\n");
    let (client, _pid, mut child) = lab.connect_with_pid().await;
    let first = call(&client, "echo", json!({"text": "x".repeat(40)}))
        .await
        .unwrap();
    assert!(allowed(&first), "{}", text(&first));
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "gavel ended cleanly: {status:?}");

    let again = lab.connect().await;
    let next = call(&again, "echo", json!({"text": ""})).await.unwrap();
    assert!(allowed(&next), "{}", text(&next));
    assert_eq!(
        budget_seen(&lab, "echo", 1)["used"],
        json!({"calls": 1, "tokens": 23}),
        "13 of arguments, 10 of result"
    );
    again.cancel().await.unwrap();
}
