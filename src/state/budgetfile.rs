//! Budget counters in a memory-mapped file every gavel process on the
//! machine shares (`<state>.budgets`), beside the rate table and under its
//! lock: a budget charge on the decision path is a few loads and stores in
//! shared memory inside the same `flock` the rate limits take — no SQLite
//! transaction. SQLite (`sqlite.rs`) becomes the *ledger*, written behind
//! by `ledger.rs`.
//!
//! Why this is as exact as the SQLite transaction it replaces: every check
//! and charge of a counter happens under the rate table's exclusive lock,
//! so two processes never charge from one old value; and the mapping is a
//! `MAP_SHARED` file, whose pages are the kernel's, so a `kill -9` of any
//! gavel loses nothing — the next charge, in any process, sees the count.
//! Only a power loss (or a kernel crash) can lose pages not yet written
//! back; then the ledger is the lower bound, and [`BudgetFile::open`]
//! reconciles the two (below).
//!
//! The invariant that makes the table a cache of the ledger: a counter in
//! the table holds its exact value; a counter *not* in the table has its
//! exact value in the ledger. So a slot is given to another counter only
//! when it is *clean* (its value is in the ledger: `ledgered == seq`), a
//! counter that gets a slot is seeded from the ledger, and a counter that
//! finds no slot (a probe window of counters not yet ledgered, or a name
//! longer than a slot holds) is charged in the ledger directly, under the
//! same lock, as before this table existed (`SqliteStore::charge`).
//!
//! Every change takes a number from one table-wide counter (`seq`, in the
//! header); the ledger stores it with the row and never takes an older
//! one, so writers of several processes may race and the ledger only moves
//! forward.
//!
//! Reconcile at open (under the lock): a missing table is created and
//! filled lazily from the ledger (each counter seeded when first charged);
//! a damaged one (wrong size, foreign header) is copied aside to
//! `<file>.damaged` and rebuilt the same way; an intact one wins — its
//! counters not yet in the ledger are written by the next ledger pass of
//! any process. A table last written under another boot (the kernel's
//! `boot_id`: the machine restarted, perhaps after a power loss, so its
//! pages may be older than the ledger) is merged: each counter becomes the
//! larger of the table's and the ledger's, both lower bounds of what was
//! spent.
//!
//! Layout: a 64-byte header `{magic, version, slots, seq, boot id}` and
//! [`SLOTS`] slots of 256 bytes: `{hash (128 bits), calls, tokens, seq,
//! ledgered seq, period end (f64), name lengths, name (192 bytes)}`. Memory
//! is touched only as `AtomicU64` words, as in `ratefile`.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use sha2::{Digest, Sha256};

use super::{StateError, Usage};

const MAGIC: &[u8; 8] = b"GAVELBUD";
const VERSION: u32 = 1;
const HEADER: usize = 64;
const SLOT: usize = 256;
/// 8 192 slots: 2 MiB. A counter needs a slot only while it is charged;
/// a clean one is reused by the next counter that needs room.
pub const SLOTS: usize = 1 << 13;
/// How far a counter may sit from its home slot.
const PROBE: usize = 64;
/// Bytes of `key` + `period` a slot holds; a longer name is charged in the
/// ledger directly.
pub const NAME_MAX: usize = SLOT - 64;
/// A slot whose counter went (pruned): skipped by lookups, free to take.
const TOMB: (u64, u64) = (u64::MAX, u64::MAX);
/// Header word: the table-wide change counter.
const SEQ_AT: usize = 16;
/// Header bytes: the boot the table was last opened under.
const BOOT_AT: usize = 24;
/// Seq numbers skipped when a table is (re)built, past the ledger's
/// largest: a writer of another process still holding a number of the
/// old table can never overtake the new table's changes.
const SEQ_GAP: u64 = 1 << 32;

// Slot words.
const W_CALLS: usize = 2;
const W_TOKENS: usize = 3;
const W_SEQ: usize = 4;
const W_LEDGERED: usize = 5;
const W_END: usize = 6;
const W_LENS: usize = 7;
const W_NAME: usize = 8;

/// A counter not yet in the ledger, as [`BudgetFile::dirty`] found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dirty {
    pub index: usize,
    pub hash: (u64, u64),
    pub key: String,
    pub period: String,
    pub usage: Usage,
    pub seq: u64,
}

