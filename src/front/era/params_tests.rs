use super::*;
use serde_json::json;

fn schema(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

fn region() -> JsonObject {
    schema(json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "plain": {"type": "string"}
    }}))
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::try_from(*k).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn args(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

#[test]
fn headers_that_repeat_the_arguments_pass_plain_or_base64() {
    let a = args(json!({"region": "Hello", "count": 3, "plain": "x"}));
    for sent in ["Hello", "=?base64?SGVsbG8=?="] {
        let h = headers(&[("mcp-param-region", sent), ("Mcp-Param-Count", "3")]);
        assert_eq!(check(&region(), Some(&a), &h), Ok(()), "{sent}");
    }
    // A value that only looks like the wrapping is compared as it is.
    let a = args(json!({"region": "=?base64?SGVsbG8="}));
    let h = headers(&[("Mcp-Param-Region", "=?base64?SGVsbG8=")]);
    assert_eq!(check(&region(), Some(&a), &h), Ok(()));
    // Neither header nor argument: nothing to compare.
    assert_eq!(check(&region(), None, &headers(&[])), Ok(()));
}

#[test]
fn a_header_that_disagrees_with_its_argument_is_refused_by_name() {
    let a = args(json!({"region": "Hello"}));
    let cases = [
        (headers(&[("Mcp-Param-Region", "Bye")]), "says \"Bye\""),
        (
            headers(&[("Mcp-Param-Region", "=?base64?SGVsbG8?=")]),
            "not valid",
        ),
        (
            headers(&[("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?=")]),
            "not valid",
        ),
        (
            headers(&[]),
            "Mcp-Param-Region is missing for argument `region`",
        ),
        (
            headers(&[("Mcp-Param-Region", "Hello"), ("Mcp-Param-Region", "Hello")]),
            "more than once",
        ),
        (
            headers(&[("Mcp-Param-Region", "Hello"), ("Mcp-Param-Count", "3")]),
            "Mcp-Param-Count was sent but argument `count` is absent or null",
        ),
    ];
    for (h, says) in cases {
        let err = check(&region(), Some(&a), &h).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
    // A number is compared as its JSON text.
    let a = args(json!({"count": 3}));
    let err = check(&region(), Some(&a), &headers(&[("Mcp-Param-Count", "3.0")])).unwrap_err();
    assert!(err.contains("is \"3\""), "{err}");
}

#[test]
fn nested_annotations_are_checked_and_malformed_ones_mark_nothing() {
    let s = schema(json!({"type": "object", "properties": {
        "where": {"type": "object", "properties": {
            "zone": {"type": "string", "x-mcp-header": "Zone"}}},
        "empty": {"type": "string", "x-mcp-header": ""},
        "number": {"type": "string", "x-mcp-header": 7},
        "spaced": {"type": "string", "x-mcp-header": "Has Space"}
    }}));
    let a = args(json!({"where": {"zone": "eu"}, "empty": "a", "number": "b", "spaced": "c"}));
    assert_eq!(
        check(&s, Some(&a), &headers(&[("Mcp-Param-Zone", "eu")])),
        Ok(())
    );
    let err = check(&s, Some(&a), &headers(&[])).unwrap_err();
    assert!(err.contains("argument `where.zone`"), "{err}");
}

#[test]
fn the_walk_is_bounded() {
    // Deeper than MAX_DEPTH: the annotation below it is not looked at.
    let mut inner = json!({"type": "string", "x-mcp-header": "Deep"});
    for _ in 0..MAX_DEPTH {
        inner = json!({"type": "object", "properties": {"d": inner}});
    }
    let s = schema(json!({"type": "object", "properties": {"d": inner}}));
    assert_eq!(check(&s, None, &headers(&[])), Ok(()));
    let mut props = serde_json::Map::new();
    for i in 0..(MAX_ANNOTATIONS + 10) {
        props.insert(
            format!("p{i:03}"),
            json!({"type": "string", "x-mcp-header": format!("P{i:03}")}),
        );
    }
    let s = schema(json!({"type": "object", "properties": props}));
    let mut found = Vec::new();
    annotations(s.get("properties"), &mut Vec::new(), &mut found);
    assert_eq!(found.len(), MAX_ANNOTATIONS);
}
