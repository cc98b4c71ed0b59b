//! What never reaches the decision log in clear: argument fields named like
//! secrets (configured `log.secret_fields` plus the usual suspects), arguments
//! larger than `log.max_arg_bytes` (logged as size + sha256), and whatever the
//! bundle's `log.mask` rules name (OPA semantics: JSON pointers erase, `{op,
//! path, value}` objects remove or upsert; object members and array elements).

use serde_json::{Value, json};

use crate::sync::Recover;

/// Words that make a field name secret wherever they occur in it, compared
/// on the name's [`compact`] form: `api_key`, `apiKey`, `API-KEY`,
/// `x-api-key` and `XApiKey` are all `…apikey…`.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "privatekey",
    "accesskey",
    "clientsecret",
    "credential",
    "bearer",
    "jwt",
];

/// Words that make a field name secret only as a whole word of it (`auth`,
/// `x-auth`, `authHeader`, `AUTH_HEADER`): inside a word they are innocent
/// (`author`, `authority`).
const SECRET_WHOLE_WORDS: &[&str] = &["auth"];

/// `name` lower-cased with everything but letters and digits dropped: the
/// form secret words are matched on, so case, `-`/`_`/`.` and camelCase do
/// not matter.
pub fn compact(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The words of `name`, lower-cased: split at anything not a letter or
/// digit and at camelCase boundaries (`xAuthToken` → `x`, `auth`, `token`;
/// `HTTPAuth` → `http`, `auth`).
pub fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = vec![];
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1);
        let boundary = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if boundary && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Whether a field (or header, query parameter, variable) named `name`
/// holds a secret by its name alone: one of the usual secret words in any
/// spelling, or one of `extra` (compared in the same spelling-blind form).
/// The one test every mask in gavel uses: the decision log here, and
/// `config check` (`config::mask`).
pub fn is_secret_name(name: &str, extra: &[String]) -> bool {
    // Every record masks every argument name, so the usual short name is
    // compacted on the stack; a longer one takes the allocating path.
    let mut buf = [0u8; 64];
    let owned;
    let c: &str = if name.len() <= buf.len() {
        let mut n = 0;
        for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        // ASCII only: always UTF-8.
        std::str::from_utf8(&buf[..n]).unwrap_or_default()
    } else {
        owned = compact(name);
        &owned
    };
    SECRET_WORDS.iter().any(|w| holds(c, w))
        // A whole word is a run of the compact form: only a name whose
        // compact form holds one is split into words.
        || (SECRET_WHOLE_WORDS.iter().any(|w| holds(c, w))
            && words(name)
                .iter()
                .any(|w| SECRET_WHOLE_WORDS.contains(&w.as_str())))
        || extra.iter().any(|s| {
            !s.is_empty()
                && s.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .eq(c.chars())
        })
}

/// Whether `word` occurs in `name`: `str::contains` without its searcher,
/// whose set-up per word cost more than the search on names this short
/// (fourteen words for each field name of every record, issue 17).
fn holds(name: &str, word: &str) -> bool {
    let (name, word) = (name.as_bytes(), word.as_bytes());
    let Some(&first) = word.first() else {
        return true;
    };
    name.windows(word.len()).any(|w| w[0] == first && w == word)
}

pub struct MaskSettings<'a> {
    pub secret_fields: &'a [String],
    pub max_arg_bytes: usize,
}

/// Masks secret-named fields anywhere under `v`, recording JSON pointers.
/// `path` is the pointer to `v`, extended in place while descending (and
/// restored): a pointer string is made only for what is masked.
fn mask_secrets(v: &mut Value, path: &mut String, extra: &[String], masked: &mut Vec<String>) {
    use std::fmt::Write;
    let len = path.len();
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                path.push('/');
                for ch in k.chars() {
                    match ch {
                        '~' => path.push_str("~0"),
                        '/' => path.push_str("~1"),
                        c => path.push(c),
                    }
                }
                if is_secret_name(k, extra) && !child.is_null() {
                    *child = Value::String("**REDACTED**".into());
                    masked.push(path.clone());
                } else {
                    mask_secrets(child, path, extra, masked);
                }
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                let _ = write!(path, "/{i}");
                mask_secrets(child, path, extra, masked);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The length of `v` serialized (compact), counted without keeping the
/// bytes: most arguments are under `max_arg_bytes` and need no digest.
fn serialized_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        // As `to_vec(v).unwrap_or_default()` measured a failure: 0.
        Err(_) => 0,
    }
}

