use super::*;
use crate::bundle::{Bundle, RegoModule};

fn bundle(text: &str, data: Value) -> Bundle {
    crate::bundle::one_module_bundle(text, data)
}

fn facts_of(text: &str) -> Facts {
    facts(&bundle(text, serde_json::json!({})), "data.x.decision").unwrap()
}

fn tool(name: &str, args: &[&str]) -> ToolInfo {
    ToolInfo {
        name: name.into(),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
    }
}

fn tools() -> Vec<ToolInfo> {
    vec![
        tool("read_file", &["path"]),
        tool("write_file", &["path", "content"]),
        tool("echo", &["message"]),
    ]
}

/// `check file:line message-fragment` per finding, for compact assertions.
fn summary(findings: &[SchemaFinding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{:?} {}:{}", f.check, f.file, f.line))
        .collect()
}

#[test]
fn tool_names_compared_are_collected_from_equality_sets_rules_and_data() {
    let src = "package x\n\nreads := {\"read_file\", \"raed_file\"}\n\nv contains 1 if input.action.tool == \"wirte_file\"\n\nv contains 2 if input.action.tool in reads\n\nv contains 3 if input.action.tool in data.x.blocked\n\nv contains 4 if input.action.tool in [\"echo\"]\n";
    let b = bundle(src, serde_json::json!({"x": {"blocked": ["get-env"]}}));
    let f = facts(&b, "data.x.decision").unwrap();
    let names: Vec<(&str, usize)> = f
        .tools
        .iter()
        .map(|t| (t.name.as_str(), t.at.line))
        .collect();
    assert_eq!(
        names,
        [
            ("wirte_file", 5),
            ("read_file", 3),
            ("raed_file", 3),
            ("get-env", 9),
            ("echo", 11)
        ]
    );
    assert_eq!(f.tools[3].via.as_deref(), Some("data.x.blocked"));
    let found = judge("b", &f, &tools());
    assert_eq!(
        summary(&found),
        [
            "UnknownTool p.rego:5",
            "UnknownTool p.rego:3",
            "UnknownTool p.rego:9"
        ]
    );
    assert!(
        found[0].message.contains("did you mean \"write_file\""),
        "{}",
        found[0].message
    );
    assert!(
        found[2].message.contains("data.x.blocked"),
        "{}",
        found[2].message
    );
}

#[test]
fn argument_names_are_checked_against_the_pinned_tool_or_every_tool() {
    let src = "package x\n\n# pinned to echo, which has no path\nv contains 1 if {\n  input.action.tool == \"echo\"\n  input.action.args.path == \"x\"\n}\n\n# unpinned: some tool defines path\nv contains 2 if input.action.args.path == \"x\"\n\n# no tool defines pth\nv contains 3 if input.action.args[\"pth\"] == \"x\"\n\nv contains 4 if input.action.canonical_args.contnet\n\n# pinned to write_file: content is defined there\nv contains 5 if {\n  input.action.tool in {\"write_file\"}\n  input.action.args.content\n}\n";
    let found = judge("b", &facts_of(src), &tools());
    assert_eq!(
        summary(&found),
        [
            "UnknownArgument p.rego:6",
            "UnknownArgument p.rego:13",
            "UnknownArgument p.rego:15"
        ]
    );
    assert!(
        found[0].message.contains("inputSchema of \"echo\""),
        "{}",
        found[0].message
    );
    assert!(
        found[1].message.contains("args.pth"),
        "{}",
        found[1].message
    );
    assert!(
        found[2].message.contains("canonical_args.contnet"),
        "{}",
        found[2].message
    );
}

#[test]
fn an_open_schema_accepts_any_argument_name() {
    let open = vec![ToolInfo {
        name: "t".into(),
        args: None,
    }];
    let found = judge(
        "b",
        &facts_of("package x\n\nv if input.action.args.anything\n"),
        &open,
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn input_schemas_give_their_property_names_or_none_when_open() {
    let s = |v: Value| v.as_object().unwrap().clone();
    let t = ToolInfo::from_schema(
        "t",
        &s(
            serde_json::json!({"type": "object", "properties": {"a": {}}, "anyOf": [{"properties": {"b": {}}}]}),
        ),
    );
    assert_eq!(t.args, Some(["a".to_string(), "b".to_string()].into()));
    let t = ToolInfo::from_schema("t", &s(serde_json::json!({"type": "object"})));
    assert_eq!(t.args, None);
    let t = ToolInfo::from_schema(
        "t",
        &s(
            serde_json::json!({"properties": {"a": {}}, "additionalProperties": {"type": "string"}}),
        ),
    );
    assert_eq!(t.args, None);
}

#[test]
fn prefix_tests_on_path_arguments_direct_and_through_locals() {
    let src = "package x\n\nv contains 1 if not startswith(input.action.args.path, \"/srv\")\n\nv contains 2 if {\n  p := input.action.args.destination\n  not startswith(p, \"/srv\")\n}\n\nv contains 3 if {\n  some f in input.action.args.paths\n  not strings.any_prefix_match(f, [\"/srv\"])\n}\n\n# not path-like, not an argument: fine\nv contains 4 if startswith(input.action.args.message, \"hi\")\n\nwithin(p, d) if startswith(p, d)\n";
    let f = facts_of(src);
    let got: Vec<(String, Option<String>, usize)> = f
        .prefix_tests
        .iter()
        .map(|p| (p.arg.clone(), p.local.clone(), p.at.line))
        .collect();
    assert_eq!(
        got,
        [
            ("path".to_string(), None, 3),
            ("destination".to_string(), Some("p".to_string()), 7),
            ("paths".to_string(), Some("f".to_string()), 12)
        ]
    );
    let found: Vec<_> = judge("b", &f, &tools())
        .into_iter()
        .filter(|f| f.check == Check::PrefixTest)
        .collect();
    assert_eq!(found.len(), 3);
    assert!(
        found.iter().all(|f| f.severity == Severity::Warning
            && f.message.contains("data.gavel.lib.paths.within"))
    );
}

#[test]
fn a_deny_list_decision_allows_by_default() {
    let src = "package x\n\nviolations contains \"blocked\" if input.action.tool == \"echo\"\n\ndecision := {\"allow\": true} if count(violations) == 0\n\ndecision := {\"allow\": false} if count(violations) > 0\n";
    let at = facts_of(src).default_allow.expect("allows by default");
    assert_eq!((at.file.as_str(), at.line), ("p.rego", 5));
}

#[test]
fn allow_lists_do_not_allow_by_default() {
    // A positive test in the allowing body (directly or through a rule).
    for src in [
        "package x\n\ntools := {\"echo\"}\n\ndecision := {\"allow\": true} if input.action.tool in tools\n\ndefault decision := {\"allow\": false}\n",
        "package x\n\nok if input.action.tool == \"echo\"\n\ndecision := {\"allow\": true} if ok\n",
        "package x\n\ndefault allow := false\n\nallow if input.action.tool == \"echo\"\n\ndecision := {\"allow\": allow}\n",
        // A violation on a negated test: unknown tools are denied.
        "package x\n\nv contains \"no\" if not input.action.tool in {\"echo\"}\n\ndecision := {\"allow\": true} if count(v) == 0\n",
        "package x\n\nv contains \"no\" if input.action.tool != \"echo\"\n\ndecision := {\"allow\": true} if count(v) == 0\n",
    ] {
        assert_eq!(facts_of(src).default_allow, None, "{src}");
    }
}

#[test]
fn defaults_and_else_chains_that_allow_are_found() {
    for src in [
        "package x\n\ndefault decision := {\"allow\": true}\n\ndecision := {\"allow\": false} if input.action.tool == \"echo\"\n",
        "package x\n\ndecision := {\"allow\": false} if input.user.id == \"x\" else := full\n\nfull := {\"allow\": true} if true\n",
    ] {
        assert!(facts_of(src).default_allow.is_some(), "{src}");
    }
}

#[test]
fn edit_distance_suggests_near_names_only() {
    assert_eq!(closest("raed_file", &tools()), Some("read_file"));
    assert_eq!(closest("delete_everything", &tools()), None);
}

#[test]
fn tests_log_rules_and_the_policy_library_are_not_policy() {
    let b = Bundle {
        modules: vec![
            RegoModule {
                path: "t.rego".into(),
                text: "package x\n\ntest_typo if input.action.tool == \"nope\"\n".into(),
            },
            RegoModule {
                path: "log.rego".into(),
                text: "package x.log\n\ndrop if input.input.action.args.nope\n".into(),
            },
            RegoModule {
                path: "lib.rego".into(),
                text:
                    "package gavel.lib.paths\n\nargs contains p if p := input.action.args.source\n"
                        .into(),
            },
        ],
        ..bundle("package x\n", serde_json::json!({}))
    };
    let f = facts(&b, "data.x.decision").unwrap();
    assert_eq!((f.tools.len(), f.args.len()), (0, 0), "{f:?}");
}
