use super::*;
use serde_json::json;

fn key() -> SealKey {
    SealKey::new(vec![7u8; 32]).unwrap()
}

fn args(v: Value) -> [u8; 32] {
    args_digest(v.as_object())
}

fn binding(a: [u8; 32]) -> Binding<'static> {
    Binding {
        principal: "alice/agent-1",
        server: "deploy",
        method: "tools/call",
        target: "deploy__ship",
        args: a,
    }
}

#[test]
fn a_sealed_round_opens_with_what_it_carries() {
    let b = binding(args(json!({"env": "prod"})));
    let t = seal(&key(), &b, Kind::Relay, Some("up-state".into()), 10_000);
    let o = open(&key(), &t, &b, 5_000).unwrap();
    assert_eq!(o.kind, Kind::Relay);
    assert_eq!(o.inner.as_deref(), Some("up-state"));
    assert_eq!(o.expires_ms, 10_000);
}

#[test]
fn argument_order_does_not_change_the_digest_but_values_do() {
    let a: Value = serde_json::from_str(r#"{"a":1,"b":{"y":2,"x":3}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"b":{"x":3,"y":2},"a":1}"#).unwrap();
    assert_eq!(args(a), args(b));
    assert_ne!(args(json!({"a": 1})), args(json!({"a": 2})));
    assert_ne!(args_digest(None), args(json!({})));
}

#[test]
fn every_flipped_byte_is_refused_as_forged() {
    let b = binding(args(json!({"env": "prod"})));
    let t = seal(&key(), &b, Kind::Approval, Some("ap-1".into()), 10_000);
    for i in 0..t.len() {
        let mut bytes = t.clone().into_bytes();
        bytes[i] ^= 0x01;
        let Ok(s) = String::from_utf8(bytes) else {
            continue;
        };
        assert_eq!(
            open(&key(), &s, &b, 5_000),
            Err(SealError::Forged),
            "byte {i}"
        );
    }
}

#[test]
fn another_key_cannot_open_it() {
    let b = binding(args(json!({})));
    let t = seal(&key(), &b, Kind::Relay, None, 10_000);
    let other = SealKey::new(vec![8u8; 32]).unwrap();
    assert_eq!(open(&other, &t, &b, 1), Err(SealError::Forged));
    assert!(open(&SealKey::random(), &t, &b, 1).is_err());
}

#[test]
fn a_retry_for_anything_else_is_a_mismatch() {
    let a = args(json!({"env": "prod"}));
    let b = binding(a);
    let t = seal(&key(), &b, Kind::Relay, None, 10_000);
    let changed = [
        (
            Binding {
                args: args(json!({"env": "dev"})),
                ..b.clone()
            },
            "set of arguments",
        ),
        (
            Binding {
                principal: "mallory/agent-1",
                ..b.clone()
            },
            "principal (caller)",
        ),
        (
            Binding {
                server: "other",
                ..b.clone()
            },
            "server",
        ),
        (
            Binding {
                method: "prompts/get",
                ..b.clone()
            },
            "method",
        ),
        (
            Binding {
                target: "deploy__rollback",
                ..b.clone()
            },
            "tool, prompt or resource",
        ),
    ];
    for (c, what) in changed {
        assert_eq!(open(&key(), &t, &c, 1), Err(SealError::Mismatch(what)));
    }
}

#[test]
fn an_expired_round_is_refused() {
    let b = binding(args(json!({})));
    let t = seal(&key(), &b, Kind::Relay, None, 10_000);
    assert_eq!(open(&key(), &t, &b, 10_000), Err(SealError::Expired));
}

#[test]
fn an_oversized_or_foreign_state_is_refused_unread() {
    let b = binding(args(json!({})));
    let long = "x".repeat(MAX_SEALED_BYTES + 1);
    assert_eq!(
        open(&key(), &long, &b, 1),
        Err(SealError::TooLong(MAX_SEALED_BYTES + 1))
    );
    for s in [
        "",
        "gavel1.",
        "gavel1..",
        "upstream-state",
        "gavel1.e30.AAAA",
    ] {
        assert_eq!(open(&key(), s, &b, 1), Err(SealError::Forged), "{s:?}");
    }
}

#[test]
fn a_nonce_is_spent_once_and_the_set_is_bounded() {
    let b = binding(args(json!({})));
    let spent = SpentNonces::new(2);
    let o1 = open(&key(), &seal(&key(), &b, Kind::Relay, None, 100), &b, 1).unwrap();
    spent.spend(&o1, 1).unwrap();
    assert_eq!(spent.spend(&o1, 2), Err(SealError::Replayed));
    let o2 = open(&key(), &seal(&key(), &b, Kind::Relay, None, 100), &b, 1).unwrap();
    spent.spend(&o2, 2).unwrap();
    let o3 = open(&key(), &seal(&key(), &b, Kind::Relay, None, 200), &b, 1).unwrap();
    assert_eq!(spent.spend(&o3, 3), Err(SealError::Full(2)));
    // Once the first two have expired, their room is reused; a spent
    // nonce is never forgotten before its round expires.
    spent.spend(&o3, 100).unwrap();
    assert_eq!(spent.spend(&o3, 101), Err(SealError::Replayed));
}

#[test]
fn a_short_key_is_refused_and_a_key_never_prints() {
    assert_eq!(
        SealKey::new(vec![1; 31]).unwrap_err(),
        SealError::ShortKey(31)
    );
    let k = format!("{:?}", SealKey::new(vec![0x41; 32]).unwrap());
    assert!(!k.contains("AAAA") && !k.contains("65"), "{k}");
}
