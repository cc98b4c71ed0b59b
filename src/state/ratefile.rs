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
//! again — unlike a budget, which is accounting and stays in SQLite. A
//! `kill -9` loses nothing: the pages are the kernel's, not the process's.
//!
//! Layout: a 64-byte header (magic, version, slot count) and a fixed table
//! of 32-byte slots `{key hash (128 bits), TAT (f64 bits), reserved}`,
//! linear probing over a bounded window. A file that is not a gavel rate
//! table is an error, never reset (the limits it keeps fail closed); a
//! header of zeros is a table whose creator died before writing it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::StateError;
use super::gcra::{self, Rate, RateOutcome};

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
/// transaction, itself bounded by its busy timeout).
const LOCK_WAIT: Duration = Duration::from_secs(6);

pub struct RateFile {
    path: PathBuf,
    file: File,
    map: *mut u8,
    len: usize,
    /// `flock` excludes other processes (each opens its own descriptor);
    /// this excludes the other threads of this one.
    threads: Mutex<()>,
}

// SAFETY: the mapping is only read and written through atomics, under
// `threads` and the file lock; the pointer stays valid until `Drop`.
unsafe impl Send for RateFile {}
unsafe impl Sync for RateFile {}

impl Drop for RateFile {
    fn drop(&mut self) {
        // SAFETY: `map`/`len` come from a successful mmap in `open`.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

/// A slot found (or claimed) for a key while the table is locked.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: usize,
}

fn key_hash(key: &str) -> (u64, u64) {
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
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        let len = HEADER + SLOTS * SLOT;
        {
            let _held = lock_file(&file, Instant::now() + LOCK_WAIT).map_err(err)?;
            let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
            let mut header = [0u8; HEADER];
            if size == 0 {
                file.set_len(len as u64).map_err(|e| err(e.to_string()))?;
            } else if size != len as u64 {
                return Err(err(format!(
                    "not a gavel rate table ({size} bytes, expected {len})"
                )));
            } else {
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
        // SAFETY: a shared read-write mapping of a file we keep open, of the
        // size checked above; unmapped in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(err(format!("mmap: {}", std::io::Error::last_os_error())));
        }
        Ok(RateFile {
            path: path.to_path_buf(),
            file,
            map: map.cast(),
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
        // SAFETY: in bounds of the mapping, 8-byte aligned (page-aligned base,
        // 64-byte header, 32-byte slots).
        unsafe { &*(self.map.add(HEADER + slot * SLOT + word * 8) as *const AtomicU64) }
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
    fn locked<T>(&self, f: impl FnOnce(&Self) -> Result<T, StateError>) -> Result<T, StateError> {
        let _threads: MutexGuard<()> = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let _file = lock_file(&self.file, Instant::now() + LOCK_WAIT).map_err(|m| self.err(m))?;
        fence(Ordering::SeqCst);
        let out = f(self);
        fence(Ordering::SeqCst);
        out
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

/// An exclusive `flock` on `file` until dropped, waiting at most until
/// `deadline` (a stopped process holding it must not hang every decision).
struct FileLock<'a>(&'a File);

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: plain flock on a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn lock_file(file: &File, deadline: Instant) -> Result<FileLock<'_>, String> {
    let mut pause = Duration::from_micros(20);
    loop {
        // SAFETY: plain flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(FileLock(file));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("cannot lock the rate table: {e}"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "another process has held the rate table's lock for more than {} s",
                LOCK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        rate: 1.0,
        period_s: 1.0,
        burst: 2,
    };

    fn allow(t: &RateFile, keys: &[&str], now: f64) -> Vec<bool> {
        let limits: Vec<(String, Rate)> = keys.iter().map(|k| (k.to_string(), R)).collect();
        t.charge(&limits, now, |_| Ok((true, ())))
            .unwrap()
            .0
            .iter()
            .map(|o| o.allowed)
            .collect()
    }

    #[test]
    fn two_opens_share_one_table_and_a_refusal_charges_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates");
        let (a, b) = (
            RateFile::open(&path).unwrap(),
            RateFile::open(&path).unwrap(),
        );
        assert_eq!(allow(&a, &["k"], 100.0), [true]);
        assert_eq!(allow(&b, &["k"], 100.0), [true]);
        // Burst spent, seen through either descriptor; the other key of the
        // call is not charged either.
        assert_eq!(allow(&a, &["j", "k"], 100.0), [true, false]);
        assert_eq!(allow(&b, &["j"], 100.0), [true]);
        assert_eq!(allow(&b, &["j"], 100.0), [true]);
        assert_eq!(allow(&b, &["j"], 100.0), [false]);
        // `then` can veto the charge (a budget without room).
        let k2 = [("fresh".to_string(), R)];
        a.charge(&k2, 100.0, |_| Ok((false, ()))).unwrap();
        a.charge(&k2, 100.0, |_| Ok((false, ()))).unwrap();
        assert_eq!(allow(&a, &["fresh"], 100.0), [true]);
        // A refund gives one back.
        a.refund(&[("k".to_string(), R)], || Ok(())).unwrap();
        a.refund(&[("never-seen".to_string(), R)], || Ok(()))
            .unwrap();
        assert_eq!(allow(&b, &["k"], 100.0), [true]);
    }

    #[test]
    fn threads_and_descriptors_never_over_admit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates");
        let burst = Rate {
            rate: 1.0,
            period_s: 3600.0,
            burst: 50,
        };
        let admitted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let path = &path;
                    s.spawn(move || {
                        let t = RateFile::open(path).unwrap();
                        (0..40)
                            .filter(|_| {
                                t.charge(&[("shared".into(), burst)], 10.0, |_| Ok((true, ())))
                                    .unwrap()
                                    .0[0]
                                    .allowed
                            })
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 50);
    }

    #[test]
    fn drained_slots_are_reused_and_a_full_window_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let t = RateFile::open(&dir.path().join("rates")).unwrap();
        let long = Rate {
            rate: 1.0,
            period_s: 1000.0,
            burst: 1,
        };
        // Fill one probe window with live keys: find PROBE keys whose home
        // is slot 7 or just before it, so they all land in 7..7+PROBE.
        let mut keys = vec![];
        let mut i = 0u64;
        while keys.len() < PROBE + 1 {
            let k = format!("key-{i}");
            if (key_hash(&k).0 as usize) % SLOTS == 7 {
                keys.push(k);
            }
            i += 1;
        }
        for k in &keys[..PROBE] {
            let out = t
                .charge(&[(k.clone(), long)], 0.5, |_| Ok((true, ())))
                .unwrap();
            assert!(out.0[0].allowed);
        }
        let last = [(keys[PROBE].clone(), long)];
        let e = t.charge(&last, 0.5, |_| Ok((true, ()))).unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
        // Once their TATs have passed, the slots are free again.
        assert!(t.charge(&last, 2000.0, |_| Ok((true, ()))).unwrap().0[0].allowed);
    }

    #[test]
    fn foreign_or_damaged_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates");
        std::fs::write(&path, b"not a table").unwrap();
        let e = RateFile::open(&path).err().unwrap().to_string();
        assert!(e.contains("not a gavel rate table"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a table");
        // Right size, wrong magic.
        let mut bytes = vec![0u8; HEADER + SLOTS * SLOT];
        bytes[..8].copy_from_slice(b"SOMEELSE");
        std::fs::write(&path, &bytes).unwrap();
        assert!(RateFile::open(&path).is_err());
        // A header of zeros: its creator died before writing it.
        std::fs::write(&path, vec![0u8; HEADER + SLOTS * SLOT]).unwrap();
        let t = RateFile::open(&path).unwrap();
        assert_eq!(allow(&t, &["k"], 1.0), [true]);
        // A damaged slot fails that call closed.
        let slot = t.locked(|t| t.slot("k", 1.0)).unwrap();
        t.set_tat(slot.index, f64::NAN);
        let e = t
            .charge(&[("k".into(), R)], 1.0, |_| Ok((true, ())))
            .unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
