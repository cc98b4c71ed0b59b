//! The example bundles in `bundles/` (and the test bundles) pass their own
//! `test_*` rules through `gavel test`, and load into the servers of the
//! example servers.toml — as CI must show for every policy change.

use std::process::Command;

const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");

#[test]
fn gavel_test_passes_every_bundle() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.push(root.join("tests/bundles/fixture"));
    dirs.sort();
    assert!(dirs.len() >= 7);
    let out = Command::new(GAVEL)
        .arg("test")
        .args(&dirs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // `opa test`'s summary: only passes, nothing listed before it.
    assert!(stdout.starts_with("PASS: "), "{stdout}");
    assert!(
        !stdout.contains("FAIL") && !stdout.contains("ERROR"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("WARN"),
        "lint warnings in example bundles: {stderr}"
    );
}

#[test]
fn gavel_test_fails_a_failing_bundle() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("p")).unwrap();
    std::fs::write(d.path().join(".manifest"), r#"{"roots":["p"]}"#).unwrap();
    std::fs::write(
        d.path().join("p/p.rego"),
        "package p\nx := 1\ntest_wrong if x == 2\n",
    )
    .unwrap();
    let out = Command::new(GAVEL)
        .arg("test")
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "opa test's status for a failure"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("data.p.test_wrong: FAIL ("));
}

#[test]
fn example_config_loads_every_policy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(GAVEL)
        .args(["config", "check", "--config"])
        .arg(root.join("servers.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("policy unavailable"), "{stderr}");
}

#[test]
fn schema_commands_print_the_contracts() {
    for which in ["input", "decision"] {
        let out = Command::new(GAVEL)
            .args(["schema", which])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["$id"].as_str().unwrap().contains(".v1.json"));
    }
}
