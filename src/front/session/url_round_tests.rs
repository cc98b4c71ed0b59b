use super::*;

fn url(u: &str) -> Value {
    json!({"mode": "url", "url": u, "message": "Sign in", "elicitationId": "e1"})
}

/// A well-formed -32042's elicitations are read whole: message and URL as
/// the upstream gave them (the id is 2025-11-25's alone).
#[test]
fn a_well_formed_list_is_read_unchanged() {
    let long = format!("https://auth.example.test/cb?state={}", "x".repeat(2000));
    let data = json!({"elicitations": [url("https://a.example.test/x?y=1#z"), url(&long)]});
    let got = elicitations(Some(&data)).unwrap();
    assert_eq!(
        got,
        vec![
            UrlElicitation {
                message: "Sign in".into(),
                url: "https://a.example.test/x?y=1#z".into()
            },
            UrlElicitation {
                message: "Sign in".into(),
                url: long
            },
        ]
    );
}

/// Every way the data can be wrong is refused, saying what is wrong: no
/// list, an empty or over-long one, another mode, a missing or oversized
/// field, a URL that is not http(s) or hides whitespace.
#[test]
fn malformed_or_oversized_data_is_refused_naming_the_fault() {
    let many: Vec<Value> = (0..=BOUNDS.requests)
        .map(|_| url("https://a.example.test"))
        .collect();
    let cases = [
        (None, "no elicitations"),
        (Some(json!({"elicitations": "x"})), "no elicitations"),
        (Some(json!({"elicitations": []})), "lists 0"),
        (Some(json!({"elicitations": many})), "lists 9"),
        (
            Some(json!({"elicitations": [{"mode": "form", "url": "https://a", "message": "m"}]})),
            "mode",
        ),
        (
            Some(json!({"elicitations": [{"mode": "url", "message": "m"}]})),
            "no url",
        ),
        (
            Some(json!({"elicitations": [{"mode": "url", "url": "https://a"}]})),
            "no message",
        ),
        (
            Some(json!({"elicitations": [url("javascript:alert(1)")]})),
            "http(s)",
        ),
        (
            Some(json!({"elicitations": [url("https://a.example.test/x y")]})),
            "http(s)",
        ),
        (
            Some(json!({"elicitations": [url("https://a.example.test/\u{202e}moc.evil")]})),
            "printable ASCII",
        ),
        (
            Some(
                json!({"elicitations": [url(&format!("https://a/{}", "x".repeat(MAX_URL_BYTES)))]}),
            ),
            "bytes",
        ),
    ];
    for (data, want) in cases {
        let e = elicitations(data.as_ref()).unwrap_err();
        assert!(e.contains(want), "{data:?}: {e}");
    }
    // The offending entry is named.
    let data = json!({"elicitations": [url("https://ok.test"), url("ftp://x")]});
    assert!(
        elicitations(Some(&data))
            .unwrap_err()
            .starts_with("elicitation 2")
    );
}

/// What a modern host gets instead of -32042 names the server and the
/// method, keeps the upstream's words, and is not -32042.
#[test]
fn the_error_a_modern_host_gets_is_never_32042() {
    let e = ErrorData::new(URL_ELICITATION_REQUIRED, "Authorize first", None);
    let out = never_to_modern("gh", "completion/complete", &e, "why");
    assert_ne!(out.code, URL_ELICITATION_REQUIRED);
    for part in ["\"gh\"", "completion/complete", "Authorize first", "why"] {
        assert!(out.message.contains(part), "{part}: {}", out.message);
    }
}
