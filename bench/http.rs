//! `cargo bench --bench http`: `gavel serve` as deployed — the example's
//! five layers (filesystem, override, identity, compliance, workflow), the
//! decision log, a daily budget and the workflow layer's rate limit — in
//! front of the project's Rust fixture (`echo`), over plain HTTP and over
//! TLS, side by side in one run.
//!
//! Every client is one MCP session on **one kept-alive HTTP/1.1 connection**
//! (hyper's connection-level client: the connection is opened once and every
//! call of that client goes over it), so what is measured is gavel's answer
//! time, not connection setup. Four paths, in rounds whose order rotates: 1
//! client and 4 concurrent clients, plain and TLS. For each: calls/s, p50 and
//! p99 of a call, and the CPU the gavel process used per call (utime + stime
//! from `/proc/PID/stat`, all its threads; its upstreams are other
//! processes and not counted). One JSON line per path, then one JSON object
//! with every figure as the last line.
//!
//! The workflow layer's thresholds and rate limit are raised so a bench loop
//! stays allowed (its rules, and so its fast path, are unchanged); the
//! filesystem layer lists `echo` as a read tool and every call carries a
//! `path` under `demo-data/public`, so every layer sees a realistic input.
//!
//! Env: BENCH_ROUNDS (default 5), BENCH_CALLS (per client, round and path,
//! default 200), BENCH_POLICY (`deployed`, the default, or `none`: no
//! bundle, log, budget or limit — the HTTP front and the hop alone, to tell
//! their cost from the decision's), BENCH_UPSTREAM (`echo`, the default: a
//! minimal echo server, `bench/echo.rs`, this binary re-run as one; or
//! `fixture`: the project's Rust fixture).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[path = "deployed.rs"]
mod deployed;
#[path = "echo.rs"]
mod echo;
#[path = "../tests/common/files.rs"]
mod files;

const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");
const FIXTURE: &str = env!("CARGO_BIN_EXE_gavel-fixture");
const PROTOCOL: &str = "2025-11-25";
/// The target, with 4 kept-alive clients.
const TARGET_CALLS_PER_S: f64 = 5000.0;
const TARGET_P50_US: f64 = 1000.0;

/// One MCP session on one kept-alive connection.
struct Client {
    send: SendRequest<Full<Bytes>>,
    host: String,
    session: Option<String>,
    next_id: u64,
}

impl Client {
    /// Connects (TLS when `tls` is given), initializes a session and sends
    /// `notifications/initialized`, all on the one connection.
    async fn open(port: u16, tls: Option<&tokio_rustls::TlsConnector>) -> Client {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to gavel serve");
        // As HTTP client libraries do by default (hyper-util, reqwest).
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let send = match tls {
            None => handshake(TokioIo::new(tcp)).await,
            Some(c) => {
                let name =
                    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let tls = c.connect(name, tcp).await.expect("TLS handshake");
                handshake(TokioIo::new(tls)).await
            }
        };
        let mut c = Client {
            send,
            host: format!("127.0.0.1:{port}"),
            session: None,
            next_id: 1,
        };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "gavel-bench", "version": "1"}}});
        let (status, headers, body) = c.post(&init).await;
        assert_eq!(status, 200, "initialize: {body}");
        let id = headers.get("mcp-session-id").expect("a session id");
        c.session = Some(id.to_str().unwrap().to_string());
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, _, body) = c.post(&note).await;
        assert_eq!(status, 202, "notifications/initialized: {body}");
        c
    }

    async fn post(&mut self, msg: &Value) -> (u16, hyper::HeaderMap, String) {
        self.send.ready().await.expect("connection open");
        let mut req = hyper::Request::post("/mcp")
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", PROTOCOL);
        }
        let req = req.body(Full::new(Bytes::from(msg.to_string()))).unwrap();
        let resp = self.send.send_request(req).await.expect("POST /mcp");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        (parts.status.as_u16(), parts.headers, text)
    }

    /// One `tools/call` of `echo`; panics unless it was allowed and answered.
    async fn call(&mut self) -> Duration {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "bench", "path": "public/readme.txt"}}});
        let t = Instant::now();
        let (status, _, body) = self.post(&msg).await;
        let d = t.elapsed();
        assert_eq!(status, 200, "tools/call: {body}");
        let answer = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to call {id} in {body}"));
        assert!(
            answer["result"].is_object() && answer["result"]["isError"] != true,
            "bench call denied or failed: {answer}"
        );
        d
    }
}

