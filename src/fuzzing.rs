//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus
//! replay test (`tests/e2e/fuzz_replay.rs`), so the corpus runs on stable in CI.
//! Each checks an invariant and panics on violation; a panic is a finding.

use crate::transport::idscan::IdScanner;

/// The streaming id scanner never panics, and on a complete JSON-RPC object
/// agrees with a real JSON parser about the top-level `id`.
pub fn idscan(data: &[u8]) {
    let mut whole = IdScanner::new();
    whole.feed(data);
    let r = whole.result();
    // Chunking must not change the answer (the transport feeds pieces).
    let mut pieces = IdScanner::new();
    for chunk in data.chunks(3) {
        pieces.feed(chunk);
    }
    assert_eq!(pieces.result(), r, "chunked scan differs");
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(data) {
        let expected = obj
            .get("id")
            .and_then(|v| serde_json::from_value::<rmcp::model::RequestId>(v.clone()).ok());
        // Only ids the scanner can hold (short raw tokens) are comparable.
        let short = obj.get("id").is_some_and(|v| v.to_string().len() < 200);
        let unique_keys = String::from_utf8_lossy(data)
            .matches("\"id\"")
            .nth(1)
            .is_none();
        if short && unique_keys {
            assert_eq!(r.id, expected, "scanner and parser disagree on the id");
            assert_eq!(r.has_method, obj.contains_key("method"));
        }
    }
}

/// The bundle reader never panics on any bytes, and whatever it accepts has
/// only normalised, in-bundle paths and respects the limits.
pub fn bundle_reader(data: &[u8]) {
    let limits = crate::bundle::BundleLimits {
        max_files: 64,
        max_file_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
    };
    if let Ok(b) = crate::bundle::load_bundle_tar_gz("fuzz", "fuzz", data, &limits) {
        assert!(b.files.len() <= limits.max_files);
        let total: usize = b.files.iter().map(|f| f.bytes.len()).sum();
        assert!(total as u64 <= limits.max_total_bytes);
        for f in &b.files {
            assert!(
                !f.path.starts_with('/') && !f.path.split('/').any(|s| s == ".." || s.is_empty()),
                "{}",
                f.path
            );
        }
        let _ = crate::bundle::lint::lint(&b, false);
    }
}

/// The HS256 secret the `bundle_verified` corpus is signed with (what a
/// server would trust; long enough for RFC 7518 §3.2).
pub const BUNDLE_FUZZ_SECRET: &str = "fuzz-bundle-secret-of-32-bytes-at-least";

/// A registry bundle as a server with keys takes it: read (bounded, nesting
/// pre-scanned, nothing parsed), signature verified, and only then parsed.
/// Never panics; whatever the reader keeps is within the nesting bounds (so
/// no parser meets an expensive input); nothing unverified is parsed.
pub fn bundle_verified(data: &[u8]) {
    use crate::bundle::verify::{VerificationConfig, VerificationKey, verify_raw};
    let limits = crate::bundle::BundleLimits {
        max_files: 64,
        max_file_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
    };
    let Ok(raw) = crate::bundle::read_bundle_tar_gz("fuzz", "fuzz", data, &limits) else {
        return;
    };
    for f in &raw.files {
        assert!(
            crate::bundle::nesting::check(&f.path, &f.bytes).is_ok(),
            "{} passed the reader beyond the nesting bounds",
            f.path
        );
    }
    let mut cfg = VerificationConfig::default();
    cfg.keys.insert(
        "fuzz".into(),
        VerificationKey {
            algorithm: "HS256".into(),
            key: BUNDLE_FUZZ_SECRET.into(),
            scope: None,
        },
    );
    // As a server with keys: unsigned (Ok(None)) or refused → never parsed.
    if let Ok(Some(_)) = verify_raw(&raw, Some(&cfg), "")
        && let Ok(b) = raw.parse()
    {
        let _ = crate::bundle::lint::lint(&b, false);
    }
}

/// `.signatures.json` and JWT parsing never panic on any bytes, and never
/// accept a token under a key it was not signed with.
pub fn signatures(data: &[u8]) {
    use crate::bundle::verify::{
        VerificationConfig, VerificationKey, verify_signatures_for_fuzzing,
    };
    let mut cfg = VerificationConfig::default();
    cfg.keys.insert(
        "foo".into(),
        VerificationKey {
            algorithm: "HS256".into(),
            key: "fuzz-secret-never-used-to-sign".into(),
            scope: None,
        },
    );
    assert!(
        verify_signatures_for_fuzzing(data, &cfg).is_err(),
        "a token verified under a key nobody signed with"
    );
}

