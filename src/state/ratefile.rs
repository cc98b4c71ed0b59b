//! GCRA state (one theoretical arrival time per limit key) in a
//! memory-mapped file that every gavel process on the machine shares.
//!
//! Why not SQLite, like budgets: a rate limit is charged on every allowed
//! `tools/call`, inside the decision. A SQLite write transaction in WAL mode
//! costs ~7 `fcntl` locks and a WAL frame `pwrite` per call — 15–60 µs, the
//! largest part of a decision. Here a charge is one `flock` pair around a few
//! loads and stores in shared memory (~1 µs), and it is still exact across
//! processes: the check and the charge of every limit of a call happen under
//! one exclusive lock.
//!
//! Why that is safe for this state: a TAT is *soft* state. A slot whose TAT
//! is not after `now` says exactly what an absent key says (a full burst is
//! available), so such a slot may be taken by another key at any time; the
//! table never needs pruning and stays bounded. A store that is lost (power
//! loss before the kernel wrote the page back) only hands out one burst
//! again. A `kill -9` loses nothing: the pages are the kernel's, not the
//! process's. Budget counters, which are accounting, live in a table of
//! their own beside this one (`budgetfile`), under this table's lock, with
//! a SQLite ledger behind them for what a power loss would take.
//!
//! Layout: a 64-byte header (magic, version, slot count) and a fixed table
//! of 32-byte slots `{key hash (128 bits), TAT (f64 bits), reserved}`,
//! linear probing over a bounded window. A file that is not a gavel rate
//! table is an error, never reset (the limits it keeps fail closed); a
//! header of zeros is a table whose creator died before writing it.
//!
//! The mapping is a `memmap2::MmapRaw`: it hands out raw pointers only,
//! never `&[u8]`, which is what a buffer that other processes write at any
//! time needs; memory is touched only as `AtomicU64` words ([`RateFile::word`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use sha2::{Digest, Sha256};

use super::StateError;
use super::gcra::{self, Rate, RateOutcome};
use crate::sync::Recover;

const MAGIC: &[u8; 8] = b"GAVELGCR";
const VERSION: u32 = 1;
const HEADER: usize = 64;
const SLOT: usize = 32;
/// 65 536 slots: 2 MiB. Only keys charged within their burst window are
/// live, so this is far more than one machine's users × tools × servers.
const SLOTS: usize = 1 << 16;
/// How far a key may sit from its home slot.
const PROBE: usize = 64;
/// How long a charge waits for another process's lock before failing
/// closed (a process holds it for microseconds, or for one SQLite budget
/// transaction of a counter the budget table cannot hold, itself bounded by
/// its busy timeout).
const LOCK_WAIT: Duration = Duration::from_secs(6);

pub struct RateFile {
    path: PathBuf,
    file: File,
    /// A shared read-write mapping of the whole file (`len` bytes), unmapped
    /// when dropped.
    map: MmapRaw,
    len: usize,
    /// `flock` excludes other processes (each opens its own descriptor);
    /// this excludes the other threads of this one.
    threads: Mutex<()>,
}

/// A slot found (or claimed) for a key while the table is locked.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: usize,
}

/// A key's slot hash: its SHA-256, remembered per thread (`slot_hash`: a
/// call's rate-limit keys repeat call after call).
fn key_hash(key: &str) -> (u64, u64) {
    super::slot_hash::remembered(super::slot_hash::Table::Rate, key, "", || key_digest(key))
}

fn key_digest(key: &str) -> (u64, u64) {
    let d = Sha256::digest(key.as_bytes());
    let hi = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
    let lo = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    // (0, 0) marks an empty slot.
    if hi == 0 && lo == 0 { (0, 1) } else { (hi, lo) }
}

