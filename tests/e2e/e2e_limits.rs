//! End to end: rate limits declared in a bundle and budgets in servers.toml,
//! through the real binary, on a clock the test drives
//! (`GAVEL_TEST_CLOCK_FILE`): a burst over the limit is refused with a
//! retry-after and allowed again after it; a budget survives `kill -9` and a
//! restart; two gavel processes spend one budget exactly; two `gavel serve`
//! instances on one Redis share a limit and per-user budgets; Redis going
//! away fails the limited calls closed until it returns.

use crate::common;

use std::path::Path;

use common::lab::*;
use common::tmpfs;
use common::tmpfs::RedisServer;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_over_the_rate_limit_waits_its_retry_after() {
    let lab = Lab::new(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1m", "burst": 2}]}),
        "",
    );
    let client = lab.connect().await;
    for _ in 0..2 {
        let ok = call(&client, "echo", json!({"text": "x"})).await.unwrap();
        assert_ne!(ok.is_error, Some(true));
    }
    let refused = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(refused.is_error, Some(true));
    let d = decision(&refused);
    assert_eq!(d["reasons"], json!(["rate_limited"]));
    assert_eq!(d["retry_after_seconds"], json!(60.0));
    assert_eq!(d["rate_limit_remaining"], json!(0));
    assert!(
        text(&refused).contains("Retry after: 60.0 s"),
        "{}",
        text(&refused)
    );
    // Another tool has no limit.
    let other = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert_ne!(other.is_error, Some(true));

    lab.advance(30.0);
    let still = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(still.is_error, Some(true), "30 s is not enough");
    assert_eq!(decision(&still)["retry_after_seconds"], json!(30.0));
    lab.advance(30.0);
    let again = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_ne!(again.is_error, Some(true), "allowed after retry_after");

    let log = lab.decisions();
    let echo: Vec<&Value> = log
        .iter()
        .filter(|r| r["input"]["action"]["tool"] == "echo")
        .collect();
    assert_eq!(echo[0]["result"]["rate_limit_remaining"], 1);
    assert_eq!(echo[1]["result"]["rate_limit_remaining"], 0);
    assert_eq!(echo[2]["result"]["reasons"], json!(["rate_limited"]));
    assert_eq!(echo[4]["result"]["allow"], true);
    client.cancel().await.unwrap();
}