/// Applies gavel's own masking to an event's `input.action.args` and to the
/// canonical forms gavel derived from them (`input.action.canonical_args`):
/// a value hidden in one must not be readable in the other.
pub fn mask_event(event: &mut Value, settings: &MaskSettings) {
    let mut masked = Vec::new();
    // The members are reached by name, not by `pointer_mut`: a JSON pointer
    // is unescaped segment by segment (two `str::replace` each, allocating),
    // a fifth of a record's masking for three fixed paths (issue 17).
    for key in ["args", "canonical_args"] {
        let mut path = format!("/input/action/{key}");
        let Some(args) = event
            .get_mut("input")
            .and_then(|v| v.get_mut("action"))
            .and_then(|v| v.get_mut(key))
        else {
            continue;
        };
        mask_secrets(args, &mut path, settings.secret_fields, &mut masked);
        if let Value::Object(o) = args {
            for (k, v) in o.iter_mut() {
                if serialized_len(v) <= settings.max_arg_bytes {
                    continue;
                }
                let bytes = serde_json::to_vec(v).unwrap_or_default();
                if bytes.len() > settings.max_arg_bytes {
                    *v = json!({"size_bytes": bytes.len(), "sha256": crate::bundle::canonical::sha256_hex(&bytes), "truncated": true});
                    masked.push(format!("{path}/{k}"));
                }
            }
        }
    }
    // A result record's output (docs/decision-log.md): secret-named fields
    // masked as in arguments (its size is already bounded).
    if let Some(output) = event.get_mut("input").and_then(|v| v.get_mut("output")) {
        let mut path = String::from("/input/output");
        mask_secrets(output, &mut path, settings.secret_fields, &mut masked);
    }
    add_list(event, "masked", masked);
}

/// The pointer into `input.action.canonical_args` that mirrors one into
/// `input.action.args` (the canonical form of the same argument), if any.
fn canonical_mirror(parts: &[String]) -> Option<Vec<String>> {
    match parts {
        [i, a, args, rest @ ..] if i == "input" && a == "action" && args == "args" => {
            let mut m = vec![i.clone(), a.clone(), "canonical_args".to_string()];
            m.extend(rest.iter().cloned());
            Some(m)
        }
        _ => None,
    }
}

fn add_list(event: &mut Value, key: &str, items: Vec<String>) {
    if items.is_empty() {
        return;
    }
    let list = event
        .as_object_mut()
        .map(|o| o.entry(key).or_insert_with(|| json!([])));
    if let Some(Value::Array(a)) = list {
        a.extend(items.into_iter().map(Value::String));
    }
}

/// Applies the result of a bundle's `log.mask` rule (a set of JSON pointers
/// and/or `{op, path, value}` objects) to the event, as OPA does: a bare
/// pointer or `remove` erases the member or array element (later elements
/// shift down); `upsert` sets it, creating missing objects on the way (an
/// array index must exist). Pointers must start with `/input` or `/result`;
/// segments use JSON-pointer escapes (`~1` for `/`, `~0` for `~`).
///
/// Returns the items that were not applied, with why (a pointer to nothing,
/// an index out of range, a bad prefix or op); each is also warned about —
/// once per distinct pointer and reason (bounded), since a rule that never
/// matches would otherwise warn on every decision.
pub fn apply_mask_rules(event: &mut Value, rules: &Value) -> Vec<(String, String)> {
    let Some(items) = rules.as_array() else {
        return vec![];
    };
    let (mut erased, mut masked, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for item in items {
        let (op, path, value) = match item {
            Value::String(p) => ("remove", p.as_str(), Value::Null),
            Value::Object(o) => (
                o.get("op").and_then(Value::as_str).unwrap_or("remove"),
                o.get("path").and_then(Value::as_str).unwrap_or(""),
                o.get("value").cloned().unwrap_or(Value::Null),
            ),
            other => {
                skipped.push((
                    other.to_string(),
                    "not a pointer or {op, path, value}".into(),
                ));
                continue;
            }
        };
        let applied = pointer_parts(path).and_then(|parts| match op {
            "remove" => remove_at(event, &parts).map(|()| &mut erased),
            "upsert" => upsert_at(event, &parts, value).map(|()| &mut masked),
            other => Err(format!("unknown op {other:?} (remove, upsert)")),
        });
        match applied {
            Ok(list) => list.push(path.to_string()),
            Err(why) => skipped.push((path.to_string(), why)),
        }
        // What a rule hides in the arguments it hides in their canonical
        // forms too (present only for path-like arguments gavel derived).
        if let Some(mirror) = pointer_parts(path)
            .ok()
            .as_deref()
            .and_then(canonical_mirror)
            && walk(event, &mirror).is_ok()
        {
            let shown: String = mirror
                .iter()
                .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
                .collect();
            let applied = match op {
                "remove" => remove_at(event, &mirror).map(|()| &mut erased),
                "upsert" => upsert_at(event, &mirror, value_of(item)).map(|()| &mut masked),
                _ => continue,
            };
            if let Ok(list) = applied {
                list.push(shown);
            }
        }
    }
    for (pointer, why) in &skipped {
        warn_once(pointer, why);
    }
    add_list(event, "erased", erased);
    add_list(event, "masked", masked);
    skipped
}

/// The `value` of an `{op, path, value}` mask item (null for a bare pointer).
fn value_of(item: &Value) -> Value {
    item.get("value").cloned().unwrap_or(Value::Null)
}

/// `/input/a~1b/0` → `["input", "a/b", "0"]`, under `/input` or `/result`.
fn pointer_parts(path: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = path
        .strip_prefix('/')
        .ok_or("a pointer starts with /")?
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if parts[0] != "input" && parts[0] != "result" {
        return Err("pointers must start with /input or /result".into());
    }
    Ok(parts)
}

fn index(seg: &str, len: usize) -> Result<usize, String> {
    match seg.parse::<usize>() {
        Ok(i) if i < len => Ok(i),
        Ok(i) => Err(format!("index {i} is past the end of an array of {len}")),
        Err(_) => Err(format!("{seg:?} is not an array index")),
    }
}

/// The value at `parts` (objects and arrays), or why there is none.
fn walk<'a>(mut v: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    for p in parts {
        v = match v {
            Value::Object(o) => o.get_mut(p).ok_or_else(|| format!("no member {p:?}"))?,
            Value::Array(a) => {
                let i = index(p, a.len())?;
                &mut a[i]
            }
            _ => {
                return Err(format!(
                    "{p:?} is below a value that is not an object or array"
                ));
            }
        };
    }
    Ok(v)
}

