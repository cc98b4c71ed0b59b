//! Redaction of a result, by gavel itself and over the *whole* output (the
//! policy saw a bounded prefix; what it asked to redact must hold
//! everywhere): JSON pointers into `structuredContent` replaced by
//! [`REDACTED`], and every match of the named patterns in the texts
//! replaced by `[REDACTED:<name>]` — in text blocks and in the structured
//! mirror alike. Content blocks that mirror `structuredContent` as JSON are
//! rewritten from the redacted `structuredContent` at the end, so a mirror
//! never keeps what its structured form lost.
//!
//! Overlapping matches (of one pattern or several) are merged into one
//! span, named by the match that starts first; matches are byte ranges
//! that regex places on character boundaries, so no slicing can split a
//! character.

use regex::Regex;
use serde_json::Value;

use super::input::OutputKind;

/// What a redacted value or pointer becomes.
pub const REDACTED: &str = "[REDACTED]";

/// The content blocks of a tool result whose text is `structuredContent`
/// as JSON (compact or reformatted), with whether it was pretty-printed.
pub fn json_mirrors(result: &Value) -> Vec<(usize, bool)> {
    let Some(sc) = result.get("structuredContent") else {
        return vec![];
    };
    let compact = sc.to_string();
    let Some(blocks) = result.get("content").and_then(Value::as_array) else {
        return vec![];
    };
    blocks
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let t = b.get("text")?.as_str()?;
            if t == compact {
                return Some((i, false));
            }
            let looks = t.trim_start().starts_with(['{', '[']);
            (looks && serde_json::from_str::<Value>(t).is_ok_and(|x| x == *sc)).then_some((i, true))
        })
        .collect()
}

/// Rewrites the mirror blocks from the (redacted, filtered)
/// `structuredContent`.
pub fn rewrite_mirrors(result: &mut Value, mirrors: &[(usize, bool)]) {
    let Some(sc) = result.get("structuredContent") else {
        return;
    };
    let text = |pretty: bool| {
        if pretty {
            serde_json::to_string_pretty(sc).unwrap_or_default()
        } else {
            sc.to_string()
        }
    };
    let texts: Vec<(usize, String)> = mirrors.iter().map(|&(i, p)| (i, text(p))).collect();
    for (i, t) in texts {
        if let Some(Value::String(s)) = result.pointer_mut(&format!("/content/{i}/text")) {
            *s = t;
        }
    }
}

/// Replaces the value at each pointer of `structuredContent`; returns how
/// many pointers found a value (in `pointers` order). A pointer to nothing
/// redacts nothing.
pub fn redact_pointers(result: &mut Value, pointers: &[&str]) -> Vec<u64> {
    let Some(sc) = result.get_mut("structuredContent") else {
        return vec![0; pointers.len()];
    };
    pointers
        .iter()
        .map(|p| match sc.pointer_mut(p) {
            Some(v) => {
                *v = Value::String(REDACTED.into());
                1
            }
            None => 0,
        })
        .collect()
}

