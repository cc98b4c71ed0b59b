//! Streaming scan of one JSON-RPC line for its top-level `id` and `method`.
//!
//! When a line exceeds the message limit gavel must not buffer it, yet it still
//! has to answer the request (or fail the call the reply belongs to) on the
//! right id — otherwise the peer waits forever. This scanner looks at the bytes
//! once, as they stream past, keeping only a few hundred bytes of state.

use rmcp::model::RequestId;

/// Longest raw `id` token kept; a longer one is treated as absent.
const MAX_ID_BYTES: usize = 256;
/// Longest top-level key kept while looking for `id` / `method`.
const MAX_KEY_BYTES: usize = 16;

#[derive(Debug, Default)]
pub struct IdScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, expecting a key (after `{` or `,`).
    expect_key: bool,
    /// Capturing the current depth-1 key; `None` when over `MAX_KEY_BYTES`.
    key: Option<Vec<u8>>,
    capturing_key: bool,
    /// The key whose value follows (set at `:`).
    value_key: Option<Vec<u8>>,
    /// Raw bytes of the `id` value while it streams past.
    id_raw: Option<Vec<u8>>,
    capturing_id: bool,
    found_id: Option<Vec<u8>>,
    found_method: bool,
}

/// What the scan found in an oversized message.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    pub id: Option<RequestId>,
    /// `true` when the message has a top-level `method`: a request or notification.
    pub has_method: bool,
}

impl IdScanner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        if self.capturing_id {
            self.capture_id_byte(b);
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
                self.push_key(b);
                return;
            }
            match b {
                b'\\' => {
                    self.escaped = true;
                    self.push_key(b);
                }
                b'"' => {
                    self.in_string = false;
                    self.capturing_key = false;
                }
                _ => self.push_key(b),
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.capturing_key = true;
                    self.key = Some(Vec::new());
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.expect_key = b == b'{';
                }
            }
            b'}' | b']' => {
                if self.depth == 1 {
                    self.finish_value();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b':' if self.depth == 1 && self.expect_key => {
                self.expect_key = false;
                self.value_key = self.key.take();
                match self.value_key.as_deref() {
                    Some(b"id") => {
                        self.capturing_id = true;
                        self.id_raw = Some(Vec::new());
                    }
                    Some(b"method") => self.found_method = true,
                    _ => {}
                }
            }
            b',' if self.depth == 1 => {
                self.finish_value();
                self.expect_key = true;
            }
            _ => {}
        }
    }

    fn push_key(&mut self, b: u8) {
        if !self.capturing_key {
            return;
        }
        if let Some(k) = self.key.as_mut() {
            if k.len() < MAX_KEY_BYTES {
                k.push(b);
            } else {
                self.key = None;
            }
        }
    }

    fn capture_id_byte(&mut self, b: u8) {
        // The terminating `,` or `}` at depth 1 is handled by `finish_value`.
        if !self.in_string && self.depth == 1 && (b == b',' || b == b'}') {
            return;
        }
        if let Some(raw) = self.id_raw.as_mut() {
            if raw.len() < MAX_ID_BYTES {
                raw.push(b);
            } else {
                self.id_raw = None;
            }
        }
    }

    fn finish_value(&mut self) {
        if self.capturing_id {
            self.capturing_id = false;
            self.found_id = self.id_raw.take();
        }
        self.value_key = None;
    }

    pub fn result(&self) -> ScanResult {
        let raw = self.found_id.as_ref().or(self.id_raw.as_ref());
        let id = raw.and_then(|raw| serde_json::from_slice::<RequestId>(raw.trim_ascii()).ok());
        ScanResult {
            id,
            has_method: self.found_method,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    fn scan(s: &str) -> ScanResult {
        let mut sc = IdScanner::new();
        // Feed in small pieces to exercise state carried across chunks.
        for chunk in s.as_bytes().chunks(3) {
            sc.feed(chunk);
        }
        sc.result()
    }

    #[test]
    fn finds_numeric_id_after_huge_params() {
        let big = "x".repeat(10_000);
        let line = format!(
            r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{big}","id":99}}}},"id":7}}"#
        );
        let r = scan(&line);
        assert_eq!(r.id, Some(NumberOrString::Number(7)));
        assert!(r.has_method);
    }

    #[test]
    fn finds_string_id_with_escapes_and_nested_decoys() {
        let line =
            r#"{"id":"a\"b,}","result":{"id":5,"method":"x","content":[{"text":"\"id\":1"}]}}"#;
        let r = scan(line);
        assert_eq!(r.id, Some(NumberOrString::String("a\"b,}".into())));
        assert!(!r.has_method, "nested method keys do not count");
    }

    #[test]
    fn id_first_and_last() {
        assert_eq!(
            scan(r#"{ "id" : 12 , "result": {}}"#).id,
            Some(NumberOrString::Number(12))
        );
        assert_eq!(
            scan(r#"{"result": {"a":[1,2,{"id":3}]}, "id": 4}"#).id,
            Some(NumberOrString::Number(4))
        );
    }

    #[test]
    fn no_id_or_garbage() {
        assert_eq!(scan(r#"{"method":"notifications/x","params":{}}"#).id, None);
        assert_eq!(scan("not json at all").id, None);
        assert_eq!(scan(r#"{"id":null}"#).id, None);
        assert_eq!(
            scan(r#"[{"id":1}]"#).id,
            None,
            "batches are not JSON-RPC 2025"
        );
    }

    #[test]
    fn truncated_line_still_reports_id_seen_so_far() {
        // The limit may cut the line before its end; an id already complete is kept.
        assert_eq!(
            scan(r#"{"id":5,"result":{"content":[{"text":"xxxx"#).id,
            Some(NumberOrString::Number(5))
        );
    }
}
