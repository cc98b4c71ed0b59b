//! Scraping a gavel's Prometheus endpoint in end-to-end tests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` on 127.0.0.1:`port` (asserts a 200).
pub async fn scrape(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics port answers");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of the sample whose line starts with `series` (0 when absent).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `GET /metrics` with this `Accept` header: (content type, body).
pub async fn scrape_accepting(port: u16, accept: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics port answers");
    let req = format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (content_type, body.to_string())
}

/// The samples of `body` as the official Prometheus Python client parses
/// them (text format 0.0.4, or OpenMetrics): panics when it rejects it.
pub fn parsed_samples(body: &str, openmetrics: bool) -> Vec<serde_json::Value> {
    use std::io::Write;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = std::process::Command::new(root.join(".deps/venv/bin/python"));
    cmd.arg(root.join("tests/clients/parse_metrics.py"));
    if openmetrics {
        cmd.arg("--openmetrics");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus-client rejected the exposition: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of the parsed sample `name` with `server` (None when absent).
pub fn sample(samples: &[serde_json::Value], name: &str, server: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && s["labels"]["server"] == server)
        .and_then(|s| s["value"].as_f64())
}
