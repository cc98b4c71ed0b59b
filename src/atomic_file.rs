//! Whole-file writes that readers and other writers never see half done:
//! several gavel processes (one per host window), and several sessions in
//! one `gavel serve`, write the same caches and records. Each write goes to
//! its own temporary file beside the target (process id plus a random part,
//! so two writers in one process never share it), is synced, then renamed
//! over the target; a failed write leaves no temporary file behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (creating its directory).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, None)
}

/// [`write`], the temporary file created with `mode` (Unix permission bits)
/// when given, so a file that holds secrets is never readable by others,
/// not even for a moment before a `chmod`.
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let res = (|| {
        let mut f = create(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A new file (never an existing one: the name is fresh), with `mode`.
fn create(tmp: &Path, mode: Option<u32>) -> std::io::Result<std::fs::File> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    open.open(tmp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn concurrent_writers_of_one_file_never_leave_it_torn() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/f.json");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        super::write(p, &vec![b'a' + i; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "one writer's bytes");
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
