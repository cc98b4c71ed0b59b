use super::*;
use crate::config::Config;
use crate::decision::DecisionContext;
use crate::upstream::UpstreamLists;

fn tool(name: &str) -> Tool {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "inputSchema": {"type": "object"}
    }))
    .unwrap()
}

/// The configuration `toml` and its enforcer.
fn configured(toml: &str) -> (Config, Enforcer) {
    let config =
        Config::from_toml_str(toml, std::path::Path::new("/x/servers.toml"), &|_| None).unwrap();
    let enforcer = Enforcer::from_config(&config).unwrap();
    (config, enforcer)
}

fn setup() -> (Router, Arc<Upstream>, Enforcer) {
    let (config, enforcer) = configured("[servers.fx]\ncommand = \"x\"\n");
    let up = Upstream::new(config.servers["fx"].clone());
    let router = Router::new([("fx".to_string(), up.clone())].into(), false);
    (router, up, enforcer)
}

fn lists(tools: &[&str]) -> UpstreamLists {
    UpstreamLists {
        tools: tools.iter().map(|t| tool(t)).collect(),
        ..Default::default()
    }
}

/// A change found by any rebuild — here one a request made while waiting
/// for a starting server, before the listener ran — is still announced, and
/// once.
#[test]
fn a_change_found_by_another_rebuild_is_still_announced_once() {
    let (router, up, enforcer) = setup();
    let ctx = crate::decision::DecisionContext::default();
    up.set_lists(lists(&["a"]));
    router.rebuild(&enforcer, &ctx);
    let t = router.table();
    router.answered(TOOLS, &t); // the host listed [a]
    assert_eq!(router.take_unannounced(), (false, false, false));

    up.set_lists(lists(&["a", "b"]));
    // A resources/read rebuilds first (its server may have been starting)…
    router.refresh(&enforcer, DecisionContext::default);
    assert!(router.table().tool_routes.contains_key("b"));
    // …then the listener rebuilds, finds nothing new, and still announces.
    assert_eq!(router.rebuild(&enforcer, &ctx), (false, false, false));
    assert_eq!(router.take_unannounced(), (true, false, false));
    assert_eq!(router.take_unannounced(), (false, false, false), "once");
}

/// A request that only routes rebuilds the table only when an upstream's
/// lists changed since it was built; a list answer always rebuilds.
#[test]
fn a_routing_request_rebuilds_only_after_an_upstream_list_changed() {
    let (router, up, enforcer) = setup();
    router.refresh(&enforcer, DecisionContext::default);
    assert!(router.table().tool_routes.is_empty(), "nothing listed yet");
    up.set_lists(lists(&["a"]));
    router.refresh(&enforcer, DecisionContext::default);
    let built = router.table();
    assert!(
        built.tool_routes.contains_key("a"),
        "a new list is picked up"
    );
    router.refresh(&enforcer, || {
        unreachable!("a current table needs no context")
    });
    assert!(Arc::ptr_eq(&built, &router.table()), "not rebuilt");
    router.rebuild(&enforcer, &DecisionContext::default());
    assert!(
        !Arc::ptr_eq(&built, &router.table()),
        "a full rebuild always runs"
    );
    up.set_lists(lists(&["a"])); // a re-fetch, even of the same tools
    let built = router.table();
    router.refresh(&enforcer, DecisionContext::default);
    assert!(
        !Arc::ptr_eq(&built, &router.table()),
        "rebuilt after a re-fetch"
    );
}

/// A host that just listed the changed table needs no announcement.
#[test]
fn a_change_the_host_already_listed_is_not_announced() {
    let (router, up, enforcer) = setup();
    let ctx = crate::decision::DecisionContext::default();
    up.set_lists(lists(&["a"]));
    router.rebuild(&enforcer, &ctx);
    router.answered(TOOLS, &router.table());
    up.set_lists(lists(&["a", "c"]));
    router.rebuild(&enforcer, &ctx); // tools/list waiting for starts
    let t = router.table();
    router.answered(TOOLS, &t); // …and answered with [a, c]
    router.rebuild(&enforcer, &ctx); // the listener
    assert_eq!(router.take_unannounced(), (false, false, false));
    // A later change is announced again.
    up.set_lists(lists(&["c"]));
    router.rebuild(&enforcer, &ctx);
    assert_eq!(router.take_unannounced(), (true, false, false));
}

/// With the agent tools on, an upstream tool or resource in gavel's
/// reserved space is withheld and listed as such; the rest of the server's
/// names are unaffected. Off, the same names pass as any other.
#[test]
fn reserved_names_are_withheld_only_while_the_agent_tools_are_on() {
    let (_, up, enforcer) = setup();
    let mut l = lists(&["gavel__check", "GAVEL__why", "echo"]);
    l.resources = vec![
        serde_json::from_value(serde_json::json!({"uri": "gavel://policy/fx", "name": "p"}))
            .unwrap(),
        serde_json::from_value(serde_json::json!({"uri": "file:///x", "name": "x"})).unwrap(),
    ];
    l.templates = vec![
        serde_json::from_value(
            serde_json::json!({"uriTemplate": "gavel://policy/{s}", "name": "t"}),
        )
        .unwrap(),
    ];
    up.set_lists(l);
    let ctx = DecisionContext::default();
    let on = Router::new([("fx".to_string(), up.clone())].into(), false).reserving(true);
    on.rebuild(&enforcer, &ctx);
    let t = on.table();
    let names: Vec<&str> = t.tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["echo"]);
    assert!(
        !t.tool_routes.contains_key("gavel__check"),
        "no route either"
    );
    assert_eq!(t.resources.len(), 1);
    assert_eq!(t.resources[0].uri, "file:///x");
    assert!(t.templates.is_empty());
    assert_eq!(
        t.withheld,
        [
            "gavel__check (server fx, reserved)",
            "GAVEL__why (server fx, reserved)",
            "gavel://policy/fx (server fx, reserved)",
            "gavel://policy/{s} (server fx, reserved)"
        ]
    );

    let off = Router::new([("fx".to_string(), up)].into(), false);
    off.rebuild(&enforcer, &ctx);
    assert_eq!(off.table().tools.len(), 3);
    assert!(off.table().withheld.is_empty());
}

