//! Reading a bundle — a directory or a `.tar.gz` — as OPA's reader does
//! (OPA `v1/bundle/bundle.go`), and stricter where OPA is lax
//! (documented in docs/policy.md):
//!
//! - tar: only regular files and directories. OPA silently skips symlinks,
//!   hard links and devices; gavel refuses the bundle, because a bundle that
//!   carries them was not made by `opa build` and may have been tampered with.
//!   (pax global headers, as `git archive` writes, are metadata and skipped.)
//! - a leading `/` or `./` is stripped (`opa build` writes `/data.json`); a
//!   path that is still absolute, has a `..` component or control characters,
//!   or occurs twice, is refused.
//! - limits are enforced while streaming: nothing is decompressed or buffered
//!   past `max_total_bytes` (plus tar header overhead), so a gzip bomb costs
//!   at most the limit.
//! - `patch.json` (delta bundles), `wasm` and `file_rego_versions` are refused.
//! - reading and parsing are two steps: [`read_bundle`] /
//!   [`read_bundle_tar_gz`] give the files ([`RawBundle`]) with nothing
//!   parsed, so a signature is checked before any parser sees a byte;
//!   every file a parser will see is pre-scanned for nesting as it is read
//!   (`nesting`: the parsers are not linear in it).
//! - a directory: symlinks refused too; dot-files and dot-directories other
//!   than `/.manifest` and `/.signatures.json` ignored (`.git`, editor files).

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::{
    Bundle, BundleError, BundleFile, BundleLimits, Manifest, RawBundle, RegoModule, digest,
    file_err, invalid, lint, root_contains,
};

#[path = "reader/nesting.rs"]
pub mod nesting;

/// Loads (reads and parses) a bundle directory or gzipped tarball.
pub fn load_bundle(path: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
    read_bundle(path, limits)?.parse()
}

/// Loads (reads and parses) a gzipped tarball from memory.
pub fn load_bundle_tar_gz(
    name: &str,
    source: &str,
    bytes: &[u8],
    limits: &BundleLimits,
) -> Result<Bundle, BundleError> {
    read_bundle_tar_gz(name, source, bytes, limits)?.parse()
}

