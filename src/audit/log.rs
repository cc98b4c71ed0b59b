//! The decision log file. Guarantees (docs/decision-log.md):
//!
//! - one record = one `write(2)` of one line on an `O_APPEND` descriptor, so
//!   several gavel processes can share a file without interleaving;
//! - the write happens before the decided request is forwarded or the denial
//!   answered: a record reaches the kernel before its effect, so it survives a
//!   gavel crash (`kill -9`); `fsync` is batched (at most every 100 ms) and
//!   done at exit, so it also survives a machine crash up to that window;
//! - `SIGHUP` reopens the file (after external rotation); past
//!   `[log] rotate_bytes` gavel rotates it itself (`file` → `file.1` → … →
//!   `file.<rotate_keep>`, the oldest dropped) under an exclusive lock so two
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
    rotation: Rotation,
    pub write_errors: AtomicU64,
}

/// When gavel rotates the log itself, and how many old files it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file is larger than this; 0: never (external
    /// rotation with SIGHUP only).
    pub bytes: u64,
    /// Rotated files kept (`file.1` newest … `file.<keep>` oldest), >= 1.
    pub keep: u32,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl DecisionLog {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Arc<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let log = Arc::new(Self {
            path: path.to_path_buf(),
            file: Mutex::new(open(path)?),
            dirty: AtomicBool::new(false),
            rotation,
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
            Ok(()) => self.dirty.store(true, Ordering::Release),
            Err(e) => {
                self.count_failure();
                tracing::error!(path = %self.path.display(), "decision log write failed: {e}");
            }
        }
        if self.rotation.bytes > 0
            && f.metadata()
                .map(|m| m.len() > self.rotation.bytes)
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
            .map(|m| m.len() > self.rotation.bytes)
            .unwrap_or(false);
        if over {
            let _ = f.sync_all();
            // Oldest first: file.<keep-1> → file.<keep> (replacing it), …,
            // file → file.1. A missing generation is simply skipped.
            for n in (1..self.rotation.keep.max(1)).rev() {
                let _ = std::fs::rename(self.generation(n), self.generation(n + 1));
            }
            let _ = std::fs::rename(&self.path, self.generation(1));
        }
        if let Ok(newf) = open(&self.path) {
            *f = newf;
        }
    }

    /// `file.<n>`: the n-th newest rotated file.
    pub fn generation(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
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

    /// fsync if anything was written since the last one. The writers' lock
    /// is held only to duplicate the descriptor: `fdatasync` can take
    /// milliseconds, and every decision writes under that lock. A record
    /// written meanwhile marks the log dirty again for the next round; one
    /// written to a file rotated or reopened meanwhile was synced by the
    /// rotation or reopen.
    pub fn sync(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let dup = self
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_clone();
        match dup {
            Ok(f) => {
                if let Err(e) = f.sync_data() {
                    tracing::warn!(path = %self.path.display(), "decision log fsync failed: {e}");
                }
            }
            Err(e) => {
                // Try again next round.
                self.dirty.store(true, Ordering::Release);
                tracing::warn!(path = %self.path.display(), "cannot duplicate the decision log descriptor to fsync it: {e}");
            }
        }
    }

    /// Whether records were written since the last fsync.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
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
        let rotation = Rotation {
            bytes: 64 * 1024,
            keep: 1,
        };
        let a = DecisionLog::open(&p, rotation).unwrap();
        let b = DecisionLog::open(&p, rotation).unwrap(); // a second process, in effect
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

    fn write_n(log: &DecisionLog, n: usize) {
        for i in 0..n {
            log.write(&serde_json::json!({"i": i, "pad": "x".repeat(200)}))
                .unwrap();
        }
    }

    #[test]
    fn rotation_keeps_the_configured_generations_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("decisions.jsonl");
        let log = DecisionLog::open(
            &p,
            Rotation {
                bytes: 4096,
                keep: 3,
            },
        )
        .unwrap();
        // ~250 bytes a record, > 4 KiB a file: about 17 records per file.
        write_n(&log, 200);
        let first = |f: &Path| -> u64 {
            let t = std::fs::read_to_string(f).unwrap();
            let v: serde_json::Value = serde_json::from_str(t.lines().next().unwrap()).unwrap();
            v["i"].as_u64().unwrap()
        };
        for n in 1..=3 {
            assert!(log.generation(n).exists(), "{n}");
        }
        assert!(!log.generation(4).exists(), "only 3 kept");
        // Newest first: file, .1, .2, .3 hold ever older records.
        let order = [
            first(&p),
            first(&log.generation(1)),
            first(&log.generation(2)),
            first(&log.generation(3)),
        ];
        assert!(order.windows(2).all(|w| w[0] > w[1]), "{order:?}");
        assert_eq!(log.generation(2), d.path().join("decisions.jsonl.2"));
    }

    #[test]
    fn rotate_bytes_zero_never_rotates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("decisions.jsonl");
        let log = DecisionLog::open(&p, Rotation { bytes: 0, keep: 1 }).unwrap();
        write_n(&log, 100);
        assert!(!log.generation(1).exists());
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 100);
    }

    #[test]
    fn sync_through_a_duplicate_descriptor_leaves_the_log_clean() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("decisions.jsonl");
        let log = DecisionLog::open(&p, Rotation { bytes: 0, keep: 1 }).unwrap();
        for round in 1..=3 {
            write_n(&log, 1);
            log.sync();
            assert!(!log.is_dirty(), "round {round}");
            // The duplicate shares the open file: the writer's descriptor
            // still appends after it.
            assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), round);
        }
    }

    /// The batched fsync thread `open` starts syncs on its own: a record
    /// written (and never synced by the test) leaves the log clean within a
    /// bounded wait. Without the thread the log would stay dirty until
    /// dropped, and this would time out.
    #[test]
    fn the_fsync_thread_syncs_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("decisions.jsonl");
        let log = DecisionLog::open(&p, Rotation { bytes: 0, keep: 1 }).unwrap();
        for round in 1..=3 {
            write_n(&log, 1);
            // Polled, never timed: generous so a loaded machine only waits.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while log.is_dirty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: the fsync thread never synced the record"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), round);
        }
    }
}
