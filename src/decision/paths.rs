//! Canonical forms of the path-like arguments (`path`, `paths`, `source`,
//! `destination`, `uri`), so that data classification and policies see one
//! spelling per file rather than comparing raw strings.
//!
//! Why: an agent chooses the spelling. `conf/./plan.txt`, `conf//plan.txt`,
//! `conf/plan.txt/`, `x/../conf/plan.txt`, the NFD spelling of an NFC name,
//! `file:///root/conf%2Fplan.txt` or the absolute path all reach the same
//! file through an upstream such as server-filesystem, so a prefix compared
//! on the raw string is a filter the agent can step around.
//!
//! What is done, purely lexically (no file is touched: symlinks are the
//! upstream's business, docs/policy.md says so):
//! - `file://` URIs: the host must be empty or `localhost`, the path is
//!   percent-decoded (bytes that are not UTF-8 are refused), `?`/`#` dropped;
//!   other URI schemes are left as written (only NFC applied);
//! - Unicode NFC, per path (macOS and server-filesystem treat NFD as NFC);
//! - a leading `~` is the home directory (server-filesystem expands it);
//! - empty and `.` segments dropped, `..` resolved; a `..` that would climb
//!   above the root (with `servers.NAME.path_root`), above `/`, or above the
//!   start of a relative path has no canonical form: [`PathError`], which
//!   classification treats as touching every class and the policy sees as
//!   `null`, so it stays a refusal;
//! - with a root, relative paths are resolved against it (as server-filesystem
//!   does) and absolute paths under it (as configured or as its real path)
//!   are written root-relative; without one, relative paths stay relative.
//!
//! Backslashes: a POSIX upstream reads `\` as part of a name, a Windows one as
//! a separator. The policy's view ([`canonical`]) is the POSIX reading;
//! classification ([`readings`]) takes both and unions the classes, so no
//! reading escapes. Case is kept in the policy's view; classification compares
//! case-folded segments (over-classifying on case-sensitive filesystems is the
//! safe side).

use std::path::Path;

use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

/// The argument keys read as paths (a string, or an array of strings).
pub const PATH_ARGS: &[&str] = &["path", "paths", "source", "destination", "uri"];

/// Why a path has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a \"..\" climbs above {0}")]
    ClimbsAbove(&'static str),
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the file:// URI names host {0:?}; only an empty host or localhost is a local file")]
    RemoteHost(String),
    #[error("the file:// URI's percent-encoding does not decode to UTF-8")]
    BadPercent,
    #[error("the path starts with ~ and gavel knows no home directory (HOME is unset)")]
    NoHome,
}

/// One canonical reading of a path-like value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canon {
    /// A filesystem path: absolute (from `/`) or relative (to an unknown base:
    /// only without a root), as segments.
    Path { absolute: bool, segs: Vec<String> },
    /// A URI of another scheme, as written (NFC).
    Other(String),
}

/// The directory an upstream resolves relative paths against
/// (`servers.NAME.path_root`), in every spelling that names it: as
/// configured (absolute, cleaned) and its real path, if that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRoot {
    spellings: Vec<Vec<String>>,
}

impl PathRoot {
    /// `dir` must be absolute (config paths are resolved against the file).
    pub fn new(dir: &Path) -> Result<PathRoot, PathError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut spellings = Vec::new();
        let configured: String = nfc(&dir.to_string_lossy());
        spellings.push(segments(&configured, true, 0, Vec::new())?);
        if let Ok(real) = std::fs::canonicalize(&dir) {
            let real: String = nfc(&real.to_string_lossy());
            let real = segments(&real, true, 0, Vec::new())?;
            if !spellings.contains(&real) {
                spellings.push(real);
            }
        }
        Ok(PathRoot { spellings })
    }

    fn segs(&self) -> &[String] {
        &self.spellings[0]
    }

    /// The root as an absolute path (`input.action.path_root`).
    pub fn display(&self) -> String {
        format!("/{}", self.segs().join("/"))
    }
}

/// Splits `s` (already NFC, `/`-separated) onto `stack`, resolving `.`,
/// `..` and empty segments; `floor` is how many leading segments `..` may
/// not remove.
fn segments(
    s: &str,
    absolute: bool,
    floor: usize,
    mut stack: Vec<String>,
) -> Result<Vec<String>, PathError> {
    for seg in s.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if stack.len() <= floor {
                    return Err(PathError::ClimbsAbove(match (floor, absolute) {
                        (0, true) => "/",
                        (0, false) => "the start of the relative path",
                        _ => "the server's root (path_root)",
                    }));
                }
                stack.pop();
            }
            s => stack.push(s.to_string()),
        }
    }
    Ok(stack)
}

/// `scheme` of `scheme://…` (RFC 3986 scheme characters), and the rest.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then_some((scheme, rest))
}

/// The local path a `file://` URI names (after `file://`).
fn file_uri_path(rest: &str) -> Result<String, PathError> {
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
        return Err(PathError::RemoteHost(host.to_string()));
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    let decoded = String::from_utf8(bytes).map_err(|_| PathError::BadPercent)?;
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    Ok(if decoded.is_empty() {
        "/".into()
    } else {
        nfc(&decoded)
    })
}

/// `s` in Unicode NFC. ASCII text is its own NFC (no ASCII character
/// decomposes or composes with another), so it is copied as it is: the
/// normalizer's char-by-char pass cost ~2k instructions a short path, and
/// paths are read several times a call (issue 17).
fn nfc(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        s.nfc().collect()
    }
}

