//! OPA `# METADATA` annotations, parsed by gavel because regorus ignores
//! comments entirely.
//!
//! OPA's rules, which this follows: a comment line that is exactly
//! `# METADATA` (at column 1) opens a block; every following consecutive line
//! that starts with `#` belongs to it; the text after each `#` is YAML (a
//! mapping). The block annotates the next statement: a `package` (default
//! scope `package`, or `subpackages`) or a rule (default scope `rule`, or
//! `document`: every rule of that name in the package). Unknown keys are kept
//! out of the model but do not fail (OPA ignores them too); custom fields go
//! under `custom`. A block whose YAML does not parse, is not a mapping, or
//! names a scope that does not fit its statement is an error naming
//! `file:line`, so an author sees the problem rather than a silently missing
//! description.

use serde_json::Value;

/// What a metadata block applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The package it precedes.
    Package,
    /// The package and every package below it.
    Subpackages,
    /// The one rule definition it precedes.
    Rule,
    /// Every definition of that rule name in the package.
    Document,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Package => "package",
            Scope::Subpackages => "subpackages",
            Scope::Rule => "rule",
            Scope::Document => "document",
        }
    }
}

/// One parsed `# METADATA` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Bundle-relative file.
    pub file: String,
    /// 1-based line of the `# METADATA` line.
    pub line: usize,
    pub scope: Scope,
    /// Dotted package (`mcp.filesystem`) the block sits in or annotates.
    pub package: String,
    /// The rule name for `rule` / `document` scope.
    pub rule: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub entrypoint: bool,
    /// `authors`, `organizations` and `related_resources`, flattened to text.
    pub authors: Vec<String>,
    pub organizations: Vec<String>,
    pub related_resources: Vec<String>,
    /// The `custom` mapping, as written.
    pub custom: Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{file}:{line}: METADATA block: {message}")]
pub struct MetadataError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// The statement a block precedes.
enum Target {
    Package(String),
    Rule(String),
}

/// `package a.b` → package; `default x := …`, `x contains …`, `f(a) if …`,
/// `a.b.c := …` → rule `x` / `f` / `a.b.c`.
fn target_of(line: &str) -> Option<Target> {
    let t = line.trim();
    if let Some(rest) = t.strip_prefix("package ") {
        return Some(Target::Package(rest.trim().to_string()));
    }
    if t.starts_with("import ") || t.is_empty() || t.starts_with('#') {
        return None;
    }
    let t = t.strip_prefix("default ").unwrap_or(t);
    let name: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    (!name.is_empty()).then_some(Target::Rule(name))
}

fn text_list(v: Option<&Value>) -> Vec<String> {
    let one = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            // {name, email} for authors, {ref, description} for resources.
            let parts: Vec<String> = ["name", "email", "ref", "description"]
                .iter()
                .filter_map(|k| o.get(*k).and_then(Value::as_str).map(String::from))
                .collect();
            parts.join(" ")
        }
        other => other.to_string(),
    };
    match v {
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(Value::Null) | None => vec![],
        Some(other) => vec![one(other)],
    }
}

/// Parses every `# METADATA` block of one Rego module.
pub fn parse_module(file: &str, text: &str) -> Result<Vec<Annotation>, MetadataError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut package = String::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(Target::Package(p)) = target_of(lines[i]) {
            package = p;
        }
        if lines[i].trim_end() != "# METADATA" {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut yaml = Vec::new();
        while i < lines.len() && lines[i].starts_with('#') {
            yaml.push(&lines[i][1..]);
            i += 1;
        }
        let annotation =
            annotation(file, start + 1, &yaml, &lines[i..], &package).map_err(|message| {
                MetadataError {
                    file: file.to_string(),
                    line: start + 1,
                    message,
                }
            })?;
        out.push(annotation);
        // Go on right after the block: a later block may annotate the same
        // statement.
    }
    Ok(out)
}

