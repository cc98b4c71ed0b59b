//! Unit tests of the shared rate table (`ratefile.rs`).

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

/// A table truncated under live gavels (by hand, by a cleanup tool):
/// touching the mapping past the file's end would be SIGBUS in every
/// process sharing it. The next charge and refund are refused instead.
#[test]
fn a_table_truncated_under_a_live_gavel_fails_closed_not_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rates");
    let t = RateFile::open(&path).unwrap();
    assert_eq!(allow(&t, &["k"], 1.0), [true]);
    for size in [0, (HEADER + SLOT) as u64] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(size)
            .unwrap();
        let limits = [("k".to_string(), R)];
        let e = t.charge(&limits, 1.0, |_| Ok((true, ()))).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = t.refund(&limits, || Ok(())).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
    // Never reset behind the operator's back: a new open refuses it too.
    let e = RateFile::open(&path).err().unwrap().to_string();
    assert!(e.contains("not a gavel rate table"), "{e}");
}

/// On a real filesystem too small for the table (a tiny tmpfs), opening
/// it fails with a clear error (limits then fail closed) and leaves no
/// half-made file behind; a table left sparse by an older gavel on a
/// filesystem that filled up since is refused the same way. Before, the
/// open succeeded on a sparse file and the first slot written into an
/// unallocatable page killed the process with SIGBUS.
#[test]
fn a_full_filesystem_fails_the_table_closed_at_open() {
    let Some(fs) = crate::test_support::Tmpfs::mount(
        1 << 20,
        "a_full_filesystem_fails_the_table_closed_at_open",
    ) else {
        return;
    };
    let path = fs.path().join("state.rates");
    let many: Vec<(String, Rate)> = (0..4096).map(|i| (format!("key-{i}"), R)).collect();
    match RateFile::open(&path) {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("cannot allocate") && e.contains("state.rates"),
                "{e}"
            );
        }
        Ok(t) => {
            // The old behaviour: writing slots all over the table.
            let _ = t.charge(&many, 1.0, |_| Ok((true, ())));
            panic!("a table that does not fit was opened");
        }
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "emptied again");
    drop(fs);

    let Some(fs) = crate::test_support::Tmpfs::mount(
        3 << 20,
        "a_full_filesystem_fails_the_table_closed_at_open",
    ) else {
        return;
    };
    let path = fs.path().join("state.rates");
    // A sparse table as an older gavel made it: size set, header written.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len((HEADER + SLOTS * SLOT) as u64).unwrap();
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(SLOTS as u32).to_le_bytes());
    f.write_all_at(&header, 0).unwrap();
    fs.fill();
    match RateFile::open(&path) {
        Err(e) => assert!(e.to_string().contains("cannot allocate"), "{e}"),
        Ok(t) => {
            let _ = t.charge(&many, 1.0, |_| Ok((true, ())));
            panic!("a sparse table on a full filesystem was opened");
        }
    }
}

/// The per-thread memory of key hashes (`slot_hash`) answers what the
/// digest answers, for more keys than it keeps, and never a budget name's
/// hash for a rate key spelt the same.
#[test]
fn remembered_key_hashes_are_the_digests() {
    let keys: Vec<String> = (0..3 * crate::state::slot_hash::ENTRIES)
        .map(|i| format!("limit:{i}"))
        .collect();
    for _ in 0..3 {
        for k in &keys {
            assert_eq!(key_hash(k), key_digest(k), "{k}");
            // The budget table's hash of the same name, remembered too.
            let _ = crate::state::budgetfile::tests_name_hash(k, "");
            assert_eq!(key_hash(k), key_digest(k), "{k} after a budget name");
        }
    }
}
