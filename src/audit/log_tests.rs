//! `audit::log`'s tests: rotation, shared writers, a full disk.

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

/// Two writers (two processes, in effect: each its own descriptor and
/// count) share a rotating file. Neither counts the other's records, yet
/// every rotated file was rotated past the limit (never early) and not far
/// past it — at most an eighth of the limit and a record per other writer,
/// plus its own record — every record is kept whole, and the real size was
/// looked at for far fewer than one record in four. On the old code every
/// record looked; on a count that only looked past the limit each file
/// would grow to about twice the limit.
#[test]
fn two_writers_rotate_at_the_limit_without_a_look_per_record() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("decisions.jsonl");
    let limit = 64 * 1024;
    let rotation = Rotation {
        bytes: limit,
        keep: 1000,
    };
    let (a, b) = (
        DecisionLog::open(&p, rotation).unwrap(),
        DecisionLog::open(&p, rotation).unwrap(),
    );
    let n = 1500;
    let record = |w: usize, i: usize| serde_json::json!({"w": w, "i": i, "pad": "x".repeat(200)});
    let line = |w, i| serde_json::to_vec(&record(w, i)).unwrap().len() as u64 + 1;
    std::thread::scope(|s| {
        for (w, log) in [(0, &a), (1, &b)] {
            s.spawn(move || {
                for i in 0..n {
                    log.write(&record(w, i)).unwrap();
                }
            });
        }
    });
    let longest = line(1, n);
    let mut rotated = 0;
    let mut lines = std::fs::read_to_string(&p).unwrap().lines().count();
    for g in (1..).take_while(|g| a.generation(*g).exists()) {
        let len = std::fs::metadata(a.generation(g)).unwrap().len();
        assert!(len > limit, "file .{g} rotated early: {len} bytes");
        assert!(
            len <= limit + limit / 8 + 2 * longest,
            "file .{g} rotated late: {len} bytes"
        );
        let text = std::fs::read_to_string(a.generation(g)).unwrap();
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).expect("whole records");
        }
        lines += text.lines().count();
        rotated += 1;
    }
    assert!(
        rotated >= 8,
        "{rotated} rotations for {} bytes",
        2 * n as u64 * longest
    );
    assert_eq!(lines, 2 * n, "every record kept");
    let looks = a.file.lock().unwrap().looks + b.file.lock().unwrap().looks;
    assert!(
        looks <= 2 * n as u64 / 4,
        "{looks} looks at the size for {} records",
        2 * n
    );
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

/// A batch is whole lines, in order, after what was written before it; an
/// empty batch writes nothing.
#[test]
fn a_batch_is_whole_lines_in_order() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("decisions.jsonl");
    let log = DecisionLog::open(&p, Rotation { bytes: 0, keep: 1 }).unwrap();
    log.write(&serde_json::json!({"i": 0})).unwrap();
    log.write_batch(&[]).unwrap();
    let batch: Vec<_> = (1..4).map(|i| serde_json::json!({"i": i})).collect();
    log.write_batch(&batch).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let got: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["i"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3]);
}
