//! A record written from its parts is byte for byte the record built as an
//! event, masked in place and serialized (`DecisionRecord::event`,
//! `mask_event`): varied inputs, masks, results and optional members.

use serde_json::{Map, Value, json};

use super::Bundles;
use crate::audit::mask::{MaskSettings, mask_event};
use crate::audit::record::DecisionRecord;

/// The old way: the event, masked, serialized, with its newline.
fn built(r: DecisionRecord, mask: &MaskSettings) -> Vec<u8> {
    let mut event = r.event();
    mask_event(&mut event, mask);
    let mut line = serde_json::to_vec(&event).unwrap();
    line.push(b'\n');
    line
}

fn labels(extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut l = Map::new();
    l.insert("app".into(), json!("gavel"));
    l.insert("id".into(), json!("abe83552-af67-4cbb-8475-9b7cfb1d25c8"));
    l.insert("version".into(), json!("0.1.0"));
    for (k, v) in extra {
        l.insert((*k).into(), json!(v));
    }
    l
}

/// An input shaped like the contract's, with `args` and `canonical_args`.
fn input(args: Value, canonical: Option<Value>, extra: &[(&str, Value)]) -> Value {
    let mut action = json!({
        "annotations": {"readOnlyHint": true},
        "annotations_trusted": false,
        "args": args,
        "data_classes_referenced": ["public"],
        "server": "fs",
        "tool": "read_file",
        "tool_digest": "sha256:01",
        "type": "tool_call",
    });
    if let Some(c) = canonical {
        action["canonical_args"] = c;
    }
    let mut input = json!({
        "action": action,
        "agent": {"client": {"name": "c\u{1}li\"ent", "version": "1"}, "id": "a", "owner_team": "t", "scope": []},
        "context": {"session_age_seconds": 2.4214770793914795, "used_fraction": 2.7e-7, "turn_count": 3,
                    "tool_calls": {"fs": {"read_file": 2}}, "budget": {"limit": {"tokens": null}}},
        "environment": {"labels": {"zone": "é\u{2028}"}, "time": "2026-12-07T23:00:07Z"},
        "user": {"groups": ["a/b", "c~d"], "id": "ü"},
    });
    for (k, v) in extra {
        input[*k] = v.clone();
    }
    input
}

fn arg_cases() -> Vec<(Value, Option<Value>)> {
    vec![
        (json!({}), None),
        (
            json!({"path": "public/readme.txt", "text": "bench"}),
            Some(json!({"path": "public/readme.txt"})),
        ),
        // Secret names at every depth, in arrays, with escapes in names.
        (
            json!({"api_key": "k", "nested": {"password": "p", "list": [{"token": 1}, {"ok": null, "secret": null}], "a/b~c": {"Authorization": "Bearer x"}},
                   "author": "not a secret", "x-auth": "y", "control\u{7}": "line\nbreak\t\u{0}"}),
            Some(json!({"nested": {"password": "p"}, "path": "/x"})),
        ),
        // Oversized arguments (digested), one of them holding a secret
        // (masked first, then digested: both pointers listed).
        (
            json!({"big": "x".repeat(300), "small": 1, "bigobj": {"token": "t", "data": "y".repeat(300)}, "a/b": "z".repeat(400)}),
            Some(json!({"big": "x".repeat(300)})),
        ),
        // A configured secret field, unicode and numbers of every kind.
        (
            json!({"MyField": "hidden", "n": [1, -2, 3.5, 1e300, 18446744073709551615u64], "emoji": "😀\u{fffd}", "null_secret_token": null}),
            None,
        ),
        // Arguments that are not an object.
        (json!(["a", {"password": "p"}]), Some(json!("plain"))),
        (json!(null), None),
    ]
}

fn results() -> Vec<Value> {
    vec![
        json!({"allow": true, "reasons": [], "policy_version": "fs@1", "matched_rules": ["data.p.decision"]}),
        json!({"allow": false, "reasons": ["path_outside_scope"], "message": "No \"quotes\"\u{1b} here", "remediation": "ask"}),
        json!({"allow": true, "require_approval": {"scope": "call"}, "rate_limit_remaining": 7}),
    ]
}

