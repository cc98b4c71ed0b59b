//! Streaming scan of one JSON-RPC line for its top-level `id` and `method`.
//!
//! gavel must answer every request on its id (or fail the call a reply
//! belongs to), or the peer waits forever — also when the line cannot be
//! parsed: over the message limit (never buffered: the scanner sees the bytes
//! once, as they stream past) or nested deeper than serde_json's recursion
//! limit (a parser cannot read it, a byte scanner can). The scanner keeps only
//! a few hundred bytes of state whatever the size or the depth of the line.
//!
//! It does not validate JSON; it tracks strings (quotes, escapes) and nesting
//! well enough to tell top-level keys from nested ones, so a decoy `"id"`
//! inside `params` or inside a string never counts. Keys are compared after
//! JSON unescaping (`"\u0069d"` is `id`, as a parser reads it). Only the first
//! top-level value counts: bytes after it are ignored.

use rmcp::model::RequestId;

/// Longest raw `id` token kept; a longer one is treated as absent.
const MAX_ID_BYTES: usize = 256;
/// Longest raw (still escaped) top-level key kept while looking for `id`,
/// `method`, `result` and `error`: `"\u006d\u0065…"` spells `method` in 36.
const MAX_KEY_BYTES: usize = 64;

#[derive(Debug, Default)]
pub struct IdScanner {
    depth: u32,
    /// The deepest nesting seen (saturating).
    max_depth: u32,
    /// The first top-level value has ended; the rest of the line is ignored.
    done: bool,
    /// The top-level value is an object (only its keys count).
    top_object: bool,
    in_string: bool,
    escaped: bool,
    /// At depth 1, expecting a key (after `{` or `,`).
    expect_key: bool,
    /// Capturing the current depth-1 key; `None` when over `MAX_KEY_BYTES`.
    key: Option<Vec<u8>>,
    capturing_key: bool,
    /// Raw bytes of the `id` value while it streams past.
    id_raw: Option<Vec<u8>>,
    capturing_id: bool,
    found_id: Option<Vec<u8>>,
    found_method: bool,
    found_outcome: bool,
}

/// What the scan found in a message gavel could not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    pub id: Option<RequestId>,
    /// `true` when the message has a top-level `method`: a request or notification.
    pub has_method: bool,
    /// `true` when the message has a top-level `result` or `error`: a response.
    pub has_outcome: bool,
    /// The deepest nesting of arrays and objects seen (the top level is 1).
    pub max_depth: u32,
}

impl IdScanner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        if self.capturing_id {
            self.capture_id_byte(b);
        }
        if self.in_string {
            self.string_byte(b);
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.top_object && self.expect_key {
                    self.capturing_key = true;
                    self.key = Some(Vec::new());
                }
            }
            b'{' | b'[' => {
                self.depth = self.depth.saturating_add(1);
                self.max_depth = self.max_depth.max(self.depth);
                if self.depth == 1 {
                    self.top_object = b == b'{';
                    self.expect_key = self.top_object;
                }
            }
            b'}' | b']' => {
                if self.depth == 1 {
                    self.finish_value();
                    self.done = true;
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b':' if self.depth == 1 && self.top_object && self.expect_key => {
                self.expect_key = false;
                let key = self.key.take();
                self.top_level_key(key);
            }
            b',' if self.depth == 1 && self.top_object => {
                self.finish_value();
                self.expect_key = true;
            }
            _ => {}
        }
    }

    fn string_byte(&mut self, b: u8) {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            self.capturing_key = false;
            return;
        }
        self.push_key(b);
    }

    /// A depth-1 key has ended at its `:`; its value follows.
    fn top_level_key(&mut self, raw: Option<Vec<u8>>) {
        let Some(name) = raw.and_then(|raw| unescape(&raw)) else {
            return;
        };
        match name.as_str() {
            "id" => {
                self.capturing_id = true;
                self.id_raw = Some(Vec::new());
            }
            "method" => self.found_method = true,
            "result" | "error" => self.found_outcome = true,
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
    }

    pub fn result(&self) -> ScanResult {
        let raw = self.found_id.as_ref().or(self.id_raw.as_ref());
        let id = raw.and_then(|raw| serde_json::from_slice::<RequestId>(raw.trim_ascii()).ok());
        ScanResult {
            id,
            has_method: self.found_method,
            has_outcome: self.found_outcome,
            max_depth: self.max_depth,
        }
    }
}

/// A key's raw bytes (between its quotes) as a parser reads them.
fn unescape(raw: &[u8]) -> Option<String> {
    if !raw.contains(&b'\\') {
        return String::from_utf8(raw.to_vec()).ok();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

#[cfg(test)]
mod tests;
