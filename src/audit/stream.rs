//! A decision-log record written straight from its parts into its line,
//! gavel's masking applied on the way (issue 17). The other way — build
//! the event as a `serde_json::Value`, mask it in place
//! ([`super::mask::mask_event`]), serialize it, drop it — copied the
//! bundles, the labels and (for a result record) the request's whole input
//! into a tree only to take it apart again: two records a call spent ~200k
//! instructions so. The bytes are the same, key for key (a
//! `serde_json::Map` is sorted, so the members are written in sorted order
//! here too), escape for escape (every string and value still goes through
//! `serde_json`'s serializer), mask for mask (the same secret test, the
//! same pointers in the same order, the same digests) — `stream_tests`
//! compares both ways over varied records.
//!
//! Only gavel's masking can be applied while writing: a bundle's
//! `log.drop`/`log.mask` rules read the whole event, so a server whose
//! bundles have them still builds it ([`super::record::write_event`]).

use serde_json::{Map, Value};

use super::mask::{MaskSettings, is_secret_name};

/// A record's `bundles` member — the same for every record an engine makes
/// — kept as a value (for the rules' event, replay and the shadow) and
/// serialized once, so a record copies its bytes instead of escaping it
/// again.
#[derive(Debug)]
pub struct Bundles {
    value: Value,
    json: Box<[u8]>,
}

impl Bundles {
    pub fn new(value: Value) -> Bundles {
        // A Value always serializes.
        let json = serde_json::to_vec(&value).unwrap_or_default().into();
        Bundles { value, json }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// `{}`: a record of a decision no bundle made.
    pub fn none() -> &'static Bundles {
        static NONE: std::sync::OnceLock<Bundles> = std::sync::OnceLock::new();
        NONE.get_or_init(|| Bundles::new(Value::Object(Map::new())))
    }
}

/// A decision-shaped record's members (docs/decision-log.md), borrowed.
/// `result` is a `Value`, or anything that serializes as one would: its
/// members in sorted order (a result record's summary).
pub struct Parts<'a, R: serde::Serialize + ?Sized = Value> {
    pub bundles: &'a Bundles,
    /// Always a member (`null` when none).
    pub decision_id: Option<&'a str>,
    /// A result record's `result_of`: a member only when `Some` (`null`
    /// inside when the request had no id).
    pub result_of: Option<Option<&'a str>>,
    pub timestamp: &'a str,
    pub path: &'a str,
    pub input: &'a Value,
    /// `input.output` (a result record's): set on an object input as
    /// `insert` would, replacing a member of that name.
    pub output: Option<&'a Value>,
    /// `input` as the request's own record wrote it ([`line_keeping`]):
    /// with `output`, its bytes are written again instead of `input`
    /// being serialized and masked again (the same value, the same
    /// masking: the same bytes).
    pub written: Option<&'a WrittenInput>,
    pub result: &'a R,
    pub labels: &'a Map<String, Value>,
    pub eval_ns: u64,
    pub decision_ns: u64,
    pub upstream_classes: Option<&'a [String]>,
    /// `(trace_id, span_id)`.
    pub trace: Option<(&'a str, &'a str)>,
}

/// A request record's `input` as written, masked, kept for the record of
/// its result (which holds the same input with `output` set in it): the
/// members before where `output` goes and those after it, and the
/// pointers masking them listed.
#[derive(Debug)]
pub struct WrittenInput {
    before: Vec<u8>,
    /// Without a leading comma.
    after: Vec<u8>,
    masked: Vec<String>,
    /// The masking it was written with: used only under the same.
    secret_fields: Vec<String>,
    max_arg_bytes: usize,
}

impl WrittenInput {
    fn fits(&self, mask: &MaskSettings) -> bool {
        self.max_arg_bytes == mask.max_arg_bytes && self.secret_fields == mask.secret_fields
    }
}

/// The record's line (with its newline), masked as
/// [`super::mask::mask_event`] masks the event.
pub fn line<R: serde::Serialize + ?Sized>(p: &Parts<R>, mask: &MaskSettings) -> Vec<u8> {
    write(p, mask, false).0
}

/// [`line`], keeping its `input` as written for the result record of the
/// same request (`None` when the input is not an object or has an
/// `output` of its own: that record then writes it itself).
pub fn line_keeping<R: serde::Serialize + ?Sized>(
    p: &Parts<R>,
    mask: &MaskSettings,
) -> (Vec<u8>, Option<WrittenInput>) {
    write(p, mask, true)
}

