//! Helpers shared by unit tests of different modules.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A real, small tmpfs mounted on a fresh temp dir (unmounted on drop): a
/// filesystem that really fills up, for the code paths a full disk takes.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `bytes`, or `None` — said on stderr, naming the test —
    /// when this process may not mount one (not root, no `CAP_SYS_ADMIN`).
    pub fn mount(bytes: u64, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let target =
            std::ffi::CString::new(dir.path().as_os_str().as_bytes()).expect("no NUL in path");
        let opts = std::ffi::CString::new(format!("size={bytes},mode=0700")).expect("no NUL");
        // SAFETY: plain mount(2) with NUL-terminated strings that outlive the call.
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
                "SKIPPED {test}: cannot mount a tmpfs on {} ({}); run as root to test a full filesystem",
                dir.path().display(),
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with `fill` (grown until ENOSPC); returns its
    /// path, to remove to free the space again.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("fill");
        let mut f = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5u8; 64 * 1024];
        while matches!(f.write(&chunk), Ok(n) if n > 0) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: umount2 of the mount this value made.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