/// Reads a bundle directory or gzipped tarball (recognised by its gzip
/// magic, whatever its name), parsing nothing.
pub fn read_bundle(path: &Path, limits: &BundleLimits) -> Result<RawBundle, BundleError> {
    let source = path.display().to_string();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.clone());
    let io = |e: std::io::Error| BundleError::Io {
        bundle: source.clone(),
        source: e,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.is_dir() {
        let mut walk = Walk {
            root: path,
            files: Vec::new(),
            total: 0,
            limits,
            source: &source,
        };
        walk.dir(path)?;
        let files = walk.files;
        let digest = digest::directory_digest(&files, &source)?;
        return Ok(RawBundle {
            name: file_name,
            source,
            files,
            digest,
        });
    }
    if !meta.is_file() {
        return Err(invalid(
            &source,
            "neither a directory nor a regular file (symlinks are refused); point gavel at the bundle itself",
        ));
    }
    // A compressed bundle larger than the decompressed limit cannot be valid.
    if meta.len() > limits.max_total_bytes {
        return Err(invalid(
            &source,
            format!(
                "the file is {} bytes, over the {} byte bundle limit",
                meta.len(),
                limits.max_total_bytes
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let name = file_name
        .trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .to_string();
    read_bundle_tar_gz(&name, &source, &bytes, limits)
}

/// A reader that fails (and says so in `hit`) once more than `left` bytes
/// have been read: the tar parser then stops, whatever the headers claim.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(std::io::Error::other("decompressed size limit reached"));
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a gzipped tarball from memory (OCI layers, fuzzing), parsing
/// nothing. `name` labels the bundle in logs; `source` says where it came
/// from.
pub fn read_bundle_tar_gz(
    name: &str,
    source: &str,
    bytes: &[u8],
    limits: &BundleLimits,
) -> Result<RawBundle, BundleError> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(invalid(
            source,
            "not a gzipped tarball (a bundle is a directory or a .tar.gz made by `opa build` or `gavel bundle build`)",
        ));
    }
    let hit = Rc::new(Cell::new(false));
    // Tar headers and padding come on top of file contents: allow 1.5 KiB
    // (a header, a long-name header, padding) per permitted file.
    let overhead = (limits.max_files as u64 + 16).saturating_mul(1536);
    let capped = Capped {
        inner: flate2::read::GzDecoder::new(bytes),
        left: limits.max_total_bytes.saturating_add(overhead),
        hit: hit.clone(),
    };
    let bomb = || {
        invalid(
            source,
            format!(
                "more than {} bytes decompressed (gzip bomb?); raise the bundle limit only if the bundle is genuinely this large",
                limits.max_total_bytes
            ),
        )
    };
    let unreadable = |e: std::io::Error| {
        if hit.get() {
            bomb()
        } else {
            invalid(
                source,
                format!("unreadable tarball ({e}); rebuild it with `opa build`"),
            )
        }
    };
    let mut archive = tar::Archive::new(capped);
    let mut files: Vec<BundleFile> = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let Some(path) = entry_path(&entry, source)? else {
            continue;
        };
        check_count(&files, limits, source)?;
        let mut data = Vec::new();
        (&mut entry)
            .take(limits.max_file_bytes + 1)
            .read_to_end(&mut data)
            .map_err(unreadable)?;
        if data.len() as u64 > limits.max_file_bytes {
            return Err(too_big(source, &path, limits));
        }
        total += data.len() as u64;
        if total > limits.max_total_bytes {
            return Err(bomb());
        }
        nesting::check(&path, &data).map_err(|m| file_err(source, &path, m))?;
        push_unique(&mut files, BundleFile { path, bytes: data }, source)?;
    }
    Ok(RawBundle {
        name: name.to_string(),
        source: source.to_string(),
        files,
        digest: digest::tarball_digest(bytes),
    })
}

/// The normalized path of a tar entry holding a file; `None` for entries
/// that hold none (directories, pax global headers). Any other entry type
/// (links, devices) is refused.
fn entry_path<R: Read>(entry: &tar::Entry<R>, source: &str) -> Result<Option<String>, BundleError> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let kind = entry.header().entry_type();
    if kind.is_dir() || kind.is_pax_global_extensions() {
        return Ok(None);
    }
    if !kind.is_file() {
        return Err(file_err(
            source,
            &raw,
            format!(
                "{kind:?} entries are refused: a bundle may hold only regular files and directories (OPA would skip it; gavel treats it as tampering)"
            ),
        ));
    }
    normalize(&raw)
        .map(Some)
        .map_err(|m| file_err(source, &raw, m))
}

fn check_count(
    files: &[BundleFile],
    limits: &BundleLimits,
    source: &str,
) -> Result<(), BundleError> {
    if files.len() >= limits.max_files {
        return Err(invalid(
            source,
            format!("more than {} files; split the bundle", limits.max_files),
        ));
    }
    Ok(())
}

fn too_big(source: &str, path: &str, limits: &BundleLimits) -> BundleError {
    file_err(
        source,
        path,
        format!(
            "larger than the {} byte per-file limit; move large data out of the bundle",
            limits.max_file_bytes
        ),
    )
}

fn push_unique(
    files: &mut Vec<BundleFile>,
    f: BundleFile,
    source: &str,
) -> Result<(), BundleError> {
    if files.iter().any(|g| g.path == f.path) {
        return Err(file_err(
            source,
            &f.path,
            "occurs twice in the tarball (with or without a leading '/'); rebuild the bundle",
        ));
    }
    files.push(f);
    Ok(())
}

