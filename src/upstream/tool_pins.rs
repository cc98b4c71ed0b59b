//! Tool-definition digests remembered across gavel processes, so a tool that
//! changed while no gavel was watching (between two host windows, two
//! `gavel serve` sessions, a reboot) is still reported: a "rug pull" is a
//! definition that changes under the same name, and it is most likely to
//! happen while nobody is looking.
//!
//! One small JSON file per upstream under `<state_dir>/tools/`, named by the
//! server's config name and a hash of how it is reached (command, args, cwd
//! or URL), so two configs that happen to use the same server name for
//! different programs do not report each other's tools as changed. Written
//! whole (`atomic_file`): several gavel processes share the directory,
//! a reader never sees half a file, and the last writer wins — each process
//! has already logged what it saw. A file that cannot be read is a warning
//! and no baseline, never an error: this is evidence for people, not policy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{ServerConfig, UpstreamTransport};

/// Largest pin file read (a listing is capped in items; this caps the file).
const MAX_FILE_BYTES: u64 = 8 << 20;

/// The pin file of one upstream.
pub fn path(state_dir: &Path, cfg: &ServerConfig) -> PathBuf {
    let mut h = Sha256::new();
    match &cfg.transport {
        UpstreamTransport::Stdio {
            command, args, cwd, ..
        } => {
            h.update(b"stdio\0");
            h.update(command.as_bytes());
            for a in args {
                h.update(b"\0");
                h.update(a.as_bytes());
            }
            h.update(b"\0cwd\0");
            if let Some(c) = cwd {
                h.update(c.to_string_lossy().as_bytes());
            }
        }
        UpstreamTransport::Http { url, .. } => {
            h.update(b"http\0");
            h.update(url.as_bytes());
        }
    }
    let spec = hex::encode(&h.finalize()[..8]);
    // Server names are letters, digits, `_` and `-` (config validation).
    state_dir
        .join("tools")
        .join(format!("{}-{spec}.json", cfg.name))
}

/// The digests last recorded for this upstream, if any.
pub fn load(path: &Path) -> Option<HashMap<String, String>> {
    let read = || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = match read() {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), "tool digests of the last run not read ({e}); this listing is the new baseline");
            return None;
        }
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        tracing::warn!(file = %path.display(), "tool digests of the last run are over {MAX_FILE_BYTES} bytes; ignored, this listing is the new baseline");
        return None;
    }
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(file = %path.display(), "tool digests of the last run do not parse ({e}); this listing is the new baseline");
            None
        }
    }
}

/// Records `digests` as this upstream's latest listing.
pub fn store(path: &Path, digests: &HashMap<String, String>) {
    // Sorted, so the file is stable and diffable.
    let sorted: std::collections::BTreeMap<_, _> = digests.iter().collect();
    let bytes = serde_json::to_vec_pretty(&sorted).expect("strings serialize");
    if let Err(e) = crate::atomic_file::write(path, &bytes) {
        tracing::warn!(file = %path.display(), "tool digests not recorded ({e}); the next gavel cannot compare with this listing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, command: &str) -> ServerConfig {
        let toml = format!("[servers.{name}]\ncommand = {command:?}\n");
        let c =
            crate::config::Config::from_toml_str(&toml, Path::new("/x/servers.toml"), &|_| None)
                .unwrap();
        c.servers.into_values().next().unwrap()
    }

    #[test]
    fn the_file_is_named_by_server_and_launch_spec() {
        let d = Path::new("/s");
        let a = path(d, &cfg("fs", "npx"));
        assert!(a.starts_with("/s/tools"));
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("fs-"));
        assert_eq!(a, path(d, &cfg("fs", "npx")));
        assert_ne!(
            a,
            path(d, &cfg("fs", "uvx")),
            "another program, another file"
        );
    }

    #[test]
    fn stored_digests_load_back_and_damage_is_no_baseline() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path(), &cfg("fs", "npx"));
        assert_eq!(load(&p), None);
        let m: HashMap<String, String> = [("echo".to_string(), "sha256:1".to_string())].into();
        store(&p, &m);
        assert_eq!(load(&p), Some(m));
        std::fs::write(&p, "{not json").unwrap();
        assert_eq!(load(&p), None);
    }
}
