//! The decision log file. Guarantees (docs/decision-log.md):
//!
//! - one record = one `write(2)` of one line on an `O_APPEND` descriptor, so
//!   several gavel processes can share a file without interleaving;
//! - the write happens before the decided request is forwarded or the denial
//!   answered: a record reaches the kernel before its effect, so it survives a
//!   gavel crash (`kill -9`); `fsync` is batched (at most every 100 ms) and
//!   done at exit, so it also survives a machine crash up to that window;
//! - `SIGHUP` reopens the file (after external rotation); past `max_bytes`
//!   gavel rotates it itself (`file` → `file.1`) under an exclusive lock so two
//!   processes never rotate twice.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct DecisionLog {
    path: PathBuf,
    file: Mutex<File>,
    dirty: AtomicBool,
    max_bytes: u64,
    pub write_errors: AtomicU64,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl DecisionLog {
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Arc<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let log = Arc::new(Self {
            path: path.to_path_buf(),
            file: Mutex::new(open(path)?),
            dirty: AtomicBool::new(false),
            max_bytes,
            write_errors: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&log);
        std::thread::Builder::new()
            .name("gavel-decision-log-fsync".into())
            .spawn(move || {
                while let Some(log) = weak.upgrade() {
                    log.sync();
                    drop(log);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line in one `write(2)`.
    pub fn write(&self, record: &serde_json::Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let result = (|| {
            let n = f.write(&line)?;
            if n != line.len() {
                // A short write on a regular file means the disk is full or a
                // limit was hit: finish it, but say so.
                tracing::warn!(path = %self.path.display(), "short write to the decision log ({n} of {} bytes)", line.len());
                f.write_all(&line[n..])?;
            }
            Ok(())
        })();
        match &result {
            Ok(()) => self.dirty.store(true, Ordering::Relaxed),
            Err(e) => {
                self.count_failure();
                tracing::error!(path = %self.path.display(), "decision log write failed: {e}");
            }
        }
        if self.max_bytes > 0
            && f.metadata()
                .map(|m| m.len() > self.max_bytes)
                .unwrap_or(false)
        {
            self.rotate(&mut f);
        }
        result
    }

    /// Counts a record that was not written (here and in the metrics), for
    /// whatever reason: a failed write, or failing decision-log rules.
    pub fn count_failure(&self) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        super::metrics::global().log_write_error();
    }

    fn rotate(&self, f: &mut File) {
        let lock_path = self.path.with_extension("rotate.lock");
        let Ok(lock) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        else {
            return;
        };
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; released when `lock` drops.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return;
        }
        // Another process may have rotated while we waited: only rotate if the
        // file at the path is still over the limit.
        let over = std::fs::metadata(&self.path)
            .map(|m| m.len() > self.max_bytes)
            .unwrap_or(false);
        if over {
            let _ = f.sync_all();
            let _ = std::fs::rename(
                &self.path,
                self.path.with_extension(format!(
                    "{}.1",
                    self.path
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or("log")
                )),
            );
        }
        if let Ok(newf) = open(&self.path) {
            *f = newf;
        }
    }

    /// Reopens the path (after an external rotation; on SIGHUP).
    pub fn reopen(&self) {
        match open(&self.path) {
            Ok(newf) => {
                let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = f.sync_all();
                *f = newf;
                tracing::info!(path = %self.path.display(), "decision log reopened");
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), "cannot reopen the decision log: {e}; keeping the old descriptor")
            }
        }
    }

    /// fsync if anything was written since the last one.
    pub fn sync(&self) {
        if self.dirty.swap(false, Ordering::Relaxed) {
            let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.sync_data();
        }
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_many_writers_never_interleave_and_rotation_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("decisions.jsonl");
        let a = DecisionLog::open(&p, 64 * 1024).unwrap();
        let b = DecisionLog::open(&p, 64 * 1024).unwrap(); // a second process, in effect
        std::thread::scope(|s| {
            for (w, log) in [(0, &a), (1, &b)] {
                s.spawn(move || {
                    for i in 0..500 {
                        log.write(&serde_json::json!({"w": w, "i": i, "pad": "x".repeat(200)}))
                            .unwrap();
                    }
                });
            }
        });
        a.sync();
        let mut lines = 0;
        for f in [p.clone(), d.path().join("decisions.jsonl.1")] {
            if let Ok(t) = std::fs::read_to_string(&f) {
                for l in t.lines() {
                    let v: serde_json::Value =
                        serde_json::from_str(l).expect("every line is one whole record");
                    assert!(v["i"].is_number());
                    lines += 1;
                }
            }
        }
        // Rotation keeps one previous file; everything since the last rotation is there.
        assert!(lines > 0 && lines <= 1000);
        assert!(std::fs::metadata(&p).unwrap().len() <= 64 * 1024 + 512);
    }
}