fn write<R: serde::Serialize + ?Sized>(
    p: &Parts<R>,
    mask: &MaskSettings,
    keep: bool,
) -> (Vec<u8>, Option<WrittenInput>) {
    let mut w = Writer {
        out: Vec::with_capacity(p.bundles.json.len() + 2048),
        mask,
        masked: Vec::new(),
        path: String::new(),
        keep: None,
    };
    w.raw(b"{\"bundles\":");
    w.raw(&p.bundles.json);
    w.raw(b",\"decision_id\":");
    w.value(&p.decision_id);
    w.raw(b",\"input\":");
    let start = w.out.len();
    match (p.output, p.written) {
        (Some(output), Some(written)) if written.fits(mask) => w.written(written, output),
        _ => w.input(p.input, p.output),
    }
    let kept = match (keep, p.output, w.keep.take()) {
        (true, None, Some((split, end))) => {
            // `{` + before + `,`? + after + `}`; offsets are into `out`.
            let before = w.out[start + 1..split].to_vec();
            let after = &w.out[split..end];
            Some(WrittenInput {
                before,
                after: after.strip_prefix(b",").unwrap_or(after).to_vec(),
                masked: w.masked.clone(),
                secret_fields: mask.secret_fields.to_vec(),
                max_arg_bytes: mask.max_arg_bytes,
            })
        }
        _ => None,
    };
    w.raw(b",\"labels\":");
    crate::json_out::object(&mut w.out, p.labels);
    if !w.masked.is_empty() {
        w.raw(b",\"masked\":");
        let masked = std::mem::take(&mut w.masked);
        crate::json_out::strings(&mut w.out, &masked);
    }
    w.raw(b",\"metrics\":{\"timer_gavel_decision_ns\":");
    w.value(&p.decision_ns);
    w.raw(b",\"timer_rego_query_eval_ns\":");
    w.value(&p.eval_ns);
    w.raw(b"},\"path\":");
    crate::json_out::string(&mut w.out, p.path);
    w.raw(b",\"result\":");
    w.value(p.result);
    if let Some(of) = p.result_of {
        w.raw(b",\"result_of\":");
        w.value(&of);
    }
    if let Some((_, span_id)) = p.trace {
        w.raw(b",\"span_id\":");
        crate::json_out::string(&mut w.out, span_id);
    }
    w.raw(b",\"timestamp\":");
    crate::json_out::string(&mut w.out, p.timestamp);
    if let Some((trace_id, _)) = p.trace {
        w.raw(b",\"trace_id\":");
        crate::json_out::string(&mut w.out, trace_id);
    }
    if let Some(classes) = p.upstream_classes {
        w.raw(b",\"upstream_data_classes\":");
        crate::json_out::strings(&mut w.out, classes);
    }
    w.raw(b"}\n");
    (w.out, kept)
}

struct Writer<'a> {
    out: Vec<u8>,
    mask: &'a MaskSettings<'a>,
    /// The pointers masked so far, in `mask_event`'s order.
    masked: Vec<String>,
    /// The pointer to the value being written, while masking.
    path: String,
    /// Where an object input's `output` would go and where its members
    /// end (offsets into `out`), when it has no `output` of its own.
    keep: Option<(usize, usize)>,
}

