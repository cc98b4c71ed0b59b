//! What never reaches the decision log in clear: argument fields named like
//! secrets (configured `log.secret_fields` plus the usual suspects), arguments
//! larger than `log.max_arg_bytes` (logged as size + sha256), and whatever the
//! bundle's `log.mask` rules name (OPA semantics: JSON pointers erase, `{op,
//! path, value}` objects remove or upsert).

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
/// and/or `{op, path, value}` objects) to the event, as OPA does.
pub fn apply_mask_rules(event: &mut Value, rules: &Value) {
    let Some(items) = rules.as_array() else {
        return;
    };
    let (mut erased, mut masked) = (Vec::new(), Vec::new());
    for item in items {
        let (op, path, value) = match item {
            Value::String(p) => ("remove", p.as_str(), None),
            Value::Object(o) => (
                o.get("op").and_then(Value::as_str).unwrap_or("remove"),
                o.get("path").and_then(Value::as_str).unwrap_or(""),
                o.get("value").cloned(),
            ),
            _ => continue,
        };
        if !(path.starts_with("/input") || path.starts_with("/result")) {
            continue; // OPA: pointers must be under /input, /result or /nd_builtin_cache
        }
        let Some((parent, last)) = path.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        let Some(Value::Object(p)) = event.pointer_mut(parent) else {
            continue;
        };
        match (op, value) {
            ("upsert", Some(v)) => {
                p.insert(last, v);
                masked.push(path.to_string());
            }
            ("remove", _) if p.remove(&last).is_some() => erased.push(path.to_string()),
            _ => {}
        }
    }
    add_list(event, "erased", erased);
    add_list(event, "masked", masked);
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
}
