//! The supervisor task of one upstream: start (in parallel with the others),
//! fetch lists, watch, restart with backoff after a crash, stop at shutdown.
//! A crashed upstream's in-flight calls fail (rmcp answers them with
//! `TransportClosed`, mapped to a clear error); they are never replayed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bounded::{Bounded, ListChanges};
use super::client::{ListKind, UpstreamClient};
use super::era::{self, Spoken};
use super::lists::{self, UpstreamLists};
use super::{Connection, Phase, Upstream};
use crate::config::{Era, Limits, UpstreamTransport};
use crate::decision::Enforcer;
use crate::host::link::HostLink;
use crate::sync::Recover;

/// A run that lasted this long resets the backoff: it was not a crash loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

pub struct SupervisorDeps {
    pub host: Arc<HostLink>,
    pub enforcer: Arc<Enforcer>,
    pub limits: Limits,
    pub logger_prefix: Option<String>,
    /// Told the server name whenever this upstream's lists change (or it
    /// comes and goes), so the session(s) can rebuild their name tables.
    pub changed: ChangeSink,
    /// The host session these upstreams serve (policy context for
    /// upstream→host requests).
    pub session: Arc<crate::decision::SessionState>,
    pub shutdown: CancellationToken,
    /// Directory of the config file: relative commands and `cwd` resolve here.
    pub base_dir: Option<std::path::PathBuf>,
}

type Running = RunningService<RoleClient, Bounded>;

#[path = "supervisor_connect.rs"]
mod connect;
use connect::{Process, connect_http, connect_stdio, opening, stop_process};

/// Who hears that an upstream's lists changed: its one session, or every
/// session attached to a shared upstream.
#[derive(Clone)]
pub enum ChangeSink {
    One(mpsc::Sender<Changed>),
    Shared(Arc<super::shared::SharedRoute>),
}

/// How many upstream changes wait for a session's listener: each asks
/// only for a rebuild from the lists as they are when it runs, so a full
/// queue loses nothing but an upstream's no-op notice (`router::notice`)
/// — and a flooding upstream cannot grow it.
pub const CHANGES_QUEUED: usize = 256;

/// What a session's listener hears of an upstream: its lists may differ
/// now. `notice`: the kind the upstream itself announced a change of (its
/// `list_changed`, a listen frame), passed on to the host even when nothing
/// it sees changed, where that tells it nothing hidden
/// (`router::notice`); `None` when gavel found the change (ready, gone).
#[derive(Debug, Clone)]
pub struct Changed {
    pub server: String,
    pub notice: Option<ListKind>,
}

impl ChangeSink {
    fn send(&self, server: String) {
        self.tell(Changed {
            server,
            notice: None,
        });
    }

    fn notice(&self, server: String, kind: ListKind) {
        self.tell(Changed {
            server,
            notice: Some(kind),
        });
    }

    fn tell(&self, c: Changed) {
        match self {
            ChangeSink::One(tx) => {
                // Full: the listener has that many changes to rebuild for
                // already, and rebuilds from the lists as they are then; only
                // a no-op notice can be lost (`CHANGES_QUEUED`).
                let _ = tx.try_send(c);
            }
            ChangeSink::Shared(route) => route.changed(c),
        }
    }
}

/// What gavel tells an upstream about itself: the host's own client info and
/// capabilities (so the upstream behaves as it would for the host), at the
/// newest protocol version that still has `initialize`. A modern (2026-07-28)
/// upstream is declared no capability for the connection: capabilities are
/// per request there, and each request carries the ones gavel can honour
/// for it (`era::stamp_legacy_host`: the host's elicitation, sampling and
/// roots, which gavel asks it for when an input round needs them).
fn client_info(host: &HostLink, era: Spoken) -> ClientConfig {
    let mut info = match host.params() {
        Some(p) => p.clone(),
        None => ClientConfig::default(),
    };
    info.protocol_version = ProtocolVersion::V_2025_11_25;
    info.meta = None;
    if era == Spoken::Modern {
        info.capabilities = Default::default();
    }
    info
}

/// Why a life of the upstream ended, or could not begin.
enum End {
    /// A crash, a failed start: restarted with backoff.
    Restart(String),
    /// The upstream refuses every era its config allows: it is not
    /// restarted (nothing would change), and says why until gavel stops.
    Incompatible(era::EraMismatch),
}

