//! One finished span and its OTLP/JSON form (the JSON mapping of
//! `ExportTraceServiceRequest`, opentelemetry-proto: ids as hex strings,
//! 64-bit integers as decimal strings, enums as numbers).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::SpanContext;

/// An attribute value (the kinds gavel sets).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    StrList(Vec<String>),
}

impl AttrValue {
    fn otlp(&self) -> Value {
        match self {
            AttrValue::Str(s) => json!({"stringValue": s}),
            AttrValue::Bool(b) => json!({"boolValue": b}),
            AttrValue::Int(i) => json!({"intValue": i.to_string()}),
            AttrValue::StrList(l) => json!({"arrayValue": {
                "values": l.iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()
            }}),
        }
    }
}

/// Attribute values longer than this are cut (attributes are bounded like
/// everything else gavel sends).
pub const MAX_ATTR_CHARS: usize = 1024;
/// Elements of a list attribute kept.
pub const MAX_ATTR_LIST: usize = 64;

/// What gavel records about one span.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub context: SpanContext,
    pub name: String,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// OTLP status: an error text makes the status ERROR.
    pub error: Option<String>,
}

pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_ATTR_CHARS) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

impl SpanData {
    pub fn new(context: SpanContext, name: String) -> SpanData {
        SpanData {
            context,
            name: cut(&name),
            start_unix_ns: now_unix_ns(),
            end_unix_ns: 0,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Sets `key` (a later value replaces an earlier one), bounded.
    pub fn set(&mut self, key: &'static str, value: AttrValue) {
        let value = match value {
            AttrValue::Str(s) => AttrValue::Str(cut(&s)),
            AttrValue::StrList(l) => {
                AttrValue::StrList(l.iter().take(MAX_ATTR_LIST).map(|s| cut(s)).collect())
            }
            v => v,
        };
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// The span as an OTLP/JSON `Span`.
    pub fn otlp(&self) -> Value {
        let mut span = json!({
            "traceId": self.context.trace_id_hex(),
            "spanId": self.context.span_id_hex(),
            "name": self.name,
            // SPAN_KIND_SERVER: gavel handles the host's request.
            "kind": 2,
            "startTimeUnixNano": self.start_unix_ns.to_string(),
            "endTimeUnixNano": self.end_unix_ns.max(self.start_unix_ns).to_string(),
            "attributes": self.attributes.iter()
                .map(|(k, v)| json!({"key": k, "value": v.otlp()}))
                .collect::<Vec<_>>(),
            "flags": u32::from(self.context.flags) | 0x100 | if self.context.parent_span_id.is_some() { 0x200 } else { 0 },
            "status": match &self.error {
                None => json!({}),
                Some(e) => json!({"code": 2, "message": cut(e)}),
            },
        });
        if let Some(p) = self.context.parent_span_id {
            span["parentSpanId"] = json!(hex::encode(p));
        }
        if let Some(ts) = &self.context.tracestate {
            span["traceState"] = json!(ts);
        }
        span
    }
}

/// An `ExportTraceServiceRequest` (JSON) carrying `spans` for one service.
pub fn export_request(service_name: &str, spans: &[SpanData]) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service_name}},
            {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            {"key": "telemetry.sdk.name", "value": {"stringValue": "gavel"}},
            {"key": "telemetry.sdk.language", "value": {"stringValue": "rust"}},
        ]},
        "scopeSpans": [{
            "scope": {"name": "gavel", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans.iter().map(SpanData::otlp).collect::<Vec<_>>(),
        }],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(parent: bool) -> SpanContext {
        let meta = json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=b"});
        SpanContext::for_request(if parent { meta.as_object() } else { None })
    }

    #[test]
    fn the_json_has_the_otlp_shape() {
        let mut s = SpanData::new(ctx(true), "gavel.decide tools/call".into());
        s.set("gavel.decision.allow", AttrValue::Bool(false));
        s.set(
            "gavel.decision.reasons",
            AttrValue::StrList(vec!["static_rule".into()]),
        );
        s.set("gavel.n", AttrValue::Int(7));
        s.end_unix_ns = s.start_unix_ns + 5;
        let req = export_request("svc", std::slice::from_ref(&s));
        let rs = &req["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "svc"}})
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        assert_eq!(span["traceState"], "a=b");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["flags"], 0x301);
        assert_eq!(span["endTimeUnixNano"], (s.start_unix_ns + 5).to_string());
        let attrs = span["attributes"].as_array().unwrap();
        assert_eq!(
            attrs[0],
            json!({"key": "gavel.decision.allow", "value": {"boolValue": false}})
        );
        assert_eq!(
            attrs[1]["value"]["arrayValue"]["values"][0]["stringValue"],
            "static_rule"
        );
        assert_eq!(attrs[2]["value"]["intValue"], "7");
        assert_eq!(span["status"], json!({}));
    }

    #[test]
    fn a_root_span_has_no_parent_and_attributes_are_bounded() {
        let mut s = SpanData::new(ctx(false), "x".into());
        s.set("k", AttrValue::Str("é".repeat(5000)));
        s.set("k", AttrValue::Str("y".repeat(5000)));
        s.set("l", AttrValue::StrList(vec!["a".into(); 1000]));
        s.error = Some("upstream failed".into());
        let span = s.otlp();
        assert!(span.get("parentSpanId").is_none());
        assert_eq!(span["flags"], 0x101);
        let attrs = span["attributes"].as_array().unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(
            attrs[0]["value"]["stringValue"].as_str().unwrap().len(),
            MAX_ATTR_CHARS
        );
        assert_eq!(
            attrs[1]["value"]["arrayValue"]["values"]
                .as_array()
                .unwrap()
                .len(),
            MAX_ATTR_LIST
        );
        assert_eq!(span["status"]["code"], 2);
    }
}
