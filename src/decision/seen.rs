//! The data classes a host session has seen (`input.context.data_classes_seen`):
//! what the answers forwarded to the host carried, by the same classification
//! as requests, with the server and tool each came from. It is what lets a
//! policy say "after this session read `confidential` data, no tool that
//! sends data out may run" — the read-private → write-public pattern an
//! agent can be steered into (prompt injection, a confused task).
//!
//! Bounded and deduplicated: one entry per (class, server, tool), at most
//! [`MAX_ENTRIES`]. The bound never loses a class: at the cap a new source
//! of a class already present is dropped (the class is already there), and
//! a new class takes the place of the oldest entry whose class has another
//! entry; only when every entry is a different class does the list grow
//! past the cap, by that one class. The distinct classes themselves are
//! bounded by where they come from: the bundles' classification data and
//! the data classes listed tools declare (`_meta["dev.gavel/data_classes"]`),
//! both already bounded in size.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::active::Policy;
use super::{Enforcer, output_paths};

/// Entries kept with their provenance before duplicates of a class give way.
pub const MAX_ENTRIES: usize = 64;

/// One class a session has seen, and the request whose answer carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenClass {
    pub class: String,
    /// Config NAME of the server that answered.
    pub server: String,
    /// The upstream's tool name, or the resource URI that was read.
    pub tool: String,
}

/// A session's seen classes, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataClassesSeen {
    entries: Vec<SeenClass>,
}

impl DataClassesSeen {
    /// The entries as the policy input lists them.
    pub fn entries(&self) -> &[SeenClass] {
        &self.entries
    }

    /// Whether `class` has been seen (from any server or tool).
    pub fn contains(&self, class: &str) -> bool {
        self.entries.iter().any(|e| e.class == class)
    }

    /// Records `classes` as seen in an answer of `server`/`tool`. Returns
    /// whether anything was added.
    pub fn add(&mut self, server: &str, tool: &str, classes: &[String]) -> bool {
        let mut changed = false;
        for class in classes {
            changed |= self.add_one(SeenClass {
                class: class.clone(),
                server: server.to_string(),
                tool: tool.to_string(),
            });
        }
        changed
    }

    fn add_one(&mut self, entry: SeenClass) -> bool {
        if self.entries.contains(&entry) {
            return false;
        }
        let known = self.contains(&entry.class);
        if self.entries.len() < MAX_ENTRIES {
            self.entries.push(entry);
            return true;
        }
        if known {
            // At the cap: this class is already recorded by another source.
            return false;
        }
        // A new class at the cap: it replaces the oldest entry whose class
        // another entry still records, so no class is lost; if every entry
        // is a class of its own, the list grows by this one.
        if let Some(i) = (0..self.entries.len()).find(|&i| {
            let c = &self.entries[i].class;
            self.entries.iter().filter(|e| &e.class == c).count() > 1
        }) {
            self.entries.remove(i);
        }
        self.entries.push(entry);
        true
    }
}

impl Enforcer {
    /// Whether answers of `server` can carry data classes by the paths they
    /// name: its policy classifies by path (`classification.paths`). The
    /// front serializes an answer for [`Enforcer::output_classes`] only then.
    pub fn classifies_output(&self, server: &str) -> bool {
        self.servers.get(server).is_some_and(
            |sp| matches!(&sp.active.load().policy, Policy::Rego(e) if e.classifies_paths()),
        )
    }

    /// The data classes an answer of `server` carries by the path strings it
    /// names (`output_paths`), under the server's current policy and
    /// `path_root`; `request_paths` are the request's path arguments (a
    /// listing names entries of the directory the request named).
    pub fn output_classes(
        &self,
        server: &str,
        request_paths: &[String],
        output: &Value,
    ) -> Vec<String> {
        let Some(sp) = self.servers.get(server) else {
            return Vec::new();
        };
        let active = sp.active.load_full();
        let Policy::Rego(engine) = &active.policy else {
            return Vec::new();
        };
        if !engine.classifies_paths() {
            return Vec::new();
        }
        let bases: Vec<&str> = request_paths.iter().map(String::as_str).collect();
        let found = output_paths::candidates(output, &bases);
        engine.classify_output(&found, sp.path_root.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(s: &DataClassesSeen) -> Vec<&str> {
        let mut v: Vec<&str> = s.entries().iter().map(|e| e.class.as_str()).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn entries_are_deduplicated_by_class_server_and_tool() {
        let mut s = DataClassesSeen::default();
        let conf = vec!["confidential".to_string()];
        assert!(s.add("fs", "read_text_file", &conf));
        assert!(
            !s.add("fs", "read_text_file", &conf),
            "the same source again"
        );
        assert!(
            s.add("fs", "search_files", &conf),
            "another tool is another source"
        );
        assert!(s.add(
            "fs",
            "read_text_file",
            &["pii".into(), "confidential".into()]
        ));
        assert_eq!(s.entries().len(), 3);
        assert!(s.contains("pii") && s.contains("confidential"));
        assert!(!s.add("fs", "x", &[]));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({"class": "confidential", "server": "fs", "tool": "read_text_file"})
        );
        let back: DataClassesSeen = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    /// At the cap no class is ever lost: a new source of a known class is
    /// dropped, a new class replaces the oldest duplicate of another class,
    /// and with only distinct classes left the list grows by the new one.
    #[test]
    fn the_bound_never_loses_a_class() {
        let mut s = DataClassesSeen::default();
        for i in 0..MAX_ENTRIES {
            s.add("fs", &format!("tool{i}"), &["internal".into()]);
        }
        assert_eq!(s.entries().len(), MAX_ENTRIES);
        assert!(
            !s.add("fs", "another", &["internal".into()]),
            "known class at the cap"
        );
        assert!(s.add("fs", "read", &["confidential".into()]));
        assert_eq!(s.entries().len(), MAX_ENTRIES, "a duplicate gave way");
        assert_eq!(s.entries()[0].tool, "tool1", "the oldest duplicate went");
        assert_eq!(classes(&s), ["confidential", "internal"]);
        for i in 0..(MAX_ENTRIES + 5) {
            s.add("fs", "t", &[format!("c{i}")]);
        }
        let distinct = classes(&s);
        assert_eq!(distinct.len(), MAX_ENTRIES + 5 + 2, "every class kept");
        assert_eq!(
            s.entries().len(),
            distinct.len(),
            "one entry per class left"
        );
        for c in ["confidential", "internal", "c0", "c68"] {
            assert!(s.contains(c), "{c}");
        }
    }

    proptest::proptest! {
        /// Against a naive model: every class ever added is present, the
        /// entries are unique, and their number is the cap or the number of
        /// distinct classes, whichever is larger.
        #[test]
        fn bounded_and_complete(adds in proptest::collection::vec((0u8..4, 0u8..40, 0u8..90), 1..400)) {
            let mut s = DataClassesSeen::default();
            let mut all = std::collections::BTreeSet::new();
            for (srv, tool, class) in adds {
                let c = format!("c{class}");
                all.insert(c.clone());
                s.add(&format!("s{srv}"), &format!("t{tool}"), &[c]);
                for c in &all {
                    proptest::prop_assert!(s.contains(c));
                }
                proptest::prop_assert!(s.entries().len() <= MAX_ENTRIES.max(all.len()));
                let uniq: std::collections::BTreeSet<_> = s
                    .entries()
                    .iter()
                    .map(|e| (&e.class, &e.server, &e.tool))
                    .collect();
                proptest::prop_assert_eq!(uniq.len(), s.entries().len());
            }
        }
    }
}
