//! `${VAR}`, `${VAR:-default}` and `${VAR-default}` expansion (and `$$` for a
//! literal `$`), in the fields documented in docs/config.md only. A missing
//! variable without a default is an error: silently expanding to "" would e.g.
//! drop a token. `:-` (as in the shell) also replaces a variable set to "";
//! `-` replaces only an unset one — the meaning hosts such as Claude Code give
//! their `${VAR:-default}`, which `gavel import` must carry over exactly.

/// Expands `text`; `Err(var)` names the first missing variable.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("unterminated ${{ in {text:?}"));
            };
            let expr = &body[..end];
            let (name, default, empty_is_unset) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d), true),
                None => match expr.split_once('-') {
                    Some((n, d)) => (n, Some(d), false),
                    None => (expr, None, false),
                },
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?}"));
            }
            match (
                env(name).filter(|v| !v.is_empty() || !empty_is_unset),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(name.to_string()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_defaults_and_escapes() {
        assert_eq!(expand("${HOME}/x", &env).unwrap(), "/home/a/x");
        assert_eq!(expand("${NOPE:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
        assert_eq!(expand("${NOPE}", &env).unwrap_err(), "NOPE");
        assert!(expand("${HOME", &env).is_err());
        assert!(expand("${BAD.NAME}", &env).is_err());
        // `-`: only an unset variable takes the default.
        assert_eq!(expand("${EMPTY-dflt}", &env).unwrap(), "");
        assert_eq!(expand("${NOPE-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand("${NOPE-}", &env).unwrap(), "");
        assert_eq!(expand("${HOME-x-y}", &env).unwrap(), "/home/a");
        assert_eq!(expand("${NOPE-x-y}", &env).unwrap(), "x-y");
    }
}
