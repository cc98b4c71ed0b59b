//! `input.output`: what a result rule sees of an upstream's answer, bounded
//! the way arguments are (docs/policy.md, "Result policy"). The answer keeps
//! MCP's own field names; each text is cut to [`TEXT_PREFIX`] bytes (on a
//! character boundary) with its whole size and digest beside it; binary
//! data is never given, only its size and digest; `structuredContent` and
//! `_meta` larger than their bounds become `{size_bytes, sha256,
//! truncated}`; lists keep their first [`MAX_BLOCKS`] entries.
//!
//! The bound is what the *policy* reads. Redaction patterns are applied by
//! gavel to the whole output, never only to this prefix.

use serde_json::{Map, Value, json};

/// What kind of answer a result is (`input.output.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `tools/call`: `content`, `structuredContent`, `isError`, `_meta`.
    ToolResult,
    /// `resources/read`: `contents` (text or blob).
    ResourceContents,
    /// `prompts/get`: `messages`.
    PromptMessages,
    /// `completion/complete`: `completion.values`.
    Completion,
    /// A server's `resources/list` as this session is shown it
    /// (`result::list`): `resources`.
    ResourceList,
    /// An input round (MCP 2026-07-28 MRTR) on its way to a modern host
    /// instead of a result: `inputRequests`, the upstream's questions
    /// (elicitation messages and URLs, sampling prompts, roots requests)
    /// by key, as the host gets them — never the round's `requestState`.
    /// It has no list: a filter finds no items in it.
    InputRound,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::ToolResult => "tool_result",
            OutputKind::ResourceContents => "resource_contents",
            OutputKind::PromptMessages => "prompt_messages",
            OutputKind::Completion => "completion",
            OutputKind::ResourceList => "resource_list",
            OutputKind::InputRound => "input_required",
        }
    }

    /// Where the result's own list is (the items of a `content` filter).
    pub fn list_pointer(self) -> &'static str {
        match self {
            OutputKind::ToolResult => "/content",
            OutputKind::ResourceContents => "/contents",
            OutputKind::PromptMessages => "/messages",
            OutputKind::Completion => "/completion/values",
            OutputKind::ResourceList => "/resources",
            // A map (key → request), never an array: no items.
            OutputKind::InputRound => "/inputRequests",
        }
    }
}

/// A text as the policy sees it: at most this many bytes.
pub const TEXT_PREFIX: usize = 8192;
/// At most this many entries of a result's list.
pub const MAX_BLOCKS: usize = 64;
/// `structuredContent` larger than this (serialized) is digested.
pub const MAX_STRUCTURED: usize = 65536;
/// `_meta` larger than this (serialized) is digested.
pub const MAX_META: usize = 4096;

pub use crate::text::prefix;

fn digest(bytes: &[u8]) -> Value {
    json!({"size_bytes": bytes.len(), "sha256": crate::bundle::canonical::sha256_hex(bytes), "truncated": true})
}

/// `v` itself when its serialization is at most `max` bytes, else its size
/// and digest.
fn capped(v: &Value, max: usize) -> Value {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    if bytes.len() <= max {
        v.clone()
    } else {
        digest(&bytes)
    }
}

/// `input.output` for `result` (the upstream's answer as JSON).
pub fn output(kind: OutputKind, result: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind.as_str()));
    let Some(o) = result.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in o {
        let bounded = match k.as_str() {
            "structuredContent" => capped(v, MAX_STRUCTURED),
            "_meta" => capped(v, MAX_META),
            "content" | "contents" | "messages" | "resources" => list(v),
            "completion" => {
                let mut c = v.clone();
                if let Some(values) = c.get_mut("values") {
                    *values = list(values);
                }
                c
            }
            _ => block(v),
        };
        out.insert(k.clone(), bounded);
    }
    Value::Object(out)
}

/// A result list: its first [`MAX_BLOCKS`] entries, each bounded, and how
/// many were left out.
fn list(v: &Value) -> Value {
    let Some(a) = v.as_array() else {
        return block(v);
    };
    let mut items: Vec<Value> = a.iter().take(MAX_BLOCKS).map(block).collect();
    if a.len() > MAX_BLOCKS {
        items.push(json!({"type": "omitted", "count": a.len() - MAX_BLOCKS}));
    }
    Value::Array(items)
}

/// One block (or any value within one): texts cut with their size and
/// digest beside them, binary data replaced by its size and digest.
fn block(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > TEXT_PREFIX => Value::String(prefix(s, TEXT_PREFIX).into()),
        Value::Array(a) => Value::Array(a.iter().take(MAX_BLOCKS).map(block).collect()),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("data" | "blob", Value::String(s)) => {
                        out.insert(format!("{k}_bytes"), json!(s.len()));
                        out.insert(
                            format!("{k}_sha256"),
                            json!(crate::bundle::canonical::sha256_hex(s.as_bytes())),
                        );
                    }
                    ("text", Value::String(s)) if s.len() > TEXT_PREFIX => {
                        out.insert("text".into(), json!(prefix(s, TEXT_PREFIX)));
                        out.insert("text_bytes".into(), json!(s.len()));
                        out.insert(
                            "text_sha256".into(),
                            json!(crate::bundle::canonical::sha256_hex(s.as_bytes())),
                        );
                        out.insert("text_truncated".into(), json!(true));
                    }
                    ("_meta", x) => {
                        out.insert(k.clone(), capped(x, MAX_META));
                    }
                    _ => {
                        out.insert(k.clone(), block(x));
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_never_split_a_character() {
        let s = "é".repeat(10); // two bytes each
        for max in 0..=s.len() + 1 {
            let p = prefix(&s, max);
            assert!(p.len() <= max && s.starts_with(p));
        }
        assert_eq!(prefix("a€b", 2), "a", "a three-byte character is not cut");
        assert_eq!(prefix("", 5), "");
    }

    #[test]
    fn large_outputs_are_bounded_with_size_and_digest() {
        let big = "x".repeat(TEXT_PREFIX * 3);
        let blocks: Vec<Value> = (0..MAX_BLOCKS + 5)
            .map(|_| json!({"type": "text", "text": big}))
            .collect();
        let result = json!({
            "content": blocks,
            "structuredContent": {"rows": vec![big.clone(); 10]},
            "isError": false,
            "_meta": {"k": big},
        });
        let out = output(OutputKind::ToolResult, &result);
        assert_eq!(out["kind"], "tool_result");
        let content = out["content"].as_array().unwrap();
        assert_eq!(content.len(), MAX_BLOCKS + 1);
        assert_eq!(content[MAX_BLOCKS], json!({"type": "omitted", "count": 5}));
        assert_eq!(content[0]["text"].as_str().unwrap().len(), TEXT_PREFIX);
        assert_eq!(content[0]["text_bytes"], big.len());
        assert_eq!(content[0]["text_truncated"], true);
        assert_eq!(out["structuredContent"]["truncated"], true);
        assert_eq!(out["_meta"]["truncated"], true);
        assert_eq!(out["isError"], false);
        assert!(serde_json::to_vec(&out).unwrap().len() < 2 * MAX_BLOCKS * TEXT_PREFIX);
    }

    #[test]
    fn binary_data_is_never_given() {
        let result = json!({"contents": [{"uri": "file:///a.png", "mimeType": "image/png", "blob": "AAAA"}]});
        let out = output(OutputKind::ResourceContents, &result);
        let c = &out["contents"][0];
        assert!(c.get("blob").is_none());
        assert_eq!(c["blob_bytes"], 4);
        assert_eq!(c["uri"], "file:///a.png");
    }
}
