use super::*;

/// Secret names in every spelling a client or server uses: header
/// style, camelCase, SCREAMING_CASE, with or without separators.
#[test]
fn secret_names_match_in_any_spelling_and_innocent_ones_do_not() {
    for name in [
        "x-api-key",
        "api-key",
        "X-API-KEY",
        "apiKey",
        "XApiKey",
        "privateKey",
        "private-key",
        "PRIVATE_KEY",
        "accessKey",
        "access-key",
        "aws_access_key_id",
        "jwt",
        "idJwt",
        "auth",
        "x-auth",
        "authHeader",
        "AUTH_HEADER",
        "HTTPAuth",
        "bearer",
        "bearerToken",
        "credentials",
        "gcpCredentials",
        "Password",
        "client-secret",
        "Set-Cookie",
    ] {
        assert!(is_secret_name(name, &[]), "{name} is secret");
    }
    for name in [
        "author",
        "authority",
        "path",
        "keyword",
        "monkey",
        "sessionId",
        "count",
    ] {
        assert!(!is_secret_name(name, &[]), "{name} is not secret");
    }
    // Configured names match in any spelling too, and only whole.
    let extra = ["note_text".to_string(), String::new()];
    for name in ["note_text", "noteText", "NOTE-TEXT"] {
        assert!(is_secret_name(name, &extra), "{name}");
    }
    assert!(!is_secret_name("notes", &extra));
    assert!(
        !is_secret_name("-", &extra),
        "an empty configured name matches nothing"
    );
    assert_eq!(words("xAuthToken"), ["x", "auth", "token"]);
    assert_eq!(words("HTTPAuth_v2"), ["http", "auth", "v2"]);
}

#[test]
fn the_decision_log_masks_secret_names_in_any_spelling() {
    let mut e = json!({"input": {"action": {"args": {
        "headers": {"x-api-key": "k1", "Authorization": "Bearer t"},
        "privateKey": "k2", "access-key": "k3", "jwt": "k4", "auth": "k5",
        "bearer": "k6", "credentials": {"user": "u", "pass": "k7"},
        "author": "ada",
    }}}});
    mask_event(
        &mut e,
        &MaskSettings {
            secret_fields: &[],
            max_arg_bytes: 4096,
        },
    );
    let s = e.to_string();
    for secret in ["k1", "Bearer t", "k2", "k3", "k4", "k5", "k6", "k7"] {
        assert!(
            !s.contains(&format!("\"{secret}\"")),
            "{secret} leaked: {s}"
        );
    }
    assert_eq!(e["input"]["action"]["args"]["author"], "ada", "{s}");
    assert_eq!(e["masked"].as_array().unwrap().len(), 8, "{s}");
}

#[test]
fn secrets_big_args_and_bundle_rules() {
    let mut e = json!({"input": {"action": {"args": {"path": "/x", "api_token": "t0k", "nested": {"Password": "pw"}, "blob": "y".repeat(100)}}, "user": {"id": "u"}}, "result": {}});
    mask_event(
        &mut e,
        &MaskSettings {
            secret_fields: &["path".into()],
            max_arg_bytes: 50,
        },
    );
    let s = e.to_string();
    assert!(
        !s.contains("t0k") && !s.contains("\"pw\"") && !s.contains("/x\"") && !s.contains("yyyy"),
        "{s}"
    );
    assert_eq!(e["input"]["action"]["args"]["blob"]["size_bytes"], 102);
    apply_mask_rules(
        &mut e,
        &json!(["/input/user/id", {"op": "upsert", "path": "/input/action/args/extra", "value": "**"}, "/etc/passwd"]),
    );
    assert!(e["input"]["user"].get("id").is_none());
    assert_eq!(e["erased"], json!(["/input/user/id"]));
    assert!(
        e["masked"]
            .as_array()
            .unwrap()
            .contains(&json!("/input/action/args/extra"))
    );
}

