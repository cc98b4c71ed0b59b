//! The dotted field (`servers.fs.args`) a byte offset of servers.toml falls
//! in. toml's deserializer reports a wrong type, an unknown or a missing key
//! with a span but without the key path, so an error of the typed parse
//! (`raw.rs`) would not name the field the way gavel's own checks do; this
//! reads the document once more, untyped, for the keys and their spans.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// A TOML document reduced to its keys (with their spans) and nesting.
enum Node {
    Table(Vec<(Spanned<String>, Node)>),
    Array(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        loop {
            // A datetime is a map whose one key carries no span: a value.
            let Ok(key) = a.next_key::<Spanned<String>>() else {
                return Ok(Node::Leaf);
            };
            let Some(key) = key else { break };
            entries.push((key, a.next_value::<Node>()?));
        }
        Ok(Node::Table(entries))
    }
}

/// The dotted path of the key an error at `offset` belongs to: the last key
/// that starts at or before it (a value follows its key), or, for an error
/// reported on a `[table]` / `[[array]]` header, the table it names.
pub(super) fn field_at(text: &str, offset: usize) -> Option<String> {
    let root: Node = toml::from_str(text).ok()?;
    let mut keys = Vec::new();
    collect(&root, "", &mut keys);
    let offset = offset.min(text.len());
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let header = text[offset..line_end].trim_start().starts_with('[')
        && text[..offset]
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.trim().is_empty());
    let best = if header {
        keys.iter()
            .filter(|(start, _)| (offset..line_end).contains(start))
            .max_by_key(|(start, _)| *start)
    } else {
        keys.iter()
            .filter(|(start, _)| *start <= offset)
            .max_by_key(|(start, _)| *start)
    };
    best.map(|(_, path)| path.clone())
}

fn collect(node: &Node, prefix: &str, out: &mut Vec<(usize, String)>) {
    match node {
        Node::Table(entries) => {
            for (key, value) in entries {
                let name = key.get_ref();
                let bare = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let name = if bare {
                    name.clone()
                } else {
                    format!("{name:?}")
                };
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                out.push((key.span().start, path.clone()));
                collect(value, &path, out);
            }
        }
        Node::Array(items) => items.iter().for_each(|i| collect(i, prefix, out)),
        Node::Leaf => {}
    }
}
