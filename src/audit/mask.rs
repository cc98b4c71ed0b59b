//! What never reaches the decision log in clear: argument fields named like
//! secrets (configured `log.secret_fields` plus the usual suspects), arguments
//! larger than `log.max_arg_bytes` (logged as size + sha256), and whatever the
//! bundle's `log.mask` rules name (OPA semantics: JSON pointers erase, `{op,
//! path, value}` objects remove or upsert; object members and array elements).

use serde_json::{Value, json};

const DEFAULT_SECRETS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "access_key",
    "client_secret",
];

pub struct MaskSettings<'a> {
    pub secret_fields: &'a [String],
    pub max_arg_bytes: usize,
}

fn is_secret(key: &str, extra: &[String]) -> bool {
    let k = key.to_ascii_lowercase();
    DEFAULT_SECRETS.iter().any(|s| k.contains(s))
        || extra.iter().any(|s| s.eq_ignore_ascii_case(key))
}

/// Masks secret-named fields anywhere under `v`, recording JSON pointers.
fn mask_secrets(v: &mut Value, path: &str, extra: &[String], masked: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                if is_secret(k, extra) && !child.is_null() {
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

/// Applies gavel's own masking to an event's `input.action.args`.
pub fn mask_event(event: &mut Value, settings: &MaskSettings) {
    let mut masked = Vec::new();
    if let Some(args) = event.pointer_mut("/input/action/args") {
        mask_secrets(
            args,
            "/input/action/args",
            settings.secret_fields,
            &mut masked,
        );
        if let Value::Object(o) = args {
            for (k, v) in o.iter_mut() {
                let bytes = serde_json::to_vec(v).unwrap_or_default();
                if bytes.len() > settings.max_arg_bytes {
                    *v = json!({"size_bytes": bytes.len(), "sha256": crate::bundle::canonical::sha256_hex(&bytes), "truncated": true});
                    masked.push(format!("/input/action/args/{k}"));
                }
            }
        }
    }
    add_list(event, "masked", masked);
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
    }
    for (pointer, why) in &skipped {
        warn_once(pointer, why);
    }
    add_list(event, "erased", erased);
    add_list(event, "masked", masked);
    skipped
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
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
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
}
