//! The path strings an upstream's answer names, so that the data classes of
//! what a session *saw* follow the same canonical path rules as the classes
//! of what it asked for (`engine/classify.rs`, `paths`).
//!
//! An answer is walked as JSON (text blocks, `structuredContent`, resource
//! contents; a text that is itself JSON is walked too, bounded in depth).
//! Candidates, each later classified by every spelling `paths::readings`
//! accepts:
//! - a line of text that looks like a path on its own (it contains `/` or
//!   `\`, or starts with `~`), with a trailing `:` dropped (`search_files`
//!   prints one full path a line, `read_multiple_files` heads each file with
//!   `path:`), and every whitespace-separated word of a line that contains
//!   `/` or `\` (quotes and brackets around it dropped);
//! - a listing entry (`[FILE] name`, `[DIR] name`, with or without the size
//!   `list_directory_with_sizes` appends) joined to each path the request
//!   named (the directory listed);
//! - a resource's `uri` (resource contents, embedded resources, links),
//!   whatever its spelling;
//! - a tree node (`{"name", "type": "file"|"directory", "children"}`, as
//!   `directory_tree` answers) joined to its parents and the request's path.
//!
//! A bare word in prose is not a path (a README that says "confidential"
//! is not the confidential directory); a word with a `/` is, so a public
//! file that spells out `confidential/plan.txt` classifies the answer as
//! confidential: over-classifying is the safe side. Base64 payloads
//! (`blob`, image and audio `data`) are skipped. More distinct candidates
//! than [`MAX_CANDIDATES`] mark the walk `truncated`, which classification
//! treats as a path it cannot place: every class a path rule names.

use std::collections::BTreeSet;

use serde_json::Value;

/// Distinct candidate strings kept from one answer.
pub const MAX_CANDIDATES: usize = 20_000;
/// Nesting levels walked (JSON, and JSON inside a text).
const MAX_DEPTH: usize = 64;

/// The candidate path strings of one answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    pub paths: BTreeSet<String>,
    /// More candidates (or deeper nesting) than the bounds: the answer may
    /// name paths that were not looked at.
    pub truncated: bool,
}

impl Candidates {
    fn push(&mut self, p: &str) {
        if p.is_empty() || self.paths.contains(p) {
            return;
        }
        if self.paths.len() >= MAX_CANDIDATES {
            self.truncated = true;
            return;
        }
        self.paths.insert(p.to_string());
    }
}

/// The path strings `output` names. `bases` are the paths the request named
/// (its path arguments as sent): listing entries and tree nodes are relative
/// to them.
pub fn candidates(output: &Value, bases: &[&str]) -> Candidates {
    let mut out = Candidates::default();
    let bases: Vec<String> = bases.iter().map(|b| b.to_string()).collect();
    walk(output, &bases, 0, &mut out);
    out
}

