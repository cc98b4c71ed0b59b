use super::*;
use proptest::prelude::*;

fn root() -> PathRoot {
    PathRoot::new(Path::new("/srv/data")).unwrap()
}

fn canon(raw: &str) -> Result<String, PathError> {
    canonical(raw, Some(&root()))
}

/// Every spelling of one file has the same canonical form (the plain one).
#[test]
fn spellings_of_one_file_are_one_canonical_form() {
    let nfd_dir = "re\u{301}sume\u{301}"; // résumé, decomposed
    for raw in [
        "confidential/plan.txt",
        "./confidential/plan.txt",
        "confidential/./plan.txt",
        "confidential//plan.txt",
        "confidential/plan.txt/",
        "public/../confidential/plan.txt",
        "/srv/data/confidential/plan.txt",
        "/srv//data/./confidential/plan.txt",
        "/srv/data/public/../confidential/plan.txt",
        "file:///srv/data/confidential/plan.txt",
        "file://localhost/srv/data/confidential%2Fplan.txt",
        "FILE:///srv/data/%63onfidential/plan.txt?x#y",
    ] {
        assert_eq!(canon(raw).as_deref(), Ok("confidential/plan.txt"), "{raw}");
    }
    assert_eq!(
        canon(&format!("{nfd_dir}/cv.txt")).unwrap(),
        "r\u{e9}sum\u{e9}/cv.txt",
        "NFD becomes NFC"
    );
    assert_eq!(canon("/srv/data").as_deref(), Ok("."));
    assert_eq!(canon("/srv/data/").as_deref(), Ok("."));
    assert_eq!(canon("").as_deref(), Ok("."));
    assert_eq!(canon("/etc//passwd").as_deref(), Ok("/etc/passwd"));
    assert_eq!(canon("/srv/database/x").as_deref(), Ok("/srv/database/x"));
    // Case is kept in the policy's view; backslashes are a POSIX name.
    assert_eq!(canon("Confidential/x").as_deref(), Ok("Confidential/x"));
    assert_eq!(canon("a\\..\\b").as_deref(), Ok("a\\..\\b"));
    // Other URI schemes as written.
    assert_eq!(
        canon("fixture://static/./x").as_deref(),
        Ok("fixture://static/./x")
    );
    // Without a root, relative stays relative.
    assert_eq!(
        canonical("./a//b/", None).as_deref(),
        Ok("a/b"),
        "no root: relative"
    );
}

/// A `..` above the root (or above `/`, or above a relative path's start
/// without a root) has no canonical form; nor do NUL, remote hosts and
/// undecodable percent-encoding.
#[test]
fn what_has_no_canonical_form() {
    let above_root = PathError::ClimbsAbove("the server's root (path_root)");
    assert_eq!(canon("../data/x"), Err(above_root.clone()));
    assert_eq!(canon("public/../../x"), Err(above_root));
    assert_eq!(canon("/.."), Err(PathError::ClimbsAbove("/")));
    assert_eq!(canon("/srv/../../etc"), Err(PathError::ClimbsAbove("/")));
    assert_eq!(
        canonical("a/../../b", None),
        Err(PathError::ClimbsAbove("the start of the relative path"))
    );
    assert_eq!(canon("a\0b"), Err(PathError::Nul));
    assert_eq!(canon("file:///a%00b"), Err(PathError::Nul));
    assert_eq!(
        canon("file://evil.example/srv/data/x"),
        Err(PathError::RemoteHost("evil.example".into()))
    );
    assert_eq!(canon("file:///%ff"), Err(PathError::BadPercent));
    // An absolute path that leaves the root but not `/` is just outside.
    assert_eq!(canon("/srv/data/../x").as_deref(), Ok("/srv/x"));
}

/// The root's real path is the root too (a symlinked checkout, /tmp on macOS).
#[test]
fn the_roots_real_path_is_the_root() {
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let r = PathRoot::new(&link).unwrap();
    let via_real = format!("{}/conf/x", real.display());
    assert_eq!(canonical(&via_real, Some(&r)).as_deref(), Ok("conf/x"));
    let via_link = format!("{}/conf/x", link.display());
    assert_eq!(canonical(&via_link, Some(&r)).as_deref(), Ok("conf/x"));
}

fn one(raw: &str, root: Option<&PathRoot>) -> Canon {
    parse(raw, false, root).unwrap()
}

