//! A host that speaks raw JSON lines to `gavel run`: for tests about what
//! crosses the wire, in which order, and what a broken host sends.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::{Value, json};

use super::*;

pub struct RawHost {
    child: Child,
    stdin: ChildStdin,
    out: std::sync::mpsc::Receiver<Value>,
}

impl RawHost {
    /// gavel on `s`'s config, initialized as a 2025-11-25 host.
    pub fn start(s: &Setup) -> RawHost {
        let mut raw = Self::bare(s);
        raw.send_line(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
        let init = raw.answer(&json!(0));
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        raw
    }

    /// gavel on `s`'s config with nothing sent yet: a host of either era.
    pub fn bare(s: &Setup) -> RawHost {
        Self::bare_env(s, &[])
    }

    /// [`RawHost::bare`] with `env` set for gavel (test hooks).
    pub fn bare_env(s: &Setup, env: &[(&str, &str)]) -> RawHost {
        let mut child = Command::new(GAVEL)
            .envs(env.iter().copied())
            .args([
                "run",
                "--config",
                s.config().to_str().unwrap(),
                "--log-file",
                s.log().to_str().unwrap(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value =
                    serde_json::from_str(&line).expect("gavel writes only JSON-RPC on stdout");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        RawHost {
            child,
            stdin,
            out: rx,
        }
    }

    pub fn send_line(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next message with this id (notifications are skipped).
    pub fn answer(&mut self, id: &Value) -> Value {
        loop {
            let v = self
                .out
                .recv_timeout(PATIENCE)
                .expect("an answer, not a hang");
            if &v["id"] == id {
                return v;
            }
        }
    }

    /// The next message gavel writes, whatever it is.
    pub fn next(&mut self) -> Value {
        self.out
            .recv_timeout(PATIENCE)
            .expect("a message, not a hang")
    }

    /// Signals gavel to stop (SIGTERM), as a supervisor would.
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// The next error with no id (parse errors): `"id": null` or none.
    pub fn idless_error(&mut self) -> Value {
        loop {
            let v = self
                .out
                .recv_timeout(PATIENCE)
                .expect("an answer, not a hang");
            if v["id"].is_null() && v.get("error").is_some() {
                return v;
            }
        }
    }
}

impl Drop for RawHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
