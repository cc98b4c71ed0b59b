//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` and `tracestate` an agent host may put in a request's
//! `params._meta`, read strictly, and the context of gavel's own span.
//!
//! A header that does not parse is ignored (the span starts a new trace),
//! never an error: tracing must not change what a request does.

use serde_json::{Map, Value};

/// `tracestate` longer than this is dropped (the spec's 512-character
/// limit for what a vendor must propagate).
const MAX_TRACESTATE: usize = 512;
/// The spec's bound on list members.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A parsed `traceparent` (version 00 fields; a later version is read by
/// its first four fields, as the spec asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything the spec calls
    /// invalid (uppercase hex, all-zero ids, version `ff`, wrong lengths,
    /// extra fields on version 00).
    pub fn parse(s: &str) -> Option<TraceParent> {
        let b = s.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        if version == 0xff || (version == 0 && b.len() != 55) {
            return None;
        }
        // A later version may add fields, after a '-'.
        if b.len() > 55 && b[55] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, out) in parent_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Two lowercase hex digits (the spec forbids uppercase).
fn hex_byte(b: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(b[0])? << 4 | digit(b[1])?)
}

/// Whether `s` is a `tracestate` gavel passes on: within the spec's size
/// and member bounds, every member `key=value` with the spec's characters.
pub fn valid_tracestate(s: &str) -> bool {
    if s.len() > MAX_TRACESTATE {
        return false;
    }
    let members: Vec<&str> = s
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    if members.is_empty() || members.len() > MAX_TRACESTATE_MEMBERS {
        return false;
    }
    members.iter().all(|m| {
        let Some((key, value)) = m.split_once('=') else {
            return false;
        };
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-*/@".contains(c));
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && !value.ends_with(' ')
            && value
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != ',' && c != '=');
        key_ok && value_ok
    })
}

/// The context of one gavel span: its trace (the host's, or a new one), its
/// own id, the host's span as parent when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C trace flags: `01` sampled. A span whose parent was not sampled
    /// is not exported either (parent-based sampling), but still propagated.
    pub flags: u8,
    /// The host's `tracestate`, passed on unchanged when valid.
    pub tracestate: Option<String>,
}

impl SpanContext {
    /// The context for a request whose `_meta` is `meta`: a child of a
    /// valid `traceparent` there, else the root of a new, sampled trace.
    pub fn for_request(meta: Option<&Map<String, Value>>) -> SpanContext {
        let parent = meta
            .and_then(|m| m.get("traceparent"))
            .and_then(Value::as_str)
            .and_then(TraceParent::parse);
        match parent {
            Some(p) => SpanContext {
                trace_id: p.trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(p.parent_id),
                // Only the sampled bit is defined; the others are not passed on.
                flags: p.flags & 1,
                tracestate: meta
                    .and_then(|m| m.get("tracestate"))
                    .and_then(Value::as_str)
                    .filter(|s| valid_tracestate(s))
                    .map(String::from),
            },
            None => SpanContext {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent_span_id: None,
                flags: 1,
                tracestate: None,
            },
        }
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }

    /// Puts this span's trace context in a request's `_meta` (SEP-414 keys):
    /// the receiver's spans become children of gavel's. The host's
    /// `tracestate` goes along when it was valid, and only then.
    pub fn propagate(&self, meta: &mut Map<String, Value>) {
        meta.insert("traceparent".into(), Value::String(self.traceparent()));
        match &self.tracestate {
            Some(ts) => meta.insert("tracestate".into(), Value::String(ts.clone())),
            None => meta.remove("tracestate"),
        };
    }

    /// The `traceparent` naming this span as parent (what the upstream gets).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }
}

/// 128 random bits (two v4 UUIDs folded, so that no bit is fixed), never zero.
fn new_trace_id() -> [u8; 16] {
    loop {
        let id = uuid::Uuid::new_v4().as_u128() ^ uuid::Uuid::new_v4().as_u128().rotate_left(64);
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// 64 random bits, never zero.
fn new_span_id() -> [u8; 8] {
    loop {
        let u = uuid::Uuid::new_v4().as_u128();
        let id = (u ^ (u >> 64)) as u64;
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_parses() {
        let p = TraceParent::parse(GOOD).unwrap();
        assert_eq!(hex::encode(p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p.parent_id), "00f067aa0ba902b7");
        assert!(p.sampled());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // 00 with more
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", // misplaced dash
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let p = TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future-stuff",
        )
        .unwrap();
        assert_eq!(hex::encode(p.parent_id), "00f067aa0ba902b7");
    }

    #[test]
    fn a_child_keeps_the_trace_and_names_the_parent() {
        let meta = json!({"traceparent": GOOD, "tracestate": "vendor=abc,other=x y"});
        let c = SpanContext::for_request(meta.as_object());
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            c.parent_span_id.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(c.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(c.tracestate.as_deref(), Some("vendor=abc,other=x y"));
        let tp = c.traceparent();
        assert_eq!(TraceParent::parse(&tp).unwrap().parent_id, c.span_id);
        assert!(tp.ends_with("-01"));
    }

    #[test]
    fn a_bad_or_missing_traceparent_starts_a_new_sampled_trace() {
        for meta in [
            json!({}),
            json!({"traceparent": "garbage", "tracestate": "a=b"}),
            json!({"traceparent": 7}),
        ] {
            let c = SpanContext::for_request(meta.as_object());
            assert_eq!(c.parent_span_id, None);
            assert_eq!(c.tracestate, None);
            assert!(c.sampled());
            assert_ne!(c.trace_id, [0; 16]);
        }
        let a = SpanContext::for_request(None);
        let b = SpanContext::for_request(None);
        assert_ne!(a.trace_id, b.trace_id);
    }

    #[test]
    fn an_unsampled_parent_is_followed() {
        let meta = json!({"traceparent": GOOD.replace("-01", "-00")});
        let c = SpanContext::for_request(meta.as_object());
        assert!(!c.sampled());
        assert!(c.traceparent().ends_with("-00"));
    }

    #[test]
    fn tracestate_is_checked() {
        assert!(valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(valid_tracestate("tenant@vendor=x"));
        assert!(!valid_tracestate("Upper=x"));
        assert!(!valid_tracestate("novalue"));
        assert!(!valid_tracestate("a=b\nc"));
        assert!(!valid_tracestate(&"a=b,".repeat(33)));
        assert!(!valid_tracestate(&format!("a={}", "x".repeat(600))));
    }
}
