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

#[test]
fn a_shared_key_comes_from_the_environment_first_then_the_file() {
    use base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("round.key");
    let k32 = STANDARD.encode([9u8; 32]);
    std::fs::write(&file, format!("{k32}\n")).unwrap();
    let b = binding(args(json!({})));
    let sealed = |k: SealKey| seal(&k, &b, Kind::Relay, None, 10);
    // The file's key is the key a token sealed with [9; 32] opens under.
    let from_file = shared_key(None, Some(&file)).unwrap().unwrap();
    assert!(
        open(
            &SealKey::new(vec![9; 32]).unwrap(),
            &sealed(from_file),
            &b,
            1
        )
        .is_ok()
    );
    // The environment wins (URL-safe, unpadded is fine too).
    let env = B64.encode([3u8; 40]);
    let from_env = shared_key(Some(env), Some(&file)).unwrap().unwrap();
    assert!(
        open(
            &SealKey::new(vec![3; 40]).unwrap(),
            &sealed(from_env),
            &b,
            1
        )
        .is_ok()
    );
    assert!(shared_key(None, None).unwrap().is_none());
    // Errors name the source, never the key.
    let short = STANDARD.encode([1u8; 16]);
    let e = shared_key(Some(short.clone()), None).unwrap_err();
    assert!(
        e.contains("GAVEL_ROUND_KEY") && e.contains("16 bytes"),
        "{e}"
    );
    assert!(!e.contains(&short), "{e}");
    let e = shared_key(Some("not base64 !!".into()), None).unwrap_err();
    assert!(
        e.contains("GAVEL_ROUND_KEY") && e.contains("not base64"),
        "{e}"
    );
    let e = shared_key(None, Some(&dir.path().join("missing"))).unwrap_err();
    assert!(e.contains("round_key_file") && e.contains("missing"), "{e}");
    std::fs::write(&file, "x".repeat(5000)).unwrap();
    let e = shared_key(None, Some(&file)).unwrap_err();
    assert!(
        e.contains("round_key_file") && e.contains("not a key file"),
        "{e}"
    );
}

/// A store every instance shares, in memory.
#[derive(Debug, Default)]
struct Shared(
    Mutex<std::collections::HashSet<String>>,
    std::sync::atomic::AtomicBool,
);

impl SharedSpends for Shared {
    fn spend(&self, nonce: &str, _ttl_ms: u64) -> Result<bool, String> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the store is down".into());
        }
        Ok(self.0.lock().unwrap().insert(nonce.to_string()))
    }
}

#[tokio::test]
async fn a_round_spent_on_one_instance_is_refused_on_another_and_a_down_store_refuses() {
    let shared = std::sync::Arc::new(Shared::default());
    let a = Sealer::new(key()).with_shared(shared.clone());
    let b = Sealer::new(key()).with_shared(shared.clone());
    let bind = binding(args(json!({"x": 1})));
    let t = a.seal(&bind, Kind::Relay, Some("up".into()), 1);
    // Opening does not spend: b opens it too, and spends it first.
    let on_a = a.open(&t, &bind).unwrap();
    let on_b = b.open(&t, &bind).unwrap();
    assert_eq!(on_b.inner.as_deref(), Some("up"));
    b.spend(&on_b).await.unwrap();
    assert_eq!(a.spend(&on_a).await, Err(SealError::Replayed));
    assert_eq!(b.spend(&on_b).await, Err(SealError::Replayed));
    // The store down: refused, whatever the local set says.
    shared.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let t2 = a.seal(&bind, Kind::Relay, None, 1);
    let o = a.open(&t2, &bind).unwrap();
    assert!(matches!(a.spend(&o).await, Err(SealError::Unavailable(_))));
}

#[test]
fn expiry_follows_the_sealers_clock() {
    let clock = std::sync::Arc::new(crate::state::clock::ManualClock::new(1_000.0));
    let s = Sealer::new(key()).with_clock(clock.clone());
    let bind = binding(args(json!({})));
    let t = s.seal(&bind, Kind::Relay, None, 1);
    clock.advance(ROUND_TTL.as_secs_f64() - 1.0);
    assert!(s.open(&t, &bind).is_ok());
    clock.advance(1.0);
    assert_eq!(s.open(&t, &bind), Err(SealError::Expired));
}

/// A message signed with one key opens only with it, and only unaltered.
#[test]
fn messages_open_only_unaltered_under_the_same_key() {
    let a = Sealer::new(SealKey::new(vec![1; 32]).unwrap());
    let same = Sealer::new(SealKey::new(vec![1; 32]).unwrap());
    let other = Sealer::new(SealKey::new(vec![2; 32]).unwrap());
    let signed = a.sign_message(b"{\"resume\":1}");
    assert_eq!(same.open_message(&signed), Some(&b"{\"resume\":1}"[..]));
    assert_eq!(other.open_message(&signed), None);
    let mut altered = signed.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert_eq!(same.open_message(&altered), None);
    assert_eq!(same.open_message(&signed[..31]), None);
    assert_eq!(same.open_message(b""), None);
}

/// The round's number travels under the MAC (a host cannot reset the cap
/// on rounds by editing it); a state sealed before rounds were counted
/// opens as a first round.
#[test]
fn the_rounds_number_is_sealed_and_defaults_to_the_first() {
    let b = binding(args(json!({})));
    let t = seal_numbered(&key(), &b, (Kind::Relay, None, 7), 10_000);
    assert_eq!(open(&key(), &t, &b, 1).unwrap().round, 7);
    assert_eq!(
        open(&key(), &seal(&key(), &b, Kind::Relay, None, 10_000), &b, 1)
            .unwrap()
            .round,
        1
    );
    // A payload without the field, signed as gavel signs: round 1.
    let body = B64.encode(
        serde_json::to_vec(&json!({
            "k": "relay", "p": b.principal, "s": b.server, "m": b.method,
            "t": b.target, "d": hex::encode(b.args), "e": 10_000, "n": "00",
        }))
        .unwrap(),
    );
    let signed = format!("{PREFIX}{body}");
    let tag = B64.encode(key().mac(signed.as_bytes()).finalize().into_bytes());
    let old = open(&key(), &format!("{signed}.{tag}"), &b, 1).unwrap();
    assert_eq!(old.round, 1);
}
