//! Per-item filtering of a result: the items a filter names (`answer::Items`)
//! read from the result with the metadata the per-item rule sees, and the
//! result rewritten without the items it dropped. Gathering and applying
//! walk the result in the same order, so the n-th keep flag is the n-th
//! item's.
//!
//! Bounded: at most [`MAX_ITEMS`] items per filter; a result with more is
//! withheld whole (fail closed — an item the rule never saw is never
//! shown). Each item's text is cut to [`ITEM_TEXT`] bytes for the rule.

use serde_json::{Value, json};

use super::answer::Items;
use super::input::{OutputKind, prefix};

/// At most this many items are evaluated per filter.
pub const MAX_ITEMS: usize = 1000;
/// An item's text as the per-item rule sees it: at most this many bytes.
pub const ITEM_TEXT: usize = 1024;
/// A structured element larger than this (serialized) is given to the rule
/// as `{size_bytes, sha256, truncated}`.
const ITEM_VALUE: usize = 4096;

#[derive(Debug, PartialEq)]
pub enum ItemError {
    /// More items than [`MAX_ITEMS`] (how many).
    TooMany(usize),
    /// The result is not what the filter reads (why).
    Shape(String),
}

/// What items are read with.
pub struct ItemCx<'a> {
    pub kind: OutputKind,
    /// An item's path → its `canonical_path` and `data_classes`.
    pub classify: &'a dyn Fn(&str) -> (Value, Vec<String>),
    /// The request's `path` argument: the base of a tree's entries.
    pub base_path: Option<&'a str>,
    /// Content blocks that mirror `structuredContent` as JSON: they follow
    /// it and are not texts of their own.
    pub mirrors: &'a [usize],
}

impl ItemCx<'_> {
    fn with_path(&self, mut meta: Value, path: &str) -> Value {
        let (canonical, classes) = (self.classify)(path);
        meta["path"] = json!(path);
        meta["canonical_path"] = canonical;
        meta["data_classes"] = json!(classes);
        meta
    }
}

/// The JSON pointers of the texts of `result` (lines and trees are read
/// from these): content text blocks (and embedded resource texts) but not
/// the blocks mirroring `structuredContent`, resource texts, prompt message
/// texts, completion values.
pub fn text_pointers(result: &Value, cx: &ItemCx) -> Vec<String> {
    let list = cx.kind.list_pointer();
    let Some(items) = result.pointer(list).and_then(Value::as_array) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let here = format!("{list}/{i}");
        let candidates: &[&str] = match cx.kind {
            OutputKind::ToolResult if cx.mirrors.contains(&i) => &[],
            OutputKind::ToolResult => &["/text", "/resource/text"],
            OutputKind::ResourceContents => &["/text"],
            OutputKind::PromptMessages => &["/content/text", "/content/resource/text"],
            OutputKind::Completion => &[""],
            // A listed resource has no text: only its own fields.
            OutputKind::ResourceList => &[],
            OutputKind::InputRound => &[],
        };
        for c in candidates {
            if v.pointer(c).is_some_and(Value::is_string) {
                out.push(format!("{here}{c}"));
            }
        }
    }
    out
}

/// The items of `items` in `result`, each as the per-item rule's
/// `input.item`.
pub fn gather(result: &Value, items: &Items, cx: &ItemCx) -> Result<Vec<Value>, ItemError> {
    let mut out = Vec::new();
    let mut push = |v: Value| {
        out.push(v);
        if out.len() > MAX_ITEMS {
            Err(ItemError::TooMany(out.len()))
        } else {
            Ok(())
        }
    };
    match items {
        Items::Content => {
            let list = result.pointer(cx.kind.list_pointer());
            for (i, v) in list
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                push(block_meta(i, v, cx))?;
            }
        }
        Items::Lines => {
            let mut n = 0;
            for (b, p) in text_pointers(result, cx).iter().enumerate() {
                let text = result.pointer(p).and_then(Value::as_str).unwrap_or("");
                for line in text.split('\n') {
                    let meta = json!({"kind": "line", "index": n, "text_index": b, "text": prefix(line, ITEM_TEXT)});
                    push(cx.with_path(meta, line.trim()))?;
                    n += 1;
                }
            }
        }
        Items::Tree => {
            let mut n = 0;
            for p in text_pointers(result, cx) {
                let text = result.pointer(&p).and_then(Value::as_str).unwrap_or("");
                let tree = parse_tree(text, &p)?;
                walk(&tree, "", 0, &mut |e, rel, depth| {
                    let full = match cx.base_path {
                        Some(b) if !b.is_empty() => format!("{}/{rel}", b.trim_end_matches('/')),
                        _ => rel.to_string(),
                    };
                    let meta = json!({
                        "kind": "entry", "index": n, "name": e.get("name"), "type": e.get("type"),
                        "relative_path": rel, "depth": depth,
                    });
                    n += 1;
                    push(cx.with_path(meta, &full))
                })?;
            }
        }
        Items::Structured(ptr) => {
            for (i, v) in structured_array(result, ptr)?.iter().enumerate() {
                let mut meta = json!({"kind": "element", "index": i, "value": bounded(v)});
                let path = ["path", "uri", "file"]
                    .iter()
                    .find_map(|k| v.get(k).and_then(Value::as_str));
                if let Some(path) = path {
                    meta = cx.with_path(meta, path);
                }
                push(meta)?;
            }
        }
    }
    Ok(out)
}