/// A router over `servers` (name, `unlisted_tools = "forward"`?), prefixed
/// when there are several.
fn router_of(servers: &[(&str, bool)]) -> Router {
    let mut toml = String::new();
    for (name, forward) in servers {
        toml += &format!("[servers.{name}]\ncommand = \"x\"\n");
        if *forward {
            toml += "unlisted_tools = \"forward\"\n";
        }
    }
    let (config, _) = configured(&toml);
    let ups = config
        .servers
        .iter()
        .map(|(n, c)| (n.clone(), Upstream::new(c.clone())))
        .collect();
    Router::new(ups, servers.len() > 1)
}

#[test]
fn an_unlisted_tool_routes_only_to_a_server_that_forwards_it() {
    let route = |r: &Router, name: &str| r.unlisted_route(name).map(|t| (t.server, t.name));
    // One server: any name, unchanged; decided with nothing known of it.
    let one = router_of(&[("fx", true)]);
    assert_eq!(route(&one, "hook"), Some(("fx".into(), "hook".into())));
    let r = one.unlisted_route("hook").unwrap();
    assert_eq!(r.annotations, serde_json::json!({}));
    assert!(r.digest.is_none());
    assert_eq!(route(&one, ""), None);
    // Refused by default.
    assert_eq!(route(&router_of(&[("fx", false)]), "hook"), None);
    // Several: only `<prefix>__<tool>` of a server that forwards.
    let two = router_of(&[("a", true), ("b", false)]);
    assert_eq!(route(&two, "a__hook"), Some(("a".into(), "hook".into())));
    assert_eq!(route(&two, "b__hook"), None);
    assert_eq!(route(&two, "hook"), None);
    assert_eq!(route(&two, "a__"), None);
    assert_eq!(route(&two, "ab__hook"), None);
    // gavel's reserved names never reach a server while agent tools are on.
    let reserving = router_of(&[("fx", true)]).reserving(true);
    assert_eq!(route(&reserving, "gavel__check"), None);
    assert_eq!(
        route(&reserving, "hook"),
        Some(("fx".into(), "hook".into()))
    );
}

/// An upstream's own list-change notice is passed on only while the host
/// is shown that server's whole list: never when the policy hides an item
/// of it, or a name of it is withheld.
#[test]
fn a_servers_notice_may_pass_only_when_nothing_of_its_list_is_hidden() {
    use crate::upstream::client::ListKind;
    let ctx = DecisionContext::default();
    let (router, up, enforcer) = setup();
    up.set_lists(lists(&["a", "b"]));
    router.rebuild(&enforcer, &ctx);
    assert!(router.shows_whole("fx", ListKind::Tools));
    assert!(
        router.shows_whole("fx", ListKind::Prompts),
        "none listed, none hidden"
    );
    assert!(!router.shows_whole("nope", ListKind::Tools));

    // A tool the static rules deny is routed (for its denial) but hidden.
    let (config, enforcer) =
        configured("[servers.fx]\ncommand = \"x\"\n[servers.fx.tools]\ndeny = [\"secret\"]\n");
    let up = Upstream::new(config.servers["fx"].clone());
    let router = Router::new([("fx".to_string(), up.clone())].into(), false);
    up.set_lists(lists(&["a", "secret"]));
    router.rebuild(&enforcer, &ctx);
    assert!(router.table().tool_routes.contains_key("secret"));
    assert!(!router.shows_whole("fx", ListKind::Tools));

    // A name withheld by a collision: the second server's "a" is not
    // shown as its own (unprefixed, the first claimant keeps it).
    let (config, enforcer) =
        configured("[servers.p]\ncommand = \"x\"\n[servers.q]\ncommand = \"x\"\n");
    let (p, q) = (
        Upstream::new(config.servers["p"].clone()),
        Upstream::new(config.servers["q"].clone()),
    );
    p.set_lists(lists(&["a"]));
    q.set_lists(lists(&["a", "b"]));
    let router = Router::new([("p".to_string(), p), ("q".to_string(), q)].into(), false);
    router.rebuild(&enforcer, &ctx);
    assert!(router.shows_whole("p", ListKind::Tools));
    assert!(!router.shows_whole("q", ListKind::Tools));

    // A name withheld (reserved while agent tools are on).
    let (_, up, enforcer) = setup();
    up.set_lists(lists(&["a", "gavel__x"]));
    let router = Router::new([("fx".to_string(), up)].into(), false).reserving(true);
    router.rebuild(&enforcer, &ctx);
    assert!(!router.shows_whole("fx", ListKind::Tools));
}
