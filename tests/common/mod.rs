//! Shared support for end-to-end tests: write a config, launch the real gavel
//! binary, talk to it with a real rmcp client, read what the fixture recorded.

pub mod approval;
pub mod files;
pub mod governance_session;
pub mod lab;
pub mod metrics;
mod net;
pub mod oci;
pub mod policy;
pub mod python;
pub mod raw;
pub mod receiver;
pub mod registry;
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use serde_json::{Value, json};

pub use files::copy_dir;
pub use net::*;

pub const GAVEL: &str = env!("CARGO_BIN_EXE_gavel");
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_gavel-fixture");

/// Generous bound so a broken build fails instead of hanging CI; never a
/// timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Everything the test client saw, for assertions.
#[derive(Default, Debug)]
pub struct Seen {
    pub progress: Vec<ProgressNotificationParam>,
    pub logs: Vec<Value>,
    pub tool_list_changed: usize,
    pub resource_updated: Vec<String>,
    pub elicitations: Vec<Value>,
    pub samplings: Vec<Value>,
    /// The `_meta` of each sampling request (trace context).
    pub sampling_metas: Vec<Value>,
    /// Custom notifications: method, params and `_meta` wherever rmcp put it.
    pub custom: Vec<Value>,
}

/// A host: records notifications; answers elicitation and sampling.
#[derive(Clone)]
pub struct TestHost {
    pub seen: Arc<Mutex<Seen>>,
    pub caps: ClientCapabilities,
    pub elicit_action: ElicitationAction,
    /// The answer to `approve` when accepting (gavel's approval form).
    pub approve: bool,
    /// How long the user "thinks" before answering an elicitation.
    pub elicit_delay: Option<Duration>,
    /// Answer an elicitation only once this file exists (the test decides
    /// when, at most `PATIENCE` later).
    pub elicit_until: Option<PathBuf>,
}

impl TestHost {
    pub fn new() -> Self {
        let mut caps = ClientCapabilities::default();
        caps.elicitation = Some(Default::default());
        caps.sampling = Some(Default::default());
        caps.roots = Some(Default::default());
        Self {
            seen: Default::default(),
            caps,
            elicit_action: ElicitationAction::Accept,
            approve: true,
            elicit_delay: None,
            elicit_until: None,
        }
    }

    pub fn bare() -> Self {
        Self {
            caps: ClientCapabilities::default(),
            ..Self::new()
        }
    }
}

#[allow(deprecated)]
impl ClientHandler for TestHost {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.caps.clone(),
            Implementation::new("gavel-e2e-host", "1.0.0"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_progress(
        &self,
        p: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.seen.lock().unwrap().progress.push(p);
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.seen
            .lock()
            .unwrap()
            .logs
            .push(serde_json::to_value(&p).unwrap());
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.seen.lock().unwrap().tool_list_changed += 1;
    }

    async fn on_custom_notification(
        &self,
        n: CustomNotification,
        cx: NotificationContext<RoleClient>,
    ) {
        // rmcp moves a custom notification's `_meta` into the context's extensions.
        let meta = cx
            .extensions
            .get::<NotificationMetaObject>()
            .map(|m| serde_json::to_value(m).unwrap())
            .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
            .unwrap_or_else(|| serde_json::to_value(&cx.meta).unwrap());
        self.seen
            .lock()
            .unwrap()
            .custom
            .push(json!({"method": n.method, "params": n.params, "meta": meta}));
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.seen
            .lock()
            .unwrap()
            .resource_updated
            .push(p.uri.clone());
    }

    async fn create_elicitation(
        &self,
        p: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.seen
            .lock()
            .unwrap()
            .elicitations
            .push(serde_json::to_value(&p).unwrap());
        if let Some(d) = self.elicit_delay {
            tokio::time::sleep(d).await;
        }
        if let Some(f) = &self.elicit_until {
            let start = std::time::Instant::now();
            while !f.exists() && start.elapsed() < PATIENCE {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let content = (self.elicit_action == ElicitationAction::Accept).then(
            || serde_json::json!({"confirm": true, "note": "from the e2e host", "approve": self.approve}),
        );
        let mut r = ElicitResult::new(self.elicit_action.clone());
        r.content = content;
        Ok(r)
    }

    async fn create_message(
        &self,
        p: CreateMessageRequestParams,
        cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let mut seen = self.seen.lock().unwrap();
        seen.samplings.push(serde_json::to_value(&p).unwrap());
        seen.sampling_metas
            .push(serde_json::to_value(&cx.meta).unwrap());
        drop(seen);
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text("sampled by the e2e host"),
            "e2e-model".into(),
        ))
    }

    async fn list_roots(
        &self,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(vec![Root::new("file:///e2e-root")]))
    }
}

pub type Client = RunningService<RoleClient, TestHost>;