/// `result` without the items whose flag in `keep` is false (`keep` in
/// [`gather`]'s order). Strings in `structuredContent` that mirrored a
/// rewritten text are rewritten the same way. Returns how many were dropped.
pub fn apply(
    result: &mut Value,
    items: &Items,
    keep: &[bool],
    cx: &ItemCx,
) -> Result<usize, ItemError> {
    let dropped = keep.iter().filter(|k| !**k).count();
    if dropped == 0 {
        return Ok(0);
    }
    match items {
        Items::Content => {
            if let Some(Value::Array(a)) = result.pointer_mut(cx.kind.list_pointer()) {
                let mut flags = keep.iter();
                a.retain(|_| *flags.next().unwrap_or(&false));
            }
        }
        Items::Lines => {
            let mut flags = keep.iter();
            rewrite_texts(result, cx, |text| {
                let kept: Vec<&str> = text
                    .split('\n')
                    .filter(|_| *flags.next().unwrap_or(&false))
                    .collect();
                Ok(kept.join("\n"))
            })?;
        }
        Items::Tree => {
            let mut flags = keep.iter();
            rewrite_texts(result, cx, |text| {
                let mut tree = parse_tree(text, "a text")?;
                prune(&mut tree, &mut flags);
                let out = if text.contains('\n') {
                    serde_json::to_string_pretty(&tree)
                } else {
                    serde_json::to_string(&tree)
                };
                out.map_err(|e| ItemError::Shape(e.to_string()))
            })?;
        }
        Items::Structured(ptr) => {
            structured_array(result, ptr)?;
            if let Some(Value::Array(a)) = result
                .get_mut("structuredContent")
                .and_then(|s| s.pointer_mut(ptr))
            {
                let mut flags = keep.iter();
                a.retain(|_| *flags.next().unwrap_or(&false));
            }
        }
    }
    Ok(dropped)
}

/// Rewrites every text (in [`text_pointers`] order) with `f`, and each
/// string of `structuredContent` equal to an original text with the same
/// rewrite (the `{content: text}` mirror server-filesystem sends).
fn rewrite_texts(
    result: &mut Value,
    cx: &ItemCx,
    mut f: impl FnMut(&str) -> Result<String, ItemError>,
) -> Result<(), ItemError> {
    let mut changed: Vec<(String, String)> = Vec::new();
    for p in text_pointers(result, cx) {
        let Some(Value::String(s)) = result.pointer_mut(&p) else {
            continue;
        };
        let new = f(s)?;
        if new != *s {
            let old = std::mem::replace(s, new.clone());
            changed.push((old, new));
        }
    }
    if let Some(sc) = result.get_mut("structuredContent") {
        replace_strings(sc, &changed);
    }
    Ok(())
}

fn replace_strings(v: &mut Value, changed: &[(String, String)]) {
    match v {
        Value::String(s) => {
            if let Some((_, new)) = changed.iter().find(|(old, _)| old == s) {
                *s = new.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, changed)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, changed)),
        _ => {}
    }
}