/// Strips one leading `/` or `./` (as `opa build` and `tar -C dir .` write
/// them); refuses what is still absolute, `..`, control characters, empties.
fn normalize(raw: &str) -> Result<String, String> {
    let p = raw
        .strip_prefix("./")
        .or_else(|| raw.strip_prefix('/'))
        .unwrap_or(raw);
    if p.starts_with('/') {
        return Err("absolute path refused; paths in a bundle are relative to its root".into());
    }
    if p.chars().any(|c| c.is_control() || c == '\\') {
        return Err("control characters or backslashes in the path are refused".into());
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.contains(&"..") {
        return Err("path escapes the bundle (contains \"..\"); refused".into());
    }
    if parts.is_empty() {
        return Err("empty path".into());
    }
    Ok(parts.join("/"))
}

/// Reading a bundle directory: its files so far and their total size,
/// both bounded by `limits` as they grow.
struct Walk<'a> {
    root: &'a Path,
    files: Vec<BundleFile>,
    total: u64,
    limits: &'a BundleLimits,
    source: &'a str,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path) -> Result<(), BundleError> {
        let (root, limits, source) = (self.root, self.limits, self.source);
        let io = |e: std::io::Error| BundleError::Io {
            bundle: source.into(),
            source: e,
        };
        let mut entries = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let p = entry.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let ft = entry.file_type().map_err(io)?;
            let base = entry.file_name().to_string_lossy().into_owned();
            let top = dir == root;
            if base.starts_with('.')
                && !(top && (base == ".manifest" || base == ".signatures.json"))
            {
                continue; // .git, editor files: not part of a bundle
            }
            if ft.is_symlink() {
                return Err(file_err(
                    source,
                    &rel,
                    "symbolic links are refused in bundles; copy the file instead",
                ));
            }
            if ft.is_dir() {
                self.dir(&p)?;
                continue;
            }
            if !ft.is_file() {
                return Err(file_err(
                    source,
                    &rel,
                    "only regular files may be in a bundle",
                ));
            }
            let rel = normalize(&rel).map_err(|m| file_err(source, &rel, m))?;
            check_count(&self.files, limits, source)?;
            let mut bytes = Vec::new();
            std::fs::File::open(&p)
                .map_err(io)?
                .take(limits.max_file_bytes + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
            if bytes.len() as u64 > limits.max_file_bytes {
                return Err(too_big(source, &rel, limits));
            }
            self.total += bytes.len() as u64;
            if self.total > limits.max_total_bytes {
                return Err(invalid(
                    source,
                    format!(
                        "more than {} bytes in total; split the bundle",
                        limits.max_total_bytes
                    ),
                ));
            }
            nesting::check(&rel, &bytes).map_err(|m| file_err(source, &rel, m))?;
            self.files.push(BundleFile { path: rel, bytes });
        }
        Ok(())
    }
}

/// Deep merge; a key present on both sides that is not an object on both is
/// a conflict (OPA: `failed to insert data file from path …`).
fn merge(into: &mut Map<String, Value>, from: Map<String, Value>, at: &str) -> Result<(), String> {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b, &format!("{at}/{k}"))?,
            (Some(_), _) => return Err(format!("data conflict at {at}/{k}")),
            (None, v) => {
                into.insert(k, v);
            }
        }
    }
    Ok(())
}

/// OPA's data check (`validateAndInjectDefaults`): walking the merged data,
/// a path under a root is fine; an object on the way to a root is walked
/// into; anything else is outside every root.
fn check_data_roots(node: &Value, path: &str, roots: &[String]) -> Result<(), String> {
    if roots.iter().any(|r| root_contains(r, path)) {
        return Ok(());
    }
    if let Value::Object(o) = node {
        let on_the_way = roots.iter().any(|r| root_contains(path, r));
        if on_the_way {
            for (k, v) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}/{k}")
                };
                check_data_roots(v, &p, roots)?;
            }
            return Ok(());
        }
    }
    Err(format!(
        "manifest roots {roots:?} do not permit data at path '/{path}' (hint: check bundle directory structure)"
    ))
}

fn parse_data(f: &BundleFile, base: &str, source: &str) -> Result<Value, BundleError> {
    if base == "data.json" {
        return serde_json::from_slice::<Value>(&f.bytes)
            .map_err(|e| file_err(source, &f.path, format!("invalid JSON ({e}); fix the file")));
    }
    let text = std::str::from_utf8(&f.bytes).map_err(|_| file_err(source, &f.path, "not UTF-8"))?;
    let v = regorus::Value::from_yaml_str(text)
        .map_err(|e| file_err(source, &f.path, format!("invalid YAML ({e}); fix the file")))?;
    let json = v
        .to_json_str()
        .map_err(|e| file_err(source, &f.path, e.to_string()))?;
    serde_json::from_str(&json).map_err(|e| file_err(source, &f.path, e.to_string()))
}

