//! A host's tool lists → `[servers.NAME.tools]`, never wider than the host:
//! Windsurf `disabledTools`, Gemini `excludeTools`, Codex `disabled_tools`
//! become `deny`; Gemini `includeTools` and Codex `enabled_tools` become
//! `allow` (an empty one allows nothing: `deny = ["*"]`). The lists hold tool
//! names, gavel's hold globs, so a name's glob characters are escaped; a
//! character a glob cannot escape (`]`, `\`) becomes `?` in a deny entry
//! (denying a little more) and drops an allow entry (allowing less).

use toml::Table;

use super::Carried;

/// `name` as a glob matching exactly it; `wild` replaces what cannot be
/// escaped (`None`: give up).
fn exact(name: &str, wild: Option<char>) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        match ch {
            '*' | '?' | '[' | '{' | '}' | ',' => {
                out.push('[');
                out.push(ch);
                out.push(']');
            }
            ']' | '\\' => out.push(wild?),
            c => out.push(c),
        }
    }
    Some(out)
}

/// The `tools` table for host lists `deny` and `allow` of server `name`.
pub fn tools(
    deny: &[String],
    allow: Option<&[String]>,
    name: &str,
    c: &mut Carried,
) -> Option<Table> {
    let mut t = Table::new();
    let mut deny: Vec<String> = deny.iter().filter_map(|d| exact(d, Some('?'))).collect();
    if let Some(allow) = allow {
        let globs: Vec<String> = allow
            .iter()
            .filter_map(|a| {
                let g = exact(a, None);
                if g.is_none() {
                    c.notes.push(format!(
                        "{name}: allowed tool {a:?} cannot be written as a gavel glob; left out (not allowed)"
                    ));
                }
                g
            })
            .collect();
        if globs.is_empty() {
            c.notes.push(format!(
                "{name}: the host allows none of its tools; every tool is denied"
            ));
            deny = vec!["*".into()];
        } else {
            t.insert("allow".into(), strings(globs));
        }
    }
    if !deny.is_empty() {
        deny.dedup();
        t.insert("deny".into(), strings(deny));
    }
    (!t.is_empty()).then_some(t)
}

fn strings(v: Vec<String>) -> toml::Value {
    toml::Value::Array(v.into_iter().map(toml::Value::String).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::import::Syntax;

    fn matches(glob: &str, name: &str) -> bool {
        globset::Glob::new(glob)
            .unwrap()
            .compile_matcher()
            .is_match(name)
    }

    #[test]
    fn names_are_matched_exactly_and_never_widened() {
        let mut c = Carried::new(Syntax::Literal);
        let t = tools(
            &["run*".into(), "a]b".into()],
            Some(&["read{x,y}".into(), "we\\ird".into()]),
            "s",
            &mut c,
        )
        .unwrap();
        let deny: Vec<&str> = t["deny"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(matches(deny[0], "run*") && !matches(deny[0], "run_all"));
        assert!(matches(deny[1], "a]b"));
        let allow = t["allow"].as_array().unwrap();
        assert_eq!(allow.len(), 1, "the unwritable name is left out");
        let g = allow[0].as_str().unwrap();
        assert!(matches(g, "read{x,y}") && !matches(g, "readx"));
        assert_eq!(c.notes.len(), 1);
    }

    #[test]
    fn an_empty_allow_list_denies_everything() {
        let mut c = Carried::new(Syntax::Literal);
        let t = tools(&[], Some(&[]), "s", &mut c).unwrap();
        assert_eq!(t["deny"].as_array().unwrap()[0].as_str(), Some("*"));
        assert!(t.get("allow").is_none());
        assert!(tools(&[], None, "s", &mut c).is_none());
    }
}