/// Containment is by segment, case-folded; without a root it errs on the
/// side of the class.
#[test]
fn containment_is_by_segment() {
    let r = root();
    let within_r = |p: &str, q: &str| within(&one(p, Some(&r)), &one(q, Some(&r)));
    assert!(within_r("confidential/x", "confidential"));
    assert!(within_r("confidential", "confidential/"));
    assert!(!within_r("confidential-x/y", "confidential"));
    assert!(!within_r("confidentialx", "confidential"));
    assert!(within_r("CONFIDENTIAL/x", "confidential"), "case-folded");
    assert!(within_r("/srv/data/confidential/x", "confidential"));
    assert!(within_r("confidential/x", "/srv/data/confidential"));
    assert!(within_r("public/x", "/srv"), "an ancestor of the root");
    assert!(!within_r("/elsewhere/confidential/x", "confidential"));
    // No root: an absolute path within a relative prefix wherever it occurs;
    // a relative path (unknown base) within any absolute prefix.
    let no = |p: &str, q: &str| within(&one(p, None), &one(q, None));
    assert!(no("/x/y/confidential/plan", "confidential"));
    assert!(!no("/x/y/confidential-x/plan", "confidential"));
    assert!(no("a/b", "/srv/data/confidential"));
    assert!(no("confidential/x", "confidential"));
    assert!(!no("public/x", "confidential"));
    // Other URIs: by `/` segment.
    let u = |p: &str, q: &str| within(&Canon::Other(p.into()), &Canon::Other(q.into()));
    assert!(u("fixture://static/hello", "fixture://static"));
    assert!(!u("fixture://statics/hello", "fixture://static"));
}

#[test]
fn backslashes_are_read_both_ways_for_classification() {
    let r = root();
    let rs = readings("public\\..\\confidential\\x", Some(&r));
    assert_eq!(rs.len(), 2);
    assert_eq!(
        rs[1],
        Ok(Canon::Path {
            absolute: true,
            segs: vec![
                "srv".into(),
                "data".into(),
                "confidential".into(),
                "x".into()
            ]
        })
    );
    assert_eq!(readings("plain/x", Some(&r)).len(), 1);
}

#[test]
fn canonical_args_mirror_the_path_arguments() {
    let r = root();
    let args = json!({
        "path": "./confidential//a/",
        "paths": ["public/../confidential/b", "../x", 7],
        "content": "not a path",
        "uri": "file:///srv/data/c",
    });
    assert_eq!(
        canonical_args(&args, Some(&r)),
        json!({"path": "confidential/a", "paths": ["confidential/b", null, null], "uri": "c"})
    );
    let mut input = json!({"action": {"args": args}});
    annotate(&mut input, &args, Some(&r));
    assert_eq!(input["action"]["path_root"], "/srv/data");
    assert_eq!(input["action"]["canonical_args"]["path"], "confidential/a");
    annotate(&mut input, &args, None);
    assert_eq!(input["action"]["path_root"], Value::Null);
}

/// A spelling variant generator: any mix of `./`, doubled slashes, a detour
/// through a sibling and back, a trailing slash, the absolute form, a
/// file:// URI with percent-encoded characters.
fn variant(plain: &[&str], choices: &[u8]) -> String {
    let mut out = String::new();
    let mut pick = choices.iter().copied().cycle();
    if pick.next().unwrap_or(0) % 3 == 0 {
        out.push_str("/srv/data/");
    }
    for (i, seg) in plain.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        match pick.next().unwrap_or(0) % 5 {
            0 => out.push_str("./"),
            // A doubled slash (not a leading one: that would be absolute).
            1 if !out.is_empty() => out.push('/'),
            2 => out.push_str("sibling/../"),
            _ => {}
        }
        out.push_str(seg);
    }
    if pick.next().unwrap_or(0) % 2 == 0 {
        out.push('/');
    }
    if out.starts_with('/') && pick.next().unwrap_or(0) % 2 == 0 {
        let enc: String = out
            .chars()
            .map(|c| match c {
                'c' => "%63".to_string(),
                c => c.to_string(),
            })
            .collect();
        out = format!("file://{enc}");
    }
    out
}

proptest! {
    /// Any spelling variant classifies as the plain form: same canonical
    /// form, same containment in the classified prefix.
    #[test]
    fn a_spelling_variant_classifies_as_the_plain_form(
        choices in proptest::collection::vec(any::<u8>(), 1..12),
        depth in 1usize..4,
    ) {
        let r = root();
        let plain: Vec<&str> = ["confidential", "q3", "plan.txt"][..depth].to_vec();
        let raw = variant(&plain, &choices);
        let want = plain.join("/");
        prop_assert_eq!(canonical(&raw, Some(&r)), Ok(want.clone()), "{}", raw);
        let prefix = one("confidential", Some(&r));
        for reading in readings(&raw, Some(&r)) {
            prop_assert!(within(&reading.unwrap(), &prefix), "{}", raw);
        }
    }
}

/// ASCII text is copied as its own NFC; anything else is normalized: the
/// same text the normalizer gives, for both.
#[test]
fn nfc_copies_ascii_and_normalizes_the_rest() {
    use unicode_normalization::UnicodeNormalization;
    for s in [
        "",
        "public/readme.txt",
        "C:\\Users\\x",
        "~/a b/\u{7f}",
        "cafe\u{301}/x",
        "caf\u{e9}",
        "\u{212b}ngstr\u{f6}m",
        "e\u{301}\u{323}",
    ] {
        assert_eq!(super::nfc(s), s.nfc().collect::<String>(), "{s:?}");
    }
}
