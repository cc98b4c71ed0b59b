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
    clock: PathBuf,
}

impl Lab {
    fn new(bundle_data: Value, extra: &str) -> Lab {
        Self::with_state(bundle_data, extra, None)
    }

    /// `state`: the `[state]` table's body (default: a SQLite file here).
    fn with_state(bundle_data: Value, extra: &str, state: Option<String>) -> Lab {
        let s = Setup::new("");
        let b = bundle(&s.path("policy"), bundle_data);
        let clock = s.path("clock");
        std::fs::write(&clock, "1800000000").unwrap();
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
        let now: f64 = std::fs::read_to_string(&self.clock)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(&self.clock, format!("{}", now + secs)).unwrap();
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args(self.s.run_args())
            .env("GAVEL_TEST_CLOCK_FILE", &self.clock);
        cmd
    }

    async fn connect(&self) -> Client {
        connect_cmd(self.command(), TestHost::new()).await
    }

    fn decisions(&self) -> Vec<Value> {
        std::fs::read_to_string(self.s.path("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
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
