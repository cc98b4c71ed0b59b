use super::{MAX_PARTS, MAX_TEMPLATE_BYTES, MAX_URI_BYTES, TemplateError, UriTemplate};
use crate::fuzzing::uri_template_reference;

#[test]
fn simple_vars() {
    let t = UriTemplate::parse("fixture://items/{id}");
    assert!(t.matches("fixture://items/42"));
    assert!(!t.matches("fixture://items/"));
    assert!(!t.matches("fixture://items/4/2"));
    assert!(!t.matches("other://items/1"));
    let t = UriTemplate::parse("test://template/{id}/data");
    assert!(t.matches("test://template/7/data"));
    assert!(!t.matches("test://template/7/other"));
}

#[test]
fn reserved_and_query() {
    assert!(UriTemplate::parse("file:///{+path}").matches("file:///a/b/c.txt"));
    let q = UriTemplate::parse("search://q{?term,limit}");
    assert!(q.matches("search://q"));
    assert!(q.matches("search://q?term=x&limit=2"));
    // What follows a query operator must match the empty rest.
    let q = UriTemplate::parse("s://q{?a}{?b}");
    assert!(q.matches("s://q?a=1&b=2"));
    assert!(!UriTemplate::parse("s://q{?a}x").matches("s://q?a=1x"));
}

#[test]
fn multibyte_characters_are_one_character() {
    let t = UriTemplate::parse("u://{a}é{b}");
    assert!(t.matches("u://ééé"));
    assert!(!t.matches("u://é"));
    assert!(UriTemplate::parse("u://{x}").matches("u://日本"));
}

/// The case: two reserved expressions separated by `/` against
/// `repo://` and a long run of `/`. The backtracking matcher tried every
/// split of every expression (quadratic and worse, seconds at 48,000); the
/// forward pass does work linear in the URI, counted here (not timed) on a
/// 1 MB URI, past the routing cap.
#[test]
fn hostile_uri_is_linear_work() {
    let t = UriTemplate::parse("repo://{+owner}/{+path}/end");
    let uri = format!("repo://{}", "/".repeat(1 << 20));
    let (matched, steps) = t.matches_counting(&uri);
    assert!(!matched);
    assert!(
        steps <= t.step_bound(&uri),
        "{steps} steps for {} bytes",
        uri.len()
    );
    assert!(steps < 40 * uri.len() as u64, "{steps}");
    // The same URI ending in the literal matches, still linearly.
    let ok = format!("{uri}x/y/end");
    let (matched, steps) = t.matches_counting(&ok);
    assert!(matched && steps <= t.step_bound(&ok));
    // Routing refuses a URI past the cap without looking at it.
    assert!(!t.matches(&ok));
    let short = format!("repo://{}a/b/end", "/".repeat(MAX_URI_BYTES - 20));
    assert!(short.len() <= MAX_URI_BYTES && t.matches(&short));
}

/// Many expressions against a hostile URI: the work grows with the template,
/// never as URI^expressions.
#[test]
fn many_expressions_stay_linear() {
    let template = format!("x://{}", "{+a}/".repeat(MAX_PARTS / 2 - 1));
    let t = UriTemplate::parse(&template);
    assert!(t.problem().is_none());
    let uri = format!("x://{}", "/".repeat(100_000));
    let (_, steps) = t.matches_counting(&uri);
    assert!(steps <= t.step_bound(&uri), "{steps}");
}

#[test]
fn oversized_templates_match_nothing() {
    let long = format!("x://{}{{id}}", "a".repeat(MAX_TEMPLATE_BYTES));
    let t = UriTemplate::parse(&long);
    assert_eq!(t.problem(), Some(&TemplateError::TooLong(long.len())));
    assert!(!t.matches(&format!("x://{}1", "a".repeat(MAX_TEMPLATE_BYTES))));
    let many = format!("x://{}", "{a}-".repeat(MAX_PARTS));
    let t = UriTemplate::parse(&many);
    assert!(matches!(t.problem(), Some(TemplateError::TooManyParts(_))));
    assert!(!t.matches(&format!("x://{}", "1-".repeat(MAX_PARTS))));
    assert!(t.problem().unwrap().to_string().contains("routes no URI"));
}

proptest::proptest! {
    /// On small inputs over a small alphabet (so literals, separators and
    /// operators collide often) the forward pass agrees with the backtracking
    /// matcher it replaced.
    #[test]
    fn agrees_with_backtracking_reference(
        template in proptest::collection::vec(proptest::prop_oneof![
            proptest::strategy::Just("{a}"), proptest::strategy::Just("{+a}"),
            proptest::strategy::Just("{#a}"), proptest::strategy::Just("{?a}"),
            proptest::strategy::Just("{&a}"), proptest::strategy::Just("/"),
            proptest::strategy::Just("a"), proptest::strategy::Just("ab"),
            proptest::strategy::Just("?"), proptest::strategy::Just("#"),
            proptest::strategy::Just("é"), proptest::strategy::Just("{"),
            proptest::strategy::Just("}"),
        ], 0..7),
        uri in "[ab/?#é{}=&]{0,14}",
    ) {
        let template = template.concat();
        let t = UriTemplate::parse(&template);
        proptest::prop_assert_eq!(
            t.matches(&uri),
            uri_template_reference(&template, &uri),
            "{:?} vs {:?}", template, uri
        );
    }
}
