//! End to end: Prometheus metrics scraped from a real gavel during a real
//! session move with the calls; a second gavel on the same port runs on.

use crate::common;

use std::path::Path;

use common::metrics::*;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_a_real_session() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bundle = common::policy::fixture_bundle();
    let s = Setup::with(|s| {
        format!(
            "[identity.user]\nid = \"ada\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}bundle = {:?}\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        )
    });
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let before = scrape(port).await;
    assert_eq!(
        value(&before, r#"gavel_upstream_up{server="fx"}"#),
        1.0,
        "{before}"
    );
    assert_eq!(
        value(
            &before,
            r#"gavel_bundle_active{server="fx",bundle="fixture",revision="9.9.9"}"#
        ),
        1.0,
        "{before}"
    );

    // The metrics port is an edge like `gavel serve`'s: a scraper that sends
    // half a request head, or nothing, is disconnected (axum's own `serve`
    // kept both open for ever); a whole request is still served after.
    let mut half = raw_partial(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
    let said = until_closed(&mut half).await;
    assert!(!said.contains("200 OK"), "{said}");
    let mut silent = raw_partial(port, "").await;
    until_closed(&mut silent).await;
    assert!(scrape(port).await.contains("gavel_upstream_up"));

    call(&client, "echo", json!({"text": "a"})).await.unwrap();
    call(&client, "echo", json!({"text": "b"})).await.unwrap();
    let denied = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));

    let after = scrape(port).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved(r#"gavel_decisions_total{server="fx",outcome="allow"}"#),
        2.0,
        "{after}"
    );
    assert_eq!(
        moved(r#"gavel_decisions_total{server="fx",outcome="deny"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"gavel_denials_total{server="fx",reason="destructive_denied"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"gavel_tool_calls_total{server="fx",tool="echo",outcome="allow"}"#),
        2.0
    );
    assert!(moved(r#"gavel_decision_duration_seconds_count{server="fx"}"#) >= 3.0);
    assert!(!after.contains("\"a\""), "no arguments in labels");

    // A second gavel on the same port: a warning, and it serves its host.
    let s2 = Setup::with(|s2| {
        format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}",
            fixture_server("fx", &[], &s2.path("r.jsonl")),
        )
    });
    let client2 = s2.connect(TestHost::new()).await;
    let ok = call(&client2, "echo", json!({"text": "second"}))
        .await
        .unwrap();
    assert_eq!(text(&ok), "second");
    assert!(
        s2.log_text().contains("metrics not served"),
        "{}",
        s2.log_text()
    );
    client2.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gavel_side_denials_count_under_their_own_code() {
    let port = free_port();
    let s = Setup::with(|s| {
        format!(
            "[state]\npath = {:?}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}[[servers.fx.limits]]\nscope = \"tool\"\ntool = \"echo\"\nrate = 1\nper = \"1day\"\nburst = 1\n",
            s.path("state.sqlite").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
        )
    });
    let client = s.connect(TestHost::new()).await;
    let ok = call(&client, "echo", json!({"text": "a"})).await.unwrap();
    assert_eq!(text(&ok), "a");
    let limited = call(&client, "echo", json!({"text": "b"})).await.unwrap();
    assert!(
        text(&limited).contains("rate_limited"),
        "{}",
        text(&limited)
    );
    let m = scrape(port).await;
    assert_eq!(
        value(
            &m,
            r#"gavel_denials_total{server="fx",reason="rate_limited"}"#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(&m, r#"gavel_denials_total{server="fx",reason="other"}"#),
        0.0,
        "{m}"
    );
    client.cancel().await.unwrap();
}

/// `gavel bundle build` then `gavel bundle push` of `dir` to `reference`.
fn publish(s: &Setup, dir: &Path, reference: &str) {
    let tar = s.path("bundle.tar.gz");
    stdout_ok(gavel_cmd(&[
        "bundle",
        "build",
        dir.to_str().unwrap(),
        "-o",
        tar.to_str().unwrap(),
    ]));
    stdout_ok(gavel_cmd(&[
        "bundle",
        "push",
        tar.to_str().unwrap(),
        reference,
        "--insecure",
    ]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_reload_moves_bundle_active_and_policy_available_reads_per_server() {
    let reg = common::registry::TestRegistry::start();
    let port = free_port();
    let s = Setup::blank();
    let rego = |rev: &str| {
        format!("package mx\ndecision := {{\"allow\": true, \"reasons\": [{rev:?}]}}\n")
    };
    let v1 = common::policy::bundle(
        &s.path("v1"),
        "m",
        "mx",
        json!({"revision": "one"}),
        &rego("one"),
    );
    let v2 = common::policy::bundle(
        &s.path("v2"),
        "m",
        "mx",
        json!({"revision": "two"}),
        &rego("two"),
    );
    let tag = format!("oci://{}/policies/metrics:live", reg.host());
    publish(&s, &v1, &tag);
    s.write_config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n[oci.registries.\"{}\"]\ninsecure = true\n\n{}bundle = {tag:?}\nrequire_signature = false\n{}\n{}bundle = {:?}\n",
            s.path("cache").display().to_string(),
            reg.host(),
            fixture_server("live", &[], &s.path("r1.jsonl")),
            common::oci::role("live", &tag, &["mx"], None),
            fixture_server("broken", &[], &s.path("r2.jsonl")),
            s.path("no-such-bundle").display().to_string(),
        ));
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args())
        .env("GAVEL_STATE_DIR", s.path("state"));
    let client = connect_cmd(cmd, TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let active = |m: &str, rev: &str| {
        value(
            m,
            &format!(
                r#"gavel_bundle_active{{server="live",bundle="policies/metrics",revision="{rev}"}}"#
            ),
        )
    };
    let m = scrape(port).await;
    assert_eq!(active(&m, "one"), 1.0, "{m}");
    assert_eq!(
        value(&m, r#"gavel_policy_available{server="live"}"#),
        1.0,
        "{m}"
    );
    assert!(
        m.contains(r#"gavel_policy_available{server="broken"} 0"#),
        "an unavailable policy reads 0: {m}"
    );

    publish(&s, &v2, &tag);
    let start = std::time::Instant::now();
    let m = loop {
        let m = scrape(port).await;
        if active(&m, "two") == 1.0 {
            break m;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "revision two never activated: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        !m.contains(
            r#"gavel_bundle_active{server="live",bundle="policies/metrics",revision="one"}"#
        ),
        "the replaced revision's series is gone (one series per bundle): {m}"
    );
    assert_eq!(value(&m, r#"gavel_policy_available{server="live"}"#), 1.0);
    client.cancel().await.unwrap();
}

/// The exposition is what the official Prometheus client parses: text format
/// 0.0.4 by default, OpenMetrics when asked for. Every per-server series
/// exists at 0 before anything happened, so the first restart is an
/// increase of exactly 1, not a series that appears already counted.
#[tokio::test(flavor = "multi_thread")]
async fn series_start_at_zero_each_restart_counts_once_and_both_formats_parse() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = Setup::with(|s| {
        format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let (ct, body) = scrape_accepting(port, "text/plain;version=0.0.4;q=0.5,*/*;q=0.1").await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let before = parsed_samples(&body, false);
    assert_eq!(
        sample(&before, "gavel_upstream_restarts_total", "fx"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&before, "gavel_decisions_total", "fx"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&before, "gavel_upstream_up", "fx"),
        Some(1.0),
        "{body}"
    );

    // The upstream dies once; gavel restarts it once.
    let _ = call(&client, "crash", json!({"code": 3})).await;
    let mut restarted = false;
    for _ in 0..300 {
        if call(&client, "echo", json!({"text": "back"})).await.is_ok() {
            restarted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(restarted, "the fixture came back");
    let (ct, body) = scrape_accepting(
        port,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let after = parsed_samples(&body, true);
    assert_eq!(
        sample(&after, "gavel_upstream_restarts_total", "fx"),
        Some(1.0),
        "{body}"
    );
    client.cancel().await.unwrap();
}