impl RateFile {
    pub fn open(path: &Path) -> Result<RateFile, StateError> {
        let err = |m: String| StateError::Unavailable {
            path: path.display().to_string(),
            message: m,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let file = open_table(path).map_err(|e| err(e.to_string()))?;
        let len = HEADER + SLOTS * SLOT;
        {
            let _held =
                lock_file(&file, Some(Instant::now() + LOCK_WAIT)).map_err(|b| err(b.message()))?;
            let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
            let mut header = [0u8; HEADER];
            if size != 0 && size != len as u64 {
                return Err(err(format!(
                    "not a gavel rate table ({size} bytes, expected {len})"
                )));
            }
            allocate(&file, len, size == 0, "rate table", "rate limits").map_err(err)?;
            if size != 0 {
                file.read_exact_at(&mut header, 0)
                    .map_err(|e| err(e.to_string()))?;
            }
            if header.iter().all(|b| *b == 0) {
                header[..8].copy_from_slice(MAGIC);
                header[8..12].copy_from_slice(&VERSION.to_le_bytes());
                header[12..16].copy_from_slice(&(SLOTS as u32).to_le_bytes());
                file.write_all_at(&header, 0)
                    .map_err(|e| err(e.to_string()))?;
            }
            if &header[..8] != MAGIC {
                return Err(err("not a gavel rate table (bad magic)".into()));
            }
            let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
            let slots = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
            if version != VERSION || slots as usize != SLOTS {
                return Err(err(format!(
                    "rate table version {version} with {slots} slots; this gavel uses version {VERSION} with {SLOTS}"
                )));
            }
        }
        // Shared and read-write, of the size checked above.
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| err(format!("mmap: {e}")))?;
        Ok(RateFile {
            path: path.to_path_buf(),
            file,
            map,
            len,
            threads: Mutex::new(()),
        })
    }

    fn err(&self, m: impl Into<String>) -> StateError {
        StateError::Unavailable {
            path: self.path.display().to_string(),
            message: m.into(),
        }
    }

    fn word(&self, slot: usize, word: usize) -> &AtomicU64 {
        debug_assert!(slot < SLOTS && word < SLOT / 8);
        self.atomic_at(HEADER + slot * SLOT + word * 8)
    }

