//! A decision-log service run by the test (tests/clients/log_receiver.py):
//! OPA's upload protocol as a receiver sees it, failing on command.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub struct Receiver {
    dir: PathBuf,
    pub port: u16,
    child: std::process::Child,
}

impl Receiver {
    /// Starts a receiver keeping its files in `dir` (created).
    pub fn start(dir: &Path) -> Receiver {
        std::fs::create_dir_all(dir).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let child = std::process::Command::new(root.join(".deps/venv/bin/python"))
            .arg(root.join("tests/clients/log_receiver.py"))
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the log receiver");
        let port_file = dir.join("port");
        let deadline = std::time::Instant::now() + super::PATIENCE;
        while !port_file.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the log receiver did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Receiver {
            dir: dir.to_path_buf(),
            port,
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers 503 (and keeps nothing) until [`Receiver::recover`].
    pub fn fail(&self) {
        std::fs::write(self.dir.join("fail"), b"").unwrap();
    }

    pub fn recover(&self) {
        std::fs::remove_file(self.dir.join("fail")).unwrap();
    }

    /// Every event accepted, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        whole_lines(&self.dir.join("events.jsonl"))
    }

    /// Every request: `{path, encoding, status, events}`.
    pub fn requests(&self) -> Vec<Value> {
        whole_lines(&self.dir.join("requests.jsonl"))
    }

    /// Requests refused with 503 so far.
    pub fn refused(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r["status"] == 503)
            .count()
    }
}

/// The complete lines of a file the receiver may be appending to (a line
/// still being written is left for the next look).
fn whole_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let done = text.rfind('\n').map_or("", |i| &text[..i]);
    done.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {l:?}: {e}", path.display()))
        })
        .collect()
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
