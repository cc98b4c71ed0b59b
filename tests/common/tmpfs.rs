//! A real, small tmpfs (root only): a filesystem that really fills up, for
//! what gavel does on a full disk.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `bytes` on a fresh temp dir, unmounted on drop; `None` —
    /// said on stderr, naming `test` — when this process may not mount one.
    pub fn mount(bytes: u64, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let target = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let opts = std::ffi::CString::new(format!("size={bytes},mode=0700")).unwrap();
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if rc != 0 {
            eprintln!(
                "SKIPPED {test}: cannot mount a tmpfs ({}); run as root to test a full disk",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem (a file grown until ENOSPC); remove the
    /// returned path to free the space.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("fill");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        while matches!(f.write(&chunk), Ok(n) if n > 0) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: umount2 of the mount this value made.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
