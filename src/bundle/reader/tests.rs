use super::*;

fn tarball(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name to test our own check.
        let name = h.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn load(entries: &[(&str, &[u8])]) -> Result<Bundle, BundleError> {
    load_bundle_tar_gz("t", "t.tar.gz", &tarball(entries), &BundleLimits::default())
}

const POLICY: &[u8] = b"package mcp.fs\n\ndecision := {\"allow\": true}\n";

#[test]
fn opa_build_shaped_bundle_loads_unchanged() {
    let b = load(&[
        ("/data.json", br#"{"mcp":{"fs":{"limits":{"x":1}}}}"#),
        (
            "/.manifest",
            br#"{"revision":"1.4.7","roots":["mcp/fs"],"metadata":{"gavel":{"layer":"resource"}}}"#,
        ),
        ("/mcp/fs/policy.rego", POLICY),
    ])
    .unwrap();
    assert_eq!(b.manifest.revision, "1.4.7");
    assert_eq!(b.manifest.roots, vec!["mcp/fs"]);
    assert_eq!(b.modules[0].path, "mcp/fs/policy.rego");
    assert_eq!(b.data["mcp"]["fs"]["limits"]["x"], 1);
    assert!(b.digest.starts_with("sha256:"));
}

#[test]
fn data_files_are_placed_at_their_directory_and_merged() {
    let b = load(&[
        ("mcp/fs/data.json", br#"{"a":1}"#),
        ("mcp/fs/sub/data.yaml", b"b: 2\n"),
        ("mcp/fs/other.json", b"{ignored"),
        (".manifest", br#"{"roots":["mcp/fs"]}"#),
        ("mcp/fs/p.rego", POLICY),
    ])
    .unwrap();
    assert_eq!(b.data["mcp"]["fs"]["a"], 1);
    assert_eq!(b.data["mcp"]["fs"]["sub"]["b"], 2);
}

#[test]
fn refusals_name_the_check_and_the_file() {
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("../evil.rego", POLICY)], "escapes the bundle"),
        (vec![("mcp/fs/patch.json", b"{}")], "patch.json"),
        (
            vec![("a/data.json", b"1"), ("a/b/data.json", b"2")],
            "conflict",
        ),
        (vec![("data.json", b"[1]")], "root data must be an object"),
        (
            vec![(".manifest", br#"{"roots":["a","a/b"]}"#)],
            "overlapped roots",
        ),
        (
            vec![
                (".manifest", br#"{"roots":["mcp/fs"]}"#),
                ("other/p.rego", b"package other\nx := 1\n"),
            ],
            "do not permit",
        ),
        (
            vec![
                (".manifest", br#"{"roots":["mcp/fs"]}"#),
                ("other/data.json", b"{}"),
            ],
            "do not permit data",
        ),
        (
            vec![(".manifest", br#"{"rego_version":7}"#)],
            "rego-version",
        ),
        (vec![(".manifest", b"not json")], ".manifest"),
    ];
    for (entries, needle) in cases {
        let e = load(&entries)
            .err()
            .unwrap_or_else(|| panic!("expected refusal containing {needle:?}"));
        assert!(
            e.to_string().contains(needle),
            "{e} should contain {needle:?}"
        );
    }
}

#[test]
fn symlinks_and_hardlinks_are_refused() {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "p.rego", "/etc/passwd").unwrap();
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let e = load_bundle_tar_gz("t", "t", &bytes, &BundleLimits::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("Symlink"), "{e}");
}

#[test]
fn limits_hold_against_bombs() {
    let zeros = vec![0u8; 3 << 20];
    let limits = BundleLimits {
        max_files: 3,
        max_file_bytes: 1 << 20,
        max_total_bytes: 2 << 20,
    };
    let e = load_bundle_tar_gz("t", "t", &tarball(&[("big.bin", &zeros)]), &limits)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("limit") || e.to_string().contains("bytes"),
        "{e}"
    );
    let many: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("f{i}.txt"), vec![1])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let e = load_bundle_tar_gz("t", "t", &tarball(&refs), &limits)
        .err()
        .unwrap();
    assert!(e.to_string().contains("more than 3 files"), "{e}");
    assert!(load_bundle_tar_gz("t", "t", b"plain text", &limits).is_err());
}

#[test]
fn directory_bundles_refuse_symlinks_and_have_stable_digests() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("mcp/fs")).unwrap();
    std::fs::write(
        d.path().join(".manifest"),
        br#"{"revision":"r1","roots":["mcp/fs"]}"#,
    )
    .unwrap();
    std::fs::write(d.path().join("mcp/fs/p.rego"), POLICY).unwrap();
    std::fs::write(d.path().join("mcp/fs/data.json"), br#"{ "a" : 1 }"#).unwrap();
    let a = load_bundle(d.path(), &BundleLimits::default()).unwrap();
    std::fs::write(d.path().join("mcp/fs/data.json"), br#"{"a":1}"#).unwrap();
    let b = load_bundle(d.path(), &BundleLimits::default()).unwrap();
    assert_eq!(
        a.digest, b.digest,
        "JSON formatting does not change the digest"
    );
    std::fs::write(d.path().join("mcp/fs/data.json"), br#"{"a":2}"#).unwrap();
    assert_ne!(
        load_bundle(d.path(), &BundleLimits::default())
            .unwrap()
            .digest,
        a.digest
    );
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("mcp/fs/x.rego")).unwrap();
    let e = load_bundle(d.path(), &BundleLimits::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("symbolic links"), "{e}");
}