#[test]
fn a_decision_record_from_its_parts_is_the_built_one_byte_for_byte() {
    let secret_fields = vec!["my_field".to_string()];
    let bundles = Bundles::new(json!({
        "fs": {"digest": "sha256:2d40", "layer": "resource", "revision": "1.4.7"},
        "wf": {"digest": "sha256:5650", "layer": "workflow", "revision": "1.0.0\u{7f}"},
    }));
    let classes = ["pii".to_string(), "pub\"lic".to_string()];
    let mut n = 0;
    for max_arg_bytes in [256, 0, 1 << 20] {
        let mask = MaskSettings {
            secret_fields: &secret_fields,
            max_arg_bytes,
        };
        for (args, canonical) in arg_cases() {
            for (i, result) in results().into_iter().enumerate() {
                let extra: Vec<(&str, Value)> = match i {
                    // An input that already has an `output` (masked too).
                    1 => vec![("output", json!({"content": [{"text": "t", "cookie": "c"}]}))],
                    _ => vec![],
                };
                let inputs = [
                    input(args.clone(), canonical.clone(), &extra),
                    // A static-only server without an engine still logs
                    // its input; a non-object input is written as is.
                    Value::Null,
                ];
                for input in inputs {
                    let record = |input: Value| DecisionRecord {
                        decision_id: (i != 2).then_some("35de0d32-d2ce-45e1"),
                        timestamp: "2026-12-07T23:00:07.317363024Z",
                        path: if i == 0 {
                            "mcp/fs/decision"
                        } else {
                            "gavel/static"
                        },
                        input: std::borrow::Cow::Owned(input),
                        result: result.clone(),
                        bundles: if i == 2 { Bundles::none() } else { &bundles },
                        labels: labels(&[("policy", "rego"), ("fail_open", "false")][..i.min(2)]),
                        eval_ns: 72_848,
                        decision_ns: 277_745,
                        upstream_classes: (i != 1).then_some(&classes[..i]),
                        trace: (i == 1).then(|| {
                            (
                                "0af7651916cd43dd8448eb211c80319c".into(),
                                "b7ad6b7169203331".into(),
                            )
                        }),
                    };
                    let streamed = record(input.clone()).line(&mask);
                    let expected = built(record(input), &mask);
                    assert_eq!(
                        String::from_utf8_lossy(&streamed),
                        String::from_utf8_lossy(&expected)
                    );
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 3 * 7 * 3 * 2);
}

#[test]
fn the_masked_list_is_in_mask_events_order() {
    // Secrets of args, then args' digests, then canonical_args' secrets
    // and digests, then the output's secrets.
    let secret_fields = vec![];
    let mask = MaskSettings {
        secret_fields: &secret_fields,
        max_arg_bytes: 8,
    };
    let bundles = Bundles::new(json!({}));
    let result = json!({"allow": true});
    let labels = labels(&[]);
    let input = json!({
        "action": {"args": {"long": "0123456789", "z": {"token": "t"}}, "canonical_args": {"b": "0123456789", "password": "p"}},
        "output": {"x": [{"secret": 1}]},
    });
    let line = super::line(
        &super::Parts {
            bundles: &bundles,
            decision_id: None,
            result_of: Some(None),
            timestamp: "t",
            path: "p",
            input: &input,
            output: None,
            written: None,
            result: &result,
            labels: &labels,
            eval_ns: 0,
            decision_ns: 0,
            upstream_classes: None,
            trace: None,
        },
        &mask,
    );
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        v["masked"],
        json!([
            "/input/action/args/z/token",
            "/input/action/args/long",
            "/input/action/args/z",
            "/input/action/canonical_args/password",
            "/input/action/canonical_args/b",
            // Masked, then still longer than 8 bytes (`"**REDACTED**"`).
            "/input/action/canonical_args/password",
            "/input/output/x/0/secret"
        ])
    );
    assert_eq!(v["result_of"], Value::Null);
    assert_eq!(v["input"]["action"]["args"]["long"]["size_bytes"], 12);
    assert!(line.ends_with(b"}\n") && !line[..line.len() - 1].contains(&b'\n'));
}
