//! OPA's file hashing (`v1/bundle/hash.go`), bit for bit: raw bytes for
//! unstructured files (`.rego`, `data.yml`, …); for structured documents
//! (`data.json`, `data.yaml`, `.manifest`, `signatures.json`) a canonical JSON
//! stream — keys sorted byte-wise, no whitespace, number literals kept as
//! written (OPA decodes with `json.Number`), Go's string escaping (U+2028 and
//! U+2029 escaped, `<>&` not). A tiny parser of our own keeps number text
//! exact without switching serde_json to arbitrary precision crate-wide.

use sha2::{Digest, Sha256};

/// Whether OPA hashes this file as a structured document.
pub fn is_structured(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    matches!(
        base,
        "data.json" | "data.yaml" | ".manifest" | "signatures.json" | ".signatures.json"
    )
}

/// Canonical bytes OPA hashes for a structured document.
pub fn canonical_json(text: &str) -> Result<Vec<u8>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        out: Vec::with_capacity(text.len()),
    };
    p.ws();
    p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(p.out)
}

/// The bytes OPA hashes for a file at `path` (YAML structured docs are
/// converted to JSON first).
pub fn hash_input(path: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !is_structured(path) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{path}: not UTF-8: {e}"))?;
    // The reader has scanned bundle files already; this entry point is
    // public, so whoever calls it gets the same bound before the parser.
    super::nesting::check(path, bytes).map_err(|e| format!("{path}: {e}"))?;
    if path.ends_with(".yaml") {
        let v = regorus::Value::from_yaml_str(text).map_err(|e| format!("{path}: {e}"))?;
        let json = v.to_json_str().map_err(|e| format!("{path}: {e}"))?;
        return canonical_json(&json).map_err(|e| format!("{path}: {e}"));
    }
    canonical_json(text).map_err(|e| format!("{path}: {e}"))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex digest with one of OPA's hashing algorithms (`MD5`, `SHA-1`,
/// `SHA-224`, `SHA-256`, `SHA-384`, `SHA-512`, `SHA-512-224`, `SHA-512-256`).
pub fn file_digest(algorithm: &str, bytes: &[u8]) -> Option<String> {
    use sha2::{Sha224, Sha384, Sha512, Sha512_224, Sha512_256};
    Some(match algorithm {
        "MD5" => hex::encode(md5::Md5::digest(bytes)),
        "SHA-1" => hex::encode(sha1::Sha1::digest(bytes)),
        "SHA-224" => hex::encode(Sha224::digest(bytes)),
        "SHA-256" => hex::encode(Sha256::digest(bytes)),
        "SHA-384" => hex::encode(Sha384::digest(bytes)),
        "SHA-512" => hex::encode(Sha512::digest(bytes)),
        "SHA-512-224" => hex::encode(Sha512_224::digest(bytes)),
        "SHA-512-256" => hex::encode(Sha512_256::digest(bytes)),
        _ => return None,
    })
}

const MAX_DEPTH: usize = 256;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    out: Vec<u8>,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nesting too deep".into());
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => {
                self.i += 1;
                self.out.push(b'[');
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    self.out.push(b']');
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            self.out.push(b',');
                        }
                        Some(b']') => {
                            self.i += 1;
                            self.out.push(b']');
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                let s = self.string()?;
                encode_string(&s, &mut self.out);
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            _ => Err(format!("unexpected input at byte {}", self.i)),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            self.out.extend_from_slice(lit);
            Ok(())
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }

    fn number(&mut self) -> Result<(), String> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let lit = &self.s[start..self.i];
        std::str::from_utf8(lit)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or_else(|| format!("bad number at byte {start}"))?;
        self.out.extend_from_slice(lit);
        Ok(())
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.i;
        self.expect(b'"')?;
        let mut end = self.i;
        let mut escaped = false;
        while end < self.s.len() {
            let c = self.s[end];
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                break;
            }
            end += 1;
        }
        if end >= self.s.len() {
            return Err(format!("unterminated string at byte {start}"));
        }
        let raw = &self.s[start..=end];
        self.i = end + 1;
        serde_json::from_slice::<String>(raw)
            .map_err(|e| format!("bad string at byte {start}: {e}"))
    }

    fn object(&mut self, depth: usize) -> Result<(), String> {
        self.i += 1;
        let mut members: Vec<(String, Vec<u8>)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                let key = self.string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
                let saved = std::mem::take(&mut self.out);
                self.value(depth + 1)?;
                let v = std::mem::replace(&mut self.out, saved);
                members.push((key, v));
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                }
            }
        }
        // Duplicate keys: Go keeps the last one.
        members.reverse();
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        members.dedup_by(|a, b| a.0 == b.0);
        self.out.push(b'{');
        for (n, (k, v)) in members.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            encode_string(k, &mut self.out);
            self.out.push(b':');
            self.out.extend_from_slice(v);
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Go `encoding/json` string escaping with `SetEscapeHTML(false)`.
fn encode_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors(file: &str) -> Vec<Value> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/opa-signing")
            .join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn digest(alg: &str, bytes: &[u8]) -> Option<String> {
        file_digest(alg, bytes)
    }

    #[test]
    fn opa_hashing_vectors() {
        let mut checked = 0;
        for file in ["hashing.json", "hashing_derived.json"] {
            for v in vectors(file) {
                let Some(name) = v["input_file_name"].as_str().or(v["file_name"].as_str()) else {
                    continue;
                };
                let Some(input) = v["input"].as_str() else {
                    continue;
                };
                let bytes = hash_input(name, input.as_bytes()).unwrap();
                if let Some(canon) = v["canonical_bytes_hashed"].as_str() {
                    assert_eq!(
                        String::from_utf8_lossy(&bytes),
                        canon,
                        "{}",
                        v["description"]
                    );
                }
                if let (Some(alg), Some(hex)) =
                    (v["algorithm"].as_str(), v["expected_hex"].as_str())
                    && let Some(d) = digest(alg, &bytes)
                {
                    assert_eq!(d, hex, "{}", v["description"]);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 20, "every vector runs");
    }

    #[test]
    fn canonical_rules() {
        let c = |s: &str| String::from_utf8(canonical_json(s).unwrap()).unwrap();
        assert_eq!(
            c(r#"{ "b": 1.0, "a": [true, null, "x<&>"] }"#),
            r#"{"a":[true,null,"x<&>"],"b":1.0}"#
        );
        assert_eq!(c("\"\u{2028}\""), r#""\u2028""#);
        assert!(canonical_json("{").is_err());
        assert!(!is_structured("a/data.yml"));
        assert!(is_structured("/a/data.json"));
    }
}
