//! The OPA bundle *format*: read exactly as OPA reads them (`reader`,
//! `manifest`), hashed as OPA hashes them (`canonical`, `digest`), signed and
//! verified (`sign`, `verify`), checked before use (`lint`), tested like
//! `opa test` (`testrun`), and moved to and from OCI registries (`oci`: the
//! client, the verified cache). `library` is gavel's policy library
//! (`data.gavel.lib`, `bundles/lib`), embedded and added to every engine. A bundle is data: nothing here decides a
//! request (only `testrun` evaluates, and only the bundle's own tests), and
//! nothing here knows which server a bundle is for or when it is activated —
//! that lifecycle is `crate::policy`.

pub mod canonical;
pub mod deps;
pub mod digest;
pub mod es512;
pub mod library;
pub mod lint;
pub mod manifest;
pub mod metadata;
pub mod oci;
pub mod pathmatch;
mod reader;
pub mod recursion;
pub mod sign;
pub mod testrun;
pub mod verify;

use serde_json::Value;

pub use manifest::Manifest;
pub use reader::nesting;
pub use reader::{load_bundle, load_bundle_tar_gz, read_bundle, read_bundle_tar_gz};

/// Bounds on what one bundle may contain (gzip bombs, runaway bundles). OPA
/// only has a 1 GiB per-file limit; a policy bundle warrants far less, and the
/// total bounds memory whatever the archive claims.
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
    /// `sha256:<hex>`: of the tarball bytes, or for a directory of the sorted
    /// `(path, OPA file hash)` list (exact bytes: [`digest::directory_digest`]).
    pub digest: String,
    /// Raw `.signatures.json`, recognised here and verified by the OCI layer.
    pub signatures: Option<Vec<u8>>,
    /// Every regular file, for signature verification.
    pub files: Vec<BundleFile>,
}

/// A bundle's files as read — decompressed within the limits, paths
/// checked, every file a parser will see pre-scanned for nesting — and
/// nothing parsed. Bundle bytes are untrusted until verified: a signature is
/// checked against these files ([`verify::verify_raw`]) before
/// [`RawBundle::parse`] hands anything to a parser.
#[derive(Debug, Clone)]
pub struct RawBundle {
    pub name: String,
    pub source: String,
    pub files: Vec<BundleFile>,
    /// As [`Bundle::digest`].
    pub digest: String,
}

impl RawBundle {
    /// The raw `/.signatures.json`, if the bundle has one.
    pub fn signatures(&self) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.path == ".signatures.json")
            .map(|f| f.bytes.as_slice())
    }

    /// Parses the manifest, modules and data (OPA's rules, see `reader`).
    pub fn parse(&self) -> Result<Bundle, BundleError> {
        reader::build(
            self.name.clone(),
            self.source.clone(),
            self.files.clone(),
            self.digest.clone(),
        )
    }
}

/// Why a bundle was refused. Every message names the bundle (its source) and,
/// where there is one, the file (`path:line` for Rego), and says what to fix.
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

pub(crate) fn invalid(bundle: &str, message: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        bundle: bundle.to_string(),
        message: message.into(),
    }
}

pub(crate) fn file_err(bundle: &str, file: &str, message: impl Into<String>) -> BundleError {
    BundleError::File {
        bundle: bundle.to_string(),
        file: file.to_string(),
        message: message.into(),
    }
}

/// A bundle of one module `p.rego` with `data`, default manifest: what the
/// lint and test-runner unit tests build their cases from.
#[cfg(test)]
pub(crate) fn one_module_bundle(text: &str, data: serde_json::Value) -> Bundle {
    Bundle {
        name: "b".into(),
        source: "b".into(),
        manifest: Manifest::default(),
        modules: vec![RegoModule {
            path: "p.rego".into(),
            text: text.into(),
        }],
        data,
        digest: String::new(),
        signatures: None,
        files: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_overlap_by_segment_like_opa() {
        assert!(roots_overlap("a/b", "a/b/c"));
        assert!(roots_overlap("", "x"));
        assert!(roots_overlap("a", "a"));
        assert!(!roots_overlap("a/b", "a/bc"));
        assert!(!roots_overlap("a/b", "a/c"));
        assert!(root_contains("mcp/fs", "mcp/fs/sub"));
        assert!(!root_contains("mcp/fs", "mcp"));
    }
}