/// One reading of `raw`: `backslash_separates` reads `\` as `/`.
fn parse(
    raw: &str,
    backslash_separates: bool,
    root: Option<&PathRoot>,
) -> Result<Canon, PathError> {
    if raw.contains('\0') {
        return Err(PathError::Nul);
    }
    let text = nfc(raw);
    let mut s = match split_scheme(&text) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => file_uri_path(rest)?,
        Some(_) => return Ok(Canon::Other(text)),
        None => text,
    };
    if backslash_separates {
        s = s.replace('\\', "/");
    }
    if s == "~" || s.starts_with("~/") {
        let home = std::env::var("HOME").map_err(|_| PathError::NoHome)?;
        s = format!("{}{}", nfc(&home), &s[1..]);
    }
    let absolute = s.starts_with('/');
    let segs = match (absolute, root) {
        (false, Some(r)) => segments(&s, false, r.segs().len(), r.segs().to_vec())?,
        _ => segments(&s, absolute, 0, Vec::new())?,
    };
    let segs = match root {
        // An absolute path under the root's real path: the configured spelling.
        Some(r) if absolute => r.spellings[1..]
            .iter()
            .find(|alt| segs.starts_with(alt))
            .map(|alt| [r.segs(), &segs[alt.len()..]].concat())
            .unwrap_or(segs),
        _ => segs,
    };
    Ok(Canon::Path {
        absolute: absolute || root.is_some(),
        segs,
    })
}

/// The policy's view of one value: root-relative inside the root (`.` for
/// the root itself), absolute (`/…`) outside it, relative without a root;
/// other URIs as written. The POSIX reading of backslashes.
pub fn canonical(raw: &str, root: Option<&PathRoot>) -> Result<String, PathError> {
    Ok(match parse(raw, false, root)? {
        Canon::Other(s) => s,
        Canon::Path { absolute, segs } => {
            let inside = root.map(|r| r.segs()).filter(|r| segs.starts_with(r));
            match (inside, absolute) {
                (Some(r), _) if segs.len() == r.len() => ".".into(),
                (Some(r), _) => segs[r.len()..].join("/"),
                (None, true) => format!("/{}", segs.join("/")),
                (None, false) if segs.is_empty() => ".".into(),
                (None, false) => segs.join("/"),
            }
        }
    })
}

/// Every reading classification must consider: the POSIX one, and with a
/// backslash in `raw` also the one where `\` separates.
pub fn readings(raw: &str, root: Option<&PathRoot>) -> Vec<Result<Canon, PathError>> {
    let mut out = vec![parse(raw, false, root)];
    if raw.contains('\\') {
        out.push(parse(raw, true, root));
    }
    out
}

fn fold(c: &Canon) -> Canon {
    match c {
        Canon::Other(s) => Canon::Other(s.to_lowercase()),
        Canon::Path { absolute, segs } => Canon::Path {
            absolute: *absolute,
            segs: segs.iter().map(|s| s.to_lowercase()).collect(),
        },
    }
}

/// Whether `path` is `prefix` or below it, segment by segment and
/// case-folded (`conf-x` is not within `conf`). Without a root, a relative
/// and an absolute form cannot be placed against each other, so the answer
/// is the one that cannot under-classify: an absolute path is within a
/// relative prefix wherever the prefix's segments occur in it, a relative
/// path (unknown base) within any absolute prefix.
pub fn within(path: &Canon, prefix: &Canon) -> bool {
    match (fold(path), fold(prefix)) {
        (Canon::Other(p), Canon::Other(q)) => {
            p == q
                || p.starts_with(&q)
                    && (q.ends_with('/') || p[q.len()..].starts_with(['/', '?', '#']))
        }
        (
            Canon::Path {
                absolute: pa,
                segs: ps,
            },
            Canon::Path {
                absolute: qa,
                segs: qs,
            },
        ) => match (pa, qa) {
            _ if pa == qa => ps.starts_with(&qs),
            (true, false) => qs.is_empty() || ps.windows(qs.len()).any(|w| w == qs.as_slice()),
            _ => true,
        },
        _ => false,
    }
}

/// The string values of the path arguments (`paths` and any other key may
/// be a string or an array of strings; nested arrays are flattened).
pub fn path_values(args: &Value) -> Vec<&str> {
    fn push<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| push(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for k in PATH_ARGS {
        if let Some(v) = args.get(k) {
            push(v, &mut out);
        }
    }
    out
}

/// `input.action.canonical_args`: the path arguments present in `args`,
/// same keys and shapes, each string replaced by [`canonical`] (`null` when
/// it has none, as for any value that is not a string).
pub fn canonical_args(args: &Value, root: Option<&PathRoot>) -> Value {
    fn view(v: &Value, root: Option<&PathRoot>) -> Value {
        match v {
            Value::String(s) => canonical(s, root).map(Value::String).unwrap_or(Value::Null),
            Value::Array(a) => Value::Array(a.iter().map(|x| view(x, root)).collect()),
            _ => Value::Null,
        }
    }
    let mut out = serde_json::Map::new();
    for k in PATH_ARGS {
        if let Some(v) = args.get(k) {
            out.insert((*k).to_string(), view(v, root));
        }
    }
    Value::Object(out)
}

/// Adds the canonical view to a built input: `action.canonical_args` and
/// `action.path_root` (the root's absolute path, or null).
pub fn annotate(input: &mut Value, args: &Value, root: Option<&PathRoot>) {
    if let Some(action) = input.get_mut("action").and_then(Value::as_object_mut) {
        action.insert("canonical_args".into(), canonical_args(args, root));
        action.insert(
            "path_root".into(),
            root.map(|r| json!(r.display())).unwrap_or(Value::Null),
        );
    }
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
