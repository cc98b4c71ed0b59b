//! `exclude_files` patterns with the semantics of Go's `path/filepath.Match`
//! (what OPA uses, `v1/bundle/bundle.go` `isFileExcluded`), written here
//! rather than approximated with a general glob library: a general glob's
//! `*` (or `**`, or `{a,b}`) can reach into subdirectories, and every file a
//! pattern matches is dropped from the signature check — so a looser
//! matcher would leave files unsigned that OPA would verify.
//!
//! - `*` matches any run of characters except `/`; `?` one character except
//!   `/`;
//! - `[abc]`, `[a-z]`, `[^a-z]` character classes (`\` escapes inside);
//! - `\c` matches `c`; anything else matches itself;
//! - the whole name must match. A malformed pattern is an error (OPA ignores
//!   it silently; gavel refuses it at config load).

/// A pattern that is not a valid `filepath.Match` pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{pattern:?} is not a valid pattern ({why}); use *, ?, [a-z] and \\ escapes, as Go's filepath.Match"
)]
pub struct BadPattern {
    pub pattern: String,
    pub why: &'static str,
}

/// Checks a pattern without matching anything.
pub fn validate(pattern: &str) -> Result<(), BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let bad = |why| BadPattern {
        pattern: pattern.to_string(),
        why,
    };
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(bad("a trailing \\ escapes nothing"));
                }
                i += 2;
            }
            '[' => i = class(&p, i).map_err(bad)?.end,
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern` as a whole (`filepath.Match`).
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    validate(pattern)?;
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    Ok(match_from(&p, &n))
}

/// A parsed `[...]` class starting at `p[start]`.
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
    /// Index just past the closing `]`.
    end: usize,
}

fn class(p: &[char], start: usize) -> Result<Class, &'static str> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match p.get(i) {
            None => return Err("an unclosed ["),
            Some(']') if !ranges.is_empty() => {
                return Ok(Class {
                    negated,
                    ranges,
                    end: i + 1,
                });
            }
            _ => {}
        }
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        // As in Go, a range whose end is before its start is valid and
        // matches nothing.
        ranges.push((lo, hi));
    }
}

/// One (possibly escaped) character of a class; `-` and `]` must be escaped.
fn class_char(p: &[char], i: usize) -> Result<(char, usize), &'static str> {
    match p.get(i) {
        None => Err("an unclosed ["),
        Some('-') | Some(']') => Err("- or ] where a class character belongs (escape it)"),
        Some('\\') => match p.get(i + 1) {
            None => Err("a trailing \\ escapes nothing"),
            Some(c) => Ok((*c, i + 2)),
        },
        Some(c) => Ok((*c, i + 1)),
    }
}

/// Backtracking match of a validated pattern. A `*` never crosses `/`, so
/// each star tries at most one path segment's worth of positions.
fn match_from(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return n.is_empty();
    };
    match first {
        '*' => {
            let rest = &p[1..];
            for i in 0..=n.len() {
                if match_from(rest, &n[i..]) {
                    return true;
                }
                if i < n.len() && n[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => n.first().is_some_and(|c| *c != '/') && match_from(&p[1..], &n[1..]),
        '[' => {
            let Ok(c) = class(p, 0) else { return false };
            let Some(&ch) = n.first() else { return false };
            let hit = c.ranges.iter().any(|(lo, hi)| *lo <= ch && ch <= *hi);
            hit != c.negated && match_from(&p[c.end..], &n[1..])
        }
        '\\' => n.first() == p.get(1) && match_from(&p[2..], &n[1..]),
        c => n.first() == Some(&c) && match_from(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        matches(p, n).unwrap()
    }

    #[test]
    fn star_stays_within_one_segment() {
        assert!(m("*.json", "data.json"));
        assert!(!m("*.json", "a/b/data.json"), "* must not cross /");
        assert!(m("a/*/data.json", "a/b/data.json"));
        assert!(!m("a/*", "a/b/c"));
        assert!(m("a/*", "a/"));
        assert!(m(".*", ".manifest"));
        assert!(!m(".*", "x/.manifest"));
        assert!(m("*", ""));
        assert!(
            !m("**", "a/b"),
            "no globstar: ** is two stars in one segment"
        );
        assert!(m("*/*/*.rego", "a/b/c.rego"));
    }

    #[test]
    fn question_mark_classes_and_escapes() {
        assert!(m("data.???n", "data.json"));
        assert!(!m("a?b", "a/b"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("[\\]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(!m("{a,b}", "a"), "no alternation: braces are literal");
        assert!(m("{a,b}", "{a,b}"));
        assert!(
            !m("[z-a]", "m"),
            "an inverted range is valid and matches nothing"
        );
        assert!(!m("data.json", "data.jsonx"), "the whole name must match");
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["[", "[a", "[]", "[a-]", "a\\", "[-a]", "[^]"] {
            assert!(validate(bad).is_err(), "{bad}");
            assert!(matches(bad, "a").is_err(), "{bad}");
        }
        let e = validate("[").unwrap_err().to_string();
        assert!(e.contains("\"[\"") && e.contains("filepath.Match"), "{e}");
    }
}
