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
fn refusals_name_the_bundle_the_file_and_the_check() {
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str);
    let manifest: &[u8] = br#"{"roots":["mcp/fs"]}"#;
    let cases: Vec<Case> = vec![
        (
            vec![("../evil.rego", POLICY)],
            "../evil.rego: path escapes the bundle",
        ),
        (vec![("mcp/../../x.rego", POLICY)], "escapes the bundle"),
        (vec![("//etc/passwd", b"x")], "absolute path refused"),
        (
            vec![("mcp/fs/patch.json", b"{}")],
            "mcp/fs/patch.json: delta bundles",
        ),
        (
            vec![("a/data.json", b"1"), ("a/b/data.json", b"2")],
            "a/b/data.json: failed to insert data file",
        ),
        (
            vec![("a/data.json", br#"{"x":1}"#), ("a/data.yaml", b"x: 2")],
            "data conflict at /a/x",
        ),
        (
            vec![("data.json", b"[1]")],
            "data.json: root value must be object",
        ),
        (
            vec![(".manifest", br#"{"roots":["a","a/b"]}"#)],
            "manifest has overlapped roots: 'a' and 'a/b'",
        ),
        (
            vec![
                (".manifest", manifest),
                ("other/p.rego", b"package other\nx := 1\n"),
            ],
            "do not permit 'data.other' in module 'other/p.rego'",
        ),
        (
            vec![(".manifest", manifest), ("other/data.json", b"{}")],
            "do not permit data at path '/other'",
        ),
        (
            vec![
                (".manifest", manifest),
                ("data.json", br#"{"mcp":{"fs":{},"x":1}}"#),
            ],
            "do not permit data at path '/mcp/x'",
        ),
        (
            vec![(".manifest", br#"{"rego_version":7}"#)],
            "unknown bundle rego-version 7",
        ),
        (
            vec![(".manifest", b"not json")],
            "t.tar.gz: .manifest: not valid JSON",
        ),
        (vec![("a/.manifest", b"{}")], "only /.manifest"),
        (
            vec![("a/.signatures.json", b"{}")],
            "/.signatures.json at the bundle root",
        ),
        (
            vec![("p.rego", b"package p\nallow if {\n")],
            "p.rego: does not parse",
        ),
        (
            vec![("p.rego", POLICY), ("/p.rego", POLICY)],
            "occurs twice",
        ),
        (vec![("a\nb.rego", POLICY)], "control characters"),
    ];
    for (entries, needle) in cases {
        let e = load(&entries)
            .err()
            .unwrap_or_else(|| panic!("expected refusal containing {needle:?}"));
        let e = e.to_string();
        assert!(e.starts_with("bundle t.tar.gz"), "{e}");
        assert!(e.contains(needle), "{e} should contain {needle:?}");
    }
}

#[test]
fn what_opa_ignores_is_ignored_and_signatures_are_kept_raw() {
    let b = load(&[
        ("./README.md", b"hi"),
        ("./mcp/fs/other.json", b"not even json"),
        ("./mcp/fs/data.yml", b"a: 1"),
        ("./.signatures.json", br#"{"signatures":[]}"#),
        ("./.manifest", br#"{"roots":["mcp/fs"],"rego_version":0}"#),
        ("./mcp/fs/p.rego", b"package mcp.fs\nallow { true }\n"),
    ])
    .unwrap();
    assert_eq!(b.data, serde_json::json!({"mcp": {"fs": {"a": 1}}}));
    assert_eq!(b.signatures.as_deref(), Some(&br#"{"signatures":[]}"#[..]));
    assert_eq!(
        b.files.len(),
        6,
        "every regular file is kept for verification"
    );
    assert_eq!(
        b.modules.len(),
        1,
        "a v0 module parses under rego_version 0"
    );
}

fn special(kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(0);
    h.set_mode(0o644);
    match link {
        Some(target) => b.append_link(&mut h, "p.rego", target).unwrap(),
        None => {
            h.set_path("dev").unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap()
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn symlinks_hardlinks_and_devices_are_refused() {
    for (kind, link, needle) in [
        (
            tar::EntryType::Symlink,
            Some("/etc/passwd"),
            "Symlink entries are refused",
        ),
        (
            tar::EntryType::Link,
            Some("other.rego"),
            "Link entries are refused",
        ),
        (tar::EntryType::Char, None, "Char entries are refused"),
        (tar::EntryType::Fifo, None, "Fifo entries are refused"),
    ] {
        let e = load_bundle_tar_gz("t", "t", &special(kind, link), &BundleLimits::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn limits_hold_against_bombs() {
    let limits = BundleLimits {
        max_files: 3,
        max_file_bytes: 1 << 20,
        max_total_bytes: 2 << 20,
    };
    // One file over the per-file limit.
    let zeros = vec![0u8; (1 << 20) + 1];
    let e = load_bundle_tar_gz("t", "t", &tarball(&[("big.bin", &zeros)]), &limits)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("big.bin: larger than the 1048576 byte per-file limit"),
        "{e}"
    );
    // Files each within the limit, together over the total.
    let mb = vec![0u8; 1 << 20];
    let e = load_bundle_tar_gz(
        "t",
        "t",
        &tarball(&[("a", &mb), ("b", &mb), ("c", &mb)]),
        &limits,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("more than 2097152 bytes decompressed"), "{e}");
    // Too many files.
    let many: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("f{i}.txt"), vec![1])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let e = load_bundle_tar_gz("t", "t", &tarball(&refs), &limits)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("more than 3 files"), "{e}");
    assert!(
        load_bundle_tar_gz("t", "t", b"plain text", &limits)
            .err()
            .unwrap()
            .to_string()
            .contains("not a gzipped tarball")
    );
}

/// 100 MB of zeros (≈100 KB compressed) stops at the limit, default limits.
#[test]
fn gzip_bomb_of_100_mb_zeros_is_refused_without_inflating_it() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut h = tar::Header::new_gnu();
    h.set_size(100_000_000);
    h.set_mode(0o644);
    h.set_path("bomb.json").unwrap();
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..96 {
        gz.write_all(&chunk).unwrap();
    }
    let bytes = gz.finish().unwrap();
    assert!(bytes.len() < 1 << 20, "{}", bytes.len());
    let e = load_bundle_tar_gz("t", "t", &bytes, &BundleLimits::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bomb.json: larger than the 8388608 byte per-file limit"),
        "{e}"
    );
    // 40 MB of zeros without a header: tar stops at the first zero block,
    // nothing past it is inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..40 {
        gz.write_all(&chunk).unwrap();
    }
    let limits = BundleLimits {
        max_files: 10,
        max_file_bytes: 1024,
        max_total_bytes: 4096,
    };
    let b = load_bundle_tar_gz("t", "t", &gz.finish().unwrap(), &limits).unwrap();
    assert!(b.files.is_empty());
}

#[test]
fn directory_bundles_refuse_symlinks_ignore_dotfiles_and_have_stable_digests() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("mcp/fs")).unwrap();
    std::fs::create_dir_all(d.path().join(".git")).unwrap();
    std::fs::write(d.path().join(".git/config"), b"x").unwrap();
    std::fs::write(d.path().join("mcp/fs/.p.rego.swp"), b"x").unwrap();
    std::fs::write(
        d.path().join(".manifest"),
        br#"{"revision":"r1","roots":["mcp/fs"]}"#,
    )
    .unwrap();
    std::fs::write(d.path().join("mcp/fs/p.rego"), POLICY).unwrap();
    std::fs::write(d.path().join("mcp/fs/data.json"), br#"{ "a" : 1 }"#).unwrap();
    let a = load_bundle(d.path(), &BundleLimits::default()).unwrap();
    assert_eq!(
        a.files.len(),
        3,
        "dotfiles other than .manifest are ignored"
    );
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
    // The same files as a tarball: the digest is the tarball's sha256.
    let tgz = d.path().join("../b.tar.gz");
    let bytes = tarball(&[("mcp/fs/p.rego", POLICY)]);
    std::fs::write(&tgz, &bytes).unwrap();
    let t = load_bundle(&tgz, &BundleLimits::default()).unwrap();
    assert_eq!(t.digest, crate::bundle::digest::tarball_digest(&bytes));
    assert_eq!(t.name, "b");
    std::fs::remove_file(&tgz).unwrap();
    let limits = BundleLimits {
        max_files: 2,
        ..Default::default()
    };
    assert!(
        load_bundle(d.path(), &limits)
            .err()
            .unwrap()
            .to_string()
            .contains("more than 2 files")
    );
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("mcp/fs/x.rego")).unwrap();
    let e = load_bundle(d.path(), &BundleLimits::default())
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("mcp/fs/x.rego: symbolic links are refused"),
        "{e}"
    );
}

#[test]
fn directory_bundles_hold_the_same_limits() {
    let limits = BundleLimits {
        max_files: 3,
        max_file_bytes: 1024,
        max_total_bytes: 2048,
    };
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("p")).unwrap();
        std::fs::write(d.path().join(".manifest"), br#"{"roots":["p"]}"#).unwrap();
        d
    };
    let err = |d: &tempfile::TempDir| match crate::bundle::load_bundle(d.path(), &limits) {
        Ok(_) => panic!("{} was loaded, not refused", d.path().display()),
        Err(e) => e.to_string(),
    };
    // One file over the per-file limit.
    let d = fresh();
    std::fs::write(d.path().join("p/big.json"), vec![b' '; 1025]).unwrap();
    let e = err(&d);
    assert!(
        e.contains("big.json: larger than the 1024 byte per-file limit"),
        "{e}"
    );
    // Each file within it, together over the total.
    let d = fresh();
    let data = format!("{{\"x\": \"{}\"}}", "a".repeat(1010));
    std::fs::create_dir_all(d.path().join("p/q")).unwrap();
    std::fs::write(d.path().join("p/data.json"), &data).unwrap();
    std::fs::write(d.path().join("p/q/data.json"), &data).unwrap();
    let e = err(&d);
    assert!(e.contains("more than 2048 bytes in total"), "{e}");
    // Too many files (the manifest counts).
    let d = fresh();
    for n in ["a", "b", "c"] {
        std::fs::write(d.path().join(format!("p/{n}.rego")), b"package p\n").unwrap();
    }
    let e = err(&d);
    assert!(e.contains("more than 3 files"), "{e}");
}

/// Small inputs the parsers take seconds on (regorus's Rego parser on a
/// bracket nest, the YAML parser on flow collections) are refused before
/// any parser sees them, naming the file — from a tarball or a directory.
#[test]
fn deeply_nested_files_are_refused_before_parsing() {
    let manifest: &[u8] = br#"{"roots":["mcp/fs"]}"#;
    let rego = format!(
        "package mcp.fs\n\nx := {}{}\n",
        "[".repeat(19),
        "]".repeat(19)
    );
    let e = load(&[(".manifest", manifest), ("mcp/fs/p.rego", rego.as_bytes())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mcp/fs/p.rego")
            && e.contains("nested more than 12 deep")
            && e.contains("line 3"),
        "{e}"
    );
    let yaml = "[".repeat(460);
    let e = load(&[
        (".manifest", manifest),
        ("mcp/fs/data.yaml", yaml.as_bytes()),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("mcp/fs/data.yaml") && e.contains("nested more than"),
        "{e}"
    );
    // Nothing is parsed by the read step, so even the raw read refuses.
    let raw = crate::bundle::read_bundle_tar_gz(
        "t",
        "t",
        &tarball(&[("mcp/fs/data.yaml", yaml.as_bytes())]),
        &BundleLimits::default(),
    );
    assert!(raw.is_err());
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("mcp/fs")).unwrap();
    std::fs::write(d.path().join(".manifest"), manifest).unwrap();
    std::fs::write(
        d.path().join("mcp/fs/data.json"),
        format!("{}{}", "[".repeat(65), "]".repeat(65)),
    )
    .unwrap();
    let e = load_bundle(d.path(), &BundleLimits::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mcp/fs/data.json") && e.contains("JSON nested more than 64"),
        "{e}"
    );
}