/// `s` with every match of `patterns` replaced (overlaps merged); `None`
/// when nothing matched. `counts[i]` grows by pattern i's matches.
pub fn redact_text(s: &str, patterns: &[(&str, &Regex)], counts: &mut [u64]) -> Option<String> {
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for (i, (_, re)) in patterns.iter().enumerate() {
        for m in re.find_iter(s) {
            if m.start() < m.end() {
                spans.push((m.start(), m.end(), i));
                counts[i] += 1;
            }
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some((start, mut end, who)) = iter.next() {
        while let Some(&(s2, e2, _)) = iter.peek() {
            if s2 < end {
                end = end.max(e2);
                iter.next();
            } else {
                break;
            }
        }
        out.push_str(&s[at..start]);
        out.push_str(&format!("[REDACTED:{}]", patterns[who].0));
        at = end;
    }
    out.push_str(&s[at..]);
    Some(out)
}

/// Applies `patterns` to every text of `result` (of `kind`): every string
/// under `structuredContent`; `text` of content blocks (not the JSON
/// mirrors, rewritten after), embedded resources, resource contents and
/// prompt messages; a prompt's `description`; completion values; a listed
/// resource's `name`, `title` and `description`; every string of an input
/// round's requests' `params` (messages, URLs, sampling prompts, schema
/// titles and descriptions; not their `_meta`). Returns
/// the matches per pattern, in `patterns` order.
pub fn redact_patterns(
    result: &mut Value,
    kind: OutputKind,
    patterns: &[(&str, &Regex)],
    mirrors: &[(usize, bool)],
) -> Vec<u64> {
    let mut counts = vec![0u64; patterns.len()];
    if !patterns.is_empty() {
        if let Some(sc) = result.get_mut("structuredContent") {
            every_string(sc, &mut |s| redact_text(s, patterns, &mut counts));
        }
        if let Some(Value::Array(list)) = result.pointer_mut(kind.list_pointer()) {
            for (i, item) in list.iter_mut().enumerate() {
                if kind == OutputKind::ToolResult && mirrors.iter().any(|(m, _)| *m == i) {
                    continue;
                }
                if kind == OutputKind::Completion {
                    every_string(item, &mut |s| redact_text(s, patterns, &mut counts));
                    continue;
                }
                if kind == OutputKind::ResourceList {
                    // What a list says of a resource, never its URI: the
                    // address it is read by (filter a resource whose URI
                    // must not be seen).
                    for k in ["name", "title", "description"] {
                        if let Some(v) = item.get_mut(k) {
                            every_string(v, &mut |s| redact_text(s, patterns, &mut counts));
                        }
                    }
                    continue;
                }
                texts_of(item, &mut |s| redact_text(s, patterns, &mut counts));
            }
        }
        if let Some(d) = result.get_mut("description") {
            every_string(d, &mut |s| redact_text(s, patterns, &mut counts));
        }
        if kind == OutputKind::InputRound
            && let Some(Value::Object(requests)) = result.get_mut("inputRequests")
        {
            for request in requests.values_mut() {
                if let Some(Value::Object(params)) = request.get_mut("params") {
                    for (k, v) in params.iter_mut() {
                        if k != "_meta" {
                            every_string(v, &mut |s| redact_text(s, patterns, &mut counts));
                        }
                    }
                }
            }
        }
    }
    counts
}

fn every_string(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::String(s) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| every_string(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| every_string(x, f)),
        _ => {}
    }
}

/// Every `text` string within a block (its own, an embedded resource's, a
/// message's content's).
fn texts_of(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x) {
                    ("text", Value::String(s)) => {
                        if let Some(new) = f(s) {
                            *s = new;
                        }
                    }
                    ("_meta", _) => {}
                    (_, x) => texts_of(x, f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| texts_of(x, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn email() -> Regex {
        Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap()
    }
    fn card() -> Regex {
        Regex::new(r"\b(?:\d[ -]?){13,16}\b").unwrap()
    }

    #[test]
    fn patterns_replace_every_match_and_count_them() {
        let (e, c) = (email(), card());
        let pats = [("email", &e), ("card", &c)];
        let mut counts = [0, 0];
        let out = redact_text(
            "mail ann@example.com or bob@example.org, card 4111 1111 1111 1111.",
            &pats,
            &mut counts,
        )
        .unwrap();
        assert_eq!(
            out,
            "mail [REDACTED:email] or [REDACTED:email], card [REDACTED:card]."
        );
        assert_eq!(counts, [2, 1]);
        assert_eq!(redact_text("nothing here", &pats, &mut counts), None);
    }

    #[test]
    fn overlapping_matches_merge_into_one_span() {
        let a = Regex::new("abc").unwrap();
        let b = Regex::new("bcd").unwrap();
        let all = Regex::new("a.*").unwrap();
        let mut counts = [0, 0];
        assert_eq!(
            redact_text("xabcdy", &[("a", &a), ("b", &b)], &mut counts).unwrap(),
            "x[REDACTED:a]y"
        );
        assert_eq!(counts, [1, 1]);
        let mut counts = [0, 0];
        assert_eq!(
            redact_text("zab", &[("b", &b), ("all", &all)], &mut counts).unwrap(),
            "z[REDACTED:all]"
        );
        // A pattern that matches the empty string redacts nothing (and
        // never loops).
        let empty = Regex::new("x*").unwrap();
        let mut counts = [0];
        assert_eq!(redact_text("abc", &[("e", &empty)], &mut counts), None);
    }

    #[test]
    fn multibyte_text_is_never_split() {
        let any = Regex::new(r"\w").unwrap();
        let mut counts = [0];
        let s = "é€😀a";
        let out = redact_text(s, &[("w", &any)], &mut counts).unwrap();
        assert!(out.contains("€😀"), "{out}");
        let dot = Regex::new(".").unwrap();
        let out = redact_text(s, &[("d", &dot)], &mut [0]).unwrap();
        assert_eq!(out, "[REDACTED:d]".repeat(4), "adjacent spans stay apart");
    }

    #[test]
    fn text_and_structured_mirror_are_both_redacted() {
        let e = email();
        let data =
            json!({"owner": "ann@example.com", "rows": [{"note": "x bob@example.org"}], "id": 7});
        let mut result = json!({
            "content": [
                {"type": "text", "text": data.to_string()},
                {"type": "text", "text": "contact ann@example.com"},
                {"type": "resource", "resource": {"uri": "file:///a", "text": "ann@example.com"}},
            ],
            "structuredContent": data,
            "isError": false,
        });
        let mirrors = json_mirrors(&result);
        assert_eq!(mirrors, [(0, false)]);
        let n = redact_pointers(&mut result, &["/id", "/missing"]);
        assert_eq!(n, [1, 0]);
        let counts = redact_patterns(
            &mut result,
            OutputKind::ToolResult,
            &[("email", &e)],
            &mirrors,
        );
        rewrite_mirrors(&mut result, &mirrors);
        assert_eq!(counts, [4]);
        let text = serde_json::to_string(&result).unwrap();
        assert!(!text.contains("@example."), "{text}");
        let sc = &result["structuredContent"];
        assert_eq!(sc["id"], REDACTED);
        assert_eq!(sc["owner"], "[REDACTED:email]");
        let mirror: Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(
            &mirror, sc,
            "the mirror follows the redacted structuredContent"
        );
    }

    #[test]
    fn a_pretty_mirror_stays_pretty_and_huge_outputs_are_redacted_whole() {
        let e = email();
        let big = format!("{}ann@example.com", "x ".repeat(1 << 20));
        let data = json!({"body": big});
        let mut result = json!({
            "content": [{"type": "text", "text": serde_json::to_string_pretty(&data).unwrap()}],
            "structuredContent": data,
        });
        let mirrors = json_mirrors(&result);
        assert_eq!(mirrors, [(0, true)]);
        let counts = redact_patterns(
            &mut result,
            OutputKind::ToolResult,
            &[("email", &e)],
            &mirrors,
        );
        rewrite_mirrors(&mut result, &mirrors);
        assert_eq!(counts, [1], "the match past every prefix is found");
        let t = result["content"][0]["text"].as_str().unwrap();
        assert!(t.contains('\n') && t.ends_with('}') && !t.contains("ann@"));
    }

    #[test]
    fn other_kinds_redact_their_texts() {
        let e = email();
        let pats = [("email", &e)];
        let mut r = json!({"contents": [{"uri": "file:///a", "text": "ann@example.com"}]});
        redact_patterns(&mut r, OutputKind::ResourceContents, &pats, &[]);
        assert_eq!(r["contents"][0]["text"], "[REDACTED:email]");
        assert_eq!(r["contents"][0]["uri"], "file:///a");
        let mut r = json!({"description": "for ann@example.com", "messages": [{"role": "user", "content": {"type": "text", "text": "ann@example.com"}}]});
        redact_patterns(&mut r, OutputKind::PromptMessages, &pats, &[]);
        assert_eq!(r["messages"][0]["content"]["text"], "[REDACTED:email]");
        assert_eq!(r["description"], "for [REDACTED:email]");
        let mut r = json!({"completion": {"values": ["ann@example.com", "b"], "hasMore": false}});
        redact_patterns(&mut r, OutputKind::Completion, &pats, &[]);
        assert_eq!(r["completion"]["values"], json!(["[REDACTED:email]", "b"]));
    }

    /// An input round's questions are upstream text too: every string of
    /// each request's params, never its method or `_meta`.
    #[test]
    fn an_input_rounds_questions_are_redacted() {
        let e = email();
        let pats = [("email", &e)];
        let mut r = json!({"inputRequests": {
            "ask": {"method": "elicitation/create", "params": {
                "message": "Mail ann@example.com?",
                "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean", "description": "to bob@example.org"}}},
                "_meta": {"who": "ann@example.com"},
            }},
            "llm": {"method": "sampling/createMessage", "params": {
                "messages": [{"role": "user", "content": {"type": "text", "text": "write to ann@example.com"}}],
                "maxTokens": 5,
            }},
        }});
        let counts = redact_patterns(&mut r, OutputKind::InputRound, &pats, &[]);
        assert_eq!(counts, [3]);
        let ask = &r["inputRequests"]["ask"];
        assert_eq!(ask["params"]["message"], "Mail [REDACTED:email]?");
        assert_eq!(
            ask["params"]["requestedSchema"]["properties"]["ok"]["description"],
            "to [REDACTED:email]"
        );
        assert_eq!(ask["params"]["_meta"]["who"], "ann@example.com");
        assert_eq!(ask["method"], "elicitation/create");
        assert_eq!(
            r["inputRequests"]["llm"]["params"]["messages"][0]["content"]["text"],
            "write to [REDACTED:email]"
        );
    }
}
