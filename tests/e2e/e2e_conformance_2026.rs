//! The official conformance suite's 2026-07-28 requirement set
//! (`@modelcontextprotocol/conformance` 0.2.0-alpha.12, `server
//! --requirements 2026-07-28`: the 37 scenarios the revision requires, and
//! the tasks extension and pending scenarios it runs without scoring) run
//! three ways: against the 2026 fixture (`tests/conformance/fixture-2026.mjs`,
//! the TypeScript SDK v2, 2026-07-28 only) directly over HTTP, and against
//! `gavel serve` fronting it — as an HTTP upstream and as a stdio child —
//! with an allow-all bundle. gavel must be invisible: every scenario's
//! checks (id and status) through gavel are the ones the fixture gets
//! directly, and the direct run passes every required scenario.
//!
//! The suite's own everything-server is run the same way in
//! `e2e_conformance_everything` (it speaks a looser wire, so that test
//! holds gavel to losing no check rather than to equal counts).

use crate::common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

pub(crate) fn deps(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".deps")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

pub(crate) fn node22() -> PathBuf {
    deps("node/node_modules/.bin/node")
}

fn suite_dir() -> PathBuf {
    deps("conformance-2026/node_modules/@modelcontextprotocol/conformance")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/fixture-2026.mjs")
}

/// One check as the suite reported it.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) message: String,
}

impl Check {
    /// A FAILURE the suite could not exercise (a fixture gap, not a
    /// violation): it says so at the start of its message.
    fn not_testable(&self) -> bool {
        self.status == "FAILURE" && self.message.starts_with("Not testable")
    }
}

/// Scenario → its checks, sorted by (id, status).
pub(crate) type Run = BTreeMap<String, Vec<Check>>;

/// The shape of the timestamp ending a result directory's name.
const STAMP: &str = "2026-12-07T17-49-31-384Z";

