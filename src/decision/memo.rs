//! Per-layer decision memo.
//!
//! Why: regorus's interpreter spends 10–40 µs on each layer of a decision
//! even for small policies, and most layers see the same facts call after
//! call — the identity layer reads `input.user`, compliance the user's
//! clearances and the region, the resource layer the tool and its path —
//! while only the workflow layer's counters change on every call.
//!
//! Soundness: a layer's decision is a function of its bundle's modules and
//! data (immutable for the life of the engine: a new bundle builds a new
//! engine, and with it new memos) and of the `input` paths it reads. The
//! paths come from the parse tree (`bundle::deps`), conservatively; a layer
//! that calls an impure builtin (`time.now_ns`, `rand.intn`, …) or reads
//! `input` in a way that cannot be listed is never memoized. A miss is
//! evaluated on the *projected* input — only the listed paths — so the
//! stored answer is exactly the function of the key, never of something the
//! key left out. Errors and timeouts are never stored.
//!
//! Compared paths: a path the layer only ever compares with constants
//! (`bundle::deps::compared`: the workflow layer's counters against its
//! thresholds) is keyed on the comparisons' outcomes, not on its value, so
//! a layer whose counters change on every call still answers from the memo
//! while no threshold is crossed. A miss still evaluates the projected input
//! with the real value, whose answer every input with the same outcomes
//! shares.
//!
//! Bounded: keys over [`MAX_KEY_BYTES`] are not stored (large arguments),
//! and a full memo is cleared rather than grown.
//!
//! Adaptive: a layer whose memo hardly ever answers (one that reads a
//! counter other than in comparisons with constants, or hashes the
//! arguments) stops paying for keys and stores —
//! after a window of [`WINDOW`] lookups with fewer than one hit in
//! [`MIN_HIT_ONE_IN`], the next [`BYPASS`] evaluations skip the memo, then it
//! is tried again. Skipping a memo never changes an answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value};

use crate::bundle::deps::Compare;

const MAX_KEY_BYTES: usize = 8 * 1024;
const MAX_ENTRIES: usize = 4096;
const WINDOW: u32 = 256;
const MIN_HIT_ONE_IN: u32 = 16;
const BYPASS: u32 = 4096;

pub(super) struct Memo {
    paths: Vec<Vec<String>>,
    /// Per path: the comparisons that stand for its value in a key, when
    /// every read of it is one (empty: keyed on the value).
    compared: Vec<Vec<Compare>>,
    /// Keys are the bytes `key_by` writes (JSON text, never read back).
    map: Mutex<HashMap<Vec<u8>, Value>>,
    /// Lookups and hits in the current window; evaluations left to bypass.
    /// Races between threads only blur the statistics.
    lookups: AtomicU32,
    hits: AtomicU32,
    bypass: AtomicU32,
}

impl Memo {
    pub(super) fn new(paths: impl IntoIterator<Item = Vec<String>>) -> Self {
        let paths: Vec<Vec<String>> = paths.into_iter().collect();
        Memo {
            compared: vec![Vec::new(); paths.len()],
            paths,
            map: Mutex::new(HashMap::new()),
            lookups: AtomicU32::new(0),
            hits: AtomicU32::new(0),
            bypass: AtomicU32::new(0),
        }
    }

    /// Keys each path of `compared` (a layer's `Deps::compared`) on its
    /// comparisons' outcomes. Only for a layer decided on its own paths:
    /// the comparisons are its bundle's, not those of others it may read.
    pub(super) fn comparing(mut self, compared: &BTreeMap<Vec<String>, Vec<Compare>>) -> Self {
        for (path, slot) in self.paths.iter().zip(&mut self.compared) {
            if let Some(c) = compared.get(path) {
                slot.clone_from(c);
            }
        }
        self
    }

    /// A memo keyed as this one is (paths and comparisons), empty: the
    /// result step's memo of the same layer.
    pub(super) fn keyed_alike(&self) -> Self {
        Memo {
            compared: self.compared.clone(),
            ..Memo::new(self.paths.iter().cloned())
        }
    }

    /// The key of `input` for this layer — the values at the paths the
    /// layer reads, written straight from the input (no projected document
    /// is built for a lookup) — or `None` while the memo is bypassed (then
    /// neither look up nor store). Each path gives `+<json>` when present
    /// and `-` when absent, comma-separated: one key per projection. A
    /// compared path gives `+` and one letter per comparison instead of
    /// its value: `t`, `f`, or `e` for an error.
    pub(super) fn key(&self, input: &Value) -> Option<Vec<u8>> {
        self.key_by(|path| path.iter().try_fold(input, |v, k| v.get(k)))
    }

    /// [`Memo::key`] of the document whose value at a path `at` gives —
    /// one that need not be built (the result step's input, `engine::result`).
    pub(super) fn key_by<'v>(
        &self,
        at: impl Fn(&[String]) -> Option<&'v Value>,
    ) -> Option<Vec<u8>> {
        let bypassing = self
            .bypass
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if bypassing {
            return None;
        }
        let mut key = Vec::with_capacity(128);
        for (i, path) in self.paths.iter().enumerate() {
            if i > 0 {
                key.push(b',');
            }
            match (at(path), &self.compared[i][..]) {
                (Some(v), []) => {
                    key.push(b'+');
                    crate::json_out::value(&mut key, v);
                }
                (Some(v), compares) => {
                    key.push(b'+');
                    let v = super::engine::to_regorus(v);
                    key.extend(compares.iter().map(|c| match c.outcome(&v) {
                        Some(true) => b't',
                        Some(false) => b'f',
                        None => b'e',
                    }));
                }
                (None, _) => key.push(b'-'),
            }
        }
        Some(key)
    }

    /// The input restricted to the paths the layer reads: what a miss is
    /// evaluated on.
    pub(super) fn project(&self, input: &Value) -> Value {
        project(input, &self.paths)
    }

    /// The input paths the layer's decision is a function of.
    pub(super) fn paths(&self) -> &[Vec<String>] {
        &self.paths
    }

    fn count(&self, hit: bool) {
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        if self.lookups.fetch_add(1, Ordering::Relaxed) + 1 >= WINDOW {
            let hits = self.hits.swap(0, Ordering::Relaxed);
            self.lookups.store(0, Ordering::Relaxed);
            if hits * MIN_HIT_ONE_IN < WINDOW {
                self.bypass.store(BYPASS, Ordering::Relaxed);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<Value> {
        let v = self.map.lock().ok()?.get(key).cloned();
        self.count(v.is_some());
        v
    }

    pub(super) fn put(&self, key: Vec<u8>, value: Value) {
        if key.len() > MAX_KEY_BYTES {
            return;
        }
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, value);
        }
    }
}