/// The metadata of one entry of a result's own list.
fn block_meta(i: usize, v: &Value, cx: &ItemCx) -> Value {
    let listed = cx.kind == OutputKind::ResourceList;
    let mut m = json!({"kind": if listed { "resource" } else { "block" }, "index": i});
    if let Some(s) = v.as_str() {
        m["text"] = json!(prefix(s, ITEM_TEXT));
        return cx.with_path(m, s);
    }
    // A listed resource is judged by everything the list says of it.
    let listed_keys: &[&str] = if listed {
        &["description", "size", "_meta"]
    } else {
        &[]
    };
    for k in ["type", "role", "name", "title", "mimeType", "annotations"]
        .iter()
        .chain(listed_keys)
    {
        if let Some(x) = v.get(*k) {
            m[*k] = bounded(x);
        }
    }
    let text = ["/text", "/content/text", "/resource/text"]
        .iter()
        .find_map(|p| v.pointer(p).and_then(Value::as_str));
    if let Some(t) = text {
        m["text"] = json!(prefix(t, ITEM_TEXT));
    }
    let uri = ["/uri", "/resource/uri", "/content/resource/uri"]
        .iter()
        .find_map(|p| v.pointer(p).and_then(Value::as_str));
    match uri {
        Some(u) => {
            m["uri"] = json!(u);
            cx.with_path(m, u)
        }
        None => m,
    }
}

/// A value as an item carries it: itself when small, else its size and digest.
fn bounded(v: &Value) -> Value {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    if bytes.len() <= ITEM_VALUE {
        return v.clone();
    }
    json!({"size_bytes": bytes.len(), "sha256": crate::bundle::canonical::sha256_hex(&bytes), "truncated": true})
}

/// The array at `ptr` in `structuredContent` (none there: no items); a
/// value that is not an array is an error.
fn structured_array<'a>(result: &'a Value, ptr: &str) -> Result<&'a [Value], ItemError> {
    match result.get("structuredContent").and_then(|s| s.pointer(ptr)) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(ItemError::Shape(format!(
            "structuredContent{ptr} is not an array (a {}); a filter of items \"structured\" reads an array",
            kind_name(other)
        ))),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A text as a tree: a JSON list of entries (or one entry), each an object
/// with `name` and, for a directory, `children`.
fn parse_tree(text: &str, where_: &str) -> Result<Value, ItemError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        ItemError::Shape(format!(
            "{where_} is not a JSON tree ({e}); a filter of items \"tree\" reads [{{name, type, children}}]"
        ))
    })?;
    match &v {
        Value::Array(_) | Value::Object(_) => Ok(v),
        other => Err(ItemError::Shape(format!(
            "{where_} is a JSON {}, not a tree of entries",
            kind_name(other)
        ))),
    }
}

/// Depth first, each entry before its children, with its path relative to
/// the tree's root (names joined by `/`).
fn walk(
    v: &Value,
    parent: &str,
    depth: usize,
    f: &mut dyn FnMut(&Value, &str, usize) -> Result<(), ItemError>,
) -> Result<(), ItemError> {
    let entries: &[Value] = match v {
        Value::Array(a) => a,
        one => std::slice::from_ref(one),
    };
    for e in entries {
        if !e.is_object() {
            return Err(ItemError::Shape(format!(
                "a tree entry must be an object {{name, type, children}}, not a {}",
                kind_name(e)
            )));
        }
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        let rel = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        };
        f(e, &rel, depth)?;
        if let Some(children) = e.get("children") {
            if !children.is_array() {
                return Err(ItemError::Shape(format!(
                    "the children of tree entry {rel:?} are not a list"
                )));
            }
            walk(children, &rel, depth + 1, f)?;
        }
    }
    Ok(())
}

/// Removes the dropped entries (with their subtrees, whose flags are
/// consumed too), in [`walk`]'s order.
fn prune(v: &mut Value, flags: &mut dyn Iterator<Item = &bool>) {
    match v {
        Value::Array(list) => prune_list(list, flags),
        one => {
            if *flags.next().unwrap_or(&false) {
                if let Some(Value::Array(c)) = one.get_mut("children") {
                    prune_list(c, flags);
                }
            } else {
                skip(one, flags);
                *one = json!([]);
            }
        }
    }
}

fn prune_list(list: &mut Vec<Value>, flags: &mut dyn Iterator<Item = &bool>) {
    list.retain_mut(|e| {
        let keep = *flags.next().unwrap_or(&false);
        if keep {
            if let Some(Value::Array(c)) = e.get_mut("children") {
                prune_list(c, &mut *flags);
            }
        } else {
            skip(e, &mut *flags);
        }
        keep
    });
}

