//! Data classification: which classes a request references, from the
//! bundles' `data.<package>.classification` — by tool name, and by the path
//! arguments compared on their canonical forms (`decision::paths`), so that
//! no spelling of a classified file escapes its class.

use serde_json::Value;

use super::PolicyEngine;
use crate::decision::paths::{self, Canon, PathError, PathRoot};

impl PolicyEngine {
    /// Whether any bundle ships classification data.
    pub fn classifies(&self) -> bool {
        self.bundles.iter().any(|b| !b.classification.is_null())
    }

    /// The argument keys [`PolicyEngine::classify`] reads (besides the tool).
    pub const CLASSIFIED_ARGS: &'static [&'static str] = paths::PATH_ARGS;

    /// Data classes a request references: by tool name
    /// (`classification.tools`), and by every path argument (`path`, `paths`,
    /// `source`, `destination`, `uri`, each a string or an array) — and a
    /// resource URI arriving as the action's tool — within a
    /// `classification.paths[].prefix`, both canonicalized against `root`
    /// (`servers.NAME.path_root`). A path with no canonical form (a `..`
    /// above the root, a remote `file://` host…) could be anywhere: it
    /// references every class a path rule names.
    pub fn classify(&self, tool: &str, args: &Value, root: Option<&PathRoot>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |v: Option<&Value>| {
            for c in v
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !out.iter().any(|x| x == c) {
                    out.push(c.to_string());
                }
            }
        };
        let mut values = paths::path_values(args);
        if tool.contains("://") {
            values.push(tool); // resource URIs arrive as the action's tool
        }
        let readings: Vec<Result<Canon, PathError>> = values
            .iter()
            .flat_map(|v| paths::readings(v, root))
            .collect();
        for b in &self.bundles {
            add(b.classification.get("tools").and_then(|t| t.get(tool)));
            if readings.is_empty() {
                continue;
            }
            for rule in b
                .classification
                .get("paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(prefix) = rule.get("prefix").and_then(Value::as_str) else {
                    continue;
                };
                // A prefix that cannot be placed is the bundle's mistake:
                // it matches every path rather than none.
                let prefixes = paths::readings(prefix, root);
                let hit = readings.iter().any(|r| match r {
                    Err(_) => true,
                    Ok(c) => prefixes.iter().any(|p| match p {
                        Err(_) => true,
                        Ok(p) => paths::within(c, p),
                    }),
                });
                if hit {
                    add(rule.get("classes"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleLimits, load_bundle};
    use crate::decision::engine::EngineOptions;
    use serde_json::json;
    use std::path::Path;
    use std::sync::Arc;

    /// The shipped filesystem bundle (prefix `confidential`, root-relative).
    fn shipped() -> PolicyEngine {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
        let b = load_bundle(&root.join("filesystem"), &BundleLimits::default()).unwrap();
        let opts = EngineOptions {
            eval_timeout: std::time::Duration::from_secs(2),
            strict_input: false,
        };
        PolicyEngine::build("filesystem", vec![Arc::new(b)], &opts).unwrap()
    }

    /// Every spelling of the confidential file is classified as the plain
    /// one, in every path argument; a sibling whose name merely starts the
    /// same is not.
    #[test]
    fn every_spelling_of_a_classified_path_is_classified() {
        let e = shipped();
        let root = PathRoot::new(Path::new("/srv/demo-data")).unwrap();
        let conf = vec!["confidential".to_string()];
        let nfd = "confidential/re\u{301}sume\u{301}.txt";
        for p in [
            "confidential/plan.txt",
            "./confidential/plan.txt",
            "confidential//plan.txt",
            "confidential/./plan.txt",
            "confidential/",
            "confidential",
            "public/../confidential/plan.txt",
            "/srv/demo-data/confidential/plan.txt",
            "/srv/demo-data//confidential/plan.txt",
            "file:///srv/demo-data/confidential/plan.txt",
            "file:///srv/demo-data/%63onfidential%2Fplan.txt",
            "Confidential/plan.txt",
            "public\\..\\confidential\\plan.txt",
            nfd,
            "../demo-data/confidential/plan.txt",
            "public/../../x",
        ] {
            for args in [
                json!({"path": p}),
                json!({"paths": ["public/a", p]}),
                json!({"source": "public/a", "destination": p}),
                json!({"uri": p}),
                json!({"paths": p}),
            ] {
                assert_eq!(
                    e.classify("read_text_file", &args, Some(&root)),
                    conf,
                    "{args}"
                );
            }
        }
        // A resource URI arrives as the tool.
        assert_eq!(
            e.classify(
                "file:///srv/demo-data/./confidential/x",
                &json!({}),
                Some(&root)
            ),
            conf
        );
        for p in [
            "public/readme.txt",
            "confidential-x/plan.txt",
            "confidentialx",
            "/etc/confidential/x",
            "public/confidential/x",
        ] {
            assert!(
                e.classify("read_text_file", &json!({"path": p}), Some(&root))
                    .is_empty(),
                "{p}"
            );
        }
        // No root: relative spellings still agree, an absolute path is
        // classified wherever the prefix occurs.
        assert_eq!(
            e.classify("x", &json!({"path": "./confidential//a"}), None),
            conf
        );
        assert_eq!(
            e.classify("x", &json!({"path": "/anywhere/confidential/a"}), None),
            conf
        );
        assert!(
            e.classify("x", &json!({"path": "public/a"}), None)
                .is_empty()
        );
    }
}
