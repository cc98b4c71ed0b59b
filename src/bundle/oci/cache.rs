//! The bundle cache: verified tarballs kept for an offline start.
//!
//! Layout under the cache root (shared by every gavel process of the user):
//! - `oci/blobs/sha256/<hex>.tar.gz`: content-addressed layer bytes;
//! - `oci/refs/<key>.json`: `(server, normalized ref)` → manifest and layer
//!   digests, where `key` is a hash of the pair.
//!
//! Every file is written to a unique temporary name and renamed into place,
//! so two instances storing at once never leave a torn file, and a reader
//! always sees a complete old or new record. A blob is content-addressed, so
//! two writers of the same blob write the same bytes. A cached bundle is used
//! only for the same server and ref (for a digest pin, only if the digest is
//! the pinned one), and its bytes are re-hashed on every load; signatures are
//! verified again by whoever activates it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::sha256_digest;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheRecord {
    pub server: String,
    /// Normalized `oci://` reference.
    pub reference: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    /// RFC 3339, when it was stored (last successful activation).
    pub stored_at: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("bundle cache {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("bundle cache {path}: {message}")]
    Corrupt { path: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Cache {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.join("oci"),
        }
    }

    fn ref_path(&self, server: &str, reference: &str) -> PathBuf {
        let key = sha256_digest(format!("{server}\0{reference}").as_bytes());
        self.root
            .join("refs")
            .join(format!("{}.json", &key["sha256:".len()..][..32]))
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join("blobs/sha256").join(format!("{hex}.tar.gz")))
    }

    /// Stores a verified bundle for `(server, reference)`.
    pub fn store(
        &self,
        server: &str,
        reference: &str,
        manifest_digest: &str,
        bytes: &[u8],
    ) -> Result<CacheRecord, CacheError> {
        let layer_digest = sha256_digest(bytes);
        let blob = self.blob_path(&layer_digest).expect("a computed digest");
        if !blob.exists() {
            write_atomic(&blob, bytes)?;
        }
        let rec = CacheRecord {
            server: server.to_string(),
            reference: reference.to_string(),
            manifest_digest: manifest_digest.to_string(),
            layer_digest,
            stored_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let p = self.ref_path(server, reference);
        write_atomic(&p, &serde_json::to_vec_pretty(&rec).expect("serializable"))?;
        self.collect_garbage();
        Ok(rec)
    }

    /// The cached bundle for `(server, reference)`, if any and intact.
    /// `pinned`: the digest a digest pin requires.
    pub fn load(
        &self,
        server: &str,
        reference: &str,
        pinned: Option<&str>,
    ) -> Result<Option<(CacheRecord, Vec<u8>)>, CacheError> {
        let p = self.ref_path(server, reference);
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&p)(e)),
        };
        let corrupt = |m: String| CacheError::Corrupt {
            path: p.display().to_string(),
            message: m,
        };
        let rec: CacheRecord = serde_json::from_slice(&text)
            .map_err(|e| corrupt(format!("not a cache record: {e}")))?;
        if rec.server != server || rec.reference != reference {
            return Ok(None);
        }
        if pinned.is_some_and(|d| d != rec.manifest_digest) {
            return Ok(None);
        }
        let blob = self
            .blob_path(&rec.layer_digest)
            .ok_or_else(|| corrupt(format!("bad layer digest {:?}", rec.layer_digest)))?;
        let bytes = match std::fs::read(&blob) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(format!("blob {} is missing", blob.display())));
            }
            Err(e) => return Err(io(&blob)(e)),
        };
        let got = sha256_digest(&bytes);
        if got != rec.layer_digest {
            return Err(corrupt(format!(
                "blob {} has digest {got}, not {} (tampered or torn); it is ignored",
                blob.display(),
                rec.layer_digest
            )));
        }
        Ok(Some((rec, bytes)))
    }

    /// Removes blobs no record points at, once they are an hour old (a blob
    /// just written by another instance whose record is not renamed in yet
    /// is younger than that).
    fn collect_garbage(&self) {
        let Ok(refs) = std::fs::read_dir(self.root.join("refs")) else {
            return;
        };
        let mut live = std::collections::HashSet::new();
        for e in refs.flatten() {
            if let Ok(t) = std::fs::read(e.path())
                && let Ok(r) = serde_json::from_slice::<CacheRecord>(&t)
                && let Some(hex) = r.layer_digest.strip_prefix("sha256:")
            {
                live.insert(format!("{hex}.tar.gz"));
            }
        }
        let Ok(blobs) = std::fs::read_dir(self.root.join("blobs/sha256")) else {
            return;
        };
        for e in blobs.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old && !live.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// `atomic_file::write`, its error naming the file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    crate::atomic_file::write(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_ref_same_server_intact_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path());
        let r = "oci://127.0.0.1:5000/p:v1";
        let md = format!("sha256:{}", "1".repeat(64));
        let rec = c.store("fs", r, &md, b"bundle-bytes").unwrap();
        let (got, bytes) = c.load("fs", r, None).unwrap().unwrap();
        assert_eq!(got, rec);
        assert_eq!(bytes, b"bundle-bytes");
        assert!(c.load("other", r, None).unwrap().is_none(), "per server");
        assert!(
            c.load("fs", "oci://127.0.0.1:5000/p:v2", None)
                .unwrap()
                .is_none(),
            "per ref"
        );
        assert!(c.load("fs", r, Some(&md)).unwrap().is_some());
        let other = format!("sha256:{}", "2".repeat(64));
        assert!(
            c.load("fs", r, Some(&other)).unwrap().is_none(),
            "digest pin must match"
        );
        // Tampered blob: refused with a message, never used.
        let blob = c.blob_path(&rec.layer_digest).unwrap();
        std::fs::write(&blob, b"evil").unwrap();
        let e = c.load("fs", r, None).unwrap_err();
        assert!(e.to_string().contains("tampered"), "{e}");
        // Restored by the next store.
        std::fs::remove_file(&blob).unwrap();
        c.store("fs", r, &md, b"bundle-bytes").unwrap();
        assert!(c.load("fs", r, None).unwrap().is_some());
    }

    #[test]
    fn two_writers_never_tear_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let r = "oci://reg/p:v1";
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let c = Cache::new(&root);
                    for n in 0..50 {
                        let body = format!("bundle {i} {n}").repeat(100);
                        c.store(
                            "fs",
                            r,
                            &format!("sha256:{}", "a".repeat(64)),
                            body.as_bytes(),
                        )
                        .unwrap();
                        // Every read sees a complete record whose blob matches.
                        c.load("fs", r, None).unwrap().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let leftovers: Vec<_> = std::fs::read_dir(root.join("oci/refs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }
}
