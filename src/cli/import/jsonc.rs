//! JSON with comments and trailing commas — what VS Code (`mcp.json`,
//! `settings.json`), Zed, and Gemini CLI read — through `jsonc-parser`
//! (dprint's), whose concrete syntax tree also lets `gavel install` rewrite
//! one object of such a file and keep every comment around it.
//!
//! Only JSONC's two extensions are accepted: no single quotes, bare words or
//! hexadecimal numbers (the editors do not write them either), and nesting is
//! bounded before the recursive parser sees the text.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstRootNode};
use serde_json::Value;

/// Deeper than any host config; the parser recurses per level.
const MAX_DEPTH: usize = 64;

fn options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

/// The nesting depth of `text`'s arrays and objects (strings and comments
/// skipped), stopping early past [`MAX_DEPTH`].
fn depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && max <= MAX_DEPTH {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// The concrete syntax tree of `text` (for rewriting it in place).
pub fn tree(text: &str) -> Result<CstRootNode, String> {
    if depth(text) > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    CstRootNode::parse(text, &options()).map_err(|e| {
        format!(
            "line {}, column {}: {}",
            e.line_display(),
            e.column_display(),
            e.kind()
        )
    })
}

/// `text` as a JSON value; comments and trailing commas allowed.
pub fn parse(text: &str) -> Result<Value, String> {
    let root = tree(text)?;
    root.to_serde_value()
        .ok_or_else(|| "the file holds no JSON value".to_string())
}

/// A JSON value as the tree's input (numbers keep their text).
pub fn input(v: &Value) -> CstInputValue {
    match v {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(a) => CstInputValue::Array(a.iter().map(input).collect()),
        Value::Object(o) => {
            // An entry reads as a person writes it: type, command, args first.
            let rank = |k: &str| ["type", "command", "args"].iter().position(|x| *x == k);
            let mut props: Vec<_> = o.iter().collect();
            props.sort_by_key(|(k, _)| rank(k).unwrap_or(usize::MAX));
            CstInputValue::Object(
                props
                    .into_iter()
                    .map(|(k, v)| (k.clone(), input(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas() {
        let v = parse(
            r#"// VS Code user settings
            {
              /* block */ "mcp": {"servers": {"a": {"command": "x", "args": ["1", "//not a comment",],},},},
            }"#,
        )
        .unwrap();
        assert_eq!(v["mcp"]["servers"]["a"]["args"][1], "//not a comment");
    }

    #[test]
    fn errors_name_the_place_and_bound_the_depth() {
        let e = parse("{\n  \"a\": 'single'\n}").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().contains("nested deeper"));
        // Brackets inside strings and comments do not count.
        let text = format!(
            "{{\"a\": \"{}\" /* {} */}}",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(parse(&text).is_ok());
        assert!(parse("").is_err());
    }
}
