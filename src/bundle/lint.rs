//! Load-time checks. regorus reports a call to a builtin it does not have only
//! when that call is evaluated — possibly months later, on the one request
//! that reaches it. gavel refuses such a bundle at load instead, with
//! file:line; and warns about `input.*` paths the input schema does not have
//! (refused under `strict_input`).

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use super::{Bundle, BundleError};

#[derive(Debug, Clone, PartialEq)]
pub struct LintFinding {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Default)]
pub struct LintReport {
    pub errors: Vec<LintFinding>,
    pub warnings: Vec<LintFinding>,
}

const KEYWORDS: &[&str] = &[
    "if", "not", "some", "every", "contains", "else", "with", "as", "default", "package", "import",
    "in", "true", "false", "null",
];

/// The package path of a module (`a/b`), from its source.
pub fn package_of(text: &str) -> Option<String> {
    super::reader::package_path(text)
}

/// Source with comments and string contents blanked (same length, same lines).
fn blank(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut in_raw, mut esc) = (false, false, false);
    while let Some(c) = chars.next() {
        if in_str {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
                out.push('"');
                continue;
            }
            out.push(if c == '\n' { '\n' } else { ' ' });
        } else if in_raw {
            if c == '`' {
                in_raw = false;
                out.push('`');
            } else {
                out.push(if c == '\n' { '\n' } else { ' ' });
            }
        } else if c == '#' {
            out.push(' ');
            while let Some(&n) = chars.peek() {
                if n == '\n' {
                    break;
                }
                chars.next();
                out.push(' ');
            }
        } else {
            if c == '"' {
                in_str = true;
            } else if c == '`' {
                in_raw = true;
            }
            out.push(c);
        }
    }
    out
}

/// Dotted identifiers with their line, and whether a `(` follows.
fn refs(src: &str) -> Vec<(String, usize, bool, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut col0) = (0, 1, 0);
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            col0 = i + 1;
            i += 1;
            continue;
        }
        let starts = (c.is_ascii_alphabetic() || c == b'_')
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.'));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len()
            && (b[i].is_ascii_alphanumeric()
                || b[i] == b'_'
                || (b[i] == b'.'
                    && i + 1 < b.len()
                    && (b[i + 1].is_ascii_alphabetic() || b[i + 1] == b'_')))
        {
            i += 1;
        }
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let call = j < b.len() && b[j] == b'(';
        out.push((src[start..i].to_string(), line, call, start - col0));
    }
    out
}

fn builtins() -> HashSet<&'static str> {
    let mut s: HashSet<&'static str> = regorus::unstable::BUILTINS.keys().copied().collect();
    s.extend(["print", "trace"]);
    s
}

/// Whether `path` (after `input.`) exists in the input schema.
fn schema_has(schema: &Value, path: &[&str]) -> bool {
    let mut node = schema;
    for seg in path {
        if let Some(p) = node.get("properties").and_then(|p| p.get(*seg)) {
            node = p;
            continue;
        }
        // Open objects (args, tool_calls, labels, budget): anything below goes.
        return match node.get("additionalProperties") {
            Some(Value::Bool(false)) => false,
            Some(_) => true,
            None => node.get("properties").is_none(),
        };
    }
    true
}

