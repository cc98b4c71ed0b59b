//! A cheap, linear pre-scan of every file a bundle will hand to a parser
//! (Rego, JSON, YAML), run as the file is read — before the signature check,
//! the canonical hashing and any parser. The parsers behind gavel are not
//! linear in nesting: regorus's Rego parser backtracks on bracketed
//! expressions (a 240-byte `x := [[[…]]]` nested 19 deep took 11 s) and the
//! YAML parser on flow collections (460 bytes of `[` took 35 s). Bundle bytes
//! are untrusted until verified, and verifying a signed bundle itself parses
//! its structured files (OPA hashes them in canonical form), so the bound
//! comes first: a file nested deeper than its kind allows is refused, naming
//! the file, the line and the limit, before anything expensive sees it.
//!
//! The scans count brackets outside strings and comments (and, for YAML,
//! block indentation); they never need to be exact parsers — a miscount can
//! only over-estimate depth on odd but legal text, which then gets a clear
//! error rather than a slow parse.

/// Deepest bracket nesting a `.rego` file may have. Rule bodies, calls,
/// object and array literals and comprehensions each count one; this
/// repository's policies reach 9. regorus's parser time roughly doubles with
/// each level of `[`/`{` (measured on a debug build: 10 deep 0.8 s, 12 deep
/// 3.5 s, 16 deep 58 s; a release build is some 25 times faster), so the cap
/// keeps the worst case near a tenth of a second.
pub const MAX_REGO_NESTING: usize = 12;

/// Deepest nesting of a JSON or YAML data document (regorus refuses data
/// nested more than 128 deep anyway; a policy's data is rarely past 10).
pub const MAX_DATA_NESTING: usize = 64;

/// Deepest YAML flow-collection (`[`/`{`) nesting: the YAML parser's costly
/// case. Block (indented) collections count toward [`MAX_DATA_NESTING`].
pub const MAX_YAML_FLOW_NESTING: usize = 16;

/// What kind of parser a bundle file will meet, by its name (as the reader
/// and OPA's hashing decide): `None` for files nothing parses.
fn kind(path: &str) -> Option<Kind> {
    let base = path.rsplit('/').next().unwrap_or(path);
    if path.ends_with(".rego") {
        Some(Kind::Rego)
    } else if base.ends_with(".json") || base == ".manifest" {
        Some(Kind::Json)
    } else if base.ends_with(".yaml") || base.ends_with(".yml") {
        Some(Kind::Yaml)
    } else {
        None
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Rego,
    Json,
    Yaml,
}

/// Refuses a file nested deeper than its kind allows; the message names the
/// line, the limit and what to do.
pub fn check(path: &str, bytes: &[u8]) -> Result<(), String> {
    let found = match kind(path) {
        None => return Ok(()),
        Some(Kind::Rego) => brackets(bytes, MAX_REGO_NESTING, Syntax::Rego),
        Some(Kind::Json) => brackets(bytes, MAX_DATA_NESTING, Syntax::Json),
        Some(Kind::Yaml) => yaml(bytes),
    };
    match found {
        None => Ok(()),
        Some(TooDeep { line, limit, what }) => Err(format!(
            "{what} nested more than {limit} deep at line {line}; gavel refuses it before parsing (deep nesting makes the parsers slow): flatten the structure"
        )),
    }
}

struct TooDeep {
    line: usize,
    limit: usize,
    what: &'static str,
}

#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    Rego,
    Json,
}

/// Bracket depth outside strings (and, for Rego, raw strings and `#`
/// comments).
fn brackets(bytes: &[u8], limit: usize, syntax: Syntax) -> Option<TooDeep> {
    let what = match syntax {
        Syntax::Rego => "brackets",
        Syntax::Json => "JSON",
    };
    let (mut depth, mut line, mut i) = (0usize, 1usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    } else if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'`' if syntax == Syntax::Rego => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    line += usize::from(bytes[i] == b'\n');
                    i += 1;
                }
            }
            b'#' if syntax == Syntax::Rego => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(TooDeep { line, limit, what });
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// YAML: flow brackets (at a node's start, or inside a flow collection)
/// outside quotes and comments, and block depth from the stack of
/// indentations (plus compact `- - x` entries); block scalar text (`|`,
/// `>`) is skipped.
fn yaml(bytes: &[u8]) -> Option<TooDeep> {
    let text = String::from_utf8_lossy(bytes);
    let mut s = YamlScan::default();
    for (n, line) in text.lines().enumerate() {
        if let Some(d) = s.line(line, n + 1) {
            return Some(d);
        }
    }
    None
}

#[derive(Default)]
struct YamlScan {
    indents: Vec<usize>,
    flow: usize,
    quote: Option<u8>,
    /// The indentation of the line that opened a block scalar.
    block_scalar: Option<usize>,
}