async fn handshake<I>(io: I) -> SendRequest<Full<Bytes>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// One `gavel serve` and its clients (one session each).
struct Server {
    name: &'static str,
    pid: u32,
    clients: Vec<Client>,
    log: PathBuf,
    _child: tokio::process::Child,
}

impl Server {
    async fn start(name: &'static str, dir: &Path, tls: Option<&Pki>, clients: usize) -> Server {
        let cfg = if policy_on() {
            deployed::config(dir, name, &upstream().1, "")
        } else {
            bare_config(dir, name)
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args(["serve", "--config"])
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log-file"])
            .arg(dir.join(format!("serve-{name}.log")))
            .kill_on_drop(true);
        if let Some(p) = tls {
            cmd.arg("--tls-cert")
                .arg(&p.cert)
                .arg("--tls-key")
                .arg(&p.key);
        }
        let child = cmd.spawn().expect("spawn gavel serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "gavel serve ({name}) did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connector = tls.map(|p| p.connector.clone());
        let mut open = Vec::new();
        for _ in 0..clients {
            let mut c = Client::open(port, connector.as_ref()).await;
            for _ in 0..50 {
                c.call().await; // warm: upstream up, every layer evaluated
            }
            open.push(c);
        }
        Server {
            name,
            pid: child.id().expect("gavel's pid"),
            clients: open,
            log: dir.join(format!("decisions-{name}.jsonl")),
            _child: child,
        }
    }

    /// The policy ran as deployed: a decision record for every call, each
    /// naming the five layers.
    fn check_deployed(&self) {
        // The log and every file it was rotated to (`rotate_keep` keeps them).
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        for n in 1.. {
            let rotated = format!("{}.{n}", self.log.display());
            match std::fs::read_to_string(&rotated) {
                Ok(t) => text.push_str(&t),
                Err(_) => break,
            }
        }
        let made = self.clients.iter().map(|c| c.next_id - 1).sum::<u64>() as usize;
        let calls: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["input"]["action"]["tool"] == "echo")
            .collect();
        assert!(
            calls.len() >= made,
            "{}: {} records for {made} calls",
            self.name,
            calls.len()
        );
        let last = calls.last().unwrap();
        let layers = last["bundles"].as_object().map_or(0, |b| b.len());
        assert_eq!(layers, 5, "{}: the record's bundles: {last}", self.name);
    }

    /// CPU time the gavel process has used so far, all threads.
    fn cpu(&self) -> Duration {
        proc_cpu(self.pid).unwrap_or_default()
    }

    /// CPU time gavel's upstream processes (its children) have used so far.
    fn upstream_cpu(&self) -> Duration {
        let mut total = Duration::ZERO;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return total;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                total += proc_cpu(child).unwrap_or_default();
            }
        }
        total
    }
}

/// utime + stime of process `pid`, all its threads (`/proc/PID/stat`).
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: utime and stime are the 14th and 15th
    // of the whole line, the 12th and 13th after ")".
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// What one path measured.
#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
    /// The bench's own (the clients') and the upstreams' CPU over the same
    /// calls: where the rest of the two cores went.
    client_cpu: Duration,
    upstream_cpu: Duration,
}

impl Tally {
    fn summary(&mut self) -> Value {
        self.lat.sort();
        let pct = |p: f64| {
            let v = self.lat[((self.lat.len() as f64 - 1.0) * p).round() as usize];
            (v.as_secs_f64() * 1e7).round() / 10.0
        };
        let n = self.lat.len() as f64;
        json!({
            "calls": self.lat.len(),
            "calls_per_s": (n / self.wall.as_secs_f64()).round(),
            "p50_us": pct(0.5),
            "p99_us": pct(0.99),
            "cpu_us_per_call": (self.cpu.as_secs_f64() * 1e7 / n).round() / 10.0,
            "client_cpu_us_per_call": (self.client_cpu.as_secs_f64() * 1e7 / n).round() / 10.0,
            "upstream_cpu_us_per_call": (self.upstream_cpu.as_secs_f64() * 1e7 / n).round() / 10.0,
        })
    }
}