/// One block: its `yaml` lines (text after `#`) and the lines that follow
/// it, in `package`. `Err`: what is wrong with it.
fn annotation(
    file: &str,
    line: usize,
    yaml: &[&str],
    after: &[&str],
    package: &str,
) -> Result<Annotation, String> {
    // The statement it annotates: the next line that is neither blank nor a
    // comment (OPA: a blank line after the block lets ordinary comments sit
    // between it and its statement).
    let target = after
        .iter()
        .find(|l| !(l.trim().is_empty() || l.trim_start().starts_with('#')))
        .and_then(|l| target_of(l))
        .ok_or_else(|| {
            "is not followed by a package or a rule; put it right above the statement it describes"
                .to_string()
        })?;
    let map = yaml_mapping(yaml)?;
    let str_field = |k: &str| -> Result<Option<String>, String> {
        match map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(format!("{k} must be a string, found {other}")),
        }
    };
    let (scope, package, rule) = scope_of(target, str_field("scope")?.as_deref(), package)?;
    Ok(Annotation {
        file: file.to_string(),
        line,
        scope,
        package,
        rule,
        title: str_field("title")?,
        description: str_field("description")?,
        entrypoint: map.get("entrypoint") == Some(&Value::Bool(true)),
        authors: text_list(map.get("authors")),
        organizations: text_list(map.get("organizations")),
        related_resources: text_list(map.get("related_resources")),
        custom: map.get("custom").cloned().unwrap_or(Value::Null),
    })
}

/// The block's YAML as a mapping (an empty block is an empty mapping).
fn yaml_mapping(yaml: &[&str]) -> Result<serde_json::Map<String, Value>, String> {
    // Text after `#`, less the one space conventionally written after it
    // when every line has it (YAML indentation stays relative).
    let strip = yaml
        .iter()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.starts_with(' '));
    let body: String = yaml
        .iter()
        .map(|l| {
            if strip {
                l.strip_prefix(' ').unwrap_or(l)
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: Value = if body.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        yaml_serde::from_str(&body).map_err(|e| format!("YAML does not parse: {e}"))?
    };
    match parsed {
        Value::Object(map) => Ok(map),
        parsed => Err(format!(
            "must be a YAML mapping (key: value lines), found {parsed}"
        )),
    }
}

/// The scope, package and rule of a block annotating `target` with the
/// `scope` it declares (OPA's defaults: package, rule).
fn scope_of(
    target: Target,
    scope: Option<&str>,
    package: &str,
) -> Result<(Scope, String, Option<String>), String> {
    match (target, scope) {
        (Target::Package(p), None | Some("package")) => Ok((Scope::Package, p, None)),
        (Target::Package(p), Some("subpackages")) => Ok((Scope::Subpackages, p, None)),
        (Target::Rule(r), None | Some("rule")) => Ok((Scope::Rule, package.to_string(), Some(r))),
        (Target::Rule(r), Some("document")) => Ok((Scope::Document, package.to_string(), Some(r))),
        (Target::Package(_), Some(s)) => Err(format!(
            "scope {s:?} does not apply to a package; use package or subpackages"
        )),
        (Target::Rule(_), Some(s)) => Err(format!(
            "scope {s:?} does not apply to a rule; use rule or document"
        )),
    }
}

/// Every annotation of a bundle, module by module.
pub fn parse_bundle(bundle: &crate::bundle::Bundle) -> Result<Vec<Annotation>, MetadataError> {
    let mut all = Vec::new();
    for m in &bundle.modules {
        all.extend(parse_module(&m.path, &m.text)?);
    }
    Ok(all)
}

/// The annotation that describes package `pkg`: its own, else the nearest
/// `subpackages` one above it.
pub fn for_package<'a>(all: &'a [Annotation], pkg: &str) -> Option<&'a Annotation> {
    all.iter()
        .find(|a| a.scope == Scope::Package && a.package == pkg)
        .or_else(|| {
            all.iter()
                .filter(|a| {
                    a.scope == Scope::Subpackages
                        && (a.package == pkg || pkg.starts_with(&format!("{}.", a.package)))
                })
                .max_by_key(|a| a.package.len())
        })
}

