use super::*;
use crate::bundle::{BundleLimits, load_bundle};

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn bundle(roots: &[&str], modules: &[(&str, &str)], data: serde_json::Value) -> Bundle {
    Bundle {
        name: "b".into(),
        source: "b".into(),
        manifest: Manifest {
            roots: roots.iter().map(|r| r.to_string()).collect(),
            ..Manifest::default()
        },
        modules: modules
            .iter()
            .map(|(p, t)| RegoModule {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect(),
        data,
        digest: String::new(),
        signatures: None,
        files: vec![],
    }
}

#[test]
fn every_library_module_is_embedded() {
    let dir = repo().join("bundles/lib/gavel/lib");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rego") && !n.ends_with("_test.rego"))
        .map(|n| format!("gavel/lib/{n}"))
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = modules().iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(embedded, on_disk);
    let b = load_bundle(&repo().join("bundles/lib"), &BundleLimits::default()).unwrap();
    assert!(
        library_only(&b),
        "bundles/lib declares exactly the root gavel/lib"
    );
}

#[test]
fn the_embedded_library_is_pure_and_reads_no_input() {
    let d = crate::bundle::deps::analyze(embedded()).unwrap();
    assert!(!d.impure && !d.whole_input && !d.foreign_data, "{d:?}");
    assert!(d.input_paths.is_empty(), "{d:?}");
    let lint = crate::bundle::lint::lint(embedded(), true).unwrap();
    assert!(
        lint.errors.is_empty() && lint.warnings.is_empty(),
        "{lint:?}"
    );
    assert!(functions().contains("gavel.lib.paths.within"));
    assert!(functions().contains("gavel.lib.urls.host"));
    assert!(!functions().contains("gavel.lib.urls.max_length"));
}

#[test]
fn the_reserved_package_is_refused_unless_the_root_is_declared() {
    let pkg = bundle(
        &[""],
        &[("x.rego", "package gavel.lib.paths\nx := 1\n")],
        serde_json::json!({}),
    );
    let e = check_reserved(&pkg).unwrap_err().to_string();
    assert!(
        e.contains("x.rego") && e.contains("reserved") && e.contains("gavel/lib"),
        "{e}"
    );
    let below = bundle(
        &["mcp/x"],
        &[("y.rego", "package gavel.lib\nz := 1\n")],
        serde_json::json!({}),
    );
    assert!(check_reserved(&below).is_err());
    let data = bundle(&[""], &[], serde_json::json!({"gavel": {"lib": {"x": 1}}}));
    assert!(
        check_reserved(&data)
            .unwrap_err()
            .to_string()
            .contains("data at gavel/lib")
    );
    // gavel.library is another package; gavel.lib is fine when declared.
    let other = bundle(
        &[""],
        &[("z.rego", "package gavel.library\nz := 1\n")],
        serde_json::json!({}),
    );
    assert!(check_reserved(&other).is_ok());
    let provider = bundle(
        &[ROOT],
        &[("z.rego", "package gavel.lib.paths\nz := 1\n")],
        serde_json::json!({}),
    );
    assert!(check_reserved(&provider).is_ok());
}

#[test]
fn a_bundle_that_declares_the_root_replaces_the_embedded_copy() {
    let user = bundle(&["mcp/x"], &[], serde_json::json!({}));
    let provider = bundle(&[ROOT], &[], serde_json::json!({}));
    assert_eq!(with_library(&[&user]).len(), 2);
    let set = with_library(&[&user, &provider]);
    assert_eq!(set.len(), 2);
    assert!(set.iter().all(|b| !std::ptr::eq(*b, embedded())));
}

#[test]
fn lint_checks_calls_into_the_library() {
    let src = "package mcp.x\nimport data.gavel.lib.paths\nimport data.gavel.lib.urls as u\n\
               a if paths.within(input.action.args.path, \"/srv\")\n\
               b if paths.withn(input.action.args.path, \"/srv\")\n\
               c if u.host(\"http://x/\") == \"x\"\n\
               d if data.gavel.lib.names.glb(\"a*\", input.action.tool)\n";
    let b = bundle(&["mcp/x"], &[("x.rego", src)], serde_json::json!({}));
    let r = crate::bundle::lint::lint(&b, false).unwrap();
    let lines: Vec<usize> = r.errors.iter().map(|f| f.line).collect();
    assert_eq!(lines, [5, 7], "{:?}", r.errors);
    assert!(
        r.errors[0].message.contains("data.gavel.lib.paths.withn"),
        "{}",
        r.errors[0]
    );
}

#[test]
fn a_call_into_a_replacement_library_is_read_through() {
    // A replacement library that reads input: a layer using it depends on
    // what it reads (the memo key), and is not marked foreign.
    let lib = bundle(
        &[ROOT],
        &[(
            "l.rego",
            "package gavel.lib.ctx\ntool(_) := input.action.tool\n",
        )],
        serde_json::json!({}),
    );
    let user = bundle(
        &["mcp/x"],
        &[(
            "x.rego",
            "package mcp.x\nimport data.gavel.lib.ctx\ndecision := {\"allow\": ctx.tool(1) == \"a\"}\n",
        )],
        serde_json::json!({}),
    );
    let d = crate::bundle::deps::analyze_set(&[&user, &lib]).unwrap();
    assert_eq!(d.len(), 2);
    assert!(!d[0].foreign_data, "{:?}", d[0]);
    assert!(
        d[0].input_paths
            .contains(&vec!["action".to_string(), "tool".to_string()]),
        "{:?}",
        d[0]
    );
    // Alone (the embedded library, pure): nothing read, not foreign.
    let alone = crate::bundle::deps::analyze(&user).unwrap();
    assert!(
        !alone.foreign_data && alone.input_paths.is_empty(),
        "{alone:?}"
    );
}

#[test]
fn the_library_metadata_parses() {
    let b = load_bundle(&repo().join("bundles/lib"), &BundleLimits::default()).unwrap();
    let notes = crate::bundle::metadata::parse_bundle(&b).unwrap();
    assert!(notes.len() >= 4, "{notes:?}");
}

mod engine {
    use super::*;
    use crate::decision::engine::{EngineOptions, PolicyEngine};
    use serde_json::json;
    use std::sync::Arc;

    fn opts() -> EngineOptions {
        EngineOptions {
            eval_timeout: std::time::Duration::from_secs(5),
            strict_input: false,
        }
    }

    const SCOPED: &str = "package p\nimport data.gavel.lib.paths\n\
        default decision := {\"allow\": false, \"reasons\": [\"outside\"]}\n\
        decision := {\"allow\": true} if paths.within(input.action.args.path, \"/srv/data\")\n";

    fn allows(e: &PolicyEngine, path: &str) -> bool {
        e.decide(&json!({"action": {"tool": "t", "args": {"path": path}}}))
            .unwrap()
            .decision
            .allow
    }

    #[test]
    fn every_server_engine_has_the_library() {
        let b = bundle(&["p"], &[("p/p.rego", SCOPED)], json!({}));
        let e = PolicyEngine::build("srv", vec![Arc::new(b)], &opts()).unwrap();
        for _ in 0..2 {
            // the second time from the memo
            assert!(allows(&e, "/srv/data/x"));
            assert!(!allows(&e, "/srv/data-evil/x"));
            assert!(!allows(&e, "/srv/data/../data-evil"));
        }
    }

    #[test]
    fn a_bundle_without_roots_uses_the_library_without_overlap() {
        let mut b = bundle(&[""], &[("p/p.rego", SCOPED)], json!({}));
        b.manifest
            .metadata
            .insert("gavel".into(), json!({"decision": "p/decision"}));
        let e = PolicyEngine::build("srv", vec![Arc::new(b)], &opts()).unwrap();
        assert!(allows(&e, "/srv/data"));
    }

    #[test]
    fn a_bundle_in_the_reserved_package_is_refused() {
        let mut b = bundle(
            &[""],
            &[
                ("p/p.rego", SCOPED),
                (
                    "p/x.rego",
                    "package gavel.lib.paths\nwithin(_, _) := true\n",
                ),
            ],
            json!({}),
        );
        b.manifest
            .metadata
            .insert("gavel".into(), json!({"decision": "p/decision"}));
        let err = PolicyEngine::build("srv", vec![Arc::new(b)], &opts())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("p/x.rego") && err.contains("reserved"),
            "{err}"
        );
    }

    #[test]
    fn a_configured_library_replaces_the_embedded_copy() {
        let user = Arc::new(bundle(&["p"], &[("p/p.rego", SCOPED)], json!({})));
        // The repository's bundles/lib, configured: the same answers.
        let files =
            Arc::new(load_bundle(&repo().join("bundles/lib"), &BundleLimits::default()).unwrap());
        let e = PolicyEngine::build("srv", vec![user.clone(), files], &opts()).unwrap();
        assert!(allows(&e, "/srv/data/x") && !allows(&e, "/srv/data-evil"));
        // A replacement that allows everything is the one used.
        let lax = Arc::new(bundle(
            &[ROOT],
            &[("l.rego", "package gavel.lib.paths\nwithin(_, _) := true\n")],
            json!({}),
        ));
        let e = PolicyEngine::build("srv", vec![user, lax.clone()], &opts()).unwrap();
        assert!(allows(&e, "/etc/passwd"));
        // A configured library is an ordinary bundle for the roots check.
        let mut everything = bundle(&[""], &[("p/p.rego", SCOPED)], json!({}));
        everything
            .manifest
            .metadata
            .insert("gavel".into(), json!({"decision": "p/decision"}));
        let err = PolicyEngine::build("srv", vec![Arc::new(everything), lax], &opts())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("overlapping roots"), "{err}");
        // A library alone decides nothing: refused, not an empty policy.
        let files = load_bundle(&repo().join("bundles/lib"), &BundleLimits::default()).unwrap();
        let err = PolicyEngine::build("srv", vec![Arc::new(files)], &opts())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("decides nothing"), "{err}");
    }
}

