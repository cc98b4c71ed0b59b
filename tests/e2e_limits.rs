//! End to end: rate limits declared in a bundle and budgets in servers.toml,
//! through the real binary, on a clock the test drives
//! (`GAVEL_TEST_CLOCK_FILE`): a burst over the limit is refused with a
//! retry-after and allowed again after it; a budget survives `kill -9` and a
//! restart; two gavel processes spend one budget exactly; two `gavel serve`
//! instances on one Redis share a limit and per-user budgets; Redis going
//! away fails the limited calls closed until it returns.

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

    /// gavel's default state directory for this lab (`GAVEL_STATE_DIR`):
    /// never the user's, and a test can see what gavel put there.
    fn state_dir(&self) -> PathBuf {
        self.s.path("state-dir")
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GAVEL_TEST_CLOCK_FILE", self.clock.display().to_string()),
            ("GAVEL_STATE_DIR", self.state_dir().display().to_string()),
        ]
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args(self.s.run_args()).envs(self.env());
        cmd
    }

    /// No SQLite state store anywhere in the lab (a Redis test that fell
    /// back to the embedded store would pass for the wrong reason).
    fn assert_no_sqlite(&self) {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("state.sqlite"))
                {
                    found.push(p);
                }
            }
        }
        let mut found = vec![];
        walk(self.s.dir.path(), &mut found);
        assert!(found.is_empty(), "a SQLite store was created: {found:?}");
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
struct Redis(Option<std::process::Child>, u16);

impl Redis {
    fn start() -> Redis {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
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
        Redis(Some(child), port)
    }

    fn state(&self) -> String {
        format!(
            "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"",
            self.1
        )
    }

    /// Kills it and waits until the port refuses connections.
    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

const SECRET: &str = "e2e-secret-for-hs256-tokens-only";

#[tokio::test(flavor = "multi_thread")]
async fn two_gavel_serve_instances_on_one_redis_share_a_limit_and_per_user_budgets() {
    let redis = Redis::start();
    // Everyone's echo calls: 4 at once; each user: 3 calls a day.
    let lab = Lab::with_state(
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1h", "burst": 4}]}),
        "[budget]\nper = \"user\"\ncalls = 3\n\n[auth]\nissuer = \"https://idp.example.test\"\naudience = \"https://gavel.example.test/mcp\"\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_E2E_JWT_SECRET\"\n",
        Some(redis.state()),
    );
    let mut env = lab.env();
    env.push(("GAVEL_E2E_JWT_SECRET", SECRET.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (pa, pb) = (free_port(), free_port());
    let mut a = gavel_serve_logged(&lab.s.config(), &lab.s.path("a.log"), pa, &env, &[]).await;
    let mut b = gavel_serve_logged(&lab.s.config(), &lab.s.path("b.log"), pb, &env, &[]).await;
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
    let mut redis = Redis::start();
    let port = redis.1;
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
    let _back = Redis::start_on(port);
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