/// Copies each path that exists in `input` into a fresh object at the same
/// place. A path through a non-object, or to a missing key, is left out —
/// undefined in both documents.
pub(super) fn project(input: &Value, paths: &[Vec<String>]) -> Value {
    let mut out = Value::Object(Map::new());
    for path in paths {
        let Some(v) = path.iter().try_fold(input, |v, k| v.get(k)) else {
            continue;
        };
        let mut node = &mut out;
        for k in &path[..path.len() - 1] {
            node = node
                .as_object_mut()
                .expect("projection nodes are objects")
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let (Some(obj), Some(last)) = (node.as_object_mut(), path.last()) {
            obj.insert(last.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    /// A compared path keys on its comparisons' outcomes, as regorus
    /// compares (a string orders above every number), and tells absent
    /// from present; the other paths still key on their values.
    #[test]
    fn compared_paths_key_on_outcomes() {
        let below = Compare {
            op: regorus::unstable::BoolOp::Lt,
            constant: regorus::Value::from(20u64),
            input_first: true,
        };
        let compared = BTreeMap::from([(p("c.n"), vec![below])]);
        let m = Memo::new([p("c.n"), p("u")]).comparing(&compared);
        let key = |v: Value| String::from_utf8(m.key(&v).unwrap()).unwrap();
        assert_eq!(key(json!({"c": {"n": 3}, "u": 1})), "+t,+1");
        assert_eq!(key(json!({"c": {"n": 19.5}, "u": 1})), "+t,+1");
        assert_eq!(key(json!({"c": {"n": 20}, "u": 1})), "+f,+1");
        assert_eq!(key(json!({"c": {"n": "3"}, "u": 1})), "+f,+1");
        assert_eq!(key(json!({"c": {}, "u": 2})), "-,+2");
        assert_eq!(
            m.keyed_alike().key(&json!({"c": {"n": 3}})).unwrap(),
            b"+t,-"
        );
    }

    #[test]
    fn projection_keeps_only_listed_paths() {
        let input = json!({
            "user": {"id": "a", "groups": ["g"], "secret": 1},
            "action": {"tool": "t", "args": "not an object"},
            "context": {"turn_count": 3},
        });
        let got = project(
            &input,
            &[
                p("user.groups"),
                p("user.id"),
                p("action.args.path"),
                p("action.tool"),
                p("missing.x"),
            ],
        );
        assert_eq!(
            got,
            json!({"user": {"id": "a", "groups": ["g"]}, "action": {"tool": "t"}})
        );
    }

    #[test]
    fn keys_tell_every_projection_apart() {
        let m = Memo::new([p("a"), p("b.c")]);
        let keys: Vec<Vec<u8>> = [
            json!({}),
            json!({"a": null}),
            json!({"a": "x"}),
            json!({"a": "x,+1"}),
            json!({"a": "x", "b": {"c": 1}}),
            json!({"b": {"c": 1}}),
            json!({"b": {"c": 1, "d": 2}}),
            json!({"b": "not an object"}),
        ]
        .iter()
        .map(|i| m.key(i).unwrap())
        .collect();
        // Equal projections (a missing `b.c` whichever way) share a key…
        assert_eq!(keys[0], keys[7]);
        assert_eq!(keys[5], keys[6], "b.d is not read");
        // …and different ones never do.
        let mut distinct: Vec<&Vec<u8>> = keys.iter().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), keys.len() - 2, "{keys:?}");
    }

    #[test]
    fn memo_is_bounded() {
        let m = Memo::new([p("a")]);
        m.put(vec![b'x'; MAX_KEY_BYTES + 1], json!(1));
        assert!(m.map.lock().unwrap().is_empty());
        for i in 0..MAX_ENTRIES + 1 {
            m.put(i.to_string().into_bytes(), json!(i));
        }
        assert_eq!(m.map.lock().unwrap().len(), 1, "cleared when full");
    }

    #[test]
    fn a_memo_that_never_answers_is_bypassed_then_tried_again() {
        let m = Memo::new([p("n")]);
        for i in 0..WINDOW {
            let key = m.key(&json!({"n": i})).expect("not bypassed yet");
            assert!(m.get(&key).is_none());
            m.put(key, json!(i));
        }
        for i in 0..BYPASS {
            assert!(m.key(&json!({"n": i})).is_none(), "bypassed");
        }
        assert!(m.key(&json!({"n": 0})).is_some(), "tried again");
        // A memo that answers often stays on.
        let m = Memo::new([p("n")]);
        m.put(m.key(&json!({"n": 1})).unwrap(), json!(1));
        for _ in 0..3 * WINDOW {
            let key = m.key(&json!({"n": 1})).expect("on");
            assert!(m.get(&key).is_some());
        }
    }
}