/// `calls` calls by each of the first `clients` clients of `s`, all at
/// once, into `t`.
async fn measure(s: &mut Server, clients: usize, calls: usize, t: &mut Tally) {
    let cpu = s.cpu();
    let own = proc_cpu(std::process::id()).unwrap_or_default();
    let up = s.upstream_cpu();
    let start = Instant::now();
    let per = futures::future::join_all(s.clients[..clients].iter_mut().map(|c| async move {
        let mut v = Vec::with_capacity(calls);
        for _ in 0..calls {
            v.push(c.call().await);
        }
        v
    }))
    .await;
    t.wall += start.elapsed();
    t.cpu += s.cpu().saturating_sub(cpu);
    t.client_cpu += proc_cpu(std::process::id())
        .unwrap_or_default()
        .saturating_sub(own);
    t.upstream_cpu += s.upstream_cpu().saturating_sub(up);
    t.lat.extend(per.into_iter().flatten());
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == echo::ARG) {
        return echo::serve();
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where it must not benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("http bench: run with `cargo bench --bench http`");
        return;
    }
    let (rounds, calls) = (env("BENCH_ROUNDS", 5), env("BENCH_CALLS", 200));
    let dir = tempfile::tempdir().unwrap();
    deployed::bundles(dir.path());
    let pki = Pki::new(dir.path());
    let mut servers = [
        Server::start("plain", dir.path(), None, 4).await,
        Server::start("tls", dir.path(), Some(&pki), 4).await,
    ];
    // (server, clients): plain 1, TLS 1, plain 4, TLS 4.
    let paths = [(0, 1), (1, 1), (0, 4), (1, 4)];
    let mut tallies: Vec<Tally> = paths.iter().map(|_| Tally::default()).collect();
    for round in 0..rounds {
        for k in 0..paths.len() {
            let i = (k + round) % paths.len();
            let (s, n) = paths[i];
            measure(&mut servers[s], n, calls, &mut tallies[i]).await;
        }
    }
    let mut all = serde_json::Map::new();
    for (i, &(s, n)) in paths.iter().enumerate() {
        let key = format!("{}_{n}", servers[s].name);
        let figures = tallies[i].summary();
        let mut line = json!({"bench": "http", "path": key, "clients": n});
        line.as_object_mut()
            .unwrap()
            .extend(figures.as_object().unwrap().clone());
        println!("{line}");
        all.insert(key, figures);
    }
    for s in servers.iter().filter(|_| policy_on()) {
        s.check_deployed();
    }
    let met = |k: &str| {
        all[k]["calls_per_s"].as_f64().unwrap() >= TARGET_CALLS_PER_S
            && all[k]["p50_us"].as_f64().unwrap() <= TARGET_P50_US
    };
    let (plain_met, tls_met) = (met("plain_4"), met("tls_4"));
    let policy = if policy_on() {
        "five layers, decision log, budget, rate limit"
    } else {
        "none"
    };
    let mut last = json!({"bench": "http", "policy": policy,
        "upstream": upstream().0, "rounds": rounds, "calls_per_client_round": calls,
        "target": {"clients": 4, "calls_per_s": TARGET_CALLS_PER_S, "p50_us": TARGET_P50_US},
        "target_met_plain": plain_met, "target_met_tls": tls_met});
    last.as_object_mut().unwrap().extend(all);
    println!("{last}");
}

/// BENCH_UPSTREAM: the upstream's name in the summary and its command line.
fn upstream() -> (&'static str, Vec<String>) {
    match std::env::var("BENCH_UPSTREAM").as_deref() {
        Err(_) | Ok("echo") => (
            "minimal echo (bench/echo.rs)",
            vec![
                std::env::current_exe().unwrap().display().to_string(),
                echo::ARG.to_string(),
            ],
        ),
        Ok("fixture") => ("rust-fixture echo", vec![FIXTURE.to_string()]),
        Ok(other) => panic!("BENCH_UPSTREAM={other:?}: use echo or fixture"),
    }
}

/// BENCH_POLICY: `deployed` (the default) or `none`.
fn policy_on() -> bool {
    match std::env::var("BENCH_POLICY").as_deref() {
        Err(_) | Ok("deployed") => true,
        Ok("none") => false,
        Ok(other) => panic!("BENCH_POLICY={other:?}: use deployed or none"),
    }
}

/// gavel with no policy, log or state: the front and the hop alone.
fn bare_config(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("servers-{name}.toml"));
    let (_, command) = upstream();
    std::fs::write(
        &path,
        format!(
            "[servers.filesystem]\ncommand = {:?}\nargs = {}\n",
            command[0],
            serde_json::to_string(&command[1..]).unwrap()
        ),
    )
    .unwrap();
    path
}

/// A throw-away CA and a leaf for 127.0.0.1 (as the e2e tests make
/// theirs), and a client that trusts the CA.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
    connector: tokio_rustls::TlsConnector,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let (cert, key, ca) = files::pki(dir);
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&ca).expect("the bench CA's PEM"))
            .expect("the bench CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pki {
            cert,
            key,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }
}
