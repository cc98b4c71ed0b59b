//! OPA bundles: read exactly as OPA reads them (`reader`), hashed as OPA hashes
//! them (`canonical`), checked before use (`lint`), tested like `opa test`
//! (`testrun`). A bundle is data: nothing here evaluates policy.

pub mod canonical;
pub mod lint;
mod reader;
pub mod sign;
pub mod testrun;
pub mod verify;

use serde_json::{Map, Value};

pub use reader::{load_bundle, load_bundle_tar_gz};

/// Bounds on what one bundle may contain (gzip bombs, runaway bundles).
#[derive(Debug, Clone)]
pub struct BundleLimits {
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_files: 10_000,
            max_file_bytes: 8 << 20,
            max_total_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub revision: String,
    /// Normalised roots (no leading/trailing `/`); `[""]` when absent.
    pub roots: Vec<String>,
    pub rego_version: Option<i64>,
    pub metadata: Map<String, Value>,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            revision: String::new(),
            roots: vec![String::new()],
            rego_version: None,
            metadata: Map::new(),
        }
    }
}

impl Manifest {
    /// `metadata.gavel.<key>`.
    pub fn gavel(&self, key: &str) -> Option<&Value> {
        self.metadata.get("gavel").and_then(|g| g.get(key))
    }
}

#[derive(Debug, Clone)]
pub struct RegoModule {
    /// Bundle-relative path, no leading `/`.
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct BundleFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    /// Label used in logs and decision records.
    pub name: String,
    /// Where it came from (path or reference).
    pub source: String,
    pub manifest: Manifest,
    pub modules: Vec<RegoModule>,
    /// Merged data tree (an object).
    pub data: Value,
    /// `sha256:<hex>`: of the tarball, or for a directory of the sorted
    /// `(path, OPA file hash)` list (see `reader::directory_digest`).
    pub digest: String,
    /// Raw `.signatures.json`, recognised here and verified by the OCI layer.
    pub signatures: Option<Vec<u8>>,
    /// Every regular file, for signature verification.
    pub files: Vec<BundleFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {bundle}: {message}")]
    Invalid { bundle: String, message: String },
    #[error("bundle {bundle}: {file}: {message}")]
    File {
        bundle: String,
        file: String,
        message: String,
    },
    #[error("bundle {bundle}: cannot read it: {source}")]
    Io {
        bundle: String,
        source: std::io::Error,
    },
}

/// Whether `root` (a data path like `mcp/fs`) contains `path`.
pub fn root_contains(root: &str, path: &str) -> bool {
    if root.is_empty() {
        return true;
    }
    let r: Vec<&str> = root.split('/').collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    p.len() >= r.len() && r.iter().zip(&p).all(|(a, b)| a == b)
}

/// OPA's `RootPathsOverlap`.
pub fn roots_overlap(a: &str, b: &str) -> bool {
    root_contains(a, b) || root_contains(b, a)
}