/// A temp dir with a servers.toml.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// A setup whose config is `toml` as given (no paths of its own).
    pub fn new(toml: &str) -> Self {
        Self::with(|_| toml.to_string())
    }

    /// A setup whose config `toml` writes: it gets the setup to name paths
    /// inside the temp dir (record files, the decision log, bundles it
    /// creates there), so a test states its config once instead of
    /// writing an empty one and overwriting it.
    pub fn with(toml: impl FnOnce(&Setup) -> String) -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let text = toml(&s);
        s.write_config(&text);
        s
    }

    /// A setup whose config is still empty: for a test that first makes
    /// keys, bundles or upstreams in its directory, or keeps what it made
    /// there for later steps, and then writes the config
    /// ([`Setup::write_config`]).
    pub fn blank() -> Self {
        Self::with(|_| String::new())
    }

    /// One fixture server `name` recording to `<name>.jsonl`, nothing else:
    /// the setup of most forwarding tests.
    pub fn solo(name: &str) -> Self {
        Self::with(|s| fixture_server(name, &[], &s.record(name)))
    }

    /// Where the fixture server `name` of [`Setup::solo`] records.
    pub fn record(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.jsonl"))
    }

    /// Replaces the config (for tests of reloads and of what gavel does
    /// when its config changes under it). A config that names no
    /// `eval_timeout` gets [`policy::TEST_EVAL_TIMEOUT`] (see there why).
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config(), policy::with_test_eval_timeout(toml)).unwrap();
    }

    /// `[log] decisions` pointing at [`Setup::decisions`]'s file, as the
    /// first table of a config.
    pub fn decision_log_table(&self) -> String {
        format!(
            "[log]\ndecisions = {:?}\n\n",
            self.path("decisions.jsonl").display().to_string()
        )
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("servers.toml")
    }

    /// `gavel config check` on this setup's config.
    pub fn config_check(&self) -> std::process::Output {
        gavel_cmd(&[
            "config",
            "check",
            "--config",
            self.config().to_str().unwrap(),
        ])
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> PathBuf {
        self.path("gavel.log")
    }

    /// The arguments a host uses to launch gavel on this setup.
    pub fn run_args(&self) -> Vec<String> {
        vec![
            "run".into(),
            "--config".into(),
            self.config().display().to_string(),
            "--log-file".into(),
            self.log().display().to_string(),
        ]
    }

    /// `gavel run --config …` as a host launches it, not yet started.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(GAVEL);
        cmd.args(self.run_args());
        // The setup's own state (rate buckets, budgets): tests running at
        // once never share one through gavel's default directory. A test
        // may still point it elsewhere (a later `env` wins).
        cmd.env("GAVEL_STATE_DIR", self.path("state"));
        cmd
    }

    /// `gavel run --config …` as a host launches it, connected.
    pub async fn connect(&self, host: TestHost) -> Client {
        connect_cmd(self.command(), host).await
    }

    /// `gavel run --config …` on the test clock `clock`, not yet started.
    pub fn command_on(&self, clock: &TestClock) -> tokio::process::Command {
        let mut cmd = self.command();
        cmd.env("GAVEL_TEST_CLOCK_FILE", &clock.0);
        cmd
    }

    /// Like `connect`, on the test clock `clock`.
    pub async fn connect_on(&self, clock: &TestClock, host: TestHost) -> Client {
        connect_cmd(self.command_on(clock), host).await
    }

    /// The decision log at `decisions.jsonl` (the name the tests configure).
    pub fn decisions(&self) -> Vec<Value> {
        records(&self.path("decisions.jsonl"))
    }

    /// Like `connect`, but also returns gavel's pid and process handle (for
    /// signals).
    pub async fn connect_with_pid(&self, host: TestHost) -> (Client, i32, tokio::process::Child) {
        connect_with_pid(self.command(), host).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

/// The time a gavel started with `GAVEL_TEST_CLOCK_FILE` reads: Unix
/// seconds in a file the test moves (never a sleep).
pub struct TestClock(pub PathBuf);

impl TestClock {
    /// A clock file at `path`, set to 2027-01-15T08:00:00Z.
    pub fn new(path: PathBuf) -> TestClock {
        std::fs::write(&path, "1800000000").unwrap();
        TestClock(path)
    }

    pub fn now(&self) -> f64 {
        std::fs::read_to_string(&self.0)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn advance(&self, secs: f64) {
        std::fs::write(&self.0, format!("{}", self.now() + secs)).unwrap();
    }
}

/// Starts `cmd` as a host launches gavel (stdio piped, killed when the
/// handle drops) and initializes `host` over it; returns the client, gavel's
/// pid and its process handle (for signals and `kill -9`).
pub async fn connect_with_pid(
    mut cmd: tokio::process::Command,
    host: TestHost,
) -> (Client, i32, tokio::process::Child) {
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn gavel");
    let pid = child.id().expect("pid") as i32;
    let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = tokio::time::timeout(PATIENCE, host.serve(io))
        .await
        .expect("gavel answered initialize")
        .expect("initialize succeeded");
    (client, pid, child)
}

/// Like [`connect_with_pid`], for a test that never signals gavel.
pub async fn connect_cmd(cmd: tokio::process::Command, host: TestHost) -> Client {
    let (client, _, mut child) = connect_with_pid(cmd, host).await;
    // The child handle must outlive the client; park it in a task that waits.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    client
}

/// A stdio fixture server entry for servers.toml.
pub fn fixture_server(name: &str, extra_args: &[&str], record: &Path) -> String {
    let mut args = vec![
        "--name".to_string(),
        name.to_string(),
        "--record".into(),
        record.display().to_string(),
    ];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = {}\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\n",
        FIXTURE,
        serde_json::to_string(&args).unwrap()
    )
}

/// Every JSON line of `path`, none when it does not exist: the one reader
/// of what gavel and the fixture write line by line (the decision log, the
/// fixture's record of the requests and notifications it received). A line
/// that does not parse fails the test naming the file: it would mean two
/// writers interleaved, or a torn record, and skipping it would hide one.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad record line {l:?}: {e}", path.display()))
        })
        .collect()
}