#[test]
fn mask_rules_reach_array_elements_with_opa_semantics() {
    let mut e = json!({"input": {"action": {"args": {
            "paths": ["/secret/a", "/public/b", "/public/c"],
            "pairs": [{"k": "token-ish", "v": 1}],
        }}}, "result": {"allow": true}});
    let skipped = apply_mask_rules(
        &mut e,
        &json!([
            "/input/action/args/paths/0",
            {"op": "upsert", "path": "/input/action/args/paths/1", "value": "**"},
            "/input/action/args/pairs/0/k",
            {"op": "upsert", "path": "/input/action/new/deep", "value": 1},
            "/input/action/args/paths/9",
            "/input/action/args/paths/x",
            {"op": "upsert", "path": "/input/action/args/paths/5", "value": "**"},
            "/input/action/args/missing",
            "/etc/passwd",
            {"op": "rename", "path": "/input/user"},
            42,
        ]),
    );
    let args = &e["input"]["action"]["args"];
    // Removing element 0 shifts the rest down (OPA); items apply in
    // order, so the upsert at index 1 replaces what was at index 2.
    assert_eq!(args["paths"], json!(["/public/b", "**"]), "{e}");
    assert!(!e.to_string().contains("/secret/a"), "{e}");
    assert_eq!(args["pairs"], json!([{"v": 1}]));
    assert_eq!(
        e["input"]["action"]["new"]["deep"], 1,
        "upsert makes missing objects"
    );
    assert_eq!(
        e["erased"],
        json!(["/input/action/args/paths/0", "/input/action/args/pairs/0/k"])
    );
    assert_eq!(
        e["masked"],
        json!(["/input/action/args/paths/1", "/input/action/new/deep"])
    );
    let why: Vec<(&str, &str)> = skipped
        .iter()
        .map(|(p, w)| (p.as_str(), w.as_str()))
        .collect();
    assert_eq!(why.len(), 7, "{why:?}");
    assert!(why[0].0 == "/input/action/args/paths/9" && why[0].1.contains("past the end"));
    assert!(why[1].1.contains("not an array index"), "{why:?}");
    assert!(why[2].0.ends_with("/paths/5") && why[2].1.contains("past the end"));
    assert!(why[3].1.contains("no member \"missing\""), "{why:?}");
    assert!(why[4].1.contains("/input or /result"), "{why:?}");
    assert!(why[5].1.contains("unknown op"), "{why:?}");
    assert_eq!(why[6].0, "42");
}

#[test]
fn whole_input_and_result_can_be_erased_or_replaced() {
    let mut e = json!({"input": {"a": 1}, "result": {"allow": false}});
    let skipped = apply_mask_rules(
        &mut e,
        &json!(["/input", {"op": "upsert", "path": "/result", "value": {"allow": "?"}}]),
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(e.get("input").is_none());
    assert_eq!(e["result"], json!({"allow": "?"}));
    // upsert below an absent input is not applied (OPA).
    let skipped = apply_mask_rules(
        &mut e,
        &json!([{"op": "upsert", "path": "/input/x", "value": 1}]),
    );
    assert_eq!(skipped.len(), 1);
    assert!(e.get("input").is_none());
}

/// A value hidden in the arguments is hidden in their canonical forms
/// too: by gavel's secret names and size cap, and by a bundle's
/// `log.mask` rule naming the argument (remove and upsert alike).
#[test]
fn what_is_masked_in_args_is_masked_in_canonical_args() {
    let event = || {
        json!({"input": {"action": {
            "args": {"path": "secret/plan.txt", "note": "x"},
            "canonical_args": {"path": "secret/plan.txt"},
        }}})
    };
    let extra = ["path".to_string()];
    let mut e = event();
    mask_event(
        &mut e,
        &MaskSettings {
            secret_fields: &extra,
            max_arg_bytes: 1 << 20,
        },
    );
    assert_ne!(
        e.pointer("/input/action/canonical_args/path"),
        Some(&json!("secret/plan.txt")),
        "{e}"
    );
    let mut e = event();
    mask_event(
        &mut e,
        &MaskSettings {
            secret_fields: &[],
            max_arg_bytes: 4,
        },
    );
    assert_eq!(
        e["input"]["action"]["canonical_args"]["path"]["truncated"], true,
        "{e}"
    );

    let mut e = event();
    apply_mask_rules(&mut e, &json!(["/input/action/args/path"]));
    assert!(
        e.pointer("/input/action/canonical_args/path").is_none(),
        "{e}"
    );
    assert!(
        e["erased"]
            .as_array()
            .unwrap()
            .contains(&json!("/input/action/canonical_args/path"))
    );
    let mut e = event();
    apply_mask_rules(
        &mut e,
        &json!([{"op": "upsert", "path": "/input/action/args/path", "value": "***"}]),
    );
    assert_eq!(e["input"]["action"]["canonical_args"]["path"], "***", "{e}");
    // An argument with no canonical form: nothing mirrored, nothing skipped.
    let mut e = event();
    let skipped = apply_mask_rules(&mut e, &json!(["/input/action/args/note"]));
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        e["input"]["action"]["canonical_args"]["path"],
        "secret/plan.txt"
    );
}

