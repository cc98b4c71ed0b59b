//! The spool is the decision log itself: records are shipped from the local
//! file (and its rotated generations), and what has been delivered is a
//! committed read position — `<log>.ship.json`, `{dev, ino, offset}`,
//! replaced atomically after every 2xx. Nothing is written on the decision
//! path beyond the log line; a restart, a `kill -9` or an outage resumes
//! from the committed position. The file is identified by device and
//! inode, so a rotation (`file` → `file.1`) is followed: the rest of the
//! old generation is shipped first, then the newer ones.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where shipping stands: the file (device, inode) and the offset up to
/// which its records were delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// One file the spool reads: a rotated generation or the live file.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

/// The position file of the log at `log`.
pub fn state_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".ship.json");
    PathBuf::from(s)
}

/// The committed position, if any (a damaged file counts as none: it is
/// only ever replaced whole, so it is damaged only by hand).
pub fn load(log: &Path) -> Option<Position> {
    let text = std::fs::read(state_path(log)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Commits `pos` (atomic replace: a crash leaves the old or the new one).
pub fn commit(log: &Path, pos: Position) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&pos).map_err(std::io::Error::other)?;
    crate::atomic_file::write(&state_path(log), &bytes)
}

/// The files to ship from, oldest first: `file.<keep>` … `file.1`, then
/// `file` (those that exist).
pub fn sources(log: &Path, keep: u32) -> Vec<Source> {
    let mut paths: Vec<PathBuf> = (1..=keep.max(1))
        .rev()
        .map(|n| {
            let mut s = log.as_os_str().to_owned();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        })
        .collect();
    paths.push(log.to_path_buf());
    paths
        .into_iter()
        .filter_map(|path| {
            let m = std::fs::metadata(&path).ok()?;
            Some(Source {
                path,
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
            })
        })
        .collect()
}

/// Where to resume among `sources`: the index of the committed file and
/// the offset in it. `lost` is true when the committed file is gone
/// (rotated past `rotate_keep` before it was shipped): shipping resumes at
/// the oldest file left. Without a committed position, from the start of
/// the oldest file.
pub fn resume(sources: &[Source], pos: Option<Position>) -> (usize, u64, bool) {
    let Some(pos) = pos else { return (0, 0, false) };
    match sources
        .iter()
        .position(|s| s.dev == pos.dev && s.ino == pos.ino)
    {
        // A file truncated under us (by hand) restarts at 0.
        Some(i) => (i, pos.offset.min(sources[i].len), false),
        None => (0, 0, !sources.is_empty()),
    }
}

/// Bytes not yet delivered, from `(index, offset)` on.
pub fn backlog(sources: &[Source], index: usize, offset: u64) -> u64 {
    sources
        .iter()
        .enumerate()
        .skip(index)
        .map(|(i, s)| {
            if i == index {
                s.len.saturating_sub(offset)
            } else {
                s.len
            }
        })
        .sum()
}

/// Complete lines of `path` from `offset`, at most `max` bytes of them
/// (at least one line, however long, up to `hard_max`): each non-blank
/// line with the offset just past it. A partial last line (a write in
/// progress) is left for the next read.
pub fn read_lines(
    path: &Path,
    offset: u64,
    max: usize,
    hard_max: usize,
) -> std::io::Result<Vec<(Vec<u8>, u64)>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.by_ref().take(max as u64).read_to_end(&mut buf)?;
    if !buf.contains(&b'\n') && buf.len() == max {
        // One line longer than `max`: read on, bounded.
        f.take(hard_max.saturating_sub(max) as u64)
            .read_to_end(&mut buf)?;
    }
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        let end = offset + (start + nl + 1) as u64;
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push((line.to_vec(), end));
        } else {
            // Blank (a fragment a full disk left): nothing to ship, but
            // the position moves past it.
            out.push((Vec::new(), end));
        }
        start += nl + 1;
    }
    if out.is_empty() && buf.len() >= hard_max {
        // A line over the hard bound: skipped whole as one empty entry so
        // shipping does not stall on it (the caller counts it dropped).
        out.push((b"!".to_vec(), offset + buf.len() as u64));
    }
    Ok(out)
}

/// Whether `path` was last modified at least `quiet` ago.
pub fn quiet(path: &Path, quiet: std::time::Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= quiet)
}

/// Counts the records (non-blank lines) in `path` between `from` and `to`.
pub fn count_records(path: &Path, from: u64, to: u64) -> u64 {
    let Ok(mut f) = File::open(path) else {
        return 0;
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return 0;
    }
    let mut n = 0;
    let mut buf = vec![0u8; 64 << 10];
    let mut left = to.saturating_sub(from);
    let mut blank = true;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let Ok(got) = f.read(&mut buf[..want]) else {
            break;
        };
        if got == 0 {
            break;
        }
        for &b in &buf[..got] {
            if b == b'\n' {
                n += u64::from(!blank);
                blank = true;
            } else if !b.is_ascii_whitespace() {
                blank = false;
            }
        }
        left -= got as u64;
    }
    n
}

/// The offset just past the first newline at or after `at` (the start of
/// the next whole record), or the file's length.
pub fn next_line(path: &Path, at: u64) -> u64 {
    let Ok(mut f) = File::open(path) else {
        return at;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(at);
    if at == 0 || f.seek(SeekFrom::Start(at - 1)).is_err() {
        return at;
    }
    let mut buf = [0u8; 8192];
    let mut pos = at - 1;
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => return len,
            Ok(n) => {
                if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
                    return pos + i as u64 + 1;
                }
                pos += n as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_and_a_partial_line_waits() {
        let dir = tempdir();
        let p = dir.join("d.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n   \n{\"b\":2}\n{\"c\"").unwrap();
        let lines = read_lines(&p, 0, 1 << 20, 1 << 20).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], (b"{\"a\":1}".to_vec(), 8));
        assert_eq!(lines[1], (Vec::new(), 12), "a blank line is stepped over");
        assert_eq!(lines[2].1, 20);
        assert!(read_lines(&p, 20, 1 << 20, 1 << 20).unwrap().is_empty());
        assert_eq!(count_records(&p, 0, 20), 2);
        assert_eq!(next_line(&p, 9), 12);
        assert_eq!(next_line(&p, 12), 12, "already at a line start");
    }

    #[test]
    fn the_position_follows_a_rotation_and_notices_a_lost_file() {
        let dir = tempdir();
        let p = dir.join("d.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n").unwrap();
        let s = sources(&p, 1);
        let pos = Position {
            dev: s[0].dev,
            ino: s[0].ino,
            offset: 4,
        };
        commit(&p, pos).unwrap();
        assert_eq!(load(&p), Some(pos));
        std::fs::rename(&p, dir.join("d.jsonl.1")).unwrap();
        std::fs::write(&p, b"{\"b\":2}\n").unwrap();
        let s = sources(&p, 1);
        assert_eq!(s.len(), 2);
        assert_eq!(
            resume(&s, load(&p)),
            (0, 4, false),
            "the rest of file.1 first"
        );
        assert_eq!(backlog(&s, 0, 4), 4 + 8);
        std::fs::remove_file(dir.join("d.jsonl.1")).unwrap();
        assert_eq!(resume(&sources(&p, 1), load(&p)), (0, 0, true));
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("gavel-spool-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
