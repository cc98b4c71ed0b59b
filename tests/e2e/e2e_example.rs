//! End to end: the example as a new user meets it — `servers.toml`, the
//! bundles in `bundles/` and `demo-data/`, copied whole into a temp dir (the
//! repo's `.deps` linked in), run by the real binary against the real
//! servers `scripts/setup` installs. The filesystem policy must do its job
//! against the real server-filesystem: every spelling of a read inside
//! `demo-data/` that the server serves returns the file, writes land only
//! under `demo-data/public/`, and every bypass spelling is refused.
//! `gavel demo` shows an allowed read returning file content, then refusals.

use crate::common;

use common::*;
use serde_json::{Value, json};

const README: &str = "Hello from gavel's demo data.";

/// The example, copied into a fresh setup (its config is the example's).
fn example() -> Setup {
    let s = Setup::blank();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["bundles", "demo-data"] {
        copy_dir(&repo.join(dir), &s.path(dir));
    }
    std::os::unix::fs::symlink(repo.join(".deps"), s.path(".deps")).unwrap();
    // The example's own limit (100 ms, the default) is wall-clock time; a
    // loaded machine can run a decision of its five layers past it. The
    // tests' generous one instead (`TEST_EVAL_TIMEOUT`, which says why).
    let example = std::fs::read_to_string(repo.join("servers.toml")).unwrap();
    let limit = "eval_timeout = \"100ms\"";
    assert!(
        example.contains(limit),
        "the example's eval_timeout changed"
    );
    s.write_config(&example.replace(
        limit,
        &format!("eval_timeout = {:?}", policy::TEST_EVAL_TIMEOUT),
    ));
    s
}

fn abs(s: &Setup, p: &str) -> String {
    format!("{}/{p}", s.path("demo-data").display())
}