/// The pointers `masked` lists are escaped JSON pointers through objects
/// and arrays, and the name test is the same for names longer than the
/// stack buffer and for non-ASCII names (issue 17 made both paths
/// allocation-free for the usual name; these pin what they answer).
#[test]
fn masked_pointers_are_escaped_and_long_or_odd_names_are_judged_alike() {
    let long_secret = format!("{}ApiKey", "x".repeat(80));
    let long_plain = format!("{}Author", "x".repeat(80));
    let mut e = json!({"input": {"action": {"args": {
        "a/b~c": {"token": "k1"},
        "list": [{"secret": "k2"}, "plain", [{"jwt": "k3"}]],
        long_secret.clone(): "k4",
        long_plain.clone(): "ada",
        "pässwörd": "v5",
        "clé-secret": "k6",
        "exact": "z".repeat(12),
        "over": "z".repeat(13),
    }}}});
    mask_event(
        &mut e,
        &MaskSettings {
            secret_fields: &[],
            // "exact"'s value serializes to exactly 14 bytes (as does
            // "**REDACTED**"): kept; "over"'s to 15: replaced.
            max_arg_bytes: 14,
        },
    );
    let masked: Vec<&str> = e["masked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for p in [
        "/input/action/args/a~1b~0c/token",
        "/input/action/args/list/0/secret",
        "/input/action/args/list/2/0/jwt",
    ] {
        assert!(masked.contains(&p), "{p} in {masked:?}");
    }
    let args = &e["input"]["action"]["args"];
    assert_eq!(args[&long_secret], "**REDACTED**");
    assert_eq!(args[&long_plain], "ada");
    // Non-ASCII letters are dropped by the compact form: "psswrd" is no
    // secret word, "clsecret" holds one.
    assert_eq!(args["pässwörd"], "v5");
    assert_eq!(args["clé-secret"], "**REDACTED**");
    assert_eq!(args["exact"], "z".repeat(12));
    assert_eq!(args["over"]["size_bytes"], 15);
    assert!(masked.contains(&"/input/action/args/over"));
    assert_eq!(
        is_secret_name(&long_secret, &[]),
        SECRET_WORDS
            .iter()
            .any(|w| compact(&long_secret).contains(w))
    );
    let extra = [format!("{}note", "y".repeat(70))];
    assert!(is_secret_name(&format!("{}-NOTE", "Y".repeat(70)), &extra));
}

/// `holds` (the searcher-free `contains` the secret-name test uses) answers
/// as `str::contains` does: every secret word against names that hold it at
/// the start, middle and end, hold a prefix of it only, or are shorter.
#[test]
fn holds_answers_as_contains() {
    let words: Vec<&str> = SECRET_WORDS
        .iter()
        .chain(SECRET_WHOLE_WORDS)
        .copied()
        .chain(["a", "aa", "ab"])
        .collect();
    for w in &words {
        let half = &w[..w.len() / 2];
        let names = [
            String::new(),
            w.to_string(),
            format!("x{w}"),
            format!("{w}x"),
            format!("xx{w}yy"),
            half.to_string(),
            format!("{half}x{half}"),
            format!("{half}{half}"),
            format!("{w}{w}"),
            "aab".to_string(),
            "passwor".to_string(),
            "tokentoke".to_string(),
        ];
        for n in &names {
            assert_eq!(super::holds(n, w), n.contains(w), "{n:?} holds {w:?}");
        }
    }
}
