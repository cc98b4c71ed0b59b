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
//!   processes never rotate twice;
//! - the size check costs no syscall per record: each process counts what it
//!   appends and looks at the real size (one `fstat`) only when its count
//!   nears the limit ([`Current::due`]) — and rotates on the real size
//!   only, which counts every process's records.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::Recover;

pub struct DecisionLog {
    path: PathBuf,
    file: Mutex<Current>,
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

/// Look at the real size at least every this many bytes this process
/// appends (about 40 records), however far the limit still is.
const CHECK_EVERY: u64 = 64 * 1024;

/// The open file and what this process knows of its size. The count
/// under-counts when other processes append to the same file, so it only
/// says when to look ([`Self::due`]); rotation is decided on the real size.
struct Current {
    file: File,
    /// The file's size when this process last looked (`fstat`).
    seen: u64,
    /// Bytes this process appended since (a failed write counts whole: an
    /// over-count only makes the next look come sooner).
    since: u64,
    /// Looks at the size taken by the rotation check (what the tests count).
    looks: u64,
}

impl Current {
    fn new(file: File) -> Current {
        let seen = file.metadata().map(|m| m.len()).unwrap_or(0);
        Current {
            file,
            seen,
            since: 0,
            looks: 0,
        }
    }

    /// Another file at the path (a reopen, a rotation): its size is looked
    /// at once, here.
    fn replace(&mut self, file: File) {
        *self = Current {
            looks: self.looks,
            ..Current::new(file)
        };
    }

    fn saw(&mut self, len: u64) {
        self.seen = len;
        self.since = 0;
    }

    /// Whether to look at the real size after this record: once this
    /// process has appended an eighth of the room it last saw left below
    /// `limit`, or `CHECK_EVERY` bytes. Every writer of a shared file looks
    /// this often, so together they notice the file passing the limit
    /// before it is far past it (an eighth of the room per writer at most);
    /// near the limit that is after every record, as without the count.
    fn due(&self, limit: u64) -> bool {
        let room = limit.saturating_sub(self.seen);
        self.since >= (room / 8).clamp(1, CHECK_EVERY)
    }
}

impl DecisionLog {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Arc<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let log = Arc::new(Self {
            path: path.to_path_buf(),
            file: Mutex::new(Current::new(open(path)?)),
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
        // Serialized before the lock: other writers (the forwarded path's
        // records, the shadow's) wait only for the write itself.
        let mut line = Vec::with_capacity(512);
        serde_json::to_writer(&mut line, record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.append_lines(line)
    }

    /// Appends one record already serialized as its line (ending in a
    /// newline: `super::stream::line`), in one `write(2)`.
    pub fn write_line(&self, line: Vec<u8>) -> std::io::Result<()> {
        debug_assert!(line.ends_with(b"\n"));
        self.append_lines(line)
    }

    /// Appends `records`, one line each, in one `write(2)` — for a writer
    /// with many records at once (the shadow's divergences of one batch): one
    /// system call and one lock for all. All or none: on an error nothing of
    /// them is left in the file but, at most, blank lines.
    pub fn write_batch(&self, records: &[serde_json::Value]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::with_capacity(512 * records.len());
        for record in records {
            serde_json::to_writer(&mut lines, record).map_err(std::io::Error::other)?;
            lines.push(b'\n');
        }
        self.append_lines(lines)
    }

    /// Appends whole lines (each ending in a newline) in one `write(2)`,
    /// following and doing rotation.
    fn append_lines(&self, mut line: Vec<u8>) -> std::io::Result<()> {
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
        let torn = self.torn.swap(false, Ordering::AcqRel);
        if torn {
            line.insert(0, b'\n');
        }
        let result = self.append(&f.file, &line);
        f.since = f.since.saturating_add(line.len() as u64);
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
        if self.rotation.bytes > 0 && f.due(self.rotation.bytes) {
            f.looks += 1;
            match f.file.metadata().map(|m| m.len()) {
                Ok(len) if len > self.rotation.bytes => self.rotate(&mut f),
                Ok(len) => f.saw(len),
                // Looked at again after the next record.
                Err(_) => {}
            }
        }
        result
    }

    /// Another process sharing the file rotated it: write to the new file
    /// at the path, not the old one (`file.1`), so that a rotated file gets
    /// no late records — the shipper (`super::ship`) moves on from a rotated
    /// file once it is quiet (`super::ship`'s QUIET, ten times
    /// [`FOLLOW_EVERY`]).
    /// The same look tells the size of our file, which other processes
    /// may have grown: the count starts again from it.
    fn follow_rotation(&self, f: &mut Current) {
        use std::os::unix::fs::MetadataExt;
        let (Ok(at_path), Ok(ours)) = (std::fs::metadata(&self.path), f.file.metadata()) else {
            return;
        };
        if (at_path.dev(), at_path.ino()) == (ours.dev(), ours.ino()) {
            f.saw(ours.len());
        } else if let Ok(newf) = open(&self.path) {
            f.replace(newf);
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

    fn rotate(&self, f: &mut Current) {
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
            let _ = f.file.sync_all();
            // Oldest first: file.<keep-1> → file.<keep> (replacing it), …,
            // file → file.1. A missing generation is simply skipped.
            for n in (1..self.rotation.keep.max(1)).rev() {
                let _ = std::fs::rename(self.generation(n), self.generation(n + 1));
            }
            let _ = std::fs::rename(&self.path, self.generation(1));
        }
        if let Ok(newf) = open(&self.path) {
            f.replace(newf);
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
                let _ = f.file.sync_all();
                f.replace(newf);
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
        let dup = self.file.lock().recover().file.try_clone();
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
#[path = "log_tests.rs"]
mod tests;
