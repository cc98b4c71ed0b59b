use super::*;

fn bundle(text: &str) -> Bundle {
    crate::bundle::one_module_bundle(text, serde_json::json!({}))
}

#[test]
fn missing_builtins_are_errors_with_file_and_line() {
    let src = "package x\n\nallow if {\n  http.send({\"url\": \"u\"})\n  # io.jwt.decode(x) in a comment\n  s := \"crypto.sha256(y)\"\n  count(s) > 0\n}\n\nh := crypto.sha256(\"a\")\nm := net.cidr_merge([\"10.0.0.0/8\"])\ng if regex.globs_match(\"a\", \"b\")\nj := io.jwt.decode(\"t\")\n";
    let r = lint(&bundle(src), false).unwrap();
    let got: Vec<String> = r
        .errors
        .iter()
        .map(|f| format!("{}:{}", f.file, f.line))
        .collect();
    assert_eq!(
        got,
        [
            "p.rego:4",
            "p.rego:10",
            "p.rego:11",
            "p.rego:12",
            "p.rego:13"
        ],
        "{:?}",
        r.errors
    );
    assert!(r.errors[0].message.contains("http.send()"));
    assert!(
        r.errors[0]
            .to_string()
            .starts_with("p.rego:4: call to http.send()")
    );
}

#[test]
fn builtins_user_functions_and_imports_pass() {
    let src = "package x\nimport data.lib.helpers as h\nimport data.lib.other\n\nmy_fn(a) := upper(a)\n\n# a user function named like a missing builtin shadows it\ncrypto.sha256(s) := concat(\"\", [\"h:\", s])\n\nallow if {\n  my_fn(\"x\") == \"X\"\n  crypto.sha256(\"a\") != \"\"\n  startswith(input.action.tool, \"read\")\n  h.check(input.user.id)\n  other.f(1)\n  data.lib.g(2)\n  print(\"ok\")\n  count(input.context.tool_calls[input.action.server]) > 0\n  input.action.args.path.deep\n  input.action.annotations.readOnlyHint\n  every c in input.user.groups { c != \"x\" }\n}\n";
    let r = lint(&bundle(src), true).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn undefined_local_functions_are_errors() {
    let r = lint(&bundle("package x\nallow if nope(1)\n"), false).unwrap();
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].message.contains("nope()"));
}

#[test]
fn a_rule_named_like_a_data_key_is_refused() {
    let mut b = bundle("package x\n\nreasons contains \"a\" if true\n");
    b.data = serde_json::json!({"x": {"reasons": {"a": "text"}}});
    let r = lint(&b, false).unwrap();
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.errors[0].message.contains("collides with data.x.reasons"));
    assert_eq!(r.errors[0].line, 3);
}

#[test]
fn log_rules_see_the_event_as_input() {
    let src = "package x.log\ndrop if input.input.user.id == \"a\"\nmask contains \"/input/x\" if input.result.allow\nmask contains \"/y\" if input.input.user.role\n";
    let r = lint(&bundle(src), false).unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].message.contains("input.input.user.role"));
}

#[test]
fn unknown_input_paths_warn_or_refuse() {
    let src = "package x\nallow if input.user.role == \"admin\"\nb if input[\"agent\"].id.sub\n";
    let r = lint(&bundle(src), false).unwrap();
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert_eq!(r.warnings[0].to_string().split(':').nth(1), Some("2"));
    assert!(r.warnings[0].message.contains("input.user.role"));
    assert!(r.warnings[1].message.contains("input.agent.id.sub"));
    assert_eq!(lint(&bundle(src), true).unwrap().errors.len(), 2);
}

#[test]
fn syntax_errors_name_bundle_file_and_line() {
    let e = lint(&bundle("package x\nallow if {\n"), false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bundle b: p.rego: does not parse"), "{e}");
    assert!(e.contains("p.rego:"), "{e}");
    // v0 syntax is refused unless the manifest says rego_version 0.
    let mut b = bundle("package x\nallow { true }\n");
    assert!(lint(&b, false).is_err());
    b.manifest.rego_version = Some(0);
    assert!(lint(&b, false).unwrap().errors.is_empty());
}

#[test]
fn index_lists_rules_and_functions() {
    let i = index(&bundle(
        "package a.b\nf(x) := x\ndefault d := 1\ntest_one if true\n",
    ))
    .unwrap();
    assert_eq!(i[0].package, "a/b");
    assert!(i[0].rules.contains("test_one") && i[0].rules.contains("d"));
    assert!(i[0].functions.contains("f") && !i[0].functions.contains("d"));
}

#[test]
fn a_metadata_block_that_does_not_parse_is_a_warning_with_its_line() {
    let src = "package x\n\n# METADATA\n# description: Allows only reviewed tools (data.x.reviewed: a list)\n#   more words\ndecision := {\"allow\": true}\n";
    let r = lint(&bundle(src), false).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert_eq!(
        (r.warnings[0].file.as_str(), r.warnings[0].line),
        ("p.rego", 3)
    );
    assert!(
        r.warnings[0].message.contains("METADATA block"),
        "{}",
        r.warnings[0].message
    );
    let ok = "package x\n\n# METADATA\n# description: Allows only reviewed tools (data.x.reviewed; a list)\ndecision := {\"allow\": true}\n";
    assert!(lint(&bundle(ok), false).unwrap().warnings.is_empty());
}

/// A result rule may read an input round's requests (`output.kind`
/// `input_required`): their method and any field of their params.
#[test]
fn a_result_rule_reads_an_input_rounds_requests() {
    let src = "package x\nresult := {\"deny\": true} if {\n  input.output.kind == \"input_required\"\n  some k\n  contains(input.output.inputRequests[k].params.message, \"x\")\n  input.output.inputRequests[k].method == \"elicitation/create\"\n}\n";
    let r = lint(&bundle(src), true).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}
