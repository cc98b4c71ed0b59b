//! One layer's answer to its result rule (contract `result.v1`,
//! schemas/result.v1.json), read strictly, and the layers' answers
//! combined. Every shape gavel does not understand is an error — an unknown
//! key too (a misspelt `redcat` must not let data through): the result is
//! then withheld.
//!
//! Combination (docs/policy.md): any layer's `deny` wins, override layers
//! included — an override waives request reasons, never a result denial
//! (the call has happened; what it returned is not the requester's to
//! waive); redactions and filters of every layer accumulate.

use serde_json::Value;

/// At most this many entries in one list of an answer.
const MAX_LIST: usize = 64;
/// At most this many bytes in one string of an answer.
const MAX_STRING: usize = 1024;

/// What a filter's items are (`filter.items`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Items {
    /// The result's own list: a tool result's content blocks, a resource's
    /// contents, a prompt's messages, a completion's values.
    Content,
    /// Each line of each text (content text blocks, resource texts, prompt
    /// message texts), and the same in a `structuredContent` string that
    /// mirrors a text.
    Lines,
    /// The entries of a JSON tree in each text (`[{name, type,
    /// children: [...]}]`, as server-filesystem's `directory_tree` answers):
    /// an entry dropped takes its subtree with it.
    Tree,
    /// The elements of the array at a JSON pointer in `structuredContent`.
    Structured(String),
}

impl Items {
    pub fn as_str(&self) -> &str {
        match self {
            Items::Content => "content",
            Items::Lines => "lines",
            Items::Tree => "tree",
            Items::Structured(_) => "structured",
        }
    }
}

/// One layer's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerAnswer {
    pub deny: bool,
    pub reasons: Vec<String>,
    pub remediation: Option<String>,
    /// JSON pointers into `structuredContent` whose values are replaced.
    pub pointers: Vec<String>,
    /// Names of patterns the layer's bundle declares (`result_patterns`).
    pub patterns: Vec<String>,
    pub filters: Vec<Items>,
}

/// `v` as a layer's answer, or why it is not one.
pub fn parse(v: Value) -> Result<LayerAnswer, String> {
    let o = match v {
        Value::Object(o) => o,
        Value::Null => {
            return Err("the result rule is undefined for this result; give it a default (`default result := {}` passes)".into());
        }
        other => return Err(format!("a result answer must be an object, not {other}")),
    };
    let mut a = LayerAnswer::default();
    for (k, v) in o {
        match k.as_str() {
            "deny" => a.deny = v.as_bool().ok_or("deny must be a boolean")?,
            "reasons" => a.reasons = strings(&v, "reasons")?,
            "remediation" => a.remediation = Some(string(&v, "remediation")?),
            "redact" => redact(v, &mut a)?,
            "filter" => a.filters = filters(v)?,
            other => {
                return Err(format!(
                    "unknown key {other:?} in a result answer (known: deny, reasons, remediation, redact, filter)"
                ));
            }
        }
    }
    Ok(a)
}

fn string(v: &Value, what: &str) -> Result<String, String> {
    match v.as_str() {
        Some(s) if s.len() <= MAX_STRING => Ok(s.to_string()),
        Some(s) => Err(format!(
            "{what} is {} bytes long; at most {MAX_STRING}",
            s.len()
        )),
        None => Err(format!("{what} must be a string, not {v}")),
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("{what} must be a list of strings, not {v}"))?;
    if a.len() > MAX_LIST {
        return Err(format!(
            "{what} has {} entries; at most {MAX_LIST}",
            a.len()
        ));
    }
    a.iter().map(|s| string(s, what)).collect()
}

fn redact(v: Value, a: &mut LayerAnswer) -> Result<(), String> {
    let Value::Object(o) = v else {
        return Err(format!(
            "redact must be an object {{pointers: [...], patterns: [...]}}, not {v}"
        ));
    };
    for (k, v) in o {
        match k.as_str() {
            "pointers" => {
                a.pointers = strings(&v, "redact.pointers")?;
                for p in &a.pointers {
                    check_pointer(p)?;
                }
            }
            "patterns" => a.patterns = strings(&v, "redact.patterns")?,
            other => {
                return Err(format!(
                    "unknown key {other:?} in redact (known: pointers, patterns)"
                ));
            }
        }
    }
    Ok(())
}

/// A JSON pointer (RFC 6901): empty (the whole value) or `/`-separated,
/// `~` only as `~0` or `~1`.
pub fn check_pointer(p: &str) -> Result<(), String> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(format!(
            "{p:?} is not a JSON pointer: it must be empty or start with \"/\""
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{p:?} is not a JSON pointer: \"~\" must be written \"~0\" (and \"/\" in a key \"~1\")"
            ));
        }
    }
    Ok(())
}

