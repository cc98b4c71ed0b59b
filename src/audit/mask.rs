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
    let c = compact(name);
    SECRET_WORDS.iter().any(|w| c.contains(w))
        || words(name)
            .iter()
            .any(|w| SECRET_WHOLE_WORDS.contains(&w.as_str()))
        || extra.iter().any(|s| !s.is_empty() && compact(s) == c)
}

pub struct MaskSettings<'a> {
    pub secret_fields: &'a [String],
    pub max_arg_bytes: usize,
}

/// Masks secret-named fields anywhere under `v`, recording JSON pointers.
fn mask_secrets(v: &mut Value, path: &str, extra: &[String], masked: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                if is_secret_name(k, extra) && !child.is_null() {
                    *child = Value::String("**REDACTED**".into());
                    masked.push(p);
                } else {
                    mask_secrets(child, &p, extra, masked);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                mask_secrets(child, &format!("{path}/{i}"), extra, masked);
            }
        }
        _ => {}
    }
}

/// Applies gavel's own masking to an event's `input.action.args` and to the
/// canonical forms gavel derived from them (`input.action.canonical_args`):
/// a value hidden in one must not be readable in the other.
pub fn mask_event(event: &mut Value, settings: &MaskSettings) {
    let mut masked = Vec::new();
    for key in ["args", "canonical_args"] {
        let path = format!("/input/action/{key}");
        let Some(args) = event.pointer_mut(&path) else {
            continue;
        };
        mask_secrets(args, &path, settings.secret_fields, &mut masked);
        if let Value::Object(o) = args {
            for (k, v) in o.iter_mut() {
                let bytes = serde_json::to_vec(v).unwrap_or_default();
                if bytes.len() > settings.max_arg_bytes {
                    *v = json!({"size_bytes": bytes.len(), "sha256": crate::bundle::canonical::sha256_hex(&bytes), "truncated": true});
                    masked.push(format!("{path}/{k}"));
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Secret names in every spelling a client or server uses: header
    /// style, camelCase, SCREAMING_CASE, with or without separators.
    #[test]
    fn secret_names_match_in_any_spelling_and_innocent_ones_do_not() {
        for name in [
            "x-api-key",
            "api-key",
            "X-API-KEY",
            "apiKey",
            "XApiKey",
            "privateKey",
            "private-key",
            "PRIVATE_KEY",
            "accessKey",
            "access-key",
            "aws_access_key_id",
            "jwt",
            "idJwt",
            "auth",
            "x-auth",
            "authHeader",
            "AUTH_HEADER",
            "HTTPAuth",
            "bearer",
            "bearerToken",
            "credentials",
            "gcpCredentials",
            "Password",
            "client-secret",
            "Set-Cookie",
        ] {
            assert!(is_secret_name(name, &[]), "{name} is secret");
        }
        for name in [
            "author",
            "authority",
            "path",
            "keyword",
            "monkey",
            "sessionId",
            "count",
        ] {
            assert!(!is_secret_name(name, &[]), "{name} is not secret");
        }
        // Configured names match in any spelling too, and only whole.
        let extra = ["note_text".to_string(), String::new()];
        for name in ["note_text", "noteText", "NOTE-TEXT"] {
            assert!(is_secret_name(name, &extra), "{name}");
        }
        assert!(!is_secret_name("notes", &extra));
        assert!(
            !is_secret_name("-", &extra),
            "an empty configured name matches nothing"
        );
        assert_eq!(words("xAuthToken"), ["x", "auth", "token"]);
        assert_eq!(words("HTTPAuth_v2"), ["http", "auth", "v2"]);
    }

    #[test]
    fn the_decision_log_masks_secret_names_in_any_spelling() {
        let mut e = json!({"input": {"action": {"args": {
            "headers": {"x-api-key": "k1", "Authorization": "Bearer t"},
            "privateKey": "k2", "access-key": "k3", "jwt": "k4", "auth": "k5",
            "bearer": "k6", "credentials": {"user": "u", "pass": "k7"},
            "author": "ada",
        }}}});
        mask_event(
            &mut e,
            &MaskSettings {
                secret_fields: &[],
                max_arg_bytes: 4096,
            },
        );
        let s = e.to_string();
        for secret in ["k1", "Bearer t", "k2", "k3", "k4", "k5", "k6", "k7"] {
            assert!(
                !s.contains(&format!("\"{secret}\"")),
                "{secret} leaked: {s}"
            );
        }
        assert_eq!(e["input"]["action"]["args"]["author"], "ada", "{s}");
        assert_eq!(e["masked"].as_array().unwrap().len(), 8, "{s}");
    }

    #[test]
    fn secrets_big_args_and_bundle_rules() {
        let mut e = json!({"input": {"action": {"args": {"path": "/x", "api_token": "t0k", "nested": {"Password": "pw"}, "blob": "y".repeat(100)}}, "user": {"id": "u"}}, "result": {}});
        mask_event(
            &mut e,
            &MaskSettings {
                secret_fields: &["path".into()],
                max_arg_bytes: 50,
            },
        );
        let s = e.to_string();
        assert!(
            !s.contains("t0k")
                && !s.contains("\"pw\"")
                && !s.contains("/x\"")
                && !s.contains("yyyy"),
            "{s}"
        );
        assert_eq!(e["input"]["action"]["args"]["blob"]["size_bytes"], 102);
        apply_mask_rules(
            &mut e,
            &json!(["/input/user/id", {"op": "upsert", "path": "/input/action/args/extra", "value": "**"}, "/etc/passwd"]),
        );
        assert!(e["input"]["user"].get("id").is_none());
        assert_eq!(e["erased"], json!(["/input/user/id"]));
        assert!(
            e["masked"]
                .as_array()
                .unwrap()
                .contains(&json!("/input/action/args/extra"))
        );
    }

    #[test]
    fn mask_rules_reach_array_elements_with_opa_semantics() {
        let mut e = json!({"input": {"action": {"args": {
            "paths": ["/secret/a", "/public/b", "/public/c"],
            "pairs": [{"k": "token-ish", "v": 1}],
        }}}, "result": {"allow": true}});
        let skipped = apply_mask_rules(
            &mut e,
            &json!([
                "/input/action/args/paths/0",
                {"op": "upsert", "path": "/input/action/args/paths/1", "value": "**"},
                "/input/action/args/pairs/0/k",
                {"op": "upsert", "path": "/input/action/new/deep", "value": 1},
                "/input/action/args/paths/9",
                "/input/action/args/paths/x",
                {"op": "upsert", "path": "/input/action/args/paths/5", "value": "**"},
                "/input/action/args/missing",
                "/etc/passwd",
                {"op": "rename", "path": "/input/user"},
                42,
            ]),
        );
        let args = &e["input"]["action"]["args"];
        // Removing element 0 shifts the rest down (OPA); items apply in
        // order, so the upsert at index 1 replaces what was at index 2.
        assert_eq!(args["paths"], json!(["/public/b", "**"]), "{e}");
        assert!(!e.to_string().contains("/secret/a"), "{e}");
        assert_eq!(args["pairs"], json!([{"v": 1}]));
        assert_eq!(
            e["input"]["action"]["new"]["deep"], 1,
            "upsert makes missing objects"
        );
        assert_eq!(
            e["erased"],
            json!(["/input/action/args/paths/0", "/input/action/args/pairs/0/k"])
        );
        assert_eq!(
            e["masked"],
            json!(["/input/action/args/paths/1", "/input/action/new/deep"])
        );
        let why: Vec<(&str, &str)> = skipped
            .iter()
            .map(|(p, w)| (p.as_str(), w.as_str()))
            .collect();
        assert_eq!(why.len(), 7, "{why:?}");
        assert!(why[0].0 == "/input/action/args/paths/9" && why[0].1.contains("past the end"));
        assert!(why[1].1.contains("not an array index"), "{why:?}");
        assert!(why[2].0.ends_with("/paths/5") && why[2].1.contains("past the end"));
        assert!(why[3].1.contains("no member \"missing\""), "{why:?}");
        assert!(why[4].1.contains("/input or /result"), "{why:?}");
        assert!(why[5].1.contains("unknown op"), "{why:?}");
        assert_eq!(why[6].0, "42");
    }

    #[test]
    fn whole_input_and_result_can_be_erased_or_replaced() {
        let mut e = json!({"input": {"a": 1}, "result": {"allow": false}});
        let skipped = apply_mask_rules(
            &mut e,
            &json!(["/input", {"op": "upsert", "path": "/result", "value": {"allow": "?"}}]),
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert!(e.get("input").is_none());
        assert_eq!(e["result"], json!({"allow": "?"}));
        // upsert below an absent input is not applied (OPA).
        let skipped = apply_mask_rules(
            &mut e,
            &json!([{"op": "upsert", "path": "/input/x", "value": 1}]),
        );
        assert_eq!(skipped.len(), 1);
        assert!(e.get("input").is_none());
    }

    /// A value hidden in the arguments is hidden in their canonical forms
    /// too: by gavel's secret names and size cap, and by a bundle's
    /// `log.mask` rule naming the argument (remove and upsert alike).
    #[test]
    fn what_is_masked_in_args_is_masked_in_canonical_args() {
        let event = || {
            json!({"input": {"action": {
                "args": {"path": "secret/plan.txt", "note": "x"},
                "canonical_args": {"path": "secret/plan.txt"},
            }}})
        };
        let extra = ["path".to_string()];
        let mut e = event();
        mask_event(
            &mut e,
            &MaskSettings {
                secret_fields: &extra,
                max_arg_bytes: 1 << 20,
            },
        );
        assert_ne!(
            e.pointer("/input/action/canonical_args/path"),
            Some(&json!("secret/plan.txt")),
            "{e}"
        );
        let mut e = event();
        mask_event(
            &mut e,
            &MaskSettings {
                secret_fields: &[],
                max_arg_bytes: 4,
            },
        );
        assert_eq!(
            e["input"]["action"]["canonical_args"]["path"]["truncated"], true,
            "{e}"
        );

        let mut e = event();
        apply_mask_rules(&mut e, &json!(["/input/action/args/path"]));
        assert!(
            e.pointer("/input/action/canonical_args/path").is_none(),
            "{e}"
        );
        assert!(
            e["erased"]
                .as_array()
                .unwrap()
                .contains(&json!("/input/action/canonical_args/path"))
        );
        let mut e = event();
        apply_mask_rules(
            &mut e,
            &json!([{"op": "upsert", "path": "/input/action/args/path", "value": "***"}]),
        );
        assert_eq!(e["input"]["action"]["canonical_args"]["path"], "***", "{e}");
        // An argument with no canonical form: nothing mirrored, nothing skipped.
        let mut e = event();
        let skipped = apply_mask_rules(&mut e, &json!(["/input/action/args/note"]));
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            e["input"]["action"]["canonical_args"]["path"],
            "secret/plan.txt"
        );
    }
}