/// Annotations of rule `name` in package `pkg` (rule and document scope).
pub fn for_rule<'a>(
    all: &'a [Annotation],
    pkg: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a Annotation> + 'a {
    all.iter()
        .filter(move |a| a.package == pkg && a.rule.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_block_with_folded_description() {
        let text = "# METADATA\n# title: Runaway-agent brakes\n# description: Stops loops\n#   and bursts.\npackage gavel.workflow\n\nx := 1\n";
        let a = parse_module("w.rego", text).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].scope, Scope::Package);
        assert_eq!(a[0].package, "gavel.workflow");
        assert_eq!(a[0].title.as_deref(), Some("Runaway-agent brakes"));
        assert_eq!(a[0].description.as_deref(), Some("Stops loops and bursts."));
        assert_eq!(a[0].line, 1);
    }

    #[test]
    fn rule_and_document_scopes() {
        let text = "package p\n\n# METADATA\n# title: Reads\n# custom:\n#   severity: high\nallow if input.x\n\n# METADATA\n# scope: document\n# description: every deny\n# authors:\n# - name: Ada\n#   email: ada@example.com\ndefault deny := false\n";
        let a = parse_module("p.rego", text).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].scope, Scope::Rule);
        assert_eq!(a[0].rule.as_deref(), Some("allow"));
        assert_eq!(a[0].package, "p");
        assert_eq!(a[0].custom["severity"], "high");
        assert_eq!(a[1].scope, Scope::Document);
        assert_eq!(a[1].rule.as_deref(), Some("deny"));
        assert_eq!(a[1].authors, vec!["Ada ada@example.com".to_string()]);
        assert_eq!(for_rule(&a, "p", "deny").count(), 1);
    }

    #[test]
    fn subpackages_scope_covers_packages_below() {
        let text = "# METADATA\n# scope: subpackages\n# title: All of mcp\npackage mcp\n";
        let a = parse_module("m.rego", text).unwrap();
        assert_eq!(a[0].scope, Scope::Subpackages);
        assert_eq!(
            for_package(&a, "mcp.fs").and_then(|a| a.title.as_deref()),
            Some("All of mcp")
        );
        assert!(for_package(&a, "mcpx").is_none());
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let text = "package p\n\n# METADATA\n# title: [unclosed\nallow := true\n";
        let e = parse_module("bad.rego", text).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("bad.rego", 3));
        assert!(e.message.contains("YAML does not parse"), "{e}");
    }

    #[test]
    fn wrong_scope_and_non_mapping_are_errors() {
        let e = parse_module("p.rego", "# METADATA\n# scope: rule\npackage p\n").unwrap_err();
        assert!(e.message.contains("does not apply to a package"), "{e}");
        let e = parse_module(
            "p.rego",
            "package p\n# METADATA\n# scope: subpackages\nx := 1\n",
        )
        .unwrap_err();
        assert!(e.message.contains("does not apply to a rule"), "{e}");
        let e =
            parse_module("p.rego", "package p\n# METADATA\n# - a\n# - b\nx := 1\n").unwrap_err();
        assert!(e.message.contains("must be a YAML mapping"), "{e}");
        let e = parse_module("p.rego", "package p\n# METADATA\n# title: t\n").unwrap_err();
        assert!(e.message.contains("not followed by"), "{e}");
        let e =
            parse_module("p.rego", "package p\n# METADATA\n# title: [1]\nx := 1\n").unwrap_err();
        assert!(e.message.contains("title must be a string"), "{e}");
    }

    #[test]
    fn ordinary_and_indented_comments_are_not_metadata() {
        let text = "# just a comment\npackage p\n  # METADATA\n# title: no\nx := 1\n";
        assert!(parse_module("p.rego", text).unwrap().is_empty());
        // A blank line ends the block (ordinary comments may follow before
        // the statement); unknown keys are ignored as OPA does.
        let text = "package p\n# METADATA\n# title: t\n# colour: red\n\n# a note\nx := 1\n";
        let a = parse_module("p.rego", text).unwrap();
        assert_eq!(a[0].rule.as_deref(), Some("x"));
        assert_eq!(a[0].title.as_deref(), Some("t"));
        // Two blocks on one rule (rule and document scope) are both kept.
        let text = "package p\n# METADATA\n# title: one\n\n# METADATA\n# scope: document\n# title: all\ndeny if true\n";
        let a = parse_module("p.rego", text).unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|a| a.rule.as_deref() == Some("deny")));
        assert_eq!(a[1].scope, Scope::Document);
    }
}