/// Runs the 2026-07-28 requirement set against `url`, results under `out`.
pub(crate) async fn requirement_set(url: &str, out: &Path) -> Run {
    let run = tokio::process::Command::new(node22())
        .arg(suite_dir().join("dist/index.js"))
        .args(["server", "--url", url, "--requirements", "2026-07-28", "-o"])
        .arg(out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(600), run)
        .await
        .expect("the requirement set finished within 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let mut scenarios = Run::new();
    let dirs = std::fs::read_dir(out).unwrap_or_else(|e| panic!("no results ({e}): {stdout}"));
    for e in dirs.flatten() {
        let dir = e.file_name().to_string_lossy().to_string();
        // server-<scenario>-<timestamp>, the timestamp as 2026-12-07T17-49-31-384Z
        // (fixed width; a scenario's own name may hold "-20…": json-schema-2020-12).
        let Some(rest) = dir.strip_prefix("server-") else {
            continue;
        };
        let name = rest
            .len()
            .checked_sub(STAMP.len() + 1)
            .filter(|&i| rest.ends_with('Z') && rest[i..].starts_with('-'))
            .map_or(rest, |i| &rest[..i])
            .to_string();
        let checks: Vec<Value> =
            serde_json::from_slice(&std::fs::read(e.path().join("checks.json")).unwrap()).unwrap();
        let mut list: Vec<Check> = checks
            .iter()
            .map(|c| Check {
                id: c["id"].as_str().unwrap_or_default().to_string(),
                status: c["status"].as_str().unwrap_or_default().to_string(),
                message: c["errorMessage"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        list.sort_by(|a, b| (&a.id, &a.status).cmp(&(&b.id, &b.status)));
        scenarios.insert(name, list);
    }
    assert!(
        !scenarios.is_empty(),
        "no results in {}: {stdout}",
        out.display()
    );
    scenarios
}

/// The server scenarios the revision requires (its frozen `server:` list).
pub(crate) fn required_scenarios() -> Vec<String> {
    let yaml = std::fs::read_to_string(suite_dir().join("requirements/2026-07-28.yaml")).unwrap();
    let mut required = Vec::new();
    let mut in_server = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_server = line.trim_end() == "server:";
        } else if in_server && let Some(name) = line.trim().strip_prefix("- ") {
            required.push(name.trim().to_string());
        }
    }
    assert!(
        !required.is_empty(),
        "no server list in the requirement set"
    );
    required
}

/// passed / failed / warnings / not testable / other (INFO, SKIPPED).
fn counts(checks: &[Check]) -> [usize; 5] {
    let mut n = [0; 5];
    for c in checks {
        let slot = match c.status.as_str() {
            "SUCCESS" => 0,
            "FAILURE" if c.not_testable() => 3,
            "FAILURE" => 1,
            "WARNING" => 2,
            _ => 4,
        };
        n[slot] += 1;
    }
    n
}

pub(crate) fn show(n: [usize; 5]) -> String {
    format!(
        "{} passed, {} failed, {} warnings, {} not testable, {} other",
        n[0], n[1], n[2], n[3], n[4]
    )
}

/// Every scenario whose checks differ between `direct` and `via`: both
/// counts, and each check only one side has, with its message.
pub(crate) fn differences(direct: &Run, via: &Run) -> String {
    let mut report = String::new();
    let names: std::collections::BTreeSet<&String> = direct.keys().chain(via.keys()).collect();
    let key = |c: &Check| (c.id.clone(), c.status.clone());
    for name in names {
        let (d, v) = (
            direct.get(name).map_or(&[][..], Vec::as_slice),
            via.get(name).map_or(&[][..], Vec::as_slice),
        );
        if d.iter().map(key).eq(v.iter().map(key)) {
            continue;
        }
        let _ = writeln!(
            report,
            "{name}:\n  direct: {}\n  gavel:  {}",
            show(counts(d)),
            show(counts(v))
        );
        let mut left: Vec<&Check> = v.iter().collect();
        for c in d {
            match left.iter().position(|o| key(o) == key(c)) {
                Some(i) => {
                    left.remove(i);
                }
                None => {
                    let _ = writeln!(report, "  - direct {} {}", c.status, c.id);
                }
            }
        }
        for c in left {
            let _ = writeln!(report, "  + gavel  {} {}: {}", c.status, c.id, c.message);
        }
    }
    report
}

pub(crate) fn totals(run: &Run) -> [usize; 5] {
    run.values().fold([0; 5], |mut acc, checks| {
        for (a, n) in acc.iter_mut().zip(counts(checks)) {
            *a += n;
        }
        acc
    })
}

/// gavel's config: the fixture as its one upstream (one server: no name
/// prefix), in the modern era, every action allowed.
pub(crate) fn gavel_config(s: &Setup, server: &str) {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/allow-all");
    s.write_config(&format!(
        "{}[servers.conformance]\n{server}\nera = \"modern\"\nbundle = {:?}\n",
        s.decision_log_table(),
        bundle.display().to_string()
    ));
}

pub(crate) async fn through_gavel(s: &Setup, out: &Path) -> Run {
    let state = s.path("state");
    let (mut gavel, port) = gavel_serve(s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let run = requirement_set(&format!("http://127.0.0.1:{port}/mcp"), out).await;
    let _ = gavel.kill().await;
    run
}

/// The 2026 fixture over HTTP on a port the OS picks, its diagnostics in
/// `log`: the process and its URL.
async fn fixture_over_http(log: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut fx = tokio::process::Command::new(node22())
        .arg(fixture())
        .args(["--http", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(fx.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the fixture says where it listens")
        .unwrap()
        .and_then(|l| l.strip_prefix("LISTENING ").map(String::from))
        .expect("a LISTENING line");
    (fx, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_2026_requirement_set_counts_the_same_through_gavel() {
    let work = tempfile::tempdir().unwrap();
    let (mut fx, url) = fixture_over_http(&work.path().join("fixture.log")).await;

    let direct = requirement_set(&url, &work.path().join("direct")).await;
    eprintln!("direct: {}", show(totals(&direct)));
    for name in required_scenarios() {
        let checks = direct
            .get(&name)
            .unwrap_or_else(|| panic!("required scenario {name} did not run: {:?}", direct.keys()));
        let bad: Vec<_> = checks
            .iter()
            .filter(|c| c.status != "SUCCESS" && c.status != "INFO")
            .collect();
        assert!(
            bad.is_empty(),
            "the fixture fails required {name} directly: {bad:#?}"
        );
    }

    let http = Setup::blank();
    gavel_config(&http, &format!("url = {url:?}"));
    let via_http = through_gavel(&http, &work.path().join("http")).await;

    let stdio = Setup::blank();
    gavel_config(
        &stdio,
        &format!(
            "command = {:?}\nargs = [{:?}, \"--stdio\"]",
            node22().display().to_string(),
            fixture().display().to_string()
        ),
    );
    let via_stdio = through_gavel(&stdio, &work.path().join("stdio")).await;
    let _ = fx.kill().await;

    let mut report = String::new();
    for (label, via) in [("HTTP upstream", &via_http), ("stdio child", &via_stdio)] {
        eprintln!("through gavel ({label}): {}", show(totals(via)));
        let diff = differences(&direct, via);
        if !diff.is_empty() {
            let _ = write!(
                report,
                "\n== through gavel ({label}): {} (direct: {})\n{diff}",
                show(totals(via)),
                show(totals(&direct))
            );
        }
    }
    assert!(
        report.is_empty(),
        "the requirement set differs through gavel:{report}"
    );
    // Every call through gavel was decided (and allowed) by the bundle.
    let calls = http
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .count();
    assert!(calls >= 10, "tool calls were decided and logged: {calls}");
}

/// A raw 2026-07-28 `POST /mcp` to 127.0.0.1:`port` with `extra` headers:
/// the whole response when the answer ends, else its head once it has
/// come (a listen stream stays open).
async fn modern_post(port: u16, body: &Value, extra: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMCP-Protocol-Version: 2026-07-28\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf));
        match read.await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("reading the answer: {e}"),
            // Still open (a stream): what came so far, head included.
            Err(_) if out.windows(4).any(|w| w == b"\r\n\r\n") => break,
            Err(_) => panic!("no answer head within 5 s"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn envelope(id: u64, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// SEP-2243 through gavel: the fixture's `test_custom_header` marks its
/// `region` argument `x-mcp-header: Region`, so a 2026-07-28 call of it
/// must repeat the argument in `Mcp-Param-Region` (plain, or
/// `=?base64?…?=`). gavel refuses a call whose header is missing, differs
/// or is not valid Base64 with -32020 and HTTP 400, naming the tool and
/// the header, before deciding anything (before the fix it forwarded them
/// all, as the suite's `http-custom-header-server-validation` showed).
/// `Mcp-Method` and `Mcp-Name` must match the body too. Every streamed
/// answer says `X-Accel-Buffering: no`, a listen's too, so a buffering
/// reverse proxy does not hold events back.
#[tokio::test(flavor = "multi_thread")]
async fn a_modern_calls_mcp_param_headers_must_repeat_its_arguments() {
    let work = tempfile::tempdir().unwrap();
    let (_fx, url) = fixture_over_http(&work.path().join("fixture.log")).await;
    let s = Setup::blank();
    gavel_config(&s, &format!("url = {url:?}"));
    let state = s.path("state");
    let (_gavel, port) = gavel_serve(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let call = envelope(
        1,
        "tools/call",
        serde_json::json!({"name": "test_custom_header", "arguments": {"region": "Hello"}}),
    );
    let routing = [
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "test_custom_header"),
    ];
    let with = |param: Option<&'static str>| {
        let mut h = routing.to_vec();
        if let Some(v) = param {
            h.push(("Mcp-Param-Region", v));
        }
        h
    };
    for sent in ["Hello", "=?base64?SGVsbG8=?="] {
        let r = modern_post(port, &call, &with(Some(sent))).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{sent}: {r}");
        assert!(r.contains("region: Hello"), "{sent}: {r}");
        assert!(
            r.to_ascii_lowercase()
                .contains("\r\nx-accel-buffering: no\r\n"),
            "a streamed answer is not to be buffered: {r}"
        );
    }
    for (sent, says) in [
        (Some("Bye"), "Mcp-Param-Region says \\\"Bye\\\""),
        (None, "Mcp-Param-Region is missing for argument `region`"),
        (Some("=?base64?SGVsbG8?="), "Mcp-Param-Region is not valid"),
    ] {
        let r = modern_post(port, &call, &with(sent)).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{sent:?}: {r}");
        assert!(r.contains("-32020"), "{sent:?}: {r}");
        assert!(
            r.contains("tool \\\"test_custom_header\\\""),
            "{sent:?}: {r}"
        );
        assert!(r.contains(says), "{sent:?}: {r}");
    }
    // Mcp-Method and Mcp-Name (rmcp's own check, before gavel's code) are
    // held to the body likewise.
    for routing in [
        vec![("Mcp-Name", "test_custom_header")],
        vec![
            ("Mcp-Method", "tools/list"),
            ("Mcp-Name", "test_custom_header"),
        ],
        vec![
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "test_simple_text"),
        ],
    ] {
        let mut h = routing.clone();
        h.push(("Mcp-Param-Region", "Hello"));
        let r = modern_post(port, &call, &h).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{routing:?}: {r}");
        assert!(r.contains("-32020"), "{routing:?}: {r}");
    }
    let decided = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .count();
    assert_eq!(decided, 2, "only the calls whose headers agree are decided");
    // A listen stream is streamed unbuffered too.
    let listen = envelope(
        2,
        "subscriptions/listen",
        serde_json::json!({"notifications": {"toolsListChanged": true}}),
    );
    let r = modern_post(port, &listen, &[("Mcp-Method", "subscriptions/listen")]).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let head = r.to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{r}");
    assert!(head.contains("\r\nx-accel-buffering: no\r\n"), "{r}");
}