impl YamlScan {
    fn line(&mut self, line: &str, n: usize) -> Option<TooDeep> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        if let Some(at) = self.block_scalar {
            if content.trim().is_empty() || indent > at {
                return None;
            }
            self.block_scalar = None;
        }
        let mut block = self.indents.len();
        if self.quote.is_none() && self.flow == 0 {
            if content.trim().is_empty() || content.starts_with('#') {
                return None;
            }
            if content.starts_with("---") || content.starts_with("...") {
                self.indents.clear();
                return None;
            }
            while self.indents.last().is_some_and(|&i| i >= indent) {
                self.indents.pop();
            }
            self.indents.push(indent);
            let mut rest = content;
            let mut compact = 0;
            while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
                compact += 1;
                rest = r.trim_start_matches(' ');
            }
            block = self.indents.len() + compact;
            if block > MAX_DATA_NESTING {
                return Some(TooDeep {
                    line: n,
                    limit: MAX_DATA_NESTING,
                    what: "YAML",
                });
            }
        }
        let end = match self.chars(content.as_bytes(), n, block) {
            Ok(end) => end,
            Err(deep) => return Some(deep),
        };
        if self.quote.is_none() && self.flow == 0 && opens_block_scalar(&content[..end]) {
            self.block_scalar = Some(indent);
        }
        None
    }

    /// Scans one line's characters (quotes may span lines, flow collections
    /// too); returns the length before a comment.
    fn chars(&mut self, b: &[u8], n: usize, block: usize) -> Result<usize, TooDeep> {
        let mut node_start = true;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match self.quote {
                Some(b'"') => {
                    if c == b'\\' {
                        i += 1;
                    } else if c == b'"' {
                        self.quote = None;
                    }
                }
                Some(_) => {
                    if c == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            self.quote = None;
                        }
                    }
                }
                None => match c {
                    b'#' if i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t' => return Ok(i),
                    b'"' | b'\'' if node_start => self.quote = Some(c),
                    b'[' | b'{' if node_start || self.flow > 0 => {
                        self.flow += 1;
                        if self.flow > MAX_YAML_FLOW_NESTING || block + self.flow > MAX_DATA_NESTING
                        {
                            return Err(TooDeep {
                                line: n,
                                limit: MAX_YAML_FLOW_NESTING,
                                what: "YAML flow collections",
                            });
                        }
                    }
                    b']' | b'}' if self.flow > 0 => self.flow -= 1,
                    _ => {}
                },
            }
            node_start = match c {
                b' ' | b'\t' => node_start,
                b':' | b'-' | b'[' | b'{' | b',' | b'?' => self.quote.is_none(),
                _ => false,
            };
            i += 1;
        }
        Ok(b.len())
    }
}

/// Whether a (comment-free) line ends in a block scalar indicator: `|` or
/// `>`, with optional chomping (`+`/`-`) and indentation digits.
fn opens_block_scalar(line: &str) -> bool {
    let t = line
        .trim_end()
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    t.ends_with('|') || t.ends_with('>')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(open: &str, close: &str, n: usize) -> String {
        format!("{}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn rego_nesting_is_bounded_outside_strings_and_comments() {
        let ok = format!("package p\n\nx := {}\n", deep("[", "]", MAX_REGO_NESTING));
        assert!(check("p.rego", ok.as_bytes()).is_ok());
        let bad = format!(
            "package p\n\nx := {}\n",
            deep("[", "]", MAX_REGO_NESTING + 1)
        );
        let e = check("a/p.rego", bad.as_bytes()).unwrap_err();
        assert!(e.contains("line 3") && e.contains("12 deep"), "{e}");
        // Brackets in strings, raw strings and comments do not count.
        let quoted = format!(
            "package p\n# {}\nx := \"{}\"\ny := `{}`\n",
            "[".repeat(100),
            "[".repeat(100),
            "(".repeat(100)
        );
        assert!(check("p.rego", quoted.as_bytes()).is_ok());
    }

    #[test]
    fn json_nesting_is_bounded() {
        let ok = deep("[", "]", MAX_DATA_NESTING);
        assert!(check("data.json", ok.as_bytes()).is_ok());
        let bad = format!("{{\"a\": {}}}", deep("[", "]", MAX_DATA_NESTING));
        let e = check("x/data.json", bad.as_bytes()).unwrap_err();
        assert!(e.contains("JSON nested more than 64"), "{e}");
        assert!(check(".manifest", bad.as_bytes()).is_err());
        // Not parsed by anything: not scanned.
        assert!(check("README.md", bad.as_bytes()).is_ok());
    }

    #[test]
    fn yaml_flow_and_block_nesting_are_bounded() {
        let e = check("data.yaml", "[".repeat(460).as_bytes()).unwrap_err();
        assert!(e.contains("YAML flow collections"), "{e}");
        let e = check("data.yml", format!("a: {}", "{".repeat(40)).as_bytes()).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let mut blocks = String::new();
        for i in 0..=MAX_DATA_NESTING {
            blocks.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        let e = check("data.yaml", blocks.as_bytes()).unwrap_err();
        assert!(e.contains("YAML nested"), "{e}");
        assert!(check("data.yaml", "- ".repeat(100).as_bytes()).is_err());
        // Legal text that only looks nested: brackets inside plain scalars,
        // quotes, comments and block scalars.
        let fine = format!(
            "a: foo[bar\nb: \"{}\"\nc: '{}' # {}\nd: |\n  {}\n  {}\ne: it's [x, [y]]\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100),
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(check("data.yaml", fine.as_bytes()).is_ok(), "{fine}");
        let ok = format!("a: {}", deep("[", "]", MAX_YAML_FLOW_NESTING));
        assert!(check("data.yaml", ok.as_bytes()).is_ok());
    }
}