/// `filter`: one `{items, pointer?}` object or a list of them.
fn filters(v: Value) -> Result<Vec<Items>, String> {
    let list = match v {
        Value::Array(a) if a.len() <= MAX_LIST => a,
        Value::Array(a) => {
            return Err(format!(
                "filter has {} entries; at most {MAX_LIST}",
                a.len()
            ));
        }
        one @ Value::Object(_) => vec![one],
        other => {
            return Err(format!(
                "filter must be {{\"items\": \"content|lines|tree|structured\"}} or a list of them, not {other}"
            ));
        }
    };
    let mut out: Vec<Items> = Vec::new();
    for f in list {
        let items = filter(f)?;
        if !out.contains(&items) {
            out.push(items);
        }
    }
    Ok(out)
}

fn filter(v: Value) -> Result<Items, String> {
    let Value::Object(o) = v else {
        return Err(format!(
            "a filter must be an object {{\"items\": …}}, not {v}"
        ));
    };
    if let Some(k) = o.keys().find(|k| *k != "items" && *k != "pointer") {
        return Err(format!(
            "unknown key {k:?} in a filter (known: items, pointer)"
        ));
    }
    let pointer = o
        .get("pointer")
        .map(|p| string(p, "filter.pointer"))
        .transpose()?;
    let items = match (o.get("items").and_then(Value::as_str), pointer) {
        (Some("content"), None) => Items::Content,
        (Some("lines"), None) => Items::Lines,
        (Some("tree"), None) => Items::Tree,
        (Some("structured"), Some(p)) => {
            check_pointer(&p)?;
            Items::Structured(p)
        }
        (Some("structured"), None) => {
            return Err("a filter of items \"structured\" needs a pointer to the array in structuredContent".into());
        }
        (Some(i @ ("content" | "lines" | "tree")), Some(_)) => {
            return Err(format!(
                "a filter of items {i:?} takes no pointer (only \"structured\" does)"
            ));
        }
        (other, _) => {
            return Err(format!(
                "filter.items must be \"content\", \"lines\", \"tree\" or \"structured\", not {}",
                other.map_or_else(|| "absent".to_string(), |s| format!("{s:?}"))
            ));
        }
    };
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_answer_passes_and_a_full_one_is_read() {
        assert_eq!(parse(json!({})).unwrap(), LayerAnswer::default());
        let a = parse(json!({
            "deny": false,
            "reasons": ["pii"],
            "remediation": "ask",
            "redact": {"pointers": ["/a/0", "", "/x~1y"], "patterns": ["email"]},
            "filter": [{"items": "lines"}, {"items": "structured", "pointer": "/results"}, {"items": "lines"}],
        }))
        .unwrap();
        assert_eq!(a.pointers, ["/a/0", "", "/x~1y"]);
        assert_eq!(a.patterns, ["email"]);
        assert_eq!(
            a.filters,
            [Items::Lines, Items::Structured("/results".into())],
            "a repeated filter counts once"
        );
        assert_eq!(
            parse(json!({"filter": {"items": "tree"}})).unwrap().filters,
            [Items::Tree]
        );
        assert!(parse(json!({"deny": true})).unwrap().deny);
    }

    #[test]
    fn every_wrong_shape_fails() {
        let long = "x".repeat(MAX_STRING + 1);
        let many: Vec<String> = (0..=MAX_LIST).map(|i| i.to_string()).collect();
        for bad in [
            Value::Null,
            json!(true),
            json!([]),
            json!("pass"),
            json!({"allow": true}),
            json!({"deny": "yes"}),
            json!({"reasons": "pii"}),
            json!({"reasons": [1]}),
            json!({"reasons": many}),
            json!({"remediation": 3}),
            json!({"remediation": long}),
            json!({"redact": []}),
            json!({"redact": {"pointer": ["/a"]}}),
            json!({"redact": {"pointers": "/a"}}),
            json!({"redact": {"pointers": ["a/b"]}}),
            json!({"redact": {"pointers": ["/a~2"]}}),
            json!({"redact": {"pointers": ["/a~"]}}),
            json!({"redact": {"patterns": [null]}}),
            json!({"filter": true}),
            json!({"filter": "lines"}),
            json!({"filter": {}}),
            json!({"filter": {"items": "words"}}),
            json!({"filter": {"items": "lines", "pointer": "/a"}}),
            json!({"filter": {"items": "structured"}}),
            json!({"filter": {"items": "structured", "pointer": "results"}}),
            json!({"filter": {"items": "content", "rule": "x"}}),
            json!({"filter": [{"items": "lines"}, 3]}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad} must fail closed");
        }
    }
}