/// Parses what [`read_bundle`] read: the manifest, every module and data
/// file (each already within the nesting bounds).
pub(super) fn build(
    name: String,
    source: String,
    files: Vec<BundleFile>,
    digest: String,
) -> Result<Bundle, BundleError> {
    let manifest = match files.iter().find(|f| f.path == ".manifest") {
        Some(f) => Manifest::parse(&f.bytes, &source)?,
        None => Manifest::default(),
    };
    let mut modules = Vec::new();
    let mut data = Map::new();
    let mut signatures = None;
    for f in &files {
        match role_of(f, &source)? {
            Role::Manifest | Role::Ignored => {}
            Role::Signatures => signatures = Some(f.bytes.clone()),
            Role::Module => modules.push(module_of(f, &manifest, &source)?),
            Role::Data { dir, base } => merge_data_file(&mut data, f, dir, base, &source)?,
        }
    }
    let data = Value::Object(data);
    check_data_roots(&data, "", &manifest.roots).map_err(|m| invalid(&source, m))?;
    Ok(Bundle {
        name,
        source,
        manifest,
        modules,
        data,
        digest,
        signatures,
        files,
    })
}

/// What a bundle file is, by its path (OPA's rules).
enum Role<'a> {
    Manifest,
    Signatures,
    Module,
    Data {
        dir: &'a str,
        base: &'a str,
    },
    /// README, other .json/.yaml: ignored, as OPA does.
    Ignored,
}

/// The role of `f`; `Err` for the files a bundle may not hold (a second
/// manifest or signatures file, a delta bundle's patch).
fn role_of<'a>(f: &'a BundleFile, source: &str) -> Result<Role<'a>, BundleError> {
    let (dir, base) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
    if f.path == ".manifest" {
        return Ok(Role::Manifest);
    }
    if f.path.ends_with(".manifest") {
        return Err(file_err(
            source,
            &f.path,
            "OPA would read this as the manifest; only /.manifest is allowed, rename or remove it",
        ));
    }
    if f.path.ends_with("signatures.json") {
        if f.path != ".signatures.json" {
            return Err(file_err(
                source,
                &f.path,
                "signatures must be in /.signatures.json at the bundle root",
            ));
        }
        return Ok(Role::Signatures);
    }
    if base == "patch.json" {
        return Err(file_err(
            source,
            &f.path,
            "delta bundles (patch.json) are not supported; publish a snapshot bundle",
        ));
    }
    if f.path.ends_with(".rego") {
        return Ok(Role::Module);
    }
    if matches!(base, "data.json" | "data.yaml" | "data.yml") {
        return Ok(Role::Data { dir, base });
    }
    Ok(Role::Ignored)
}

/// A Rego module: UTF-8, parses, and its package under a manifest root.
fn module_of(f: &BundleFile, manifest: &Manifest, source: &str) -> Result<RegoModule, BundleError> {
    let text =
        String::from_utf8(f.bytes.clone()).map_err(|_| file_err(source, &f.path, "not UTF-8"))?;
    let module = lint::parse_module(source, &f.path, &text, manifest.rego_v0())?;
    let pkg = lint::package_path(&module);
    if !manifest.roots.iter().any(|r| root_contains(r, &pkg)) {
        return Err(file_err(
            source,
            &f.path,
            format!(
                "manifest roots {:?} do not permit 'data.{}' in module '{}'; move the package under a root",
                manifest.roots,
                pkg.replace('/', "."),
                f.path
            ),
        ));
    }
    Ok(RegoModule {
        path: f.path.clone(),
        text,
    })
}

/// Merges a data file into `data` at its directory's path; a value may come
/// from one file only.
fn merge_data_file(
    data: &mut Map<String, Value>,
    f: &BundleFile,
    dir: &str,
    base: &str,
    source: &str,
) -> Result<(), BundleError> {
    let mut node = parse_data(f, base, source)?;
    if dir.is_empty() && !node.is_object() {
        return Err(file_err(source, &f.path, "root value must be object"));
    }
    for seg in dir.rsplit('/').filter(|s| !s.is_empty()) {
        node = Value::Object(Map::from_iter([(seg.to_string(), node)]));
    }
    if let Value::Object(o) = node {
        merge(data, o, "").map_err(|m| {
            file_err(
                source,
                &f.path,
                format!("failed to insert data file from path {} ({m}); each value may come from one file only", f.path),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "reader/tests.rs"]
mod tests;
