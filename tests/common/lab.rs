//! A gavel with rate limits and budgets on a test clock, for the limit and
//! budget e2e tests: one fixture server `fx` deciding with a bundle whose
//! data the test gives (limits), a SQLite state store in the temp dir (or
//! the `[state]` the test gives), a decision log, and the identity from the
//! environment (`E2E_USER`, `E2E_AGENT`; default `ada` / `a1`) so several
//! processes can be different users or agents.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

const POLICY: &str = "package fx\n\ndecision := {\"allow\": true}\n";

/// An allow-all bundle rooted at `fx` with `data` (e.g. `{"limits": […]}`).
pub fn limit_bundle(dir: &Path, data: Value) -> PathBuf {
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

pub struct Lab {
    pub s: Setup,
    pub clock: TestClock,
}

impl Lab {
    pub fn new(bundle_data: Value, extra: &str) -> Lab {
        Self::with_state(bundle_data, extra, None)
    }

    /// `state`: the `[state]` table's body (default: a SQLite file here).
    pub fn with_state(bundle_data: Value, extra: &str, state: Option<String>) -> Lab {
        Self::build(
            |s| limit_bundle(&s.path("policy"), bundle_data),
            extra,
            state,
        )
    }

    /// A lab whose server decides with the bundle `make` returns; `extra`:
    /// top-level tables (`[budget]`, `[policy]`…).
    pub fn build(make: impl FnOnce(&Setup) -> PathBuf, extra: &str, state: Option<String>) -> Lab {
        let s = Setup::with(|s| {
            let b = make(s);
            format!(
                "[identity.user]\nid = \"${{E2E_USER:-ada}}\"\n\n[identity.agent]\nid = \"${{E2E_AGENT:-a1}}\"\n\n[state]\n{}\n\n{}{extra}\n\n{}bundle = {:?}\n",
                state.unwrap_or_else(|| format!(
                    "path = {:?}",
                    s.path("state.sqlite").display().to_string()
                )),
                s.decision_log_table(),
                fixture_server("fx", &[], &s.path("r.jsonl")),
                b.display().to_string()
            )
        });
        let clock = TestClock::new(s.path("clock"));
        Lab { s, clock }
    }

    /// Appends tables after the server's (`[[servers.fx.limits]]`).
    pub fn append(&self, toml: &str) {
        let mut cfg = std::fs::read_to_string(self.s.config()).unwrap();
        cfg.push('\n');
        cfg.push_str(toml);
        self.s.write_config(&cfg);
    }

    pub fn advance(&self, secs: f64) {
        self.clock.advance(secs);
    }

    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = self.s.command_on(&self.clock);
        cmd.env("GAVEL_STATE_DIR", self.state_dir());
        cmd
    }

    /// gavel's default state directory for this lab (`GAVEL_STATE_DIR`):
    /// never the user's, and a test can see what gavel put there.
    pub fn state_dir(&self) -> PathBuf {
        self.s.path("state-dir")
    }

    /// The environment [`Lab::command`] sets, for gavels started otherwise
    /// (`gavel serve`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GAVEL_TEST_CLOCK_FILE", self.clock.0.display().to_string()),
            ("GAVEL_STATE_DIR", self.state_dir().display().to_string()),
        ]
    }

    /// No SQLite state store anywhere in the lab (a Redis test that fell
    /// back to the embedded store would pass for the wrong reason).
    pub fn assert_no_sqlite(&self) {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("state."))
                {
                    found.push(p);
                }
            }
        }
        let mut found = vec![];
        walk(self.s.dir.path(), &mut found);
        assert!(
            found.is_empty(),
            "an embedded state store was created: {found:?}"
        );
    }

    /// A gavel for `user` and `agent`.
    pub fn command_as(&self, user: &str, agent: &str) -> tokio::process::Command {
        let mut cmd = self.command();
        cmd.env("E2E_USER", user).env("E2E_AGENT", agent);
        cmd
    }

    pub async fn connect(&self) -> Client {
        connect_cmd(self.command(), TestHost::new()).await
    }

    pub async fn connect_as(&self, user: &str, agent: &str) -> Client {
        connect_cmd(self.command_as(user, agent), TestHost::new()).await
    }

    /// A gavel connected and its pid, for `kill -9`.
    pub async fn connect_with_pid(&self) -> (Client, i32, tokio::process::Child) {
        connect_with_pid(self.command(), TestHost::new()).await
    }

    pub fn decisions(&self) -> Vec<Value> {
        self.s.decisions()
    }

    /// The decision records of `tool` calls (not approval steps), in order.
    pub fn tool_decisions(&self, tool: &str) -> Vec<Value> {
        self.decisions()
            .into_iter()
            .filter(|r| r["input"]["action"]["tool"] == tool)
            .collect()
    }
}

/// The decision gavel attached to a tool result.
pub fn decision(r: &rmcp::model::CallToolResult) -> Value {
    r.meta
        .as_ref()
        .and_then(|m| m.0.get("dev.gavel/decision"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Whether a tool result is an allowed, forwarded call.
pub fn allowed(r: &rmcp::model::CallToolResult) -> bool {
    r.is_error != Some(true)
}
