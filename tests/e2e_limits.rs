//! End to end: rate limits declared in a bundle and budgets in servers.toml,
//! through the real binary, on a clock the test drives
//! (`GAVEL_TEST_CLOCK_FILE`): a burst over the limit is refused with a
//! retry-after and allowed again after it; a budget survives `kill -9` and a
//! restart; two gavel processes spend one budget exactly.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rmcp::ServiceExt;
use serde_json::{Value, json};

const POLICY: &str = "package fx\n\ndecision := {\"allow\": true}\n";

fn bundle(dir: &Path, data: Value) -> PathBuf {
    std::fs::create_dir_all(dir.join("fx")).unwrap();
    std::fs::write(
        dir.join(".manifest"),
        json!({"revision": "1", "roots": ["fx"]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("fx/policy.rego"), POLICY).unwrap();
    std::fs::write(dir.join("fx/data.json"), data.to_string()).unwrap();
    dir.to_path_buf()
}

struct Lab {
    s: Setup,
    clock: TestClock,
}

impl Lab {
    fn new(bundle_data: Value, extra: &str) -> Lab {
        Self::with_state(bundle_data, extra, None)
    }

    /// `state`: the `[state]` table's body (default: a SQLite file here).
    fn with_state(bundle_data: Value, extra: &str, state: Option<String>) -> Lab {
        Self::build(|s| bundle(&s.path("policy"), bundle_data), extra, state)
    }

    /// A lab whose server decides with the bundle `make` returns.
    fn build(make: impl FnOnce(&Setup) -> PathBuf, extra: &str, state: Option<String>) -> Lab {
        let s = Setup::new("");
        let b = make(&s);
        let clock = TestClock::new(s.path("clock"));
        std::fs::write(
            s.config(),
            format!(
                "[identity.user]\nid = \"ada\"\n\n[state]\n{}\n\n[log]\ndecisions = {:?}\n\n{extra}\n\n{}bundle = {:?}\n",
                state.unwrap_or_else(|| format!("path = {:?}", s.path("state.sqlite").display().to_string())),
                s.path("decisions.jsonl").display().to_string(),
                fixture_server("fx", &[], &s.path("r.jsonl")),
                b.display().to_string()
            ),
        )
        .unwrap();
        Lab { s, clock }
    }

    fn advance(&self, secs: f64) {
        self.clock.advance(secs);
    }

    fn command(&self) -> tokio::process::Command {
        self.s.command_on(&self.clock)
    }

    async fn connect(&self) -> Client {
        self.s.connect_on(&self.clock, TestHost::new()).await
    }

    fn decisions(&self) -> Vec<Value> {
        self.s.decisions()
    }
}

fn decision(r: &rmcp::model::CallToolResult) -> Value {
    r.meta
        .as_ref()
        .and_then(|m| m.0.get("dev.gavel/decision"))
        .cloned()
        .unwrap_or(Value::Null)
}

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
    let (client, pid, mut child) = {
        let mut cmd = lab.command();
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id().unwrap() as i32;
        let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let client = TestHost::new().serve(io).await.unwrap();
        (client, pid, child)
    };
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

/// A throw-away `redis-server` (Debian package, installed by scripts/setup).
struct Redis(std::process::Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed by this test: run scripts/setup");
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_redis_share_a_limit_and_a_budget() {
    let redis = Redis::start();
    let state = format!(
        "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"",
        redis.1
    );
    // Limit: 4 echo calls at once; budget: 6 calls a day.
    let lab = Lab::with_state(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1h", "burst": 4}]}),
        "[budget]\ncalls = 6\n",
        Some(state),
    );
    let a = lab.connect().await;
    let b = lab.connect().await;
    let mut echo_ok = 0;
    for i in 0..6 {
        let c = if i % 2 == 0 { &a } else { &b };
        let r = call(c, "echo", json!({"text": "x"})).await.unwrap();
        if r.is_error != Some(true) {
            echo_ok += 1;
        } else {
            assert_eq!(decision(&r)["reasons"], json!(["rate_limited"]));
        }
    }
    assert_eq!(echo_ok, 4, "one limit across both instances");
    // The budget: 4 calls spent; 2 more of another tool, then refused.
    let mut add_ok = 0;
    for i in 0..4 {
        let c = if i % 2 == 0 { &b } else { &a };
        let r = call(c, "add", json!({"a": 1, "b": 2})).await.unwrap();
        if r.is_error != Some(true) {
            add_ok += 1;
        } else {
            assert_eq!(decision(&r)["reasons"], json!(["budget_exceeded"]));
        }
    }
    assert_eq!(add_ok, 2, "one budget across both instances");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}