/// OCI manifest and index parsing never panics, and whatever it accepts
/// names only well-formed sha256 digests with non-negative sizes, and an
/// accepted image always yields OPA's bundle layer media type.
pub fn oci_manifest(data: &[u8]) {
    use crate::bundle::oci::manifest::{Document, LAYER_MEDIA_TYPE, parse};
    let well_formed = |d: &str| {
        d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    for ct in [None, Some("application/vnd.oci.image.index.v1+json")] {
        match parse(data, ct) {
            Ok(Document::Image { layer }) => {
                assert_eq!(layer.media_type, LAYER_MEDIA_TYPE);
                assert!(well_formed(&layer.digest) && layer.size >= 0);
            }
            Ok(Document::Index { manifests }) => {
                assert!(!manifests.is_empty());
                for m in manifests {
                    assert!(well_formed(&m.digest) && m.size >= 0);
                    assert!(
                        !m.platform
                            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
                    );
                }
            }
            Err(_) => {}
        }
    }
    // References: parse never panics, and what parses prints back to itself.
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = crate::bundle::oci::OciRef::parse(s.trim())
    {
        let again =
            crate::bundle::oci::OciRef::parse(&r.to_string()).expect("normalized form parses");
        assert_eq!(again, r);
    }
}

/// Resource-URI template matching (`router::uri_template`): never panics, does
/// work linear in the URI (counted, not timed), and on small inputs agrees with
/// the backtracking matcher it replaced ([`uri_template_reference`]). The input
/// is `template\nuri`.
pub fn uri_template(data: &[u8]) {
    use crate::upstream::uri_template::UriTemplate;
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let (template, uri) = text.split_once('\n').unwrap_or((text, ""));
    let t = UriTemplate::parse(template);
    let (matched, steps) = t.matches_counting(uri);
    assert!(
        steps <= t.step_bound(uri),
        "{steps} steps for a {}-byte URI",
        uri.len()
    );
    // The reference backtracks: only small inputs are comparable in time.
    if t.problem().is_none() && uri.len() <= 48 && template.matches('{').count() <= 6 {
        assert_eq!(
            matched,
            uri_template_reference(template, uri),
            "{template:?} vs {uri:?}"
        );
    }
}

/// The backtracking matcher gavel used before the linear one, kept as the
/// reference its replacement must agree with. Exponential in the number of
/// expressions on hostile URIs: never call it on agent input. Its template
/// parsing repeats `UriTemplate::parse` on purpose: an oracle that shared the
/// parser under test would agree with that parser's bugs.
pub fn uri_template_reference(template: &str, uri: &str) -> bool {
    #[derive(Debug)]
    enum Part {
        Lit(String),
        Var { reserved: bool },
        Rest,
    }
    fn match_from(parts: &[Part], s: &str) -> bool {
        match parts.first() {
            None => s.is_empty(),
            Some(Part::Lit(l)) => s
                .strip_prefix(l.as_str())
                .is_some_and(|r| match_from(&parts[1..], r)),
            Some(Part::Rest) => match_from(&parts[1..], "") || parts.len() == 1,
            Some(Part::Var { reserved }) => {
                let limit = s
                    .char_indices()
                    .find(|(_, c)| !reserved && matches!(c, '/' | '?' | '#'))
                    .map_or(s.len(), |(i, _)| i);
                (1..=limit)
                    .filter(|i| s.is_char_boundary(*i))
                    .any(|i| match_from(&parts[1..], &s[i..]))
            }
        }
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else {
            parts.push(Part::Lit(rest[open..].to_string()));
            rest = "";
            break;
        };
        let expr = &rest[open + 1..open + close];
        parts.push(match expr.chars().next() {
            Some('+') | Some('#') => Part::Var { reserved: true },
            Some('?') | Some('&') => Part::Rest,
            _ => Part::Var { reserved: false },
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    match_from(&parts, uri)
}

/// The id scanner's depth handling: a line built from `data` — the id (plain
/// or with an escaped key, a number or a string) first, before, after or
/// last around `params` nested 0–6000 levels deep, each level an object or
/// an array holding decoy ids and strings full of quotes, escapes and
/// brackets — is scanned to exactly its top-level id, method and depth, in
/// any chunking. Beyond serde_json's depth this is the only way gavel finds
/// the id to answer on (transport/line.rs), so the parser is only a
/// cross-check where it can read the line.
pub fn idscan_depth(data: &[u8]) {
    let [d0, d1, flags, shape @ ..] = data else {
        return;
    };
    let (d0, d1, flags) = (*d0, *d1, *flags);
    let depth = usize::from(u16::from_le_bytes([d0, d1])) % 6000;
    // Short strings keep a 6000-level line a few hundred KiB.
    let shape = &shape[..shape.len().min(48)];
    let (line, id) = deep_line(d0, flags, depth, shape);
    let has_method = flags & 0x08 != 0;
    let expected: rmcp::model::RequestId = serde_json::from_str(&id).expect("a valid id");
    let step = 1 + usize::from(flags >> 6) * 997;
    let mut chunked = IdScanner::new();
    for chunk in line.as_bytes().chunks(step) {
        chunked.feed(chunk);
    }
    let r = chunked.result();
    assert_eq!(r.id.as_ref(), Some(&expected), "id of {line:.300}");
    assert_eq!(r.has_method, has_method, "method of {line:.300}");
    assert!(!r.has_outcome, "result_ is not result");
    // An array level holds a `{"id":…}` object: one more level inside the innermost.
    let innermost_array = depth > 0 && !level_is_object(shape, depth - 1);
    let want = depth + 1 + usize::from(innermost_array);
    assert_eq!(r.max_depth as usize, want, "depth of {line:.300}");
    let mut whole = IdScanner::new();
    whole.feed(line.as_bytes());
    assert_eq!(whole.result(), r, "chunked scan differs");
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
        assert_eq!(
            v["id"],
            serde_json::to_value(&expected).unwrap(),
            "the generator"
        );
    } else {
        assert!(
            depth + 1 > 127,
            "only the depth makes {line:.300} unreadable"
        );
    }
}

/// Whether nesting level `level` of [`idscan_depth`]'s line is an object
/// (else an array), as `shape` says.
fn level_is_object(shape: &[u8], level: usize) -> bool {
    shape
        .get(level % shape.len().max(1))
        .is_none_or(|b| b & 1 == 0)
}

/// [`idscan_depth`]'s line and the JSON text of its top-level id: `flags`
/// choose the id's form (number or string, escaped key), whitespace, a
/// method or not, and where the id sits around `params`.
fn deep_line(d0: u8, flags: u8, depth: usize, shape: &[u8]) -> (String, String) {
    let filler = serde_json::to_string(&String::from_utf8_lossy(shape)).expect("a string");
    let id_key = if flags & 0x20 != 0 {
        r#""\u0069d""#
    } else {
        r#""id""#
    };
    let id = if flags & 0x04 != 0 {
        let short: String = String::from_utf8_lossy(shape).chars().take(16).collect();
        serde_json::to_string(&short).expect("a string")
    } else {
        (u64::from(d0) * 7 + u64::from(flags)).to_string()
    };
    let ws = if flags & 0x10 != 0 { " \t " } else { "" };
    let params = nested_params(depth, shape, ws, &filler);
    let id_member = format!("{id_key}{ws}:{ws}{id}");
    let method = if flags & 0x08 != 0 {
        r#","method":"tools/call""#
    } else {
        r#","result_":1"#
    };
    let line = match flags & 0x03 {
        0 => format!(r#"{{{ws}{id_member},"jsonrpc":"2.0"{method},"params":{params}}}"#),
        1 => format!(r#"{{"jsonrpc":"2.0"{method},{id_member},"params":{params}}}"#),
        2 => format!(r#"{{"jsonrpc":"2.0"{method},"params":{params},{id_member}}}"#),
        _ => format!(r#"{{"jsonrpc":"2.0","params":{params}{method},{ws}{id_member}{ws}}}"#),
    };
    (line, id)
}

/// `params` nested `depth` levels deep, each level holding decoy ids and the
/// `filler` string.
fn nested_params(depth: usize, shape: &[u8], ws: &str, filler: &str) -> String {
    let mut params = String::new();
    for level in 0..depth {
        if level_is_object(shape, level) {
            params.push_str(&format!(r#"{{{ws}"id"{ws}:{ws}{level},{filler}:{ws}"#));
        } else {
            params.push_str(&format!(r#"[{ws}{filler},{{"id":{level}}},{ws}"#));
        }
    }
    params.push_str(filler);
    for level in (0..depth).rev() {
        params.push(if level_is_object(shape, level) {
            '}'
        } else {
            ']'
        });
    }
    params
}

/// A modern upstream's JSON-lines answer (`upstream::modern_http`): the
/// reader never panics, every value it cuts is one whole JSON value within
/// the bound, and cutting does not depend on how the bytes arrive (whole,
/// or in pieces of 3 as a network might deliver them).
pub fn json_lines(data: &[u8]) {
    use crate::upstream::modern_http::read::Values;
    const MAX: usize = 256;
    let cut = |chunk: usize| -> (Vec<Vec<u8>>, bool) {
        let mut v = Values::new(MAX);
        let mut out = Vec::new();
        let mut failed = false;
        let step = |v: &mut Values, fresh: bool, ended: bool, out: &mut Vec<Vec<u8>>| loop {
            match v.next_value(fresh, ended) {
                Ok(Some(x)) => out.push(x.to_vec()),
                Ok(None) => return true,
                Err(_) => return false,
            }
        };
        for piece in data.chunks(chunk.max(1)) {
            v.push(piece);
            if !step(&mut v, piece.contains(&b'\n'), false, &mut out) {
                failed = true;
                break;
            }
        }
        if !failed && !step(&mut v, false, true, &mut out) {
            failed = true;
        }
        (out, failed)
    };
    let (whole, whole_failed) = cut(data.len());
    let (pieces, pieces_failed) = cut(3);
    for x in whole.iter().chain(&pieces) {
        assert!(x.len() <= MAX, "a value over the bound");
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(x).is_ok(),
            "not one whole JSON value: {:?}",
            String::from_utf8_lossy(x)
        );
    }
    // What both read before either failed is the same, value for value.
    let n = whole.len().min(pieces.len());
    assert_eq!(whole[..n], pieces[..n], "cutting depends on the pieces");
    if !whole_failed && !pieces_failed {
        assert_eq!(whole, pieces, "cutting depends on the pieces");
    }
}
