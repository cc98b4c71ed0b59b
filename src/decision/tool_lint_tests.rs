//! The schema lint of a whole enforcer: shared bundles against the union of
//! their servers' tools, layers and `tools.allow` for check 4, config globs,
//! and a new activation linted against the tools already known.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::Config;

fn write_bundle(dir: &Path, name: &str, root: &str, layer: &str, rego: &str) -> String {
    let b = dir.join(name);
    std::fs::create_dir_all(b.join(root)).unwrap();
    let manifest =
        json!({"revision": "1", "roots": [root], "metadata": {"gavel": {"layer": layer}}});
    std::fs::write(b.join(".manifest"), manifest.to_string()).unwrap();
    std::fs::write(b.join(root).join("policy.rego"), rego).unwrap();
    b.display().to_string()
}

const ALLOW_LIST: &str = "package mcp.SERVER\n\ndecision := {\"allow\": true} if input.action.tool in {TOOLS}\n\ndefault decision := {\"allow\": false, \"reasons\": [\"not_listed\"]}\n";

/// A deny-list shared by both servers: it names `only_b` (b's) and
/// `nobody_has`.
const SHARED: &str = "package gavel.org\n\nviolations contains \"x\" if input.action.tool in {\"only_b\", \"nobody_has\"}\n\ndecision := {\"allow\": true} if count(violations) == 0\n\ndecision := {\"allow\": false, \"reasons\": [\"x\"]} if count(violations) > 0\n";

fn tool(name: &str, args: &[&str]) -> rmcp::model::Tool {
    let props: serde_json::Map<String, Value> = args
        .iter()
        .map(|a| (a.to_string(), json!({"type": "string"})))
        .collect();
    serde_json::from_value(
        json!({"name": name, "inputSchema": {"type": "object", "properties": props}}),
    )
    .unwrap()
}

fn allow_list(server: &str, tools: &str) -> String {
    ALLOW_LIST.replace("SERVER", server).replace("TOOLS", tools)
}

/// Servers `a` and `b`, each with an allow-list, and the shared deny-list.
fn enforcer(dir: &Path, extra_a: &str) -> Enforcer {
    let a = write_bundle(dir, "a", "mcp/a", "resource", &allow_list("a", "\"t1\""));
    let b = write_bundle(
        dir,
        "b",
        "mcp/b",
        "resource",
        &allow_list("b", "\"only_b\""),
    );
    let org = write_bundle(dir, "org", "gavel/org", "workflow", SHARED);
    let toml = format!(
        "[policy]\nshared_bundles = [{org:?}]\n\n[servers.a]\ncommand = \"x\"\nbundle = {a:?}\n{extra_a}\n[servers.b]\ncommand = \"x\"\nbundle = {b:?}\n"
    );
    let config = Config::from_toml_str(&toml, &dir.join("servers.toml"), &|_| None).unwrap();
    Enforcer::from_config(&config).unwrap()
}

fn checks(e: &Enforcer, server: &str) -> Vec<(Check, String, String)> {
    e.lint_tools()
        .get(server)
        .map(|fs| {
            fs.iter()
                .map(|f| (f.check, f.bundle.clone(), f.message.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_shared_bundle_is_held_against_every_server_using_it_once_all_have_listed() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "");
    e.note_tools("a", &[tool("t1", &["x"])]);
    // b has not listed yet: the shared bundle's names are not judged.
    assert_eq!(checks(&e, "a"), vec![]);
    assert!(!e.lint_tools().contains_key("b"));
    e.note_tools("b", &[tool("only_b", &[])]);
    for server in ["a", "b"] {
        let found = checks(&e, server);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].0, found[0].1.as_str()),
            (Check::UnknownTool, "org")
        );
        assert!(found[0].2.contains("\"nobody_has\""), "{}", found[0].2);
    }
}

#[test]
fn an_activation_is_linted_against_the_tools_already_known() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "");
    e.note_tools("a", &[tool("t1", &["x"])]);
    e.note_tools("b", &[tool("only_b", &[])]);
    assert_eq!(e.lint_status("a")["errors"], 1);
    // A new revision of a's bundle with a typo and an argument t1 lacks.
    let rego = allow_list("a", "\"t1\", \"t2\"") + "\nv if input.action.args.y\n";
    write_bundle(d.path(), "a", "mcp/a", "resource", &rego);
    let active = e
        .build_server("a", &crate::policy::source::Offline::new(None))
        .unwrap();
    e.activate("a", active);
    let status = e.lint_status("a");
    assert_eq!(status["errors"], 3, "{status}");
    let messages = status["findings"].to_string();
    assert!(
        messages.contains("\\\"t2\\\"") && messages.contains("args.y"),
        "{messages}"
    );
}

#[test]
fn unnamed_tools_are_reported_only_when_every_deciding_layer_allows_by_default() {
    let d = tempfile::tempdir().unwrap();
    // a's own bundle an override (it does not decide), so only the shared
    // deny-list decides: it allows by default.
    let a = write_bundle(
        d.path(),
        "a",
        "gavel/ovr",
        "override",
        "package gavel.ovr\n\ndefault decision := {\"waive\": []}\n",
    );
    let org = write_bundle(d.path(), "org", "gavel/org", "workflow", SHARED);
    let config = |extra: &str| {
        let toml = format!(
            "[policy]\nshared_bundles = [{org:?}]\n\n[servers.a]\ncommand = \"x\"\nbundle = {a:?}\n{extra}"
        );
        Config::from_toml_str(&toml, &d.path().join("servers.toml"), &|_| None).unwrap()
    };
    let tools = [
        tool("only_b", &[]),
        tool("nobody_has", &[]),
        tool("fresh", &[]),
        tool("gone", &[]),
    ];
    let e =
        Enforcer::from_config(&config("[servers.a.tools]\ndeny = [\"go*\", \"typo*\"]\n")).unwrap();
    e.note_tools("a", &tools);
    let found = checks(&e, "a");
    let got: Vec<(Check, &str)> = found.iter().map(|(c, b, _)| (*c, b.as_str())).collect();
    // "fresh" is unnamed and allowed; "gone" is denied by a glob; "typo*" matches nothing.
    assert_eq!(
        got,
        vec![(Check::ConfigGlob, "-"), (Check::UnmentionedTool, "org")],
        "{found:?}"
    );
    assert!(found[1].2.contains("\"fresh\""), "{found:?}");
    assert!(found[0].2.contains("tools.deny: \"typo*\""), "{found:?}");
    // An allow-list in servers.toml: nothing is allowed by default.
    let e = Enforcer::from_config(&config("[servers.a.tools]\nallow = [\"*\"]\n")).unwrap();
    e.note_tools("a", &tools);
    assert_eq!(checks(&e, "a"), vec![]);
}