/// The `tools/call` requests the fixture recorded.
pub fn recorded_calls(path: &Path) -> Vec<Value> {
    records(path)
        .into_iter()
        .filter(|v| v["method"] == "tools/call")
        .collect()
}

/// Calls a tool and returns the result with the progress token the request
/// carried (rmcp's client assigns it; the request handle says which).
pub async fn call_with_progress(
    client: &Client,
    name: &str,
    args: Value,
) -> (CallToolResult, ProgressToken) {
    let mut p = CallToolRequestParams::new(name.to_string());
    p.arguments = args.as_object().cloned();
    let handle = client
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(p)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let ServerResult::CallToolResult(r) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    (r, token)
}

pub async fn call(
    client: &Client,
    name: &str,
    args: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let mut p = CallToolRequestParams::new(name.to_string());
    p.arguments = args.as_object().cloned();
    client.peer().call_tool(p).await
}

pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `f` until it is true (bounded by PATIENCE); for effects that arrive
/// asynchronously (notifications, restarts). Never asserts a duration.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The exposed names of every tool `client` is shown, in list order.
pub async fn tool_names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// Waits for a `tools/list_changed` that brings a list satisfying `pred`,
/// and returns that list. Each new announcement is followed by a list; an
/// announcement that brings nothing new (a server that became ready at
/// startup is announced too, and rmcp hands notifications to their handler
/// on a task of their own, so one can land after a list that already held
/// it) is waited past, never mistaken for the one the test caused. Without
/// an announcement after the change the test times out: listing alone
/// never satisfies it.
pub async fn until_announced_list(
    client: &Client,
    seen: &std::sync::Arc<std::sync::Mutex<Seen>>,
    since: usize,
    what: &str,
    pred: impl Fn(&[rmcp::model::Tool]) -> bool,
) -> Vec<rmcp::model::Tool> {
    let mut heard = since;
    loop {
        eventually(what, || seen.lock().unwrap().tool_list_changed > heard).await;
        heard = seen.lock().unwrap().tool_list_changed;
        let tools = client.list_all_tools().await.unwrap();
        if pred(&tools) {
            return tools;
        }
    }
}

/// A free TCP port on loopback (bound, then released). Racy: another
/// process can take the port before the test's server binds it. Only for
/// listeners that cannot bind port 0 and say where they are (the
/// registry, Redis, gavel's metrics port, a port written into a config
/// before gavel starts); `gavel serve` binds port 0 ([`gavel_serve`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port` (a
/// server the test just spawned), at most PATIENCE; failing, the panic
/// shows `log` (the server's own account of why it did not start).
pub fn wait_for_port(port: u16, what: &str, log: Option<&Path>) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < PATIENCE,
            "{what} did not listen on 127.0.0.1:{port}: {}",
            log.map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a gavel command to completion.
pub fn gavel_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(GAVEL)
        .args(args)
        .output()
        .unwrap()
}

/// Runs `gavel <args>` to completion: (success, stdout, stderr).
pub fn gavel(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(GAVEL)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `gavel replay --log LOG --bundle BUNDLE`: (success, stdout, stderr).
pub fn replay_bundle(log: &Path, bundle: &Path) -> (bool, String, String) {
    gavel(&[
        "replay",
        "--log",
        &log.display().to_string(),
        "--bundle",
        &bundle.display().to_string(),
    ])
}

/// Its stdout, after asserting it succeeded (showing both streams if not).
pub fn stdout_ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