impl Writer<'_> {
    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Anything serializable, as `serde_json` writes it (a `Value`, a
    /// string — escaped —, a number, a list).
    fn value<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Writing to a Vec fails only for a map with non-string keys,
        // which none of the parts is.
        let _ = serde_json::to_writer(&mut self.out, v);
    }

    /// A JSON value, as `serde_json` writes it (`crate::json_out`: the
    /// same bytes, without serde's machinery on this per-call path).
    fn json(&mut self, v: &Value) {
        crate::json_out::value(&mut self.out, v);
    }

    /// `"key":`, the key escaped as serde_json escapes a map key.
    fn key(&mut self, first: bool, k: &str) {
        if !first {
            self.out.push(b',');
        }
        crate::json_out::string(&mut self.out, k);
        self.out.push(b':');
    }

    /// The record's `input`, `output` set in it; masked where
    /// `mask_event` masks: `action.args`, `action.canonical_args` (secret
    /// names, then oversized arguments), `output` (secret names).
    fn input(&mut self, input: &Value, output: Option<&Value>) {
        let Value::Object(members) = input else {
            // `insert` sets nothing on a non-object, and masking reaches
            // nothing under one.
            return self.json(input);
        };
        self.out.push(b'{');
        let mut first = true;
        let mut output = output;
        let mut split = None;
        for (k, v) in members {
            if split.is_none() && k.as_str() >= "output" {
                split = Some(self.out.len());
            }
            if let Some(o) = output
                && k.as_str() >= "output"
            {
                self.key(first, "output");
                first = false;
                self.secrets_at("/input/output", o);
                output = None;
                if k == "output" {
                    // Replaced by the record's output.
                    continue;
                }
            }
            self.key(first, k);
            first = false;
            match (k.as_str(), v) {
                ("action", Value::Object(action)) => self.action(action),
                ("output", _) => self.secrets_at("/input/output", v),
                _ => self.json(v),
            }
        }
        if let Some(o) = output {
            self.key(first, "output");
            self.secrets_at("/input/output", o);
        }
        if !members.contains_key("output") {
            let end = self.out.len();
            self.keep = Some((split.unwrap_or(end), end));
        }
        self.out.push(b'}');
    }

    /// An input kept from the request's record, `output` set in it.
    fn written(&mut self, w: &WrittenInput, output: &Value) {
        self.out.push(b'{');
        self.raw(&w.before);
        self.masked.extend(w.masked.iter().cloned());
        self.key(w.before.is_empty(), "output");
        self.secrets_at("/input/output", output);
        if !w.after.is_empty() {
            self.out.push(b',');
            self.raw(&w.after);
        }
        self.out.push(b'}');
    }

    fn action(&mut self, action: &Map<String, Value>) {
        self.out.push(b'{');
        for (i, (k, v)) in action.iter().enumerate() {
            self.key(i == 0, k);
            match k.as_str() {
                "args" => self.arguments("/input/action/args", v),
                "canonical_args" => self.arguments("/input/action/canonical_args", v),
                _ => self.json(v),
            }
        }
        self.out.push(b'}');
    }

    /// `v` with its secret-named members masked, starting at pointer `at`.
    fn secrets_at(&mut self, at: &str, v: &Value) {
        self.path.clear();
        self.path.push_str(at);
        self.secrets(v);
    }

    /// Arguments (or their canonical forms) at pointer `at`: secret-named
    /// members masked anywhere under them, then each argument whose masked
    /// form is longer than `max_arg_bytes` written as its size and digest —
    /// the pointers of the first kind listed before those of the second,
    /// as `mask_event` lists them.
    fn arguments(&mut self, at: &str, v: &Value) {
        let Value::Object(args) = v else {
            return self.secrets_at(at, v);
        };
        let mut digested = Vec::new();
        self.out.push(b'{');
        for (i, (k, child)) in args.iter().enumerate() {
            self.key(i == 0, k);
            self.path.clear();
            self.path.push_str(at);
            let start = self.out.len();
            self.member(k, child);
            let len = self.out.len() - start;
            if len > self.mask.max_arg_bytes {
                let bytes = self.out.split_off(start);
                let sha = crate::bundle::canonical::sha256_hex(&bytes);
                self.raw(b"{\"sha256\":");
                crate::json_out::string(&mut self.out, &sha);
                self.raw(b",\"size_bytes\":");
                self.value(&bytes.len());
                self.raw(b",\"truncated\":true}");
                // The member's own name, as `mask_event` writes it.
                digested.push(format!("{at}/{k}"));
            }
        }
        self.out.push(b'}');
        self.masked.extend(digested);
    }

    /// Member `k` of the object at `self.path`: masked when its name is a
    /// secret's (and it is not null), else written with its own members
    /// masked. `self.path` is restored.
    fn member(&mut self, k: &str, child: &Value) {
        let len = self.path.len();
        self.path.push('/');
        for ch in k.chars() {
            match ch {
                '~' => self.path.push_str("~0"),
                '/' => self.path.push_str("~1"),
                c => self.path.push(c),
            }
        }
        if is_secret_name(k, self.mask.secret_fields) && !child.is_null() {
            self.raw(b"\"**REDACTED**\"");
            self.masked.push(self.path.clone());
        } else {
            self.secrets(child);
        }
        self.path.truncate(len);
    }

    /// `v` at `self.path`, secret-named members masked anywhere under it.
    fn secrets(&mut self, v: &Value) {
        use std::fmt::Write;
        match v {
            Value::Object(o) => {
                self.out.push(b'{');
                for (i, (k, child)) in o.iter().enumerate() {
                    self.key(i == 0, k);
                    self.member(k, child);
                }
                self.out.push(b'}');
            }
            Value::Array(a) => {
                self.out.push(b'[');
                let len = self.path.len();
                for (i, child) in a.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    let _ = write!(self.path, "/{i}");
                    self.secrets(child);
                    self.path.truncate(len);
                }
                self.out.push(b']');
            }
            _ => self.json(v),
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