    /// The 8 bytes at `offset` of the mapping, as an atomic word: the only
    /// way the table's memory is read or written (other processes write it
    /// at any time, so no `&[u8]` over it may exist).
    fn atomic_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.map.len());
        // SAFETY: in bounds of the mapping and 8-byte aligned (asserted; the
        // base is page-aligned); the mapping lives as long as `self`, and
        // memory shared with other processes is only ever accessed
        // atomically, so no non-atomic Rust reference aliases it.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast()) }
    }

    fn hash_at(&self, slot: usize) -> (u64, u64) {
        (
            self.word(slot, 0).load(Ordering::Relaxed),
            self.word(slot, 1).load(Ordering::Relaxed),
        )
    }

    fn tat_at(&self, slot: usize) -> f64 {
        f64::from_bits(self.word(slot, 2).load(Ordering::Relaxed))
    }

    fn set_tat(&self, slot: usize, tat: f64) {
        self.word(slot, 2).store(tat.to_bits(), Ordering::Relaxed);
    }

    /// Runs `f` with the table locked against every thread and process.
    ///
    /// The file is checked first, under the lock: a page of the mapping
    /// past the end of the file raises SIGBUS in whichever process touches
    /// it, and every gavel sharing the table would die of a file truncated
    /// behind their back (by hand, or by a tool that "cleans" state files).
    /// Such a table fails its limits closed instead (`state_unavailable`);
    /// it is never repaired here — its content is gone, and resetting it
    /// would hand out fresh bursts.
    ///
    /// Inside [`super::wait::no_wait`] (a decision tried on the event loop)
    /// neither lock is waited for: one `LOCK_NB` attempt, and a lock held
    /// elsewhere gives up ([`super::wait::gave_up`]).
    fn locked<T>(&self, f: impl FnOnce(&Self) -> Result<T, StateError>) -> Result<T, StateError> {
        let (_threads, _file): (MutexGuard<()>, FileLock) = if super::wait::forbidden() {
            let threads = match self.threads.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(super::wait::gave_up(&self.path, "the rate table's lock"));
                }
            };
            let file = match lock_file(&self.file, None) {
                Ok(l) => l,
                Err(Busy::Held) => {
                    return Err(super::wait::gave_up(&self.path, "the rate table's lock"));
                }
                Err(Busy::Failed(m)) => return Err(self.err(m)),
            };
            (threads, file)
        } else {
            let threads = self.threads.lock().recover();
            let file = lock_file(&self.file, Some(Instant::now() + LOCK_WAIT))
                .map_err(|b| self.err(b.message()))?;
            (threads, file)
        };
        self.check_intact()?;
        fence(Ordering::SeqCst);
        let out = f(self);
        fence(Ordering::SeqCst);
        out
    }

    /// Runs `f` under the table's lock (the one lock of the embedded store:
    /// the budget table, `budgetfile`, is only touched inside it), with the
    /// same no-wait rules as a charge.
    pub(super) fn with_lock<T>(
        &self,
        f: impl FnOnce() -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.locked(|_| f())
    }

    /// Whether the file still holds the whole table (and its header), so
    /// the mapping may be touched. Called under the file lock.
    fn check_intact(&self) -> Result<(), StateError> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| self.err(format!("cannot check the rate table: {e}")))?;
        let size = meta.len();
        if size < self.len as u64 {
            return Err(self.err(format!(
                "the rate table was truncated to {size} bytes (it has {}); its limits fail closed — remove the file and restart gavel to start a new one",
                self.len
            )));
        }
        // This file's lock is the one lock of the budget table too: a table
        // removed or replaced under a live gavel would leave it locking a
        // file new gavels never lock, and two of them could charge one
        // budget at once.
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return Err(self.err(
                "the rate table was removed or replaced while gavel ran; its limits and budgets fail closed — restart gavel",
            ));
        }
        // The file covers the header (checked just above), so no SIGBUS.
        let magic = self.atomic_at(0).load(Ordering::Relaxed);
        if magic.to_ne_bytes() != *MAGIC {
            return Err(self.err(
                "the rate table's header was overwritten; its limits fail closed — remove the file and restart gavel to start a new one",
            ));
        }
        Ok(())
    }

    /// The key's slot, if it has one.
    fn find(&self, key: &str) -> Option<Slot> {
        let h = key_hash(key);
        let home = (h.0 as usize) % SLOTS;
        (0..PROBE)
            .map(|i| (home + i) % SLOTS)
            .take_while(|&index| self.hash_at(index) != (0, 0))
            .find(|&index| self.hash_at(index) == h)
            .map(|index| Slot { index })
    }

    /// The key's slot, claiming one for a key not in the table: an empty
    /// slot, or one whose TAT is not after `now` (it says what an absent key
    /// says, so taking it changes no answer). A claimed slot gets TAT 0 —
    /// also "absent" — so two keys of one call never share a slot. Keys are
    /// never moved or emptied, so a key always sits before the first empty
    /// slot of its probe window.
    fn slot(&self, key: &str, now: f64) -> Result<Slot, StateError> {
        let h = key_hash(key);
        let home = (h.0 as usize) % SLOTS;
        let mut free = None;
        for i in 0..PROBE {
            let index = (home + i) % SLOTS;
            let at = self.hash_at(index);
            if at == h {
                return Ok(Slot { index });
            }
            let empty = at == (0, 0);
            if free.is_none() && (empty || self.tat_at(index) <= now) {
                free = Some(index);
            }
            if empty {
                break;
            }
        }
        let Some(index) = free else {
            return Err(self.err(format!(
                "the rate table is full around key {key:?} ({PROBE} live neighbours); limits fail closed until their bursts drain"
            )));
        };
        self.set_tat(index, 0.0);
        self.word(index, 0).store(h.0, Ordering::Relaxed);
        self.word(index, 1).store(h.1, Ordering::Relaxed);
        Ok(Slot { index })
    }

    fn stored_tat(&self, slot: Slot) -> Result<Option<f64>, StateError> {
        let tat = self.tat_at(slot.index);
        if !tat.is_finite() {
            return Err(self.err(format!(
                "slot {} holds an impossible time ({tat}); the file is damaged",
                slot.index
            )));
        }
        Ok((tat > 0.0).then_some(tat))
    }

    /// Checks every limit of one call and, with `then`, decides whether to
    /// charge them: `then` sees the outcomes and returns whether to store the
    /// new TATs (it runs under the lock, so a budget charged there is atomic
    /// with the limits). Nothing is charged unless every limit allows and
    /// `then` says so.
    pub fn charge<T>(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        then: impl FnOnce(&[RateOutcome]) -> Result<(bool, T), StateError>,
    ) -> Result<(Vec<RateOutcome>, T), StateError> {
        self.locked(|t| {
            let mut outs = Vec::with_capacity(limits.len());
            let mut news = Vec::with_capacity(limits.len());
            for (key, rate) in limits {
                let slot = t.slot(key, now)?;
                let (out, new_tat) = gcra::check(t.stored_tat(slot)?, *rate, now);
                outs.push(out);
                news.push((slot, new_tat));
            }
            let all = outs.iter().all(|o| o.allowed);
            let (store, extra) = then(&outs)?;
            if all && store {
                for (slot, tat) in news {
                    t.set_tat(slot.index, tat);
                }
            }
            Ok((outs, extra))
        })
    }

    /// What [`RateFile::charge`] would answer now, without storing anything
    /// (a key never seen is absent, and stays so).
    pub fn peek(
        &self,
        limits: &[(String, Rate)],
        now: f64,
    ) -> Result<Vec<RateOutcome>, StateError> {
        self.locked(|t| {
            limits
                .iter()
                .map(|(key, rate)| {
                    let tat = match t.find(key) {
                        Some(slot) => t.stored_tat(slot)?,
                        None => None,
                    };
                    Ok(gcra::check(tat, *rate, now).0)
                })
                .collect()
        })
    }

    /// Gives back one emission interval on each limit (a call charged and
    /// then not made), with `then` run under the same lock.
    pub fn refund(
        &self,
        limits: &[(String, Rate)],
        then: impl FnOnce() -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.locked(|t| {
            for (key, rate) in limits {
                let Some(slot) = t.find(key) else { continue };
                if let Some(tat) = t.stored_tat(slot)? {
                    t.set_tat(slot.index, tat - rate.period_s / rate.rate);
                }
            }
            then()
        })
    }
}

