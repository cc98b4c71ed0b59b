//! A real OCI registry for the tests: Debian's `docker-registry` (CNCF
//! distribution) on 127.0.0.1, with its own storage, optionally with basic
//! auth (htpasswd, bcrypt, made by `htpasswd` from apache2-utils).

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct TestRegistry {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    auth: Option<(String, String)>,
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With basic auth for `user`/`password`.
    pub fn start_with(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Self {
            child: None,
            port: 0,
            dir,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        r.restart();
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts on a fresh port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.port = super::free_port();
        let root = self.dir.path();
        let mut auth = String::new();
        if let Some((u, p)) = &self.auth {
            let file = root.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbc", file.to_str().unwrap(), u, p])
                .output()
                .expect("htpasswd (apache2-utils; scripts/setup installs it)");
            assert!(out.status.success(), "{out:?}");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: gavel-test\n    path: {}\n",
                file.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n{auth}",
            root.join("data").display(),
            self.port
        );
        let cfg = root.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (Debian package; scripts/setup installs it)");
        self.child = Some(child);
        super::wait_for_port(self.port, "the registry", Some(&root.join("registry.log")));
    }

    pub fn storage(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
