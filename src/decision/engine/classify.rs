//! Data classification: which classes a request references, from the
//! bundles' `data.<package>.classification` — by tool name, and by the path
//! arguments compared on their canonical forms (`decision::paths`), so that
//! no spelling of a classified file escapes its class.

use std::sync::OnceLock;

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
        let mut values = paths::path_values(args);
        if tool.contains("://") {
            values.push(tool); // resource URIs arrive as the action's tool
        }
        for b in &self.bundles {
            add(
                &mut out,
                b.classification.get("tools").and_then(|t| t.get(tool)),
            );
        }
        self.path_classes(values.iter().copied(), false, root, &mut out);
        out
    }

    /// Data classes an upstream's answer carries, by the path strings it
    /// names (`decision::output_paths`), with the same rules and the same
    /// canonical readings as [`PolicyEngine::classify`]; an answer whose
    /// candidates were cut short by the bound references every class a
    /// path rule names.
    pub fn classify_output(
        &self,
        found: &crate::decision::output_paths::Candidates,
        root: Option<&PathRoot>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let values = found.paths.iter().map(String::as_str);
        self.path_classes(values, found.truncated, root, &mut out);
        out
    }

    /// Whether any bundle classifies by path (`classification.paths`).
    pub fn classifies_paths(&self) -> bool {
        self.bundles.iter().any(|b| {
            b.classification
                .get("paths")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        })
    }

    /// The classes of the `classification.paths` rules any of `values` falls
    /// within (every rule's, if `unplaced`: a path that could be anywhere).
    fn path_classes<'a>(
        &self,
        values: impl Iterator<Item = &'a str>,
        unplaced: bool,
        root: Option<&PathRoot>,
        out: &mut Vec<String>,
    ) {
        let readings: Vec<Result<Canon, PathError>> =
            values.flat_map(|v| paths::readings(v, root)).collect();
        if readings.is_empty() && !unplaced {
            return;
        }
        let cached = self.prefixes.get(root, || {
            self.path_rules()
                .map(|rule| {
                    let prefix = rule.get("prefix").and_then(Value::as_str)?;
                    Prefixes::fixed(prefix).then(|| paths::readings(prefix, root))
                })
                .collect()
        });
        for (i, rule) in self.path_rules().enumerate() {
            let Some(prefix) = rule.get("prefix").and_then(Value::as_str) else {
                continue;
            };
            let owned;
            // A prefix that cannot be placed is the bundle's mistake:
            // it matches every path rather than none.
            let prefixes = match cached.and_then(|c| c[i].as_ref()) {
                Some(p) => p,
                None => {
                    owned = paths::readings(prefix, root);
                    &owned
                }
            };
            let hit = unplaced
                || readings.iter().any(|r| match r {
                    Err(_) => true,
                    Ok(c) => prefixes.iter().any(|p| match p {
                        Err(_) => true,
                        Ok(p) => paths::within(c, p),
                    }),
                });
            if hit {
                add(out, rule.get("classes"));
            }
        }
    }
}

/// Every reading of each `classification.paths` rule's prefix, made once
/// per engine (for the first root it is asked with: one engine decides
/// for one server, whose `path_root` it always gets) instead of on every
/// request and every answer (issue 17). A prefix holding `~` or `%` is
/// read again each time: its reading may depend on `HOME` (a `~` is
/// expanded then), so only prefixes whose reading is a function of the
/// prefix and the root alone are kept.
#[derive(Default)]
pub(super) struct Prefixes(OnceLock<(Option<PathRoot>, Vec<Option<Readings>>)>);

type Readings = Vec<Result<Canon, PathError>>;

impl Prefixes {
    /// The readings of every path rule (in [`PolicyEngine::path_rules`]
    /// order; `None` where not kept) when `root` is the root they were
    /// made for.
    fn get(
        &self,
        root: Option<&PathRoot>,
        make: impl FnOnce() -> Vec<Option<Readings>>,
    ) -> Option<&[Option<Readings>]> {
        let (made_for, readings) = self.0.get_or_init(|| (root.cloned(), make()));
        (made_for.as_ref() == root).then_some(readings.as_slice())
    }

