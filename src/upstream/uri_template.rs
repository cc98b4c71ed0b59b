//! Just enough RFC 6570 to route a resource URI to the upstream whose template
//! produced it: literals must match exactly; `{var}` matches one or more
//! characters other than `/`, `?`, `#`; `{+var}`/`{#var}` (reserved expansion)
//! match any characters. Query-style operators (`{?x}`, `{&x}`) match an
//! optional remainder (the rest of the URI; what follows them must match the
//! empty string).
//!
//! The URI is agent input, so matching must not be super-linear in it: a
//! backtracking matcher tried every split point for every expression, and
//! `repo://{+owner}/{+path}/end` against `repo://` + 48,000 `/` stalled every
//! session for seconds. Matching here is a single forward pass that tracks the
//! set of template positions reachable at each URI position (a Thompson NFA
//! over at most [`MAX_PARTS`] parts, one `u64` bitmask), so its work is
//! O(uri length × template length), and both lengths are capped:
//! [`MAX_URI_BYTES`] for the URI, [`MAX_TEMPLATE_BYTES`]/[`MAX_PARTS`] for the
//! template (an upstream's template beyond them matches nothing, and the list
//! fetch says so in the log).

use std::collections::BTreeMap;

/// A URI longer than this matches no template (it can still route by exact
/// URI or to the only resource-capable server). Resource URIs are identifiers,
/// not payloads; this keeps one match at a few hundred thousand steps at most.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// A template longer than this matches nothing.
pub const MAX_TEMPLATE_BYTES: usize = 1024;
/// Literals and expressions in one template; the matcher's state is a `u64`
/// bitmask with one bit per part boundary, so this must stay below 64.
pub const MAX_PARTS: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var { reserved: bool },
    Rest,
}

/// Why a template can never match (shown in the log by the list fetch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "the template is {0} bytes long (more than {max}); gavel routes no URI by it",
        max = MAX_TEMPLATE_BYTES
    )]
    TooLong(usize),
    #[error(
        "the template has {0} literals and expressions (more than {max}); gavel routes no URI by it",
        max = MAX_PARTS
    )]
    TooManyParts(usize),
}

#[derive(Debug, Clone)]
pub struct UriTemplate {
    parts: Vec<Part>,
    /// Set when the template exceeds the caps: it then matches nothing
    /// (fail closed: no route rather than an unbounded match).
    refused: Option<TemplateError>,
}

impl UriTemplate {
    pub fn parse(t: &str) -> Self {
        if t.len() > MAX_TEMPLATE_BYTES {
            return Self::refused(TemplateError::TooLong(t.len()));
        }
        let parts = Self::split(t);
        if parts.len() > MAX_PARTS {
            return Self::refused(TemplateError::TooManyParts(parts.len()));
        }
        Self {
            parts,
            refused: None,
        }
    }

    fn refused(e: TemplateError) -> Self {
        Self {
            parts: Vec::new(),
            refused: Some(e),
        }
    }

    /// Why this template matches nothing, if it exceeds the caps.
    pub fn problem(&self) -> Option<&TemplateError> {
        self.refused.as_ref()
    }

    fn split(t: &str) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut rest = t;
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
        parts
    }

    pub fn matches(&self, uri: &str) -> bool {
        self.refused.is_none() && uri.len() <= MAX_URI_BYTES && self.run(uri, &mut 0)
    }

    /// [`Self::matches`] without the URI cap, with the work it took (for the
    /// tests and the fuzz target, which bound the URI themselves).
    pub fn matches_counting(&self, uri: &str) -> (bool, u64) {
        let mut steps = 0;
        let m = self.refused.is_none() && self.run(uri, &mut steps);
        (m, steps)
    }

    /// The work bound [`Self::matches_counting`] stays within: one step per
    /// part and per literal byte at every URI position.
    pub fn step_bound(&self, uri: &str) -> u64 {
        let per_position: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => 1 + l.len(),
                _ => 1,
            })
            .sum();
        (uri.len() as u64 + 1) * per_position as u64
    }

    /// The forward pass, uncapped (tests and the fuzz target bound the URI
    /// themselves); `steps` counts unit operations (one per part visited per
    /// position, plus the bytes compared for literals) so a test can show the
    /// work is linear without timing anything.
    ///
    /// States: `before[j]` = the URI up to here matched parts `..j`;
    /// `inside[j]` = part `j` (an expression) has consumed at least one
    /// character and may take more or stop. A literal schedules `before[j+1]`
    /// at a later position (`ahead`); a query operator jumps to the end.
    fn run(&self, uri: &str, steps: &mut u64) -> bool {
        let n = self.parts.len();
        let bytes = uri.as_bytes();
        let mut ahead: BTreeMap<usize, u64> = BTreeMap::new();
        let mut at_end: u64 = 0;
        let mut before: u64 = 1;
        let mut inside: u64 = 0;
        let mut pos = 0;
        loop {
            if pos == bytes.len() {
                before |= at_end;
            }
            let next_char = uri[pos..].chars().next();
            let (mut next_before, mut next_inside) = (0u64, 0u64);
            for (j, part) in self.parts.iter().enumerate() {
                *steps += 1;
                if inside & (1 << j) != 0 {
                    before |= 1 << (j + 1);
                }
                let here = before & (1 << j) != 0;
                match part {
                    Part::Lit(l) if here => {
                        *steps += l.len() as u64;
                        // Literals are never empty (`split`), so this is
                        // always a later position.
                        if bytes[pos..].starts_with(l.as_bytes()) {
                            *ahead.entry(pos + l.len()).or_default() |= 1 << (j + 1);
                        }
                    }
                    Part::Rest if here => {
                        at_end |= 1 << (j + 1);
                        if pos == bytes.len() {
                            before |= 1 << (j + 1);
                        }
                    }
                    Part::Var { reserved } if here || inside & (1 << j) != 0 => {
                        if let Some(c) = next_char
                            && (*reserved || !matches!(c, '/' | '?' | '#'))
                        {
                            next_inside |= 1 << j;
                        }
                    }
                    _ => {}
                }
            }
            let Some(c) = next_char else {
                return before & (1 << n) != 0;
            };
            pos += c.len_utf8();
            // Nothing left that could still match: stop early.
            next_before |= ahead.remove(&pos).unwrap_or(0);
            if next_inside == 0 && next_before == 0 && ahead.is_empty() && at_end == 0 {
                return false;
            }
            before = next_before;
            inside = next_inside;
        }
    }
}

#[cfg(test)]
mod tests;