fn remove_at(event: &mut Value, parts: &[String]) -> Result<(), String> {
    let (last, parents) = parts.split_last().ok_or("empty pointer")?;
    match walk(event, parents)? {
        Value::Object(o) => o
            .remove(last)
            .map(|_| ())
            .ok_or_else(|| format!("no member {last:?}")),
        Value::Array(a) => {
            let i = index(last, a.len())?;
            a.remove(i);
            Ok(())
        }
        _ => Err(format!(
            "{last:?} is below a value that is not an object or array"
        )),
    }
}

fn upsert_at(event: &mut Value, parts: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = parts.split_last().ok_or("empty pointer")?;
    let v = match parents.split_first() {
        None => event,
        // OPA: the event's `input`/`result` must be there; below it,
        // missing objects are made.
        Some((top, rest)) => {
            let mut v = match event.get_mut(top) {
                Some(x @ Value::Object(_)) => x,
                _ => return Err(format!("the event has no {top:?} object")),
            };
            for p in rest {
                v = match v {
                    Value::Object(o) => o.entry(p.clone()).or_insert_with(|| json!({})),
                    Value::Array(a) => {
                        let i = index(p, a.len())?;
                        &mut a[i]
                    }
                    _ => {
                        return Err(format!(
                            "{p:?} is below a value that is not an object or array"
                        ));
                    }
                };
            }
            v
        }
    };
    match v {
        Value::Object(o) => {
            o.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = index(last, a.len())?;
            a[i] = value;
            Ok(())
        }
        _ => Err(format!(
            "{last:?} is below a value that is not an object or array"
        )),
    }
}

/// Warns about a mask item not applied, once per (pointer, reason); at most
/// 256 distinct ones are remembered, later ones go to debug.
fn warn_once(pointer: &str, why: &str) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let key = format!("{pointer}\u{0}{why}");
    let mut seen = SEEN.get_or_init(Default::default).lock().recover();
    if !seen.contains(&key) && seen.len() < 256 {
        seen.insert(key);
        tracing::warn!(
            pointer,
            "a decision-log mask rule item was not applied: {why} (further occurrences are not reported)"
        );
    } else {
        tracing::debug!(
            pointer,
            "a decision-log mask rule item was not applied: {why}"
        );
    }
}

/// Beyond the decision log's secret names ([`is_secret_name`]), words that
/// make a variable or query parameter secret when printing a config (over-masking costs nothing there): `…KEY…`, `…AUTH…`,
/// `…SESSION…` anywhere, in any spelling.
const MORE_SECRET_WORDS: &[&str] = &["key", "auth", "session"];

pub fn is_config_secret_name(name: &str) -> bool {
    let c = compact(name);
    is_secret_name(name, &[]) || MORE_SECRET_WORDS.iter().any(|w| c.contains(w))
}

/// Keeps an auth scheme word (`Bearer`, `Basic`, `token`) and masks the rest.
pub fn mask_header(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphabetic()) => {
            format!("{scheme} ***")
        }
        _ => "***".into(),
    }
}

/// Masks URL userinfo and the values of secret-looking query parameters.
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_config_secret_name(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let mut out = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    out.push_str(&authority);
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

#[cfg(test)]
#[path = "mask/tests.rs"]
mod tests;