/// Waits for supervisors to stop their upstreams, at most 10 s (a child that
/// ignores SIGTERM is killed by its own supervisor well within that).
pub async fn join_bounded(handles: Vec<tokio::task::JoinHandle<()>>) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures::future::join_all(handles),
    )
    .await;
}

pub fn spawn_supervisor(up: Arc<Upstream>, deps: SupervisorDeps) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { supervise(up, deps).await })
}

async fn supervise(up: Arc<Upstream>, deps: SupervisorDeps) {
    let mut backoff = FIRST_BACKOFF;
    crate::audit::metrics::global().register_server(&up.name);
    loop {
        up.set_phase(Phase::Starting {
            since: Instant::now(),
        });
        let started = Instant::now();
        let outcome = tokio::select! {
            r = run_once(&up, &deps) => r,
            _ = deps.shutdown.cancelled() => Err(End::Restart("shutting down".to_string())),
        };
        if deps.shutdown.is_cancelled() {
            break;
        }
        let error = match outcome {
            Ok(exit) => exit,
            Err(End::Restart(e)) => e,
            Err(End::Incompatible(m)) => {
                tracing::error!(server = %up.name, "{m}; gavel does not restart it");
                up.set_phase(Phase::Incompatible {
                    error: m.to_string(),
                });
                deps.shutdown.cancelled().await;
                break;
            }
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let tail = up.stderr_tail.snapshot();
        let tail_txt = if tail.is_empty() {
            String::new()
        } else {
            format!("; last stderr lines:\n  {}", tail.join("\n  "))
        };
        tracing::error!(server = %up.name, "upstream down: {error}; restarting in {backoff:?}{tail_txt}");
        up.set_phase(Phase::Down {
            error: error.clone(),
            retry_at: Instant::now() + backoff,
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = deps.shutdown.cancelled() => break,
        }
        up.restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::audit::metrics::global().upstream_restart(&up.name);
        backoff = (backoff * 2).min(up.cfg.restart_max_backoff);
    }
    up.set_phase(Phase::Stopped);
}

/// One life of the upstream. `Ok(reason)` when it ran and ended; `Err` when it
/// could not start.
async fn run_once(up: &Arc<Upstream>, deps: &SupervisorDeps) -> Result<String, End> {
    let list_changes = Arc::new(ListChanges::default());
    let progress = Arc::new(super::ProgressMap::default());
    up.stderr_tail.clear();
    let (running, mut proc, spoken) = open(up, deps, &progress, &list_changes).await?;
    let result = serve_connection(up, deps, running, progress, list_changes, spoken).await;
    stop_process(proc.take())
        .await
        .map_or(result.clone(), |exit| match result {
            Ok(r) => Ok(format!("{r} ({exit})")),
            Err(e) => Err(e),
        })
        .map_err(End::Restart)
}

/// Opens a connection in the eras [`era::plan`] lists, in order: the next
/// one when the upstream refused the one before, or closed the connection
/// while it was being opened (a strict server may exit on a request of the
/// era it does not speak); a stdio child is started again for it. The era
/// that worked is remembered (`auto`); a remembered era that failed is
/// forgotten. Only refusals make an [`era::EraMismatch`]: a start that also
/// failed otherwise is an ordinary failure, restarted.
async fn open(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    progress: &Arc<super::ProgressMap>,
    list_changes: &Arc<ListChanges>,
) -> Result<(Running, Option<Process>, Spoken), End> {
    let remembered = era::remembered(&up.cfg);
    let plan = era::plan(&up.cfg);
    let (mut refusals, mut failures) = (Vec::new(), Vec::new());
    for (i, &spoken) in plan.iter().enumerate() {
        let handler = client_handler(up, deps, progress, list_changes, spoken);
        let opened = match &up.cfg.transport {
            UpstreamTransport::Stdio { .. } => {
                connect_stdio(up, deps, handler, progress, spoken).await
            }
            UpstreamTransport::Http { url, headers } => {
                connect_http(up, deps, handler, url, headers, spoken)
                    .await
                    .map(|r| (r, None))
            }
        };
        let failure = match opened {
            Ok((running, proc)) => {
                if up.cfg.era == Era::Auto {
                    era::remember(&up.cfg, spoken);
                }
                return Ok((running, proc, spoken));
            }
            Err(f) => f,
        };
        if remembered == Some(spoken) {
            era::forget(&up.cfg);
        }
        let init = failure.init.as_ref();
        if let Some(r) = init.and_then(|e| era::refusal(spoken, e)) {
            tracing::info!(server = %up.name, era = r.tried.as_str(), "{}", r.said);
            refusals.push(r);
            continue;
        }
        if i + 1 == plan.len() || !init.is_some_and(era::closed) {
            failures.push(failure.message);
            return Err(End::Restart(attempts(&refusals, &failures)));
        }
        tracing::info!(server = %up.name, era = spoken.as_str(), "the connection closed while it was being opened ({}); trying the other era", failure.message);
        failures.push(failure.message);
    }
    if !failures.is_empty() {
        return Err(End::Restart(attempts(&refusals, &failures)));
    }
    Err(End::Incompatible(era::mismatch(&up.cfg, &refusals)))
}

/// What the attempts of a failed start met (refusals first), for the log
/// and status.
fn attempts(refusals: &[era::Refusal], failures: &[String]) -> String {
    let said = refusals.iter().map(|r| r.said.as_str());
    let all: Vec<&str> = said.chain(failures.iter().map(String::as_str)).collect();
    all.join("; then ")
}

/// The client side gavel presents to one life of the upstream: it answers
/// the upstream's own requests (sampling, elicitation, roots) through the
/// host, and counts progress and list changes for the supervisor.
fn client_handler(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    progress: &Arc<super::ProgressMap>,
    list_changes: &Arc<ListChanges>,
    era: Spoken,
) -> Bounded {
    Bounded::new(UpstreamClient {
        server: up.name.clone().into(),
        logger_prefix: deps.logger_prefix.clone(),
        host: deps.host.clone(),
        enforcer: deps.enforcer.clone(),
        session: deps.session.clone(),
        progress: progress.clone(),
        list_changed: list_changes.clone(),
        info: client_info(&deps.host, era),
        call_timeout: up.cfg.call_timeout,
        shared: up.shared.clone(),
    })
}

/// Runs a connected upstream until it ends or gavel shuts down.
async fn serve_connection(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    running: Running,
    progress: Arc<super::ProgressMap>,
    list_changes: Arc<ListChanges>,
    era: Spoken,
) -> Result<String, String> {
    let peer = running.peer().clone();
    peer.set_response_cache_config(rmcp::service::ClientCacheConfig::disabled())
        .await;
    let info = peer.peer_info();
    let caps = info
        .as_ref()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let version = info
        .as_ref()
        .map(|i| i.protocol_version.to_string())
        .unwrap_or_default();
    // Ends with this connection (every way out of this function).
    let listening = CancellationToken::new();
    let _listening = listening.clone().drop_guard();
    if era == Spoken::Modern {
        listen(up, deps, &peer, &caps, &list_changes, listening).await;
    }
    let mut fresh = UpstreamLists::default();
    for kind in [ListKind::Tools, ListKind::Resources, ListKind::Prompts] {
        if let Err(e) = lists::fetch(&peer, &caps, kind, &mut fresh, up.cfg.startup_timeout).await {
            let ct = running.cancellation_token();
            ct.cancel();
            let _ = running.waiting().await;
            return Err(format!("listing after {} failed: {e}", opening(era)));
        }
    }
    tracing::info!(
        server = %up.name, protocol = %version, era = era.as_str(),
        tools = fresh.tools.len(), resources = fresh.resources.len(), prompts = fresh.prompts.len(),
        "upstream ready"
    );
    if era == Spoken::Legacy {
        super::listen::resubscribe(up, &peer, &caps, up.cfg.startup_timeout).await;
    }
    compare_tool_digests(up, &fresh.tool_digests, "after a restart");
    lint_tools(up, deps, &fresh.tools);
    *up.lists.write().recover() = Arc::new(fresh);
    *up.conn.write().recover() = Some(Arc::new(Connection {
        peer: peer.clone(),
        capabilities: caps.clone(),
        progress,
        protocol_version: version,
        era,
    }));
    up.set_phase(Phase::Ready);
    deps.changed.send(up.name.clone());

    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let outcome = loop {
        tokio::select! {
            r = &mut waiting => break Ok(match r {
                Ok(reason) => format!("connection ended ({reason:?})"),
                Err(e) => format!("connection task failed: {e}"),
            }),
            kinds = list_changes.next() => {
                for kind in kinds {
                    refresh(up, deps, &peer, &caps, kind).await;
                }
            }
            _ = deps.shutdown.cancelled() => {
                ct.cancel();
                let _ = (&mut waiting).await;
                break Ok("stopped by gavel".into());
            }
        }
    };
    *up.conn.write().recover() = None;
    *up.lists.write().recover() = Arc::new(UpstreamLists::default());
    deps.changed.send(up.name.clone());
    outcome
}

/// Opens the listen of a modern upstream that advertises list changes or
/// resource subscriptions (`listen`), waiting for its first attempt up to
/// [`super::listen::READY_WAIT`] (or `startup_timeout`, if shorter).
async fn listen(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    peer: &rmcp::service::Peer<RoleClient>,
    caps: &rmcp::model::ServerCapabilities,
    changes: &Arc<ListChanges>,
    ct: CancellationToken,
) {
    let filter = super::listen::filter(caps);
    let subscribe = caps.resources.as_ref().and_then(|r| r.subscribe) == Some(true);
    if filter.is_none() && !subscribe {
        return;
    }
    let (opened, first) = tokio::sync::oneshot::channel();
    let listen = super::listen::Listen {
        server: up.name.clone().into(),
        peer: peer.clone(),
        filter,
        uris: subscribe.then(|| up.followed.subscribe()),
        changes: changes.clone(),
        host: deps.host.clone(),
        shared: up.shared.clone(),
        ct,
        ack_timeout: up.cfg.startup_timeout,
    };
    tokio::spawn(listen.run(opened));
    let wait = super::listen::READY_WAIT.min(up.cfg.startup_timeout);
    let _ = tokio::time::timeout(wait, first).await;
}

/// Re-fetches one list after the upstream's `list_changed`; logs every change
/// of a tool definition ([`compare_tool_digests`]).
async fn refresh(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    peer: &rmcp::service::Peer<RoleClient>,
    caps: &rmcp::model::ServerCapabilities,
    kind: ListKind,
) {
    let mut next = (*up.lists()).clone();
    if let Err(e) = lists::fetch(peer, caps, kind, &mut next, up.cfg.call_timeout).await {
        tracing::warn!(server = %up.name, "re-listing after list_changed failed: {e}; keeping the previous list");
        return;
    }
    if kind == ListKind::Tools {
        compare_tool_digests(up, &next.tool_digests, "after list_changed");
        lint_tools(up, deps, &next.tools);
    }
    *up.lists.write().recover() = Arc::new(next);
    deps.changed.notice(up.name.clone(), kind);
}

/// Hands the tool list to the policy's schema lint (`decision::tool_lint`),
/// off the event loop: it parses the server's bundles.
fn lint_tools(up: &Upstream, deps: &SupervisorDeps, tools: &[rmcp::model::Tool]) {
    let (enforcer, server, tools) = (deps.enforcer.clone(), up.name.clone(), tools.to_vec());
    tokio::task::spawn_blocking(move || enforcer.note_tools(&server, &tools));
}

/// Logs how a tool listing differs from the upstream's previous one — in
/// this connection (after `list_changed`), in the one before a restart, or,
/// for the first listing, the one the last gavel process recorded for this
/// upstream (`tool_pins`) — and makes it the new baseline. A tool changing
/// under the same name is how a "rug pull" looks, so a changed definition is
/// a warning with both digests.
fn compare_tool_digests(
    up: &Upstream,
    next: &std::collections::HashMap<String, String>,
    when: &str,
) {
    let pins = super::tool_pins::path(&crate::status::state_dir(), &up.cfg);
    let mut last = up.last_tool_digests.lock().recover();
    let (old, when) = match last.take() {
        Some(old) => (Some(old), when),
        None => (super::tool_pins::load(&pins), "since gavel last listed it"),
    };
    if let Some(old) = &old {
        let mut names: Vec<&String> = next.keys().collect();
        names.sort();
        for name in names {
            let digest = &next[name];
            match old.get(name) {
                Some(d) if d != digest => {
                    tracing::warn!(server = %up.name, tool = %name, old = %d, new = %digest, "tool definition changed {when}")
                }
                None => {
                    tracing::info!(server = %up.name, tool = %name, digest = %digest, "tool added {when}")
                }
                _ => {}
            }
        }
        for name in old.keys().filter(|n| !next.contains_key(*n)) {
            tracing::info!(server = %up.name, tool = %name, "tool removed {when}");
        }
    }
    if old.as_ref() != Some(next) {
        super::tool_pins::store(&pins, next);
    }
    *last = Some(next.clone());
}