/// What reconciling found at open, for the log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Intact, same boot: the table wins.
    Intact,
    /// Created (or a header of zeros: its creator died first).
    Created,
    /// Damaged: copied aside and rebuilt from the ledger.
    Rebuilt,
    /// Last written under another boot: merged with the ledger.
    Merged,
}

pub struct BudgetFile {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    len: usize,
}

/// A budget name's slot hash: its SHA-256, remembered per thread
/// (`slot_hash`: the same one or two budgets are read and charged call
/// after call).
fn name_hash(key: &str, period: &str) -> (u64, u64) {
    super::slot_hash::remembered(super::slot_hash::Table::Budget, key, period, || {
        name_digest(key, period)
    })
}

/// [`name_hash`] for other modules' tests.
#[cfg(test)]
pub(crate) fn tests_name_hash(key: &str, period: &str) -> (u64, u64) {
    name_hash(key, period)
}

fn name_digest(key: &str, period: &str) -> (u64, u64) {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(period.as_bytes());
    let d = h.finalize();
    let hi = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
    let lo = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    match (hi, lo) {
        (0, 0) => (0, 1),
        TOMB => (u64::MAX, u64::MAX - 1),
        h => h,
    }
}

/// The kernel's id of this boot (16 bytes), or zeros where there is none
/// (then every open counts as the same boot: the table wins).
pub fn boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return id;
    };
    let hex: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    if hex.len() == 32 {
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("00");
            id[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
    }
    id
}

/// The ledger as [`BudgetFile::open`] needs it: a counter's row and the
/// largest seq it holds.
pub trait LedgerRead {
    fn row(&self, key: &str, period: &str) -> Result<Usage, StateError>;
    fn max_seq(&self) -> Result<u64, StateError>;
}

impl BudgetFile {
    /// Opens (creating) the table at `path` and reconciles it with the
    /// ledger (module doc). Must run under the rate table's lock.
    pub fn open(
        path: &Path,
        ledger: &dyn LedgerRead,
        boot: [u8; 16],
    ) -> Result<(BudgetFile, Opened), StateError> {
        let err = |m: String| StateError::Unavailable {
            path: path.display().to_string(),
            message: m,
        };
        let file = super::ratefile::open_table(path).map_err(|e| err(e.to_string()))?;
        let len = HEADER + SLOTS * SLOT;
        let (fresh, damaged) = examine(path, &file, len)?;
        super::ratefile::allocate(&file, len, fresh, "budget table", "budgets").map_err(err)?;
        let mut header = [0u8; HEADER];
        if fresh {
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            header[12..16].copy_from_slice(&(SLOTS as u32).to_le_bytes());
            let seq = ledger.max_seq()?.saturating_add(SEQ_GAP);
            header[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_le_bytes());
            header[BOOT_AT..BOOT_AT + 16].copy_from_slice(&boot);
            file.write_all_at(&header, 0)
                .map_err(|e| err(e.to_string()))?;
        } else {
            file.read_exact_at(&mut header, 0)
                .map_err(|e| err(e.to_string()))?;
        }
        let slots = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        if slots as usize != SLOTS {
            return Err(err(format!(
                "budget table with {slots} slots; this gavel uses {SLOTS}"
            )));
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| err(format!("mmap: {e}")))?;
        let table = BudgetFile {
            path: path.to_path_buf(),
            file,
            map,
            len,
        };
        let opened = match (fresh, damaged) {
            (true, true) => Opened::Rebuilt,
            (true, false) => Opened::Created,
            (false, _) if header[BOOT_AT..BOOT_AT + 16] != boot => {
                table.merge(ledger)?;
                file_write_boot(&table, boot)?;
                Opened::Merged
            }
            (false, _) => Opened::Intact,
        };
        Ok((table, opened))
    }

    fn err(&self, m: impl Into<String>) -> StateError {
        StateError::Unavailable {
            path: self.path.display().to_string(),
            message: m.into(),
        }
    }

