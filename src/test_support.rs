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

/// A throw-away `redis-server` (Debian package, installed by scripts/setup)
/// on a port the OS gave out, or a chosen one; killed on drop. The one
/// implementation for the library's Redis unit tests and the integration
/// tests (which compile this file too).
pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// Starts it on `port` and waits (at most 30 s) until it accepts.
    pub fn start_on(port: u16) -> RedisServer {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed by this test: run scripts/setup");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on port {port} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RedisServer {
            child: Some(child),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
