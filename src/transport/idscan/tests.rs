use super::*;
use rmcp::model::NumberOrString;

fn scan(s: &str) -> ScanResult {
    let mut sc = IdScanner::new();
    // Feed in small pieces to exercise state carried across chunks.
    for chunk in s.as_bytes().chunks(3) {
        sc.feed(chunk);
    }
    sc.result()
}

#[test]
fn finds_numeric_id_after_huge_params() {
    let big = "x".repeat(10_000);
    let line = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{big}","id":99}}}},"id":7}}"#
    );
    let r = scan(&line);
    assert_eq!(r.id, Some(NumberOrString::Number(7)));
    assert!(r.has_method);
}

#[test]
fn finds_string_id_with_escapes_and_nested_decoys() {
    let line = r#"{"id":"a\"b,}","result":{"id":5,"method":"x","content":[{"text":"\"id\":1"}]}}"#;
    let r = scan(line);
    assert_eq!(r.id, Some(NumberOrString::String("a\"b,}".into())));
    assert!(!r.has_method, "nested method keys do not count");
    assert!(r.has_outcome);
}

#[test]
fn id_first_and_last() {
    assert_eq!(
        scan(r#"{ "id" : 12 , "result": {}}"#).id,
        Some(NumberOrString::Number(12))
    );
    assert_eq!(
        scan(r#"{"result": {"a":[1,2,{"id":3}]}, "id": 4}"#).id,
        Some(NumberOrString::Number(4))
    );
}

#[test]
fn no_id_or_garbage() {
    assert_eq!(scan(r#"{"method":"notifications/x","params":{}}"#).id, None);
    assert_eq!(scan("not json at all").id, None);
    assert_eq!(scan(r#"{"id":null}"#).id, None);
    assert_eq!(
        scan(r#"[{"id":1}]"#).id,
        None,
        "batches are not JSON-RPC 2025"
    );
}

#[test]
fn truncated_line_still_reports_id_seen_so_far() {
    // The limit may cut the line before its end; an id already complete is kept.
    assert_eq!(
        scan(r#"{"id":5,"result":{"content":[{"text":"xxxx"#).id,
        Some(NumberOrString::Number(5))
    );
}

/// `depth` levels of alternating objects and arrays, with decoy ids,
/// quotes, escapes and brackets inside strings at every level.
fn deep(depth: usize) -> String {
    let mut s = String::new();
    for i in 0..depth {
        if i % 2 == 0 {
            s.push_str(r#"{"id":1,"s":"}]\"{[\\","k":"#);
        } else {
            s.push_str(r#"["\"id\":2,",{"id":3},"#);
        }
    }
    s.push_str("null");
    for i in (0..depth).rev() {
        s.push(if i % 2 == 0 { '}' } else { ']' });
    }
    s
}

#[test]
fn deep_nesting_keeps_the_top_level_id_before_or_after_it() {
    let params = deep(5000);
    let before =
        format!(r#"{{"jsonrpc":"2.0","id":"d-1","method":"tools/call","params":{params}}}"#);
    let after = format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{params},"id":41}}"#);
    // serde_json cannot read either: this is the case the scanner is for.
    assert!(serde_json::from_str::<serde_json::Value>(&before).is_err());
    let r = scan(&before);
    assert_eq!(r.id, Some(NumberOrString::String("d-1".into())));
    assert!(r.has_method && !r.has_outcome);
    // The innermost array level holds a `{"id":3}`: one level more.
    assert_eq!(r.max_depth, 5002);
    let r = scan(&after);
    assert_eq!(r.id, Some(NumberOrString::Number(41)));
    assert_eq!(r.max_depth, 5002);
    let reply = format!(r#"{{"jsonrpc":"2.0","result":{params},"id":"r-9"}}"#);
    let r = scan(&reply);
    assert_eq!(r.id, Some(NumberOrString::String("r-9".into())));
    assert!(!r.has_method && r.has_outcome);
}

#[test]
fn deep_nesting_without_a_top_level_id_has_none() {
    let line = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":{}}}"#,
        deep(3000)
    );
    let r = scan(&line);
    assert_eq!(r.id, None, "the decoys inside params never count");
    assert!(r.has_method);
    // Unbalanced: the params never close, so the trailing id is still nested.
    let line = format!(r#"{{"method":"x","params":{}"id":5}}"#, "[".repeat(200));
    assert_eq!(scan(&line).id, None);
}

#[test]
fn escaped_keys_are_read_as_a_parser_reads_them() {
    let line = r#"{"\u0069d":7,"m\u0065thod":"ping","jsonrpc":"2.0"}"#;
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["id"], 7);
    let r = scan(line);
    assert_eq!(r.id, Some(NumberOrString::Number(7)));
    assert!(r.has_method);
    // An escaped quote inside a key is part of the key, not its end.
    assert_eq!(scan(r#"{"i\"d":7}"#).id, None);
}

#[test]
fn only_the_first_top_level_value_counts() {
    assert_eq!(scan(r#"{"a":1}{"id":5,"method":"x"}"#).id, None);
    assert!(!scan(r#"{"a":1}{"id":5,"method":"x"}"#).has_method);
    assert_eq!(scan(r#"["id",5,"method"]"#).id, None);
}