/// Allocates every block of the table's `len` bytes (extending an empty
/// file to it). A sparse table gets its pages when a slot is first written
/// through the mapping, and on a full filesystem that write is a SIGBUS —
/// in every gavel sharing the table. Allocated up front, a full filesystem
/// is an error here, when the table is opened, and its limits fail closed.
/// A table made sparse by an older gavel is allocated the same way.
/// `created`: the file was empty; a failed allocation empties it again, so
/// the next open tries afresh instead of finding a file of the wrong size.
/// `what` names the table and `fails` what fails closed without it, for
/// the message.
pub(super) fn allocate(
    file: &File,
    len: usize,
    created: bool,
    what: &str,
    fails: &str,
) -> Result<(), String> {
    // SAFETY: posix_fallocate on a descriptor we own.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::from_raw_os_error(rc);
    if created {
        let _ = file.set_len(0);
    }
    Err(format!(
        "cannot allocate the {what}'s {len} bytes: {e} (free space on its filesystem, or set [state] path elsewhere); {fails} fail closed"
    ))
}

/// An exclusive `flock` on `file` until dropped.
struct FileLock<'a>(&'a File);

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: plain flock on a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Why [`lock_file`] has no lock.
enum Busy {
    /// Another process holds it (past the deadline, or at once without one).
    Held,
    /// `flock` itself failed.
    Failed(String),
}

impl Busy {
    fn message(&self) -> String {
        match self {
            Busy::Held => format!(
                "another process has held the rate table's lock for more than {} s",
                LOCK_WAIT.as_secs()
            ),
            Busy::Failed(m) => m.clone(),
        }
    }
}

/// An exclusive `flock` on `file`, waiting at most until `deadline` (a
/// stopped process holding it must not hang every decision); `None`: one
/// attempt, no wait.
fn lock_file(file: &File, deadline: Option<Instant>) -> Result<FileLock<'_>, Busy> {
    let mut pause = Duration::from_micros(20);
    loop {
        // SAFETY: plain flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(FileLock(file));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(Busy::Failed(format!("cannot lock the rate table: {e}")));
        }
        if deadline.is_none_or(|d| Instant::now() >= d) {
            return Err(Busy::Held);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Opens (creating, owner-only) a table file shared by every gavel on the
/// machine: the rate table, the budget table.
pub(super) fn open_table(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
#[path = "ratefile_tests.rs"]
mod tests;
