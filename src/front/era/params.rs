//! The `Mcp-Param-*` headers of a 2026-07-28 `tools/call` over HTTP
//! (SEP-2243): a tool's input schema may mark an argument `x-mcp-header`,
//! and the host then repeats its value in `Mcp-Param-<Name>` so that
//! intermediaries can route on it without reading the body. A server must
//! refuse a call whose headers and body disagree (-32020, HTTP 400):
//! otherwise a proxy in front of gavel routes on one value while the
//! upstream acts on another.
//!
//! rmcp checks these headers only against `ServerHandler::get_tool`, which
//! has no request and so cannot tell whose tool list (which principal's
//! session, which policy) the name belongs to; gavel checks them here,
//! once the call is routed, against the schema of the tool it routes to —
//! the one its host was shown.

use rmcp::ErrorData;
use rmcp::model::{JsonObject, Tool};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use super::modern_version;

const PREFIX: &str = "Mcp-Param-";
/// The wrapping of a value that cannot travel as a bare header value.
const B64_OPEN: &str = "=?base64?";
const B64_CLOSE: &str = "?=";
/// Annotations looked at per schema, and how deep: the schema is an
/// upstream's, so the walk is bounded (a real tool has a handful).
const MAX_ANNOTATIONS: usize = 64;
const MAX_DEPTH: usize = 8;

/// Refuses a modern HTTP `tools/call` of `tool` whose `Mcp-Param-*`
/// headers disagree with its `arguments`. A legacy request, or one not
/// over HTTP, has no such headers to check.
pub fn check_call(
    tool: &Tool,
    arguments: Option<&JsonObject>,
    cx: &RequestContext<RoleServer>,
) -> Result<(), ErrorData> {
    if modern_version(&cx.meta).is_none() {
        return Ok(());
    }
    let Some(parts) = cx.extensions.get::<http::request::Parts>() else {
        return Ok(());
    };
    check(&tool.input_schema, arguments, &parts.headers).map_err(|why| {
        ErrorData::header_mismatch(
            format!(
                "Mcp-Param header mismatch for tool \"{}\": {why}. Send each argument its input \
                 schema marks x-mcp-header in Mcp-Param-<Name> with the same value \
                 (as =?base64?<Base64>?= when it is not plain visible ASCII), or neither",
                tool.name
            ),
            None,
        )
    })
}

/// The check itself: every well-formed annotation of `schema`, its header
/// against the argument it names.
pub(crate) fn check(
    schema: &JsonObject,
    arguments: Option<&JsonObject>,
    headers: &http::HeaderMap,
) -> Result<(), String> {
    let mut found = Vec::new();
    annotations(schema.get("properties"), &mut Vec::new(), &mut found);
    for (path, header) in found {
        let name = format!("{PREFIX}{header}");
        let field = path.join(".");
        let sent = sole(headers, &name)?;
        let value = arguments
            .and_then(|a| value_at(a, &path))
            .and_then(primitive);
        match (sent, value) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(format!(
                    "{name} was sent but argument `{field}` is absent or null"
                ));
            }
            (None, Some(_)) => return Err(format!("{name} is missing for argument `{field}`")),
            (Some(raw), Some(value)) => {
                let decoded = decode(raw)
                    .ok_or_else(|| format!("{name} is not valid =?base64?…?= (Base64 of UTF-8)"))?;
                if decoded != value {
                    return Err(format!(
                        "{name} says {decoded:?} but argument `{field}` is {value:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `(path, header)` of each well-formed `x-mcp-header` along `properties`
/// chains from the root: a non-empty string that makes a valid header
/// name. Anything else marks nothing (a host cannot have sent it).
fn annotations<'a>(
    properties: Option<&'a Value>,
    path: &mut Vec<&'a str>,
    out: &mut Vec<(Vec<&'a str>, &'a str)>,
) {
    let Some(Value::Object(properties)) = properties else {
        return;
    };
    if path.len() >= MAX_DEPTH {
        return;
    }
    for (name, schema) in properties {
        if out.len() >= MAX_ANNOTATIONS {
            return;
        }
        path.push(name);
        if let Some(Value::String(header)) = schema.get("x-mcp-header")
            && !header.is_empty()
            && http::HeaderName::try_from(format!("{PREFIX}{header}")).is_ok()
        {
            out.push((path.clone(), header));
        }
        annotations(schema.get("properties"), path, out);
        path.pop();
    }
}

fn value_at<'a>(arguments: &'a JsonObject, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(arguments.get(*first)?, |v, key| v.get(key))
}

/// A primitive argument as its header form; null, objects and arrays have
/// none.
fn primitive(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The one value of header `name`: a repeated header is refused (an
/// intermediary may read another copy than gavel does), and so is one
/// that is not visible ASCII.
fn sole<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(format!("{name} is sent more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| format!("{name} has characters a header value may not carry"))
}

/// A header value as its argument: `=?base64?…?=` unwrapped (strict,
/// padded Base64 of UTF-8), anything else as it is.
fn decode(raw: &str) -> Option<String> {
    use base64::Engine;
    match raw
        .strip_prefix(B64_OPEN)
        .and_then(|r| r.strip_suffix(B64_CLOSE))
    {
        Some(inner) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_string()),
    }
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