/// The session counters read gavel's clock, not the process's: the example
/// workflow layer (bundles/workflow, unmodified) refuses the 61st call of a
/// minute with `too_many_calls_per_minute`, and the same call is allowed once
/// the test clock has moved past the minute; `session_age_seconds` is the
/// clock's too.
#[tokio::test(flavor = "multi_thread")]
async fn workflow_counters_follow_the_test_clock() {
    let lab = Lab::build(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/workflow"),
        "",
        None,
    );
    let client = lab.connect().await;
    // Alternate tools so the loop rule (20 of one tool in a row) stays quiet.
    let tool = |i: usize| {
        if i.is_multiple_of(2) {
            ("echo", json!({"text": "x"}))
        } else {
            ("add", json!({"a": 1, "b": 2}))
        }
    };
    let mut reasons = Vec::new();
    for i in 0..61 {
        let (name, args) = tool(i);
        let r = call(&client, name, args).await.unwrap();
        reasons.push(decision(&r)["reasons"].clone());
    }
    // The layer's user limit (burst 30) refuses calls 31–60; the 61st sees
    // 60 calls in the last minute.
    assert!(
        reasons[..30].iter().all(|r| r.is_null() || *r == json!([])),
        "{reasons:?}"
    );
    assert!(
        reasons[30..60]
            .iter()
            .all(|r| *r == json!(["rate_limited"])),
        "{reasons:?}"
    );
    assert_eq!(reasons[60], json!(["too_many_calls_per_minute"]));
    lab.advance(61.0);
    let (name, args) = tool(61);
    let r = call(&client, name, args).await.unwrap();
    assert_ne!(r.is_error, Some(true), "a minute later: {}", text(&r));
    let log = lab.decisions();
    let ctx = |i: usize| log[i]["input"]["context"].clone();
    assert_eq!(ctx(0)["session_age_seconds"], json!(0.0));
    assert_eq!(ctx(60)["calls_last_minute"], 60);
    assert_eq!(ctx(61)["calls_last_minute"], 0);
    assert_eq!(ctx(61)["session_age_seconds"], json!(61.0));
    assert_eq!(
        log[61]["input"]["environment"]["time"].as_str().unwrap(),
        "2027-01-15T08:01:01.000000000Z",
        "environment.time is the clock's"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_survives_kill_9_and_is_shared_by_two_processes() {
    let lab = Lab::new(
        json!({}),
        "[budget]\nper = \"user\"\nperiod = \"day\"\ncalls = 5\n",
    );
    // First process: two calls, then killed without a chance to clean up.
    let (client, pid, mut child) = lab.connect_with_pid().await;
    for _ in 0..2 {
        let ok = call(&client, "echo", json!({"text": "x"})).await.unwrap();
        assert_ne!(ok.is_error, Some(true));
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    drop(client);

    // Two processes at once share what is left: 3 calls, exactly.
    let a = lab.connect().await;
    let b = lab.connect().await;
    let mut allowed = 0;
    let mut refused = Vec::new();
    for i in 0..6 {
        let c = if i % 2 == 0 { &a } else { &b };
        let r = call(c, "echo", json!({"text": "x"})).await.unwrap();
        if r.is_error == Some(true) {
            refused.push(r);
        } else {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "5 per day, 2 spent before kill -9");
    let d = decision(&refused[0]);
    assert_eq!(d["reasons"], json!(["budget_exceeded"]));
    assert!(
        d["remediation"].as_str().unwrap().contains("renews at"),
        "{d}"
    );
    // The policy saw the budget in its input.
    let log = lab.decisions();
    let last_allowed = log.iter().rfind(|r| r["result"]["allow"] == true).unwrap();
    assert_eq!(
        last_allowed["input"]["context"]["budget"]["used"]["calls"],
        4
    );
    assert_eq!(
        last_allowed["input"]["context"]["budget"]["limit"]["calls"],
        5
    );
    // A new day renews it.
    lab.advance(86_400.0);
    let ok = call(&a, "echo", json!({"text": "x"})).await.unwrap();
    assert_ne!(ok.is_error, Some(true), "a new day, a new budget");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_store_fails_closed_and_is_kept() {
    let lab = Lab::new(json!({}), "[budget]\ncalls = 5\n");
    std::fs::write(lab.s.path("state.sqlite"), "not a database").unwrap();
    let client = lab.connect().await;
    let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(decision(&r)["reasons"], json!(["state_unavailable"]));
    assert_eq!(
        std::fs::read_to_string(lab.s.path("state.sqlite")).unwrap(),
        "not a database",
        "never reset silently"
    );
    client.cancel().await.unwrap();
}

/// The shared throw-away `redis-server` (`src/test_support.rs`), with the
/// `[state]` table that points gavel at it.
trait RedisState {
    fn state(&self) -> String;
}

impl RedisState for RedisServer {
    fn state(&self) -> String {
        format!("backend = \"redis\"\nredis_url = \"{}\"", self.url())
    }
}

const SECRET: &str = JWT_SECRET;

#[tokio::test(flavor = "multi_thread")]
async fn two_gavel_serve_instances_on_one_redis_share_a_limit_and_per_user_budgets() {
    let redis = RedisServer::start();
    // Everyone's echo calls: 4 at once; each user: 3 calls a day.
    let lab = Lab::with_state(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1h", "burst": 4}]}),
        &format!(
            "[budget]\nper = \"user\"\ncalls = 3\n\n{}",
            hs256_auth("https://gavel.example.test/mcp")
        ),
        Some(redis.state()),
    );
    let mut env = lab.env();
    env.push(("GAVEL_E2E_JWT_SECRET", SECRET.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (config, listen) = (lab.s.config(), "127.0.0.1:0");
    let (mut a, pa) = gavel_serve_logged(&config, &lab.s.path("a.log"), listen, &env, &[]).await;
    let (mut b, pb) = gavel_serve_logged(&config, &lab.s.path("b.log"), listen, &env, &[]).await;
    let token = |sub: &str| {
        hs256_token(
            json!({"iss": "https://idp.example.test", "aud": "https://gavel.example.test/mcp",
                   "exp": unix_now() + 600, "sub": sub}),
            SECRET,
        )
    };
    let url = |p: u16| format!("http://127.0.0.1:{p}/mcp");
    let ada_a = http_client(&url(pa), None, Some(&token("ada"))).await;
    let ada_b = http_client(&url(pb), None, Some(&token("ada"))).await;
    let bob_a = http_client(&url(pa), None, Some(&token("bob"))).await;
    let bob_b = http_client(&url(pb), None, Some(&token("bob"))).await;
    let outcome = |r: rmcp::model::CallToolResult| match r.is_error {
        Some(true) => decision(&r)["reasons"][0].as_str().unwrap().to_string(),
        _ => "allowed".to_string(),
    };
    let echo = json!({"text": "x"});
    let add = json!({"a": 1, "b": 2});
    let mut seen = vec![];
    for (client, tool, args) in [
        // The echo limit counts both users on both instances: 4, then refused.
        (&ada_a, "echo", &echo),
        (&ada_b, "echo", &echo),
        (&bob_b, "echo", &echo),
        (&bob_a, "echo", &echo),
        (&ada_a, "echo", &echo),
        // Each user's budget counts both instances: ada has one call left
        // (the refused echo cost nothing), then none; bob likewise.
        (&ada_b, "add", &add),
        (&ada_a, "add", &add),
        (&bob_a, "add", &add),
        (&bob_b, "add", &add),
    ] {
        seen.push(outcome(call(client, tool, args.clone()).await.unwrap()));
    }
    assert_eq!(
        seen,
        [
            "allowed",
            "allowed",
            "allowed",
            "allowed",
            "rate_limited",
            "allowed",
            "budget_exceeded",
            "allowed",
            "budget_exceeded"
        ]
    );
    // The log names who asked, and each budget refusal is the user's own.
    let log = lab.decisions();
    let users: Vec<&str> = log
        .iter()
        .map(|r| r["input"]["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            "ada", "ada", "bob", "bob", "ada", "ada", "ada", "bob", "bob"
        ]
    );
    let refusal = |i: usize| {
        log[i]["result"]["matched_rules"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        refusal(6).starts_with("gavel:budget:budget:user:ada:"),
        "{}",
        refusal(6)
    );
    assert!(
        refusal(8).starts_with("gavel:budget:budget:user:bob:"),
        "{}",
        refusal(8)
    );
    // Redis held it all: no SQLite store was made anywhere.
    lab.assert_no_sqlite();
    for c in [ada_a, ada_b, bob_a, bob_b] {
        c.cancel().await.unwrap();
    }
    for g in [&mut a, &mut b] {
        unsafe { libc::kill(g.id().unwrap() as i32, libc::SIGTERM) };
        assert!(g.wait().await.unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_going_away_fails_limited_calls_closed_until_it_returns() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let lab = Lab::with_state(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1s", "burst": 100}]}),
        "",
        Some(redis.state()),
    );
    let client = lab.connect().await;
    let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));

    redis.stop();
    let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let d = decision(&r);
    assert_eq!(d["reasons"], json!(["state_unavailable"]));
    let remediation = d["remediation"].as_str().unwrap();
    assert!(
        remediation.contains("Redis") && remediation.contains(&format!("127.0.0.1:{port}")),
        "{remediation}"
    );
    // A call the store keeps nothing for (no limit, no budget) still works.
    let r = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(text(&r), "3");

    // Redis is back on the same port: the limited calls are allowed again
    // (after gavel's reconnect backoff; polled, never timed).
    let _back = RedisServer::start_on(port);
    let start = std::time::Instant::now();
    loop {
        let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
        if r.is_error != Some(true) {
            break;
        }
        assert_eq!(decision(&r)["reasons"], json!(["state_unavailable"]));
        assert!(start.elapsed() < PATIENCE, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    lab.assert_no_sqlite();
    client.cancel().await.unwrap();
}

/// `[[servers.NAME.limits]]` can only tighten: every declared limit applies,
/// so a config limit tighter than the bundle's refuses first (with its own
/// retry-after), and a looser one never lets more through than the bundle's.
#[tokio::test(flavor = "multi_thread")]
async fn servers_toml_limits_tighten_and_never_loosen() {
    let limit = |rate: u32| json!({"scope": "tool", "tool": "echo", "rate": rate, "per": "1m", "burst": rate});
    let config_limit = |rate: u32| {
        format!(
            "[[servers.fx.limits]]\nscope = \"tool\"\ntool = \"echo\"\nrate = {rate}\nper = \"1m\"\nburst = {rate}\n"
        )
    };
    // (bundle, config, who refuses the 3rd call)
    for (bundle_rate, config_rate, from) in [(10, 2, "from servers.toml"), (2, 10, "from bundle")] {
        let lab = Lab::new(json!({"limits": [limit(bundle_rate)]}), "");
        lab.append(&config_limit(config_rate));
        let client = lab.connect().await;
        for _ in 0..2 {
            let ok = call(&client, "echo", json!({"text": "x"})).await.unwrap();
            assert!(allowed(&ok), "{}", text(&ok));
        }
        let third = call(&client, "echo", json!({"text": "x"})).await.unwrap();
        let d = decision(&third);
        assert_eq!(
            d["reasons"],
            json!(["rate_limited"]),
            "bundle {bundle_rate}, config {config_rate}"
        );
        // 2 a minute, burst 2: the next slot is 30 s away (the 10-a-minute
        // limit would say 6 s).
        assert_eq!(d["retry_after_seconds"], json!(30.0));
        assert!(d["remediation"].as_str().unwrap().contains(from), "{d}");
        client.cancel().await.unwrap();
    }
}

/// A user limit declared in a shared bundle (`[policy] shared_bundles`) is
/// one limit for the user across every server; a user limit in
/// `[[servers.NAME.limits]]` is that server's alone, even when two servers
/// declare the same one.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_bundles_user_limit_spans_servers_and_a_config_one_does_not() {
    let s = Setup::blank();
    let clock = TestClock::new(s.path("clock"));
    let shared = limit_bundle(
        &s.path("org"),
        json!({"limits": [{"scope": "user", "rate": 1, "per": "1h", "burst": 3}]}),
    );
    let per_server = |name: &str| {
        format!("[[servers.{name}.limits]]\nscope = \"user\"\nrate = 1\nper = \"1h\"\nburst = 2\n")
    };
    s.write_config(&format!(
            "[identity.user]\nid = \"ada\"\n\n[policy]\nshared_bundles = [{:?}]\n\n[state]\npath = {:?}\n\n[log]\ndecisions = {:?}\n\n{}\n{}\n{}\n{}",
            shared.display().to_string(),
            s.path("state.sqlite").display().to_string(),
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("rx.jsonl")),
            per_server("fx"),
            fixture_server("fy", &[], &s.path("ry.jsonl")),
            per_server("fy"),
        ));
    let client = s.connect_on(&clock, TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let mut refused_by = Vec::new();
    for tool in ["fx__echo", "fx__echo", "fx__echo", "fy__echo", "fy__echo"] {
        let r = call(&client, tool, json!({"text": "x"})).await.unwrap();
        let d = decision(&r);
        refused_by.push(if allowed(&r) {
            None
        } else {
            assert_eq!(d["reasons"], json!(["rate_limited"]));
            Some(d["matched_rules"][0].as_str().unwrap().to_string())
        });
    }
    assert_eq!(refused_by[..2], [None, None]);
    // fx's own limit (2) refuses its 3rd call (which charges nothing)…
    assert!(
        refused_by[2]
            .as_ref()
            .unwrap()
            .starts_with("gavel:limit:rl:fx:user:ada:"),
        "{refused_by:?}"
    );
    // …but not fy's first: the same declaration on fy is fy's own.
    assert_eq!(refused_by[3], None, "{refused_by:?}");
    // The shared bundle's limit (3) counted fx's and fy's calls together:
    // fy's 2nd is refused by it, though fy's own limit has room.
    let shared_rule = refused_by[4].as_ref().unwrap();
    assert!(
        shared_rule.starts_with("gavel:limit:rlb:org[fx]:user:ada:"),
        "{refused_by:?}"
    );
    client.cancel().await.unwrap();
}

/// On a real filesystem too small for the rate table (a 1 MiB tmpfs; the
/// table takes 2 MiB): creating it fails, a limited call is refused
/// (`state_unavailable`) and gavel answers on. Before, the table was made
/// sparse and mapped anyway — the call was allowed, and once the
/// filesystem filled up, writing a slot killed every gavel sharing the
/// table with SIGBUS.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_table_that_does_not_fit_fails_closed() {
    let Some(fs) = tmpfs::Tmpfs::mount(1 << 20, "a_rate_table_that_does_not_fit_fails_closed")
    else {
        return;
    };
    let state = fs.path().join("state.sqlite");
    let lab = Lab::with_state(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1m", "burst": 100}]}),
        "",
        Some(format!("path = {:?}", state.display().to_string())),
    );
    let client = lab.connect().await;
    for _ in 0..2 {
        let r = call(&client, "echo", json!({"text": "x"})).await.unwrap();
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        assert_eq!(decision(&r)["reasons"], json!(["state_unavailable"]));
    }
    let other = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert_ne!(
        other.is_error,
        Some(true),
        "an unlimited tool is not refused"
    );
    let log = lab.s.log_text();
    assert!(log.contains("cannot allocate the rate table"), "{log}");
    client.cancel().await.unwrap();
}
