//! Load-time warning for decision keys gavel does not understand.
//!
//! A decision rule that answers `{"allow": false, "apeal_path": "…"}` is
//! enforced, but the misspelt key is ignored and the agent is never told
//! where to appeal. Where the answer is an object literal (the common way to
//! write one), its keys — and those of a literal `metadata` object in it —
//! are checked against the keys gavel reads, and each other key is a
//! warning with `file:line`. Answers built at run time are checked when they
//! are made (the engine logs unknown keys once per rule and key).

use regorus::unstable::{Expr, Rule, RuleHead};

use super::{LintFinding, package_path, parse_module, ref_prefix};
use crate::bundle::{Bundle, BundleError};

/// The keys a decision may have, and those its `metadata` may have; given
/// by the caller, which owns the decision contract.
pub struct Known<'a> {
    pub decision: &'a [&'a str],
    pub metadata: &'a [&'a str],
}

/// Warnings for unknown literal keys in `bundle`'s definitions of `rule`
/// (a `data.a.b.decision` path).
pub fn unknown_keys(
    bundle: &Bundle,
    rule: &str,
    known: &Known<'_>,
) -> Result<Vec<LintFinding>, BundleError> {
    let path = rule.trim_start_matches("data.");
    let (pkg, name) = path.rsplit_once('.').unwrap_or(("", path));
    let pkg = pkg.replace('.', "/");
    let mut out = Vec::new();
    for m in &bundle.modules {
        let module = parse_module(&bundle.source, &m.path, &m.text, bundle.manifest.rego_v0())?;
        if package_path(&module) != pkg {
            continue;
        }
        for r in &module.policy {
            if let Some(value) = literal_value(r, name) {
                check_object(value, known.decision, "", &m.path, &mut out, known);
            }
        }
    }
    Ok(out)
}

/// The value expression of a `name := …` or `default name := …` rule.
fn literal_value<'a>(r: &'a Rule, name: &str) -> Option<&'a Expr> {
    let (refr, value) = match r {
        Rule::Spec {
            head:
                RuleHead::Compr {
                    refr,
                    assign: Some(a),
                    ..
                },
            ..
        } => (refr, &a.value),
        Rule::Default {
            refr, args, value, ..
        } if args.is_empty() => (refr, value),
        _ => return None,
    };
    (ref_prefix(refr).0.join(".") == name).then_some(value.as_ref())
}

fn check_object(
    e: &Expr,
    keys: &[&str],
    prefix: &str,
    file: &str,
    out: &mut Vec<LintFinding>,
    known: &Known<'_>,
) {
    let Expr::Object { fields, .. } = e else {
        return;
    };
    for (span, k, v) in fields {
        let key = match k.as_ref() {
            Expr::String { value, .. } | Expr::RawString { value, .. } => match value.as_string() {
                Ok(s) => s.to_string(),
                Err(_) => continue,
            },
            _ => continue,
        };
        if prefix.is_empty() && key == "metadata" {
            check_object(v, known.metadata, "metadata.", file, out, known);
        } else if !keys.contains(&key.as_str()) {
            out.push(LintFinding {
                file: file.to_string(),
                line: span.line as usize,
                message: format!(
                    "the decision key {:?} is not one gavel reads, so it is ignored: \
                     a decision has {} (metadata may hold {}); see schemas/decision.v1.json",
                    format!("{prefix}{key}"),
                    known.decision.join(", "),
                    known.metadata.join(", ")
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: Known<'static> = Known {
        decision: &["allow", "reasons", "appeal_path", "metadata"],
        metadata: &["policy_version"],
    };

    fn bundle(text: &str) -> Bundle {
        crate::bundle::one_module_bundle(text, serde_json::json!({}))
    }

    #[test]
    fn misspelt_and_invented_keys_are_warned_with_their_line() {
        let src = "package p\n\ndefault decision := {\"allow\": false, \"apeal_path\": \"x\"}\n\ndecision := {\n  \"allow\": true,\n  \"metadata\": {\"policy_version\": \"1\", \"owner\": \"t\"},\n} if input.ok\n\nother := {\"zzz\": 1}\n";
        let w = unknown_keys(&bundle(src), "data.p.decision", &KNOWN).unwrap();
        let got: Vec<(usize, bool)> = w
            .iter()
            .map(|f| (f.line, f.message.contains("\"apeal_path\"")))
            .collect();
        assert_eq!(got, vec![(3, true), (7, false)], "{w:?}");
        assert!(
            w[1].message.contains("\"metadata.owner\""),
            "{}",
            w[1].message
        );
    }

    #[test]
    fn known_keys_and_computed_answers_are_quiet() {
        let src = "package p\n\ndecision := {\"allow\": true, \"reasons\": [], \"metadata\": {\"policy_version\": \"2\"}}\n\ndecision := object.union({\"allow\": false}, input.extra) if input.x\n";
        assert!(
            unknown_keys(&bundle(src), "data.p.decision", &KNOWN)
                .unwrap()
                .is_empty()
        );
    }
}
