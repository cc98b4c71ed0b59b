use rmcp::model::*;
use serde_json::{Value, json};

use super::*;

fn meta(v: Value) -> RequestMetaObject {
    serde_json::from_value(v).unwrap()
}

const V: &str = "io.modelcontextprotocol/protocolVersion";
const CAPS: &str = "io.modelcontextprotocol/clientCapabilities";

#[test]
fn only_a_complete_envelope_of_a_served_modern_version_is_modern() {
    assert_eq!(
        modern_version(&meta(json!({V: "2026-07-28", CAPS: {}}))),
        Some(ProtocolVersion::V_2026_07_28)
    );
    // Missing capabilities: rmcp answers -32602, nothing is started.
    assert_eq!(modern_version(&meta(json!({V: "2026-07-28"}))), None);
    // A version gavel does not serve: rmcp answers -32022.
    assert_eq!(
        modern_version(&meta(json!({V: "2027-01-01", CAPS: {}}))),
        None
    );
    // Legacy versions, named or not, are the initialize era.
    assert_eq!(
        modern_version(&meta(json!({V: "2025-11-25", CAPS: {}}))),
        None
    );
    assert_eq!(modern_version(&meta(json!({}))), None);
}

#[test]
fn discover_names_gavel_every_era_and_no_feature_it_does_not_serve() {
    let d = discover_result(Some("hello".into()));
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v["supportedVersions"],
        json!([
            "2024-11-05",
            "2025-03-26",
            "2025-06-18",
            "2025-11-25",
            "2026-07-28"
        ])
    );
    assert_eq!(
        v["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "gavel"
    );
    assert_eq!(v["ttlMs"], 0);
    assert_eq!(v["cacheScope"], "private");
    assert_eq!(v["instructions"], "hello");
    let caps = &v["capabilities"];
    for served in ["tools", "resources", "prompts", "completions"] {
        assert!(caps.get(served).is_some(), "{served}: {caps}");
    }
    // List changes are delivered on `subscriptions/listen`.
    for kind in ["tools", "resources", "prompts"] {
        assert_eq!(caps[kind]["listChanged"], true, "{kind}: {caps}");
    }
    // Per-URI updates are served on a listen's resourceSubscriptions.
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
    // Not served to a modern host: logs, tasks.
    for absent in ["logging", "tasks", "extensions"] {
        assert!(caps.get(absent).is_none(), "{absent}: {caps}");
    }
}

fn upstream_stamped_meta() -> Option<MetaObject> {
    let mut m = MetaObject::new();
    m.0.insert(
        SERVER_INFO_KEY.into(),
        json!({"name": "upstream", "version": "9"}),
    );
    m.0.insert("vendor/key".into(), json!(1));
    Some(m)
}

#[test]
fn a_modern_result_carries_gavels_identity_in_place_of_an_upstreams() {
    let mut meta = upstream_stamped_meta();
    stamp_meta(&mut meta, Some(&gavel_info()));
    let m = meta.unwrap().0;
    assert_eq!(m[SERVER_INFO_KEY]["name"], "gavel", "{m:?}");
    assert_eq!(m["vendor/key"], 1, "{m:?}");
    let mut none = None;
    stamp_meta(&mut none, Some(&gavel_info()));
    assert_eq!(none.unwrap().0[SERVER_INFO_KEY]["name"], "gavel");
}

#[test]
fn a_legacy_result_loses_an_upstreams_identity_and_nothing_else() {
    let mut meta = upstream_stamped_meta();
    stamp_meta(&mut meta, None);
    let m = meta.unwrap().0;
    assert!(m.get(SERVER_INFO_KEY).is_none(), "{m:?}");
    assert_eq!(m["vendor/key"], 1, "{m:?}");
    let mut none = None;
    stamp_meta(&mut none, None);
    assert!(none.is_none(), "no _meta is added to a legacy result");
}

#[test]
fn what_policy_decided_is_never_public_to_caches() {
    let (mut ttl, mut scope) = (Some(60_000), Some(CacheScope::Public));
    private_hints(&mut ttl, &mut scope);
    assert_eq!((ttl, scope), (Some(60_000), Some(CacheScope::Private)));
    let (mut ttl, mut scope) = (None, None);
    private_hints(&mut ttl, &mut scope);
    assert_eq!((ttl, scope), (Some(0), Some(CacheScope::Private)));
}
