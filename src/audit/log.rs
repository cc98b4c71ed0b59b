//! The decision log file. Guarantees (docs/decision-log.md):
//!
//! - one record = one `write(2)` of one line on an `O_APPEND` descriptor, so
//!   several gavel processes can share a file without interleaving;
//! - a record the disk has no room for leaves no fragment: a short write is
//!   never finished by a second write (another process's record could land
//!   between the halves); the part that reached the file is overwritten in
//!   place with spaces and a newline — a blank line, which readers skip —
//!   and the record counts as not written (`audit_unavailable`). Overwriting
//!   only the bytes that write appended needs no lock against other
//!   writers, who only ever append after them;
//! - the write happens before the decided request is forwarded or the denial
//!   answered: a record reaches the kernel before its effect, so it survives a
//!   gavel crash (`kill -9`); `fsync` is batched (at most every 100 ms) and
//!   done at exit, so it also survives a machine crash up to that window;
//! - a writer whose file was rotated by another process (or replaced at the
//!   path) reopens the path before its next record;
//! - `SIGHUP` reopens the file (after external rotation); past
//!   `[log] rotate_bytes` gavel rotates it itself (`file` → `file.1` → … →
//!   `file.<rotate_keep>`, the oldest dropped) under an exclusive lock so two
//!   processes never rotate twice.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::Recover;

pub struct DecisionLog {
    path: PathBuf,
    file: Mutex<File>,
    dirty: AtomicBool,
    /// A fragment could not be blanked: the next record starts with a
    /// newline of its own, so at least it is not glued onto the fragment.
    torn: AtomicBool,
    rotation: Rotation,
    pub write_errors: AtomicU64,
    /// When the path was last compared with our file (ms since `opened`):
    /// see [`Self::write`].
    followed_ms: AtomicU64,
    opened: std::time::Instant,
}