fn walk(v: &Value, prefixes: &[String], depth: usize, out: &mut Candidates) {
    if depth > MAX_DEPTH {
        out.truncated = true;
        return;
    }
    match v {
        Value::String(s) => text(s, prefixes, depth, out),
        Value::Array(a) => a.iter().for_each(|x| walk(x, prefixes, depth + 1, out)),
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str);
            if let (Some(name), Some("file" | "directory")) =
                (o.get("name").and_then(Value::as_str), kind)
            {
                // A tree node: its path is its parents' and its name.
                let here: Vec<String> = prefixes.iter().map(|p| join(p, name)).collect();
                here.iter().for_each(|p| out.push(p));
                if let Some(children) = o.get("children") {
                    walk(children, &here, depth + 1, out);
                }
                return;
            }
            let binary = matches!(kind, Some("image" | "audio"));
            for (k, x) in o {
                if k == "blob" || (binary && k == "data") {
                    continue;
                }
                if k == "uri"
                    && let Some(u) = x.as_str()
                {
                    out.push(u); // a resource's URI names it, however spelled
                }
                walk(x, prefixes, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// A text: walked as JSON if it is JSON, else line by line.
fn text(s: &str, prefixes: &[String], depth: usize, out: &mut Candidates) {
    let t = s.trim_start();
    if t.starts_with(['{', '['])
        && let Ok(v) = serde_json::from_str::<Value>(t)
    {
        walk(&v, prefixes, depth + 1, out);
        return;
    }
    for line in s.lines() {
        let line = line.trim();
        if let Some(rest) = line
            .strip_prefix("[FILE]")
            .or_else(|| line.strip_prefix("[DIR]"))
        {
            for name in entry_names(rest) {
                prefixes.iter().for_each(|p| out.push(&join(p, name)));
            }
            continue;
        }
        if line.contains(['/', '\\']) || line.starts_with('~') {
            out.push(line);
            out.push(line.trim_end_matches(':'));
        }
        for word in line.split_whitespace().filter(|w| w.contains(['/', '\\'])) {
            // Both readings: quotes and brackets dropped, and also the
            // sentence's punctuation after it ("see a/b." or "(a/b):").
            let w = word.trim_matches(|c: char| "\"'`()[]{}<>,;".contains(c));
            out.push(w);
            out.push(w.trim_end_matches(|c: char| "\"'`()[]{}<>,;:.".contains(c)));
        }
    }
}

/// The name of a listing entry: as written, and without the size
/// `list_directory_with_sizes` pads on (`name<spaces> 12.3 KB`).
fn entry_names(rest: &str) -> Vec<&str> {
    let full = rest.trim();
    let mut names = vec![full];
    let words: Vec<&str> = full.rsplitn(3, ' ').collect();
    if let [unit, size, name] = words[..]
        && ["B", "KB", "MB", "GB", "TB"].contains(&unit)
        && size.parse::<f64>().is_ok()
    {
        names.push(name.trim_end());
    }
    names
}

/// `name` inside the directory `base`, as the upstream would resolve it.
fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn has(c: &Candidates, p: &str) -> bool {
        c.paths.contains(p)
    }

    #[test]
    fn listings_trees_and_lines_name_their_paths() {
        let listing = json!({"content": [{"type": "text",
            "text": "[DIR] confidential\n[FILE] readme.txt"}]});
        let c = candidates(&listing, &["."]);
        assert!(
            has(&c, "./confidential") && has(&c, "./readme.txt"),
            "{c:?}"
        );
        assert!(
            !has(&c, "confidential"),
            "a name alone is relative to the listed directory"
        );

        let sizes = json!({"content": [{"type": "text", "text":
            "[DIR] confidential                   \n[FILE] plan.txt                              12 B\n\nTotal: 1 files"}]});
        let c = candidates(&sizes, &["/srv/d"]);
        assert!(
            has(&c, "/srv/d/plan.txt") && has(&c, "/srv/d/confidential"),
            "{c:?}"
        );

        let tree = serde_json::to_string_pretty(&json!([
            {"name": "confidential", "type": "directory", "children": [
                {"name": "plan.txt", "type": "file"}]},
            {"name": "public", "type": "directory", "children": []}
        ]))
        .unwrap();
        let c = candidates(&json!({"structuredContent": {"content": tree}}), &["./"]);
        assert!(
            has(&c, "./confidential/plan.txt") && has(&c, "./public"),
            "{c:?}"
        );

        let search = json!({"content": [{"type": "text",
            "text": "/srv/d/confidential/plan.txt\n/srv/d/public/readme.txt"}]});
        let c = candidates(&search, &["."]);
        assert!(has(&c, "/srv/d/confidential/plan.txt"), "{c:?}");

        let multi = json!({"content": [{"type": "text",
            "text": "confidential/plan.txt:\nthe plan\n---\nsee \"public/x.txt\", then (C:\\a\\b)."}]});
        let c = candidates(&multi, &[]);
        for p in ["confidential/plan.txt", "public/x.txt", "C:\\a\\b"] {
            assert!(has(&c, p), "{p}: {c:?}");
        }
        assert!(!has(&c, "the plan") && !has(&c, "then"), "{c:?}");

        let resource = json!({"contents": [{"uri": "file:///srv/d/confidential/x", "text": "hi"},
            {"uri": "file:///srv/d/b", "blob": "Y29uZmlkZW50aWFsL3g="}]});
        let c = candidates(&resource, &[]);
        assert!(has(&c, "file:///srv/d/confidential/x") && has(&c, "file:///srv/d/b"));
        assert_eq!(c.paths.len(), 2, "base64 is not read: {c:?}");
    }

    #[test]
    fn too_many_candidates_are_marked_truncated() {
        let text: String = (0..MAX_CANDIDATES + 1)
            .map(|i| format!("d/{i}\n"))
            .collect();
        let c = candidates(&json!({"text": text}), &[]);
        assert!(c.truncated);
        assert_eq!(c.paths.len(), MAX_CANDIDATES);
        let mut deep = json!("a/b");
        for _ in 0..(MAX_DEPTH + 2) {
            deep = json!([deep]);
        }
        assert!(candidates(&deep, &[]).truncated, "nesting past the bound");
        assert!(!candidates(&json!({"text": "plain prose"}), &[]).truncated);
    }
}
