//! Reading a bundle — a directory or a `.tar.gz` — exactly as OPA's reader
//! does (`v1/bundle/bundle.go`), and stricter where OPA is lax (documented in
//! docs/policy.md): symlinks, hard links and other non-regular entries are
//! refused rather than skipped, `..` paths are refused, `patch.json` (delta
//! bundles) is refused.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use super::{
    Bundle, BundleError, BundleFile, BundleLimits, Manifest, RegoModule, canonical, root_contains,
    roots_overlap,
};

/// Loads a bundle directory or `.tar.gz` file.
pub fn load_bundle(path: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".tar.gz").to_string())
        .unwrap_or_else(|| path.display().to_string());
    let source = path.display().to_string();
    let io = |e: std::io::Error| BundleError::Io {
        bundle: source.clone(),
        source: e,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.is_dir() {
        let mut files = Vec::new();
        let mut total = 0u64;
        walk_dir(path, path, &mut files, &mut total, limits, &source)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let digest = directory_digest(&files, &source)?;
        build(name, source, files, digest)
    } else {
        if meta.len() > limits.max_total_bytes {
            return Err(invalid(
                &source,
                format!(
                    "the file is {} bytes, over the {} byte limit",
                    meta.len(),
                    limits.max_total_bytes
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        load_bundle_tar_gz(&name, &source, &bytes, limits)
    }
}

/// Loads a gzipped tarball from memory (OCI layers, fuzzing).
pub fn load_bundle_tar_gz(
    name: &str,
    source: &str,
    bytes: &[u8],
    limits: &BundleLimits,
) -> Result<Bundle, BundleError> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(invalid(
            source,
            "not a gzipped tarball (a bundle is a directory or a .tar.gz)",
        ));
    }
    let gz = flate2::read::GzDecoder::new(bytes);
    // Never decompress past the total limit, whatever the headers claim.
    let mut archive = tar::Archive::new(gz.take(limits.max_total_bytes + 1));
    let mut files = Vec::new();
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| invalid(source, format!("unreadable tarball: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(source, format!("unreadable tarball: {e}")))?;
        let raw_path = entry.path_bytes().into_owned();
        let raw = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(file_err(
                source,
                &raw,
                format!("{kind:?} entries are refused (only regular files may be in a bundle)"),
            ));
        }
        let path = normalize(&raw).map_err(|m| file_err(source, &raw, m))?;
        if files.len() >= limits.max_files {
            return Err(invalid(
                source,
                format!("more than {} files", limits.max_files),
            ));
        }
        let mut data = Vec::new();
        (&mut entry)
            .take(limits.max_file_bytes + 1)
            .read_to_end(&mut data)
            .map_err(|e| file_err(source, &path, format!("unreadable: {e}")))?;
        if data.len() as u64 > limits.max_file_bytes {
            return Err(file_err(
                source,
                &path,
                format!(
                    "larger than the {} byte per-file limit",
                    limits.max_file_bytes
                ),
            ));
        }
        total += data.len() as u64;
        if total > limits.max_total_bytes {
            return Err(invalid(
                source,
                format!("more than {} bytes decompressed", limits.max_total_bytes),
            ));
        }
        files.push(BundleFile { path, bytes: data });
    }
    let digest = format!("sha256:{}", canonical::sha256_hex(bytes));
    build(name.to_string(), source.to_string(), files, digest)
}

fn invalid(bundle: &str, message: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        bundle: bundle.to_string(),
        message: message.into(),
    }
}

fn file_err(bundle: &str, file: &str, message: impl Into<String>) -> BundleError {
    BundleError::File {
        bundle: bundle.to_string(),
        file: file.to_string(),
        message: message.into(),
    }
}

/// Strips a leading `/` or `./`; refuses `..`, empty and absolute-after-strip paths.
fn normalize(raw: &str) -> Result<String, String> {
    let mut p = raw.trim_start_matches("./");
    p = p.trim_start_matches('/');
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.is_empty() {
        return Err("empty path".into());
    }
    if parts.contains(&"..") {
        return Err("path escapes the bundle (contains \"..\")".into());
    }
    if parts.iter().any(|s| s.contains('\\') || s.contains('\0')) {
        return Err("invalid characters in path".into());
    }
    Ok(parts.join("/"))
}

fn walk_dir(
    root: &Path,
    dir: &Path,
    out: &mut Vec<BundleFile>,
    total: &mut u64,
    limits: &BundleLimits,
    source: &str,
) -> Result<(), BundleError> {
    let rd = std::fs::read_dir(dir).map_err(|e| BundleError::Io {
        bundle: source.into(),
        source: e,
    })?;
    for entry in rd {
        let entry = entry.map_err(|e| BundleError::Io {
            bundle: source.into(),
            source: e,
        })?;
        let p = entry.path();
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        let ft = entry.file_type().map_err(|e| BundleError::Io {
            bundle: source.into(),
            source: e,
        })?;
        if ft.is_symlink() {
            return Err(file_err(
                source,
                &rel,
                "symbolic links are refused in bundles",
            ));
        }
        let base = entry.file_name().to_string_lossy().into_owned();
        if base.starts_with('.') && base != ".manifest" && base != ".signatures.json" {
            continue; // .git, editor files: not part of a bundle
        }
        if ft.is_dir() {
            walk_dir(root, &p, out, total, limits, source)?;
            continue;
        }
        if !ft.is_file() {
            return Err(file_err(
                source,
                &rel,
                "only regular files may be in a bundle",
            ));
        }
        if out.len() >= limits.max_files {
            return Err(invalid(
                source,
                format!("more than {} files", limits.max_files),
            ));
        }
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if len > limits.max_file_bytes {
            return Err(file_err(
                source,
                &rel,
                format!(
                    "larger than the {} byte per-file limit",
                    limits.max_file_bytes
                ),
            ));
        }
        *total += len;
        if *total > limits.max_total_bytes {
            return Err(invalid(
                source,
                format!("more than {} bytes", limits.max_total_bytes),
            ));
        }
        let bytes = std::fs::read(&p).map_err(|e| BundleError::Io {
            bundle: source.into(),
            source: e,
        })?;
        out.push(BundleFile { path: rel, bytes });
    }
    Ok(())
}

/// Digest of a directory bundle: sha256 over the lines `"<path> <sha256 of
/// OPA's hash input>\n"` for every file sorted by path. Two directories with
/// the same files (up to JSON formatting of structured docs) share a digest.
fn directory_digest(files: &[BundleFile], source: &str) -> Result<String, BundleError> {
    let mut acc = String::new();
    for f in files {
        let input =
            canonical::hash_input(&f.path, &f.bytes).map_err(|m| file_err(source, &f.path, m))?;
        acc.push_str(&format!("{} {}\n", f.path, canonical::sha256_hex(&input)));
    }
    Ok(format!("sha256:{}", canonical::sha256_hex(acc.as_bytes())))
}

fn parse_manifest(bytes: &[u8], source: &str) -> Result<Manifest, BundleError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| file_err(source, ".manifest", format!("not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| file_err(source, ".manifest", "must be a JSON object"))?;
    let mut m = Manifest::default();
    if let Some(r) = obj.get("revision") {
        m.revision = r
            .as_str()
            .ok_or_else(|| file_err(source, ".manifest", "revision must be a string"))?
            .to_string();
    }
    if let Some(roots) = obj.get("roots") {
        let arr = roots
            .as_array()
            .ok_or_else(|| file_err(source, ".manifest", "roots must be a list of strings"))?;
        m.roots = arr
            .iter()
            .map(|r| r.as_str().map(|s| s.trim_matches('/').to_string()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| file_err(source, ".manifest", "roots must be a list of strings"))?;
    }
    if let Some(rv) = obj.get("rego_version") {
        match rv.as_i64() {
            Some(0) | Some(1) => m.rego_version = rv.as_i64(),
            _ => {
                return Err(file_err(
                    source,
                    ".manifest",
                    format!("unknown bundle rego-version {rv}"),
                ));
            }
        }
    }
    if obj.contains_key("file_rego_versions") {
        return Err(file_err(
            source,
            ".manifest",
            "file_rego_versions is not supported by gavel; set rego_version for the whole bundle",
        ));
    }
    if obj.contains_key("wasm") {
        return Err(file_err(
            source,
            ".manifest",
            "wasm modules are not supported by gavel (policies are evaluated as Rego)",
        ));
    }
    if let Some(md) = obj.get("metadata") {
        m.metadata = md
            .as_object()
            .cloned()
            .ok_or_else(|| file_err(source, ".manifest", "metadata must be an object"))?;
    }
    for (i, a) in m.roots.iter().enumerate() {
        for b in &m.roots[i + 1..] {
            if roots_overlap(a, b) {
                return Err(file_err(
                    source,
                    ".manifest",
                    format!("manifest has overlapped roots: '{a}' and '{b}'"),
                ));
            }
        }
    }
    Ok(m)
}

/// The package path of a module (`package a.b` → `a/b`), from its source.
pub fn package_path(text: &str) -> Option<String> {
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("package ") {
            let pkg = rest.split('#').next().unwrap_or("").trim();
            return Some(pkg.replace('.', "/").replace(['[', ']', '"'], ""));
        }
    }
    None
}

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

fn build(
    name: String,
    source: String,
    files: Vec<BundleFile>,
    digest: String,
) -> Result<Bundle, BundleError> {
    let manifest = match files.iter().find(|f| f.path == ".manifest") {
        Some(f) => parse_manifest(&f.bytes, &source)?,
        None => Manifest::default(),
    };
    let mut modules = Vec::new();
    let mut data = Map::new();
    let mut signatures = None;
    for f in &files {
        let base = f.path.rsplit('/').next().unwrap_or(&f.path);
        let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d);
        if f.path == ".manifest" {
            continue;
        }
        if f.path.ends_with("signatures.json") {
            if f.path != ".signatures.json" {
                return Err(file_err(
                    &source,
                    &f.path,
                    "signatures must be in /.signatures.json at the bundle root",
                ));
            }
            signatures = Some(f.bytes.clone());
            continue;
        }
        if base == "patch.json" {
            return Err(file_err(
                &source,
                &f.path,
                "delta bundles (patch.json) are not supported; publish a snapshot bundle",
            ));
        }
        if f.path.ends_with(".rego") {
            let text = String::from_utf8(f.bytes.clone())
                .map_err(|_| file_err(&source, &f.path, "not UTF-8"))?;
            let pkg = package_path(&text)
                .ok_or_else(|| file_err(&source, &f.path, "no package declaration"))?;
            if !manifest.roots.iter().any(|r| root_contains(r, &pkg)) {
                return Err(file_err(
                    &source,
                    &f.path,
                    format!(
                        "manifest roots {:?} do not permit '{}' in module '{}'",
                        manifest.roots,
                        pkg.replace('/', "."),
                        f.path
                    ),
                ));
            }
            modules.push(RegoModule {
                path: f.path.clone(),
                text,
            });
            continue;
        }
        let value = match base {
            "data.json" => serde_json::from_slice::<Value>(&f.bytes)
                .map_err(|e| file_err(&source, &f.path, format!("invalid JSON: {e}")))?,
            "data.yaml" | "data.yml" => {
                let text = std::str::from_utf8(&f.bytes)
                    .map_err(|_| file_err(&source, &f.path, "not UTF-8"))?;
                let v = regorus::Value::from_yaml_str(text)
                    .map_err(|e| file_err(&source, &f.path, format!("invalid YAML: {e}")))?;
                serde_json::from_str(
                    &v.to_json_str()
                        .map_err(|e| file_err(&source, &f.path, e.to_string()))?,
                )
                .map_err(|e| file_err(&source, &f.path, e.to_string()))?
            }
            _ => continue, // other files are ignored, as OPA does
        };
        if !dir.is_empty() && !manifest.roots.iter().any(|r| root_contains(r, dir)) {
            return Err(file_err(
                &source,
                &f.path,
                format!(
                    "manifest roots {:?} do not permit data at path '/{dir}' (hint: check bundle directory structure)",
                    manifest.roots
                ),
            ));
        }
        let mut node = value;
        if dir.is_empty() {
            if !node.is_object() {
                return Err(file_err(&source, &f.path, "root data must be an object"));
            }
            if !manifest.roots.iter().any(|r| r.is_empty()) {
                let keys: Vec<String> = node
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                for k in keys {
                    if !manifest
                        .roots
                        .iter()
                        .any(|r| root_contains(r, &k) || root_contains(&k, r))
                    {
                        return Err(file_err(
                            &source,
                            &f.path,
                            format!(
                                "manifest roots {:?} do not permit data at path '/{k}'",
                                manifest.roots
                            ),
                        ));
                    }
                }
            }
        } else {
            for seg in dir.rsplit('/') {
                let mut m = Map::new();
                m.insert(seg.to_string(), node);
                node = Value::Object(m);
            }
        }
        if let Value::Object(o) = node {
            merge(&mut data, o, "").map_err(|m| {
                file_err(
                    &source,
                    &f.path,
                    format!("{m} (failed to insert data file)"),
                )
            })?;
        }
    }
    Ok(Bundle {
        name,
        source,
        manifest,
        modules,
        data: Value::Object(data),
        digest,
        signatures,
        files,
    })
}

#[cfg(test)]
#[path = "reader/tests.rs"]
mod tests;