/// Consumes the flags of an entry's descendants.
fn skip(e: &Value, flags: &mut dyn Iterator<Item = &bool>) {
    if let Some(Value::Array(c)) = e.get("children") {
        for x in c {
            flags.next();
            skip(x, flags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx<'a>(kind: OutputKind, classify: &'a dyn Fn(&str) -> (Value, Vec<String>)) -> ItemCx<'a> {
        ItemCx {
            kind,
            classify,
            base_path: Some("root"),
            mirrors: &[],
        }
    }

    fn secret(p: &str) -> (Value, Vec<String>) {
        let c = if p.contains("secret") {
            vec!["secret".to_string()]
        } else {
            vec![]
        };
        (json!(p), c)
    }

    /// Keeps the items the metadata does not mark secret.
    fn keep(metas: &[Value]) -> Vec<bool> {
        metas
            .iter()
            .map(|m| m["data_classes"] != json!(["secret"]))
            .collect()
    }

    #[test]
    fn a_tree_entry_dropped_takes_its_subtree_and_paths_join_the_base() {
        let c = cx(OutputKind::ToolResult, &secret);
        let tree = json!({"name": "top", "type": "directory", "children": [
            {"name": "secret", "children": [{"name": "a"}, {"name": "b", "children": [{"name": "c"}]}]},
            {"name": "open", "children": [{"name": "secret.txt"}, {"name": "x"}]}]});
        let mut r = json!({"content": [{"type": "text", "text": tree.to_string()}]});
        let metas = gather(&r, &Items::Tree, &c).unwrap();
        let paths: Vec<&str> = metas.iter().map(|m| m["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "root/top",
                "root/top/secret",
                "root/top/secret/a",
                "root/top/secret/b",
                "root/top/secret/b/c",
                "root/top/open",
                "root/top/open/secret.txt",
                "root/top/open/x"
            ]
        );
        let k = keep(&metas);
        assert_eq!(apply(&mut r, &Items::Tree, &k, &c).unwrap(), 5);
        let out: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"name": "top", "type": "directory", "children": [{"name": "open", "children": [{"name": "x"}]}]})
        );
    }

    #[test]
    fn what_is_not_a_tree_fails_and_every_list_kind_filters() {
        let c = cx(OutputKind::ToolResult, &secret);
        for bad in ["not json", "3", "[1]", r#"[{"name": "a", "children": 5}]"#] {
            let r = json!({"content": [{"type": "text", "text": bad}]});
            assert!(
                matches!(gather(&r, &Items::Tree, &c), Err(ItemError::Shape(_))),
                "{bad}"
            );
        }
        let r = json!({"structuredContent": {"hits": 3}});
        assert!(gather(&r, &Items::Structured("/hits".into()), &c).is_err());
        assert_eq!(
            gather(&r, &Items::Structured("/none".into()), &c).unwrap(),
            Vec::<Value>::new()
        );
        for (kind, mut r, want) in [
            (
                OutputKind::Completion,
                json!({"completion": {"values": ["a", "secret-b"]}}),
                json!({"completion": {"values": ["a"]}}),
            ),
            (
                OutputKind::ResourceContents,
                json!({"contents": [{"uri": "file:///secret", "text": "x"}, {"uri": "file:///y", "text": "y"}]}),
                json!({"contents": [{"uri": "file:///y", "text": "y"}]}),
            ),
            (
                OutputKind::PromptMessages,
                json!({"messages": [{"role": "user", "content": {"type": "resource", "resource": {"uri": "secret://a", "text": "t"}}}, {"role": "user", "content": {"type": "text", "text": "ok"}}]}),
                json!({"messages": [{"role": "user", "content": {"type": "text", "text": "ok"}}]}),
            ),
        ] {
            let c = cx(kind, &secret);
            let metas = gather(&r, &Items::Content, &c).unwrap();
            apply(&mut r, &Items::Content, &keep(&metas), &c).unwrap();
            assert_eq!(r, want, "{kind:?}");
        }
    }

    #[test]
    fn the_item_bound_counts_every_item_and_texts_are_cut() {
        let c = cx(OutputKind::ToolResult, &secret);
        let lines = vec!["é".repeat(ITEM_TEXT); MAX_ITEMS + 1].join("\n");
        let r = json!({"content": [{"type": "text", "text": lines}]});
        assert_eq!(
            gather(&r, &Items::Lines, &c),
            Err(ItemError::TooMany(MAX_ITEMS + 1))
        );
        let r = json!({"content": [{"type": "text", "text": "é".repeat(ITEM_TEXT)}]});
        let metas = gather(&r, &Items::Lines, &c).unwrap();
        assert!(metas[0]["text"].as_str().unwrap().len() <= ITEM_TEXT);
    }
}