/// The records of the example's decision log (`.gavel/decisions.jsonl`).
fn decisions(s: &Setup) -> Vec<Value> {
    records(&s.path(".gavel/decisions.jsonl"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_filesystem_policy_serves_every_spelling_and_refuses_every_bypass() {
    let s = example();
    let client = s.connect(TestHost::bare()).await;
    let read = "filesystem__read_text_file";
    // Every spelling server-filesystem serves as demo-data/public/readme.txt.
    let served = [
        json!({"path": "public/readme.txt"}),
        json!({"path": "./public/readme.txt"}),
        json!({"path": "public//readme.txt"}),
        json!({"path": "public/./readme.txt"}),
        json!({"path": "public/x/../readme.txt"}),
        json!({"path": abs(&s, "public/readme.txt")}),
        json!({"path": abs(&s, "./public//readme.txt")}),
    ];
    // Every problem is collected, so one run shows them all.
    let mut wrong = Vec::new();
    for args in &served {
        let r = call(&client, read, args.clone()).await.unwrap();
        if text(&r).trim_end() != README {
            wrong.push(format!("not served: {args}: {}", text(&r)));
        }
    }
    let r = call(
        &client,
        "filesystem__read_multiple_files",
        json!({"paths": ["public/readme.txt", abs(&s, "public/readme.txt")]}),
    )
    .await
    .unwrap();
    if r.is_error == Some(true) || text(&r).matches(README).count() != 2 {
        wrong.push(format!("read_multiple_files not served: {}", text(&r)));
    }
    // Writes: under public/ in any spelling, and nowhere else.
    for (path, name) in [
        ("public/new.txt", "new.txt"),
        ("./public//other.txt", "other.txt"),
    ] {
        let r = call(
            &client,
            "filesystem__write_file",
            json!({"path": path, "content": "written"}),
        )
        .await
        .unwrap();
        let on_disk = std::fs::read_to_string(s.path("demo-data/public").join(name));
        if r.is_error == Some(true) || on_disk.ok().as_deref() != Some("written") {
            wrong.push(format!("write {path} not done: {}", text(&r)));
        }
    }
    let refused_writes = [
        json!({"path": "confidential/x.txt", "content": "x"}),
        json!({"path": "x.txt", "content": "x"}),
        json!({"path": "public/../x.txt", "content": "x"}),
        json!({"path": "public-x/y.txt", "content": "x"}),
        json!({"path": abs(&s, "x.txt"), "content": "x"}),
    ];
    for args in &refused_writes {
        let r = call(&client, "filesystem__write_file", args.clone())
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true), "{args}: {}", text(&r));
        assert!(
            text(&r).starts_with("Denied by policy"),
            "{args}: {}",
            text(&r)
        );
    }
    assert!(!s.path("demo-data/x.txt").exists());
    assert!(!s.path("demo-data/confidential/x.txt").exists());
    // Listings last among the allowed calls: a listing of the root names
    // confidential/, after which the compliance layer refuses this
    // session's writes (data flow, e2e_dataflow).
    for (path, entry) in [
        (".", "public"),
        ("public", "readme.txt"),
        ("./public/", "readme.txt"),
        (&abs(&s, "public"), "readme.txt"),
        (&abs(&s, ""), "public"),
    ] {
        let r = call(&client, "filesystem__list_directory", json!({"path": path}))
            .await
            .unwrap();
        if !text(&r).contains(entry) {
            wrong.push(format!("list_directory {path} not served: {}", text(&r)));
        }
    }
    // Reads out of scope (or of a class the user is not cleared for), in
    // every spelling: refused, and nothing of the file comes back.
    let outside = s.path("servers.toml").display().to_string();
    let bypasses = [
        json!({"path": "../servers.toml"}),
        json!({"path": "./../servers.toml"}),
        json!({"path": "public/../../servers.toml"}),
        json!({"path": "public/..//../servers.toml"}),
        json!({"path": "..\\servers.toml"}),
        json!({"path": outside}),
        json!({"path": format!("{}/../servers.toml", s.path("demo-data").display())}),
        json!({"path": "/etc/passwd"}),
        json!({"path": "//etc/passwd"}),
        json!({"path": "confidential/plan.txt"}),
        json!({"path": "./confidential//plan.txt"}),
        json!({"path": abs(&s, "confidential/plan.txt")}),
    ];
    for args in &bypasses {
        let r = call(&client, read, args.clone()).await.unwrap();
        let t = text(&r);
        if r.is_error != Some(true) || !t.starts_with("Denied by policy") || t.contains("[identity")
        {
            wrong.push(format!("read not refused: {args}: {t}"));
        }
    }
    let r = call(
        &client,
        "filesystem__read_multiple_files",
        json!({"paths": ["public/readme.txt", "../servers.toml"]}),
    )
    .await
    .unwrap();
    if r.is_error != Some(true) || text(&r).contains(README) {
        wrong.push(format!("read_multiple_files not refused: {}", text(&r)));
    }
    client.cancel().await.unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every call above was decided and logged; none was forwarded undecided.
    // The example's result rule decided every allowed call's result too: one
    // result record each, linked to its request.
    let (results, log): (Vec<Value>, Vec<Value>) = decisions(&s)
        .into_iter()
        .partition(|r| r.get("result_of").is_some());
    let expected = served.len() + 1 + 5 + 2 + refused_writes.len() + bypasses.len() + 1;
    assert_eq!(log.len(), expected, "{log:?}");
    let allowed: Vec<&Value> = log
        .iter()
        .filter(|r| r["result"]["allow"] == true)
        .collect();
    assert_eq!(results.len(), allowed.len(), "{results:?}");
    for (r, a) in results.iter().zip(&allowed) {
        assert_eq!(r["result_of"], a["decision_id"]);
    }
}

#[test]
fn the_demo_reads_a_file_then_shows_the_refusals() {
    let s = example();
    let config = s.config().display().to_string();
    let (ok, out, err) = gavel(&["demo", "--config", &config]);
    assert!(ok, "{out}\n{err}");
    let allowed = out.find(&format!("✔ allowed — the upstream answered: {README}"));
    let first_refusal = out.find("✘ refused");
    assert!(
        matches!((allowed, first_refusal), (Some(a), Some(r)) if a < r),
        "an allowed read with its content, then the refusals:\n{out}"
    );
    for needle in [
        "tools/call filesystem__read_text_file {\"path\":\"./public/../../servers.toml\"}",
        "data_class_unauthorized_for_user",
        "write_outside_writable",
        "static_rule",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    assert_eq!(out.matches("✘ refused").count(), 4, "{out}");
}
