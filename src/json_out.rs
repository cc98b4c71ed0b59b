//! Compact JSON of a `serde_json::Value`, byte for byte what
//! `serde_json::to_writer` writes, for the paths that write JSON on every
//! call: the decision-log records (`audit::stream`) and the memo keys
//! (`decision::memo`).
//!
//! Why not serde_json itself: its string escaper looks every byte up in a
//! table and its `Value` serializer goes through serde's map and sequence
//! machinery, ~70 instructions for each short string; the two records of a
//! deployed call write ~220 strings. Almost none needs escaping, so a
//! string is checked eight bytes at a time (word arithmetic) and copied
//! whole; one that needs escaping — and every
//! number — is written by serde_json, so the bytes stay serde_json's. Parity
//! is tested over generated values (`tests::writes_what_serde_json_writes`).

use serde_json::Value;

/// `v` as `serde_json::to_writer` writes it.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Writing to a Vec cannot fail.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => string(out, s),
        Value::Array(a) => list(out, a, value),
        Value::Object(m) => object(out, m),
    }
}

/// An object, as `serde_json::to_writer` writes a `Map`.
pub fn object(out: &mut Vec<u8>, m: &serde_json::Map<String, Value>) {
    out.push(b'{');
    for (i, (k, x)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        value(out, x);
    }
    out.push(b'}');
}

/// A list of strings, as `serde_json::to_writer` writes a `[String]`.
pub fn strings(out: &mut Vec<u8>, items: &[String]) {
    list(out, items, |out, s| string(out, s));
}

/// `[`, each item written by `each`, comma-separated, `]`.
fn list<T>(out: &mut Vec<u8>, items: &[T], each: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, x);
    }
    out.push(b']');
}

/// `s` as a JSON string, quoted and escaped as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Whether any byte is one serde_json escapes: a control character below
/// 0x20, `"` or `\`. (It leaves DEL and every non-ASCII byte as it is.)
/// Eight bytes at a time: the classic "has a byte below n" and "has a zero
/// byte" word tests, exact for whether any byte matches (n ≤ 0x80); the
/// last word is padded with a plain byte.
fn needs_escape(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        if special(u64::from_le_bytes(w.try_into().expect("eight bytes"))) {
            return true;
        }
    }
    let rest = words.remainder();
    if rest.is_empty() {
        return false;
    }
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    special(u64::from_le_bytes(last))
}

/// Whether any byte of `w` is below 0x20, `"` or `\`.
fn special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (below(w, 0x20) | below(quote, 1) | below(backslash, 1)) != 0
}

/// JSON values at the edges, for the tests of what reads or writes them
/// (this module's parity with serde_json, `to_regorus`'s with regorus's
/// deserializer): every kind of value, numbers at each representation's
/// limits, strings with escapes and non-ASCII, nesting.
#[cfg(test)]
pub(crate) fn edge_values() -> Vec<Value> {
    use serde_json::json;
    vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(-0.0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(1.5),
        json!(0.1),
        json!(1e300),
        json!(-2.5e-300),
        json!(9007199254740993u64),
        json!(""),
        json!("é\u{0}\"\\ \u{1F600}"),
        json!([]),
        json!({}),
        json!([1, "a\"b", [null, {"k\n": [2.5, {}]}], {}]),
        json!({"z": 1, "a": {"y": [true, false], "": null}, "é": "x\\y", "q\"": -7}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every byte value at every position of every length up to three
    /// words, among plain bytes and among high (non-ASCII) bytes: the word
    /// test answers as a byte-by-byte one.
    #[test]
    fn the_word_test_is_exact() {
        let naive = |b: &[u8]| b.iter().any(|&x| x < 0x20 || x == b'"' || x == b'\\');
        for fill in [b'a', 0xC3, 0x20, 0x7F, 0xFF] {
            for len in 1..=24 {
                for at in 0..len {
                    for x in 0..=255u8 {
                        let mut b = vec![fill; len];
                        b[at] = x;
                        assert_eq!(needs_escape(&b), naive(&b), "{b:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    /// Strings with every byte class at every offset of a chunk, numbers
    /// of every kind, nesting: the same bytes as serde_json's.
    #[test]
    fn writes_what_serde_json_writes() {
        let mut texts: Vec<String> = vec![
            String::new(),
            "a".into(),
            "plain ascii text of some length, past one chunk".into(),
            "é ü 😀 \u{7f} \u{80} \u{2028}".into(),
        ];
        for special in [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{8}', '\u{c}', '\u{1f}',
        ] {
            for at in 0..40 {
                let mut s = "x".repeat(at);
                s.push(special);
                s.push_str("tail");
                texts.push(s);
            }
        }
        let mut cases: Vec<Value> = texts.iter().map(|s| json!(s)).collect();
        cases.extend(super::edge_values());
        cases.push(Value::Array(cases.clone()));
        cases.push(Value::Object(
            texts
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), json!(i)))
                .collect(),
        ));
        for v in &cases {
            let mut out = Vec::new();
            value(&mut out, v);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(v).unwrap()
            );
        }
        let mut out = Vec::new();
        strings(&mut out, &strings_of(&cases));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            serde_json::to_string(&strings_of(&cases)).unwrap()
        );
        strings(&mut out, &[]);
        assert!(out.ends_with(b"[]"));
    }

    fn strings_of(cases: &[Value]) -> Vec<String> {
        cases
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }
}