#[test]
fn gavel_test_of_the_library_tests_the_files_not_the_copy() {
    let b = load_bundle(&repo().join("bundles/lib"), &BundleLimits::default()).unwrap();
    let report = crate::bundle::testrun::run_tests(&b).unwrap();
    let pretty = crate::bundle::testrun::report::pretty(&report, true);
    assert!(
        report.results.len() >= 30 && report.failed() == 0,
        "{pretty}"
    );
    // An edited copy is what runs: its tests see the edit.
    let d = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("bundles/lib"), d.path());
    let p = d.path().join("gavel/lib/paths.rego");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text.replace("max_length := 4096", "max_length := 5");
    let text = text.replace(
        "segments(p) := [s |",
        "segments(p) := [\"EDITED\"] if is_string(p)\n\n_unused(p) := [s |",
    );
    std::fs::write(&p, text).unwrap();
    // The file's function is the one evaluated. (Whether the embedded
    // copy is also loaded cannot be seen from here: regorus silently takes
    // one of two conflicting definitions — why the reserved package is
    // refused at load rather than merged.)
    let t = d.path().join("gavel/lib/edited_test.rego");
    std::fs::write(
        &t,
        "package gavel.lib.edited_test\n\ntest_edited if data.gavel.lib.paths.segments(\"/a\") == [\"EDITED\"]\n",
    )
    .unwrap();
    let edited = load_bundle(d.path(), &BundleLimits::default()).unwrap();
    let report = crate::bundle::testrun::run_tests(&edited).unwrap();
    let pretty = crate::bundle::testrun::report::pretty(&report, true);
    let failed: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.full_name())
        .collect();
    assert!(
        failed.contains(&"data.gavel.lib.paths_test.test_valid".to_string()),
        "{pretty}"
    );
    assert!(
        !failed.contains(&"data.gavel.lib.edited_test.test_edited".to_string()),
        "{pretty}"
    );
}