    /// The 8 bytes at `offset` of the mapping, as an atomic word (see
    /// `RateFile::atomic_at`: other processes write this memory at any
    /// time, so it is only ever accessed atomically).
    fn atomic_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.map.len());
        // SAFETY: in bounds and 8-byte aligned (asserted; the base is
        // page-aligned); the mapping lives as long as `self`; shared memory
        // is only accessed atomically, so no non-atomic reference aliases it.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast()) }
    }

    fn word(&self, slot: usize, word: usize) -> &AtomicU64 {
        debug_assert!(slot < SLOTS && word < SLOT / 8);
        self.atomic_at(HEADER + slot * SLOT + word * 8)
    }

    fn get(&self, slot: usize, word: usize) -> u64 {
        self.word(slot, word).load(Ordering::Relaxed)
    }

    fn set(&self, slot: usize, word: usize, v: u64) {
        self.word(slot, word).store(v, Ordering::Relaxed);
    }

    fn hash_at(&self, slot: usize) -> (u64, u64) {
        (self.get(slot, 0), self.get(slot, 1))
    }

    fn usage_at(&self, slot: usize) -> Usage {
        Usage {
            calls: self.get(slot, W_CALLS),
            tokens: self.get(slot, W_TOKENS),
        }
    }

    fn clean(&self, slot: usize) -> bool {
        self.get(slot, W_SEQ) == self.get(slot, W_LEDGERED)
    }

    /// The next number of the table-wide change counter.
    pub fn next_seq(&self) -> u64 {
        self.atomic_at(SEQ_AT).fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The change counter now (the ledger writer's "anything new?").
    pub fn seq(&self) -> u64 {
        self.atomic_at(SEQ_AT).load(Ordering::Relaxed)
    }

    /// Whether the file still holds the whole table and its header, so the
    /// mapping may be touched (one `fstat`; called under the lock, as in
    /// `RateFile::check_intact`). A table removed or replaced under a live
    /// gavel (no link left) fails closed: charging the old copy while new
    /// processes charge a new one would spend every budget twice.
    pub fn check_intact(&self) -> Result<(), StateError> {
        let m = self
            .file
            .metadata()
            .map_err(|e| self.err(format!("cannot check the budget table: {e}")))?;
        if m.len() < self.len as u64 {
            return Err(self.err(format!(
                "the budget table was truncated to {} bytes (it has {}); its budgets fail closed — restart gavel (the table is rebuilt from the ledger)",
                m.len(),
                self.len
            )));
        }
        if self.atomic_at(0).load(Ordering::Relaxed).to_ne_bytes() != *MAGIC {
            return Err(self.err(
                "the budget table's header was overwritten; its budgets fail closed — restart gavel (the table is rebuilt from the ledger)",
            ));
        }
        if m.nlink() == 0 {
            return Err(self.err(
                "the budget table was removed or replaced while gavel ran; its budgets fail closed — restart gavel",
            ));
        }
        Ok(())
    }

    fn name_at(&self, slot: usize) -> Option<(String, String)> {
        let lens = self.get(slot, W_LENS);
        let (klen, plen) = ((lens & 0xffff_ffff) as usize, (lens >> 32) as usize);
        if klen + plen > NAME_MAX {
            return None;
        }
        let mut bytes = Vec::with_capacity(NAME_MAX);
        for w in 0..(klen + plen).div_ceil(8) {
            bytes.extend_from_slice(&self.get(slot, W_NAME + w).to_le_bytes());
        }
        let key = std::str::from_utf8(&bytes[..klen]).ok()?.to_string();
        let period = std::str::from_utf8(&bytes[klen..klen + plen])
            .ok()?
            .to_string();
        Some((key, period))
    }

    fn set_name(&self, slot: usize, key: &str, period: &str) {
        let mut bytes = Vec::with_capacity(NAME_MAX);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(period.as_bytes());
        for (w, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.set(slot, W_NAME + w, u64::from_le_bytes(word));
        }
        self.set(
            slot,
            W_LENS,
            key.len() as u64 | ((period.len() as u64) << 32),
        );
    }

    /// The counter's slot, if it has one.
    fn find(&self, h: (u64, u64)) -> Option<usize> {
        let home = (h.0 as usize) % SLOTS;
        (0..PROBE)
            .map(|i| (home + i) % SLOTS)
            .take_while(|&i| self.hash_at(i) != (0, 0))
            .find(|&i| self.hash_at(i) == h)
    }

    /// A slot a new counter may take: an empty or pruned one, else the
    /// clean one (its value is in the ledger) whose period ended first.
    /// None: every slot of the window holds a counter not yet ledgered.
    fn room(&self, h: (u64, u64)) -> Option<usize> {
        let home = (h.0 as usize) % SLOTS;
        let mut evict: Option<(usize, f64)> = None;
        for i in 0..PROBE {
            let index = (home + i) % SLOTS;
            let at = self.hash_at(index);
            if at == (0, 0) || at == TOMB {
                return Some(index);
            }
            if self.clean(index) {
                let end = f64::from_bits(self.get(index, W_END));
                if evict.is_none_or(|(_, e)| end < e) {
                    evict = Some((index, end));
                }
            }
        }
        evict.map(|(i, _)| i)
    }

    /// The counter's totals if the table holds it (None: its exact value is
    /// the ledger's). Under the lock.
    pub fn read(&self, key: &str, period: &str) -> Result<Option<Usage>, StateError> {
        self.check_intact()?;
        Ok(self.find(name_hash(key, period)).map(|i| self.usage_at(i)))
    }

    /// Changes one counter: `f` gets its totals and returns the new ones
    /// (None: unchanged) and an answer. A counter not in the table takes a
    /// slot, seeded with `seed()` (the ledger's row, read before anything
    /// is changed, so a failed read changes nothing). `Ok(None)`: no slot
    /// (module doc) — the caller charges the ledger instead. Under the lock.
    pub fn update<T>(
        &self,
        key: &str,
        period: &str,
        seed: impl FnOnce() -> Result<Usage, StateError>,
        f: impl FnOnce(Usage) -> (Option<Usage>, T),
    ) -> Result<Option<T>, StateError> {
        self.check_intact()?;
        let h = name_hash(key, period);
        let slot = match self.find(h) {
            Some(i) => i,
            None => {
                if key.len() + period.len() > NAME_MAX {
                    return Ok(None);
                }
                let Some(i) = self.room(h) else {
                    return Ok(None);
                };
                let seeded = seed()?;
                self.claim(i, h, key, period, seeded);
                i
            }
        };
        let (new, out) = f(self.usage_at(slot));
        if let Some(u) = new.filter(|u| *u != self.usage_at(slot)) {
            // Marked for the ledger first: a gavel killed between these
            // stores leaves a counter the ledger writer still visits.
            self.set(slot, W_SEQ, self.next_seq());
            self.set(slot, W_CALLS, u.calls);
            self.set(slot, W_TOKENS, u.tokens);
        }
        Ok(Some(out))
    }

    /// Gives slot `i` to a counter whose ledger row is `seeded`: clean.
    fn claim(&self, i: usize, h: (u64, u64), key: &str, period: &str, seeded: Usage) {
        // A pruned mark first and the hash last: a slot is never found with
        // another counter's name, and a gavel killed halfway leaves a slot
        // lookups skip — never an empty one, which would end the probe chain
        // of the counters after it (they would be claimed twice).
        self.set(i, 0, TOMB.0);
        self.set(i, 1, TOMB.1);
        self.set_name(i, key, period);
        let end = super::budget::period_end(period).unwrap_or(f64::INFINITY);
        self.set(i, W_END, end.to_bits());
        self.set(i, W_CALLS, seeded.calls);
        self.set(i, W_TOKENS, seeded.tokens);
        let seq = self.next_seq();
        self.set(i, W_SEQ, seq);
        self.set(i, W_LEDGERED, seq);
        self.set(i, 0, h.0);
        self.set(i, 1, h.1);
    }

    /// Up to `max` counters not yet in the ledger. Under the lock.
    pub fn dirty(&self, max: usize) -> Result<Vec<Dirty>, StateError> {
        self.check_intact()?;
        let mut out = vec![];
        for i in 0..SLOTS {
            if out.len() >= max {
                break;
            }
            let h = self.hash_at(i);
            if h == (0, 0) || h == TOMB || self.clean(i) {
                continue;
            }
            let Some((key, period)) = self.name_at(i) else {
                tracing::error!(path = %self.path.display(), slot = i, "a budget slot's name is damaged; its counter is not written to the ledger");
                continue;
            };
            out.push(Dirty {
                index: i,
                hash: h,
                key,
                period,
                usage: self.usage_at(i),
                seq: self.get(i, W_SEQ),
            });
        }
        Ok(out)
    }

    /// Marks what the ledger now holds: a counter written at `d.seq` and
    /// not changed since. Under the lock.
    pub fn mark_clean(&self, written: &[Dirty]) -> Result<(), StateError> {
        self.check_intact()?;
        for d in written {
            if self.hash_at(d.index) == d.hash && self.get(d.index, W_SEQ) == d.seq {
                self.set(d.index, W_LEDGERED, d.seq);
            }
        }
        Ok(())
    }

    /// Forgets clean counters of periods that ended before `before` (their
    /// rows are pruned from the ledger next); returns how many. Under the
    /// lock.
    pub fn prune(&self, before: f64) -> Result<u64, StateError> {
        self.check_intact()?;
        let mut gone = 0;
        for i in 0..SLOTS {
            let h = self.hash_at(i);
            if h == (0, 0) || h == TOMB || !self.clean(i) {
                continue;
            }
            if f64::from_bits(self.get(i, W_END)) < before {
                self.set(i, 0, TOMB.0);
                self.set(i, 1, TOMB.1);
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// After another boot: every counter the larger of the table's and the
    /// ledger's (each kind on its own), and marked for the ledger.
    fn merge(&self, ledger: &dyn LedgerRead) -> Result<(), StateError> {
        let base = ledger.max_seq()?.saturating_add(SEQ_GAP);
        if self.seq() < base {
            self.atomic_at(SEQ_AT).store(base, Ordering::Relaxed);
        }
        for i in 0..SLOTS {
            let h = self.hash_at(i);
            if h == (0, 0) || h == TOMB {
                continue;
            }
            let Some((key, period)) = self.name_at(i) else {
                continue;
            };
            let (t, l) = (self.usage_at(i), ledger.row(&key, &period)?);
            self.set(i, W_CALLS, t.calls.max(l.calls));
            self.set(i, W_TOKENS, t.tokens.max(l.tokens));
            self.set(i, W_SEQ, self.next_seq());
            self.set(i, W_LEDGERED, 0);
        }
        Ok(())
    }
}

/// What the file at `path` holds: `(fresh, damaged)` — fresh: empty, a
/// header of zeros (its creator died first) or damaged; damaged: the wrong
/// size or a foreign header, then copied aside to `<path>.damaged` and
/// emptied. A table of another version is an error (never rebuilt).
fn examine(path: &Path, file: &File, len: usize) -> Result<(bool, bool), StateError> {
    let err = |m: String| StateError::Unavailable {
        path: path.display().to_string(),
        message: m,
    };
    let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut header = [0u8; HEADER];
    if size == len as u64 {
        file.read_exact_at(&mut header, 0)
            .map_err(|e| err(e.to_string()))?;
    }
    let ours = &header[..8] == MAGIC;
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if ours && version != VERSION {
        return Err(err(format!(
            "budget table version {version}; this gavel uses version {VERSION} (every gavel sharing a state file must be the same version)"
        )));
    }
    let zeros = header.iter().all(|b| *b == 0);
    let damaged = size != 0 && (size != len as u64 || !(ours || zeros));
    if damaged {
        let aside = with_suffix(path, ".damaged");
        std::fs::copy(path, &aside).map_err(|e| {
            err(format!(
                "the budget table is damaged and cannot be copied aside to {}: {e}",
                aside.display()
            ))
        })?;
        tracing::error!(
            path = %path.display(),
            aside = %aside.display(),
            "the budget table was damaged (size {size}, expected {len}, or a foreign header); copied aside and rebuilt from the ledger — charges not yet in the ledger when it was damaged are lost"
        );
        file.set_len(0).map_err(|e| err(e.to_string()))?;
    }
    Ok((size == 0 || damaged || zeros, damaged))
}

fn file_write_boot(t: &BudgetFile, boot: [u8; 16]) -> Result<(), StateError> {
    t.file
        .write_all_at(&boot, BOOT_AT as u64)
        .map_err(|e| t.err(e.to_string()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

#[cfg(test)]
#[path = "budgetfile_tests.rs"]
mod tests;
