//! Just enough RFC 6570 to route a resource URI to the upstream whose template
//! produced it: literals must match exactly; `{var}` matches one or more
//! characters other than `/`, `?`, `#`; `{+var}`/`{#var}` (reserved expansion)
//! match any characters. Query-style operators (`{?x}`, `{&x}`) match an
//! optional remainder.

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Var { reserved: bool },
    Rest,
}

#[derive(Debug, Clone)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

impl UriTemplate {
    pub fn parse(t: &str) -> Self {
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
        Self { parts }
    }

    pub fn matches(&self, uri: &str) -> bool {
        Self::match_from(&self.parts, uri)
    }

    fn match_from(parts: &[Part], s: &str) -> bool {
        match parts.first() {
            None => s.is_empty(),
            Some(Part::Lit(l)) => s
                .strip_prefix(l.as_str())
                .is_some_and(|r| Self::match_from(&parts[1..], r)),
            Some(Part::Rest) => Self::match_from(&parts[1..], "") || parts.len() == 1,
            Some(Part::Var { reserved }) => {
                // Try every split point (templates are short; URIs are bounded).
                let limit = s
                    .char_indices()
                    .find(|(_, c)| !reserved && matches!(c, '/' | '?' | '#'))
                    .map_or(s.len(), |(i, _)| i);
                (1..=limit)
                    .filter(|i| s.is_char_boundary(*i))
                    .any(|i| Self::match_from(&parts[1..], &s[i..]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UriTemplate;

    #[test]
    fn simple_vars() {
        let t = UriTemplate::parse("fixture://items/{id}");
        assert!(t.matches("fixture://items/42"));
        assert!(!t.matches("fixture://items/"));
        assert!(!t.matches("fixture://items/4/2"));
        assert!(!t.matches("other://items/1"));
        let t = UriTemplate::parse("test://template/{id}/data");
        assert!(t.matches("test://template/7/data"));
        assert!(!t.matches("test://template/7/other"));
    }

    #[test]
    fn reserved_and_query() {
        assert!(UriTemplate::parse("file:///{+path}").matches("file:///a/b/c.txt"));
        let q = UriTemplate::parse("search://q{?term,limit}");
        assert!(q.matches("search://q"));
        assert!(q.matches("search://q?term=x&limit=2"));
    }
}