/// How often a rotating log checks whether another process rotated its file:
/// well inside the shipper's quiet time, so a record written to a rotated file
/// in between still keeps that file from being passed over as quiet.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

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
            torn: AtomicBool::new(false),
            rotation,
            write_errors: AtomicU64::new(0),
            followed_ms: AtomicU64::new(0),
            opened: std::time::Instant::now(),
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

    /// Appends one record as one line in one `write(2)`; on an error
    /// nothing of it is left in the file but, at most, a blank line.
    pub fn write(&self, record: &serde_json::Value) -> std::io::Result<()> {
        let mut f = self.file.lock().recover();
        // Only a rotating log can be rotated under us (the processes sharing
        // a log share its `[log]` table, so they agree on whether it
        // rotates), and it is checked at most every FOLLOW_EVERY: the record
        // path pays two `stat`s per interval, not per record.
        if self.rotation.bytes > 0 {
            let now = self.opened.elapsed().as_millis() as u64;
            let last = self.followed_ms.load(Ordering::Relaxed);
            if last == 0 || now.saturating_sub(last) >= FOLLOW_EVERY.as_millis() as u64 {
                self.followed_ms.store(now.max(1), Ordering::Relaxed);
                self.follow_rotation(&mut f);
            }
        }
        let mut line = Vec::with_capacity(512);
        let torn = self.torn.swap(false, Ordering::AcqRel);
        if torn {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let result = self.append(&f, &line);
        if torn && result.is_err() {
            // The newline may not have been written either: still torn.
            self.torn.store(true, Ordering::Release);
        }
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

    /// Another process sharing the file rotated it: write to the new file
    /// at the path, not the old one (`file.1`), so that a rotated file gets
    /// no late records — the shipper (`super::ship`) moves on from a rotated
    /// file once it is quiet (`super::ship`'s QUIET, ten times
    /// [`FOLLOW_EVERY`]).
    fn follow_rotation(&self, f: &mut File) {
        use std::os::unix::fs::MetadataExt;
        let (Ok(at_path), Ok(ours)) = (std::fs::metadata(&self.path), f.metadata()) else {
            return;
        };
        if (at_path.dev(), at_path.ino()) != (ours.dev(), ours.ino())
            && let Ok(newf) = open(&self.path)
        {
            *f = newf;
        }
    }

    /// One `write(2)` of `line`. A short write (the filesystem filled up,
    /// a size limit) is not finished: the fragment it appended is blanked
    /// ([`Self::blank`]) and the record is an error.
    fn append(&self, mut f: &File, line: &[u8]) -> std::io::Result<()> {
        let n = loop {
            match f.write(line) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == line.len() {
            return Ok(());
        }
        if n > 0 {
            // With O_APPEND the descriptor's offset is the end of what this
            // write appended, whatever other processes appended since.
            match f.stream_position() {
                Ok(end) => self.blank(f, end - n as u64, n),
                Err(e) => {
                    self.torn.store(true, Ordering::Release);
                    tracing::error!(path = %self.path.display(), "cannot find the decision log fragment a short write left ({e}); the next record starts on a line of its own");
                }
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "short write ({n} of {} bytes): the filesystem is full or a file size limit was reached",
                line.len()
            ),
        ))
    }

    /// Overwrites the `n` bytes at `at` (a fragment this process appended)
    /// with spaces ending in a newline. Through a second open of the same
    /// file (not the path: it may have been rotated away since): `pwrite`
    /// on an `O_APPEND` descriptor appends on Linux.
    fn blank(&self, f: &File, at: u64, n: usize) {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        let mut pad = vec![b' '; n];
        pad[n - 1] = b'\n';
        let done = OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .and_then(|w| w.write_all_at(&pad, at));
        match done {
            Ok(()) => {
                tracing::warn!(path = %self.path.display(), "the decision log is full: a record was not written ({n} bytes of it blanked)")
            }
            Err(e) => {
                self.torn.store(true, Ordering::Release);
                tracing::error!(path = %self.path.display(), "cannot blank the fragment of a record the decision log had no room for ({e}); the next record starts on a line of its own");
            }
        }
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
                let mut f = self.file.lock().recover();
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
        let dup = self.file.lock().recover().try_clone();
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

    /// A real filesystem fills up under two writers (two gavel processes,
    /// in effect): records that do not fit fail and leave at most a blank
    /// line; once space is back, both writers' records are whole lines. On
    /// the old code the fragment of a failed record stayed, and the next
    /// record was glued onto it.
    #[test]
    fn a_record_the_disk_has_no_room_for_leaves_no_fragment() {
        let Some(fs) = crate::test_support::Tmpfs::mount(
            256 * 1024,
            "a_record_the_disk_has_no_room_for_leaves_no_fragment",
        ) else {
            return;
        };
        let p = fs.path().join("decisions.jsonl");
        let never = Rotation { bytes: 0, keep: 1 };
        let (a, b) = (
            DecisionLog::open(&p, never).unwrap(),
            DecisionLog::open(&p, never).unwrap(),
        );
        // Larger than a page: it never fits in the room left at the end of
        // the log's last page, so on the full filesystem it is cut short.
        let big = |w: &str, i: usize| serde_json::json!({"w": w, "i": i, "pad": "x".repeat(6000)});
        a.write(&big("a", 0)).unwrap();
        b.write(&serde_json::json!({"w": "b", "i": 0})).unwrap();
        let filler = fs.fill();
        let before = std::fs::metadata(&p).unwrap().len();
        assert!(a.write(&big("a", 1)).is_err(), "the filesystem is full");
        assert!(b.write(&big("b", 1)).is_err(), "the filesystem is full");
        let after = std::fs::metadata(&p).unwrap().len();
        assert!(
            after > before || before % 4096 == 0,
            "a short write appended a fragment ({before} -> {after} bytes)"
        );
        std::fs::remove_file(filler).unwrap();
        a.write(&big("a", 2)).unwrap();
        b.write(&big("b", 2)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("every non-blank line is one whole record"))
            .collect();
        let seen: Vec<(String, u64)> = records
            .iter()
            .map(|r| (r["w"].as_str().unwrap().into(), r["i"].as_u64().unwrap()))
            .collect();
        let want: Vec<(String, u64)> = [("a", 0), ("b", 0), ("a", 2), ("b", 2)]
            .iter()
            .map(|(w, i)| (w.to_string(), *i))
            .collect();
        assert_eq!(seen, want);
        assert!(text.ends_with('\n'));
    }
}
