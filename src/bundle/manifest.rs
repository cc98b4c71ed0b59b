//! `.manifest`, as OPA reads it (`v1/bundle/bundle.go` `Manifest`): revision,
//! roots (default `[""]`, `/` trimmed, no overlaps), `rego_version` 0/1 and free
//! `metadata` (gavel reads `metadata.gavel.{decision,layer,disclosure}`).
//! Manifest fields gavel cannot honour (`wasm`, `file_rego_versions`) are
//! refused rather than ignored: ignoring them would evaluate the bundle
//! differently from OPA.

use serde_json::{Map, Value};

use super::{BundleError, file_err, roots_overlap};

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

    /// Whether the bundle is Rego v0 (`rego_version: 0`); v1 otherwise, as
    /// on OPA 1.x.
    pub fn rego_v0(&self) -> bool {
        self.rego_version == Some(0)
    }

    /// Parses `.manifest` bytes of the bundle at `source`.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Manifest, BundleError> {
        let err = |m: String| file_err(source, ".manifest", m);
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| err(format!("not valid JSON ({e}); fix the manifest")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("must be a JSON object".into()))?;
        let mut m = Manifest::default();
        if let Some(r) = obj.get("revision") {
            m.revision = r
                .as_str()
                .ok_or_else(|| err(format!("revision must be a string, not {r}")))?
                .to_string();
        }
        if let Some(roots) = obj.get("roots") {
            let bad = || err("roots must be a list of strings, e.g. [\"mcp/fs\"]".into());
            m.roots = roots
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|r| r.as_str().map(|s| s.trim_matches('/').to_string()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
        }
        if let Some(rv) = obj.get("rego_version") {
            match rv.as_i64() {
                Some(n @ (0 | 1)) => m.rego_version = Some(n),
                _ => {
                    return Err(err(format!(
                        "unknown bundle rego-version {rv} for file '.manifest' (use 0 or 1)"
                    )));
                }
            }
        }
        if obj.contains_key("file_rego_versions") {
            return Err(err(
                "file_rego_versions is not supported by gavel; set rego_version for the whole bundle"
                    .into(),
            ));
        }
        if obj.contains_key("wasm") {
            return Err(err(
                "wasm modules are not supported by gavel (policies are evaluated as Rego); remove \"wasm\"".into(),
            ));
        }
        if let Some(md) = obj.get("metadata") {
            m.metadata = md
                .as_object()
                .cloned()
                .ok_or_else(|| err("metadata must be an object".into()))?;
        }
        for (i, a) in m.roots.iter().enumerate() {
            for b in &m.roots[i + 1..] {
                if roots_overlap(a, b) {
                    return Err(err(format!(
                        "manifest has overlapped roots: '{a}' and '{b}'"
                    )));
                }
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_normalisation_and_refusals() {
        let m = Manifest::parse(b"{}", "b").unwrap();
        assert_eq!(m.roots, vec![""]);
        assert_eq!(m.revision, "");
        let m = Manifest::parse(
            br#"{"revision":"1.2","roots":["/mcp/fs/"],"rego_version":0,"metadata":{"gavel":{"layer":"identity"}}}"#,
            "b",
        )
        .unwrap();
        assert_eq!(m.roots, vec!["mcp/fs"]);
        assert!(m.rego_v0());
        assert_eq!(m.gavel("layer").unwrap(), "identity");
        for (bad, needle) in [
            (
                r#"{"roots":["a","a/b"]}"#,
                "manifest has overlapped roots: 'a' and 'a/b'",
            ),
            (r#"{"roots":["", "x"]}"#, "overlapped roots"),
            (r#"{"rego_version":2}"#, "unknown bundle rego-version 2"),
            (r#"{"roots":"a"}"#, "roots must be a list"),
            (r#"{"revision":1}"#, "revision must be a string"),
            (r#"{"wasm":[]}"#, "wasm"),
            (r#"{"file_rego_versions":{}}"#, "file_rego_versions"),
            (r#"{"metadata":[]}"#, "metadata must be an object"),
            ("[]", "must be a JSON object"),
            ("nope", "not valid JSON"),
        ] {
            let e = Manifest::parse(bad.as_bytes(), "b")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains(".manifest"), "{bad}: {e}");
        }
    }
}