    /// Whether `prefix`'s readings depend on nothing but it and the root.
    fn fixed(prefix: &str) -> bool {
        !prefix.contains(['~', '%'])
    }
}

impl PolicyEngine {
    /// Every bundle's `classification.paths` rules, in order.
    fn path_rules(&self) -> impl Iterator<Item = &Value> {
        self.bundles.iter().flat_map(|b| {
            b.classification
                .get("paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
    }
}

/// Adds the classes listed in `v` (an array of strings) not yet in `out`.
fn add(out: &mut Vec<String>, v: Option<&Value>) {
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

    /// An answer is classified by the paths it names with the argument
    /// classifier's rules: every spelling of the confidential file, as a
    /// line (`search_files`), a `path:` header (`read_multiple_files`), a
    /// word in prose or a resource URI; a listing or tree entry joined to
    /// the directory the request named; nothing for public paths, look-alike
    /// names or a bare word.
    #[test]
    fn outputs_are_classified_by_every_spelling_of_the_paths_they_name() {
        use crate::decision::output_paths::candidates;
        let e = shipped();
        let root = PathRoot::new(Path::new("/srv/demo-data")).unwrap();
        let conf = vec!["confidential".to_string()];
        let text = |t: String| json!({"content": [{"type": "text", "text": t}]});
        let classify =
            |out: &Value, bases: &[&str]| e.classify_output(&candidates(out, bases), Some(&root));
        let nfd = "confidential/re\u{301}sume\u{301}.txt";
        for p in [
            "confidential/plan.txt",
            "./confidential/plan.txt",
            "confidential//plan.txt",
            "confidential/./plan.txt",
            "confidential/",
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
            for out in [
                text(p.to_string()),
                text(format!("/srv/demo-data/public/readme.txt\n{p}")),
                text(format!("{p}:\nthe plan\n---\n")),
                text(format!("see \"{p}\", then stop.")),
                json!({"structuredContent": {"content": p}}),
                json!({"contents": [{"uri": p, "text": "x"}]}),
            ] {
                assert_eq!(classify(&out, &[]), conf, "{out}");
            }
        }
        assert_eq!(
            classify(
                &json!({"contents": [{"uri": "confidential", "text": "x"}]}),
                &[]
            ),
            conf,
            "a resource URI is a path however short"
        );
        // Listings and trees name entries of the directory asked for.
        let listing = text("[DIR] confidential\n[FILE] readme.txt".into());
        for base in [".", "./", "", "/srv/demo-data", "file:///srv/demo-data/"] {
            assert_eq!(classify(&listing, &[base]), conf, "{base}");
        }
        assert!(classify(&listing, &["public"]).is_empty());
        let sizes = text("[FILE] plan.txt                       12 B\n\nTotal: 1 files, 0 directories\nCombined size: 12 B".into());
        assert_eq!(classify(&sizes, &["confidential"]), conf);
        let tree = r#"[{"name": "confidential", "type": "directory", "children": [{"name": "plan.txt", "type": "file"}]}]"#;
        assert_eq!(classify(&text(tree.into()), &["."]), conf);
        assert!(classify(&text(tree.into()), &["public"]).is_empty());
        for p in [
            "public/readme.txt",
            "confidential-x/plan.txt",
            "/etc/confidential/x",
            "public/confidential/x",
            "the confidential plan",
            "https://example.com/confidential/x",
        ] {
            assert!(classify(&text(p.into()), &[]).is_empty(), "{p}");
        }
        // More paths than the bound: every class a path rule names.
        let many: String = (0..=crate::decision::output_paths::MAX_CANDIDATES)
            .map(|i| format!("public/{i}\n"))
            .collect();
        assert_eq!(classify(&text(many), &[]), conf);
    }
}