pub fn lint(bundle: &Bundle, strict_input: bool) -> Result<LintReport, BundleError> {
    let schema: Value = serde_json::from_str(include_str!("../../schemas/input.v1.json"))
        .expect("bundled schema is valid");
    let builtins = builtins();
    let mut report = LintReport::default();
    let blanked: Vec<(String, String)> = bundle
        .modules
        .iter()
        .map(|m| (m.path.clone(), blank(&m.text)))
        .collect();
    // Functions the bundle defines itself (rule heads at column 0) and import aliases.
    let mut defined: HashSet<String> = HashSet::new();
    let mut aliases: HashSet<String> = HashSet::new();
    for (_, src) in &blanked {
        for line in src.lines() {
            if let Some(rest) = line.strip_prefix("import ") {
                let rest = rest.trim();
                let alias = match rest.split_once(" as ") {
                    Some((_, a)) => a.trim().to_string(),
                    None => rest.rsplit('.').next().unwrap_or("").to_string(),
                };
                aliases.insert(alias);
            }
        }
        for (name, _, call, col) in refs(src) {
            if call && col == 0 {
                defined.insert(name);
            }
        }
    }
    // A rule and a data document at the same path shadow each other (regorus
    // then evaluates the data, silently): refuse it.
    for (file, src) in &blanked {
        let Some(pkg) = package_of(src) else { continue };
        let node = pkg
            .split('/')
            .filter(|s| !s.is_empty())
            .try_fold(&bundle.data, |v, k| v.get(k));
        let Some(Value::Object(keys)) = node else {
            continue;
        };
        let mut reported = HashSet::new();
        for (name, line, _, col) in refs(src) {
            let head = name.split('.').next().unwrap_or("");
            if col == 0
                && !KEYWORDS.contains(&head)
                && keys.contains_key(head)
                && reported.insert(head.to_string())
            {
                report.errors.push(LintFinding {
                    file: file.clone(),
                    line,
                    message: format!("rule {head} collides with data.{}.{head} from the bundle's data; rename one of them", pkg.replace('/', ".")),
                });
            }
        }
    }
    for (file, src) in &blanked {
        // Decision-log rules (`<root>.log`) see the whole event as input; the
        // policy input is at `input.input`.
        let log_rules = package_of(src).is_some_and(|p| p.ends_with("/log"));
        for (name, line, call, col) in refs(src) {
            let first = name.split('.').next().unwrap_or("");
            if name.starts_with("input.") {
                let skip = if log_rules { 2 } else { 1 };
                if log_rules && !name.starts_with("input.input.") {
                    continue; // event fields: decision_id, result, labels, …
                }
                let path: Vec<&str> = name.split('.').skip(skip).collect();
                if !schema_has(&schema, &path) {
                    let f = LintFinding {
                        file: file.clone(),
                        line,
                        message: format!(
                            "{name} is not in the input schema (gavel schema input); it will always be undefined"
                        ),
                    };
                    if strict_input {
                        report.errors.push(f)
                    } else {
                        report.warnings.push(f)
                    }
                }
                continue;
            }
            if !call
                || col == 0
                || KEYWORDS.contains(&name.as_str())
                || first == "data"
                || first == "input"
                || aliases.contains(first)
                || defined.contains(&name)
                || builtins.contains(name.as_str())
            {
                continue;
            }
            report.errors.push(LintFinding {
                file: file.clone(),
                line,
                message: format!("call to {name}(), a builtin this gavel build does not provide (regorus {}); compute it outside the policy or remove it", "0.14.1"),
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Manifest, RegoModule};

    fn bundle(text: &str) -> Bundle {
        Bundle {
            name: "b".into(),
            source: "b".into(),
            manifest: Manifest::default(),
            modules: vec![RegoModule {
                path: "p.rego".into(),
                text: text.into(),
            }],
            data: serde_json::json!({}),
            digest: String::new(),
            signatures: None,
            files: vec![],
        }
    }

    #[test]
    fn missing_builtins_are_errors_with_file_and_line() {
        let r = lint(&bundle("package x\n\nallow if {\n  http.send({\"url\": \"u\"})\n  # io.jwt.decode(x) in a comment\n  s := \"crypto.sha256(y)\"\n}\n"), false).unwrap();
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert_eq!(
            r.errors[0]
                .to_string()
                .split(':')
                .take(2)
                .collect::<Vec<_>>(),
            vec!["p.rego", "4"]
        );
        assert!(r.errors[0].message.contains("http.send"));
    }

    #[test]
    fn builtins_user_functions_and_imports_pass() {
        let src = "package x\nimport data.lib.helpers as h\n\nmy_fn(a) := upper(a)\n\nallow if {\n  my_fn(\"x\") == \"X\"\n  startswith(input.action.tool, \"read\")\n  h.check(input.user.id)\n  count(input.context.tool_calls) > 0\n  input.action.args.path\n}\n";
        let r = lint(&bundle(src), true).unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }

    #[test]
    fn a_rule_named_like_a_data_key_is_refused() {
        let mut b = bundle("package x\n\nreasons contains \"a\" if true\n");
        b.data = serde_json::json!({"x": {"reasons": {"a": "text"}}});
        let r = lint(&b, false).unwrap();
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert!(r.errors[0].message.contains("collides with data.x.reasons"));
        assert_eq!(r.errors[0].line, 3);
    }

    #[test]
    fn log_rules_see_the_event_as_input() {
        let src = "package x.log\ndrop if input.input.user.id == \"a\"\nmask contains \"/input/x\" if input.result.allow\nmask contains \"/y\" if input.input.user.role\n";
        let r = lint(&bundle(src), false).unwrap();
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].message.contains("input.input.user.role"));
    }

    #[test]
    fn unknown_input_paths_warn_or_refuse() {
        let src = "package x\nallow if input.user.role == \"admin\"\n";
        let r = lint(&bundle(src), false).unwrap();
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].message.contains("input.user.role"));
        assert_eq!(lint(&bundle(src), true).unwrap().errors.len(), 1);
    }
}
