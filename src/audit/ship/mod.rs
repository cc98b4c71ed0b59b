//! Shipping the decision log to a service with OPA's decision-log upload
//! protocol (docs/decision-log.md, "Shipping"): `POST <url><resource>`
//! (`/logs` by default), `Content-Encoding: gzip`, a JSON array of events
//! per body, at most `upload_size_limit_bytes` compressed (OPA: 32 KiB);
//! 2xx is delivered, anything else is retried with exponential backoff and
//! jitter.
//!
//! The local file stays the record (written on the decision path, before
//! the effect); shipping runs on its own thread from that file
//! ([`spool`]), so a slow or absent service never delays a decision. Its
//! position is committed after each delivered body: a restart resumes
//! there. Several gavel processes may share a log file: one of them ships
//! it — the one holding `<log>.ship.lock` (`flock`, released by the kernel
//! when a process dies, so another takes over) — and the position file is
//! written only under that lock.
//!
//! Duplicates: a body delivered (2xx) whose position commit is lost to a
//! crash is sent again after the restart; `decision_id` is the idempotency
//! key. Nothing is lost short of the bound: a backlog over
//! `max_spool_bytes` either drops the oldest records or stops shipping
//! ([`AtBound`]), logged and counted.

pub mod chunk;
pub mod spool;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::DecisionLog;
use crate::text::escape_controls as esc;

/// How long a rotated file must go unmodified before shipping moves on
/// from its end to the next file.
const QUIET: Duration = Duration::from_secs(1);

/// `[log.ship]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipSettings {
    /// The service's base URL (`http(s)://host[:port][/prefix]`).
    pub url: String,
    /// The path appended to `url` (OPA's `resource`, default `/logs`).
    pub resource: String,
    /// Extra headers (e.g. `Authorization`), environment already expanded.
    pub headers: BTreeMap<String, String>,
    /// OPA's `upload_size_limit_bytes`: one body's compressed size.
    pub upload_size_limit_bytes: usize,
    /// How often the log is looked at when caught up, and the first retry
    /// delay; retries double up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// One upload's time limit.
    pub timeout: Duration,
    /// The most undelivered bytes kept; 0: no bound (the log's rotation
    /// still is one).
    pub max_spool_bytes: u64,
    pub at_bound: AtBound,
}

/// What happens when the undelivered backlog exceeds `max_spool_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtBound {
    /// Skip the oldest undelivered records (OPA's behaviour for its buffer),
    /// logged and counted in `gavel_decision_log_ship_dropped_total`.
    DropOldest,
    /// Stop shipping with an error (`gavel_decision_log_ship_stopped` = 1)
    /// until the backlog is back under the bound; nothing is skipped.
    Stop,
}

impl AtBound {
    pub fn as_str(self) -> &'static str {
        match self {
            AtBound::DropOldest => "drop_oldest",
            AtBound::Stop => "stop",
        }
    }
}

/// Starts the shipper of `log` on its own thread; it ends when `log` is
/// dropped (a new one takes over the lock on the next round).
pub fn start(log: &Arc<DecisionLog>, settings: ShipSettings, keep: u32) -> std::io::Result<()> {
    let weak = Arc::downgrade(log);
    let path = log.path().to_path_buf();
    std::thread::Builder::new()
        .name("gavel-decision-log-ship".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("decision-log shipping cannot start: {e}");
                    return;
                }
            };
            let mut shipper = Shipper::new(path, settings, keep);
            rt.block_on(shipper.run(weak));
        })?;
    Ok(())
}

struct Shipper {
    log: PathBuf,
    s: ShipSettings,
    keep: u32,
    endpoint: String,
    client: Option<reqwest::Client>,
    /// Failed uploads in a row (the backoff's exponent).
    failures: u32,
    stopped: bool,
}

/// What one round achieved.
enum Round {
    /// Delivered something or moved on: go again at once.
    Progress,
    /// Nothing to ship now.
    Idle,
    /// An upload failed: back off.
    Failed,
}

impl Shipper {
    fn new(log: PathBuf, s: ShipSettings, keep: u32) -> Self {
        let endpoint = format!(
            "{}/{}",
            s.url.trim_end_matches('/'),
            s.resource.trim_start_matches('/')
        );
        let client = reqwest::Client::builder().timeout(s.timeout).build();
        if let Err(e) = &client {
            tracing::error!(
                "decision-log shipping: no HTTP client ({e}); records stay in the local log"
            );
        }
        Shipper {
            log,
            s,
            keep,
            endpoint,
            client: client.ok(),
            failures: 0,
            stopped: false,
        }
    }

    async fn run(&mut self, alive: Weak<DecisionLog>) {
        let mut lock = None;
        while alive.strong_count() > 0 {
            if lock.is_none() {
                lock = take_lock(&self.log);
                if lock.is_none() {
                    tokio::time::sleep(self.s.min_delay).await;
                    continue;
                }
                tracing::info!(log = %esc(&self.log.display().to_string()), endpoint = %esc(&self.endpoint), "decision-log shipping started");
            }
            let wait = match self.round().await {
                Round::Progress => continue,
                Round::Idle => self.s.min_delay,
                Round::Failed => {
                    let d = chunk::backoff(
                        self.s.min_delay,
                        self.s.max_delay,
                        self.failures.saturating_sub(1),
                        chunk::jitter(),
                    );
                    tracing::debug!(?d, "decision-log upload retry");
                    d
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One step: enforce the bound, then ship the next body (or move past
    /// a finished rotated file).
    async fn round(&mut self) -> Round {
        let sources = spool::sources(&self.log, self.keep);
        let committed = spool::load(&self.log);
        let (mut index, mut offset, lost) = spool::resume(&sources, committed);
        if lost {
            tracing::error!(log = %esc(&self.log.display().to_string()), "decision-log shipping: the file being shipped was rotated away before it was delivered (raise [log] rotate_keep or max_spool_bytes); resuming at the oldest file left");
            super::metrics::global().ship_dropped(1);
            if let Some(oldest) = sources.first() {
                self.commit(oldest, 0);
            }
        }
        let Some(src) = sources.get(index) else {
            return Round::Idle;
        };
        if !self.bounded(&sources, &mut index, &mut offset) {
            return Round::Idle;
        }
        let src = sources.get(index).unwrap_or(src);
        let limit = self.s.upload_size_limit_bytes;
        // Only what the bound was checked on: records appended since wait
        // for the next round (and its check).
        let seen = usize::try_from(src.len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let lines = match spool::read_lines(&src.path, offset, seen.min(limit * 8), limit * 64) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(path = %esc(&src.path.display().to_string()), "decision-log shipping cannot read the log: {e}");
                return Round::Failed;
            }
        };
        if lines.is_empty() {
            if index + 1 < sources.len() {
                // A rotated file shipped to its end: on to the next one,
                // once it is quiet (a process that wrote to it as it was
                // rotated has moved on: `DecisionLog::follow_rotation`).
                if !spool::quiet(&src.path, QUIET) {
                    return Round::Idle;
                }
                let next = &sources[index + 1];
                self.commit(next, 0);
                return Round::Progress;
            }
            if lost || committed.is_none() {
                self.commit(src, offset);
            }
            return Round::Idle;
        }
        self.ship(src, &lines).await
    }

    /// Enforces `max_spool_bytes` on the backlog from `(index, offset)`;
    /// false when shipping is stopped at the bound.
    fn bounded(&mut self, sources: &[spool::Source], index: &mut usize, offset: &mut u64) -> bool {
        let bound = self.s.max_spool_bytes;
        let backlog = spool::backlog(sources, *index, *offset);
        let over = bound > 0 && backlog > bound;
        let m = super::metrics::global();
        if !over {
            if self.stopped {
                tracing::info!(
                    "decision-log shipping resumed: the backlog is back under max_spool_bytes"
                );
                self.stopped = false;
                m.ship_stopped(false);
            }
            return true;
        }
        if self.s.at_bound == AtBound::Stop {
            if !self.stopped {
                tracing::error!(
                    backlog,
                    bound,
                    "decision-log shipping STOPPED: the undelivered backlog exceeds [log.ship] max_spool_bytes (at_bound = \"stop\"); records stay in the local log"
                );
                self.stopped = true;
                m.ship_stopped(true);
            }
            return false;
        }
        // drop_oldest: skip whole records until the backlog fits.
        let mut skip = backlog - bound;
        let mut dropped = 0;
        while skip > 0 && *index < sources.len() {
            let s = &sources[*index];
            let left = s.len.saturating_sub(*offset);
            if left <= skip && *index + 1 < sources.len() {
                dropped += spool::count_records(&s.path, *offset, s.len);
                skip -= left;
                *index += 1;
                *offset = 0;
            } else {
                let to = spool::next_line(&s.path, *offset + skip.min(left));
                dropped += spool::count_records(&s.path, *offset, to);
                *offset = to;
                skip = 0;
            }
        }
        tracing::warn!(
            dropped,
            bound,
            "decision-log shipping: the undelivered backlog exceeded [log.ship] max_spool_bytes; the oldest records were not shipped (at_bound = \"drop_oldest\"; they remain in the local log)"
        );
        m.ship_dropped(dropped);
        if let Some(s) = sources.get(*index) {
            self.commit(s, *offset);
        }
        true
    }

    /// Ships the first body of `lines` (events in file order) from `src`.
    async fn ship(&mut self, src: &spool::Source, lines: &[(Vec<u8>, u64)]) -> Round {
        // Leading blank or unreadable lines are stepped over first.
        let mut first = 0;
        let mut bad = 0;
        while first < lines.len()
            && (lines[first].0.is_empty()
                || serde_json::from_slice::<serde::de::IgnoredAny>(&lines[first].0).is_err())
        {
            bad += u64::from(!lines[first].0.is_empty());
            first += 1;
        }
        if first > 0 {
            if bad > 0 {
                tracing::warn!(bad, path = %esc(&src.path.display().to_string()), "decision-log shipping skipped lines that are not JSON");
                super::metrics::global().ship_dropped(bad);
            }
            self.commit(src, lines[first - 1].1);
            return Round::Progress;
        }
        // Events up to the next blank or unreadable line.
        let run = lines
            .iter()
            .take_while(|(l, _)| {
                !l.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok()
            })
            .map(|(l, _)| l.as_slice())
            .collect::<Vec<_>>();
        let Ok(body) = chunk::first_chunk(&run, self.s.upload_size_limit_bytes) else {
            tracing::error!(
                limit = self.s.upload_size_limit_bytes,
                "decision-log shipping: one event is larger than upload_size_limit_bytes compressed; it is not shipped (it remains in the local log)"
            );
            super::metrics::global().ship_dropped(1);
            self.commit(src, lines[0].1);
            return Round::Progress;
        };
        match self.post(body.body).await {
            Ok(()) => {
                self.failures = 0;
                super::metrics::global().ship_delivered(body.events as u64);
                self.commit(src, lines[body.events - 1].1);
                Round::Progress
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                super::metrics::global().ship_failed();
                tracing::warn!(endpoint = %esc(&self.endpoint), failures = self.failures, "decision-log upload failed: {}", esc(&e));
                Round::Failed
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let Some(client) = &self.client else {
            return Err("no HTTP client".into());
        };
        let mut req = client
            .post(&self.endpoint)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(body);
        for (k, v) in &self.s.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the service answered {status}"))
        }
    }

    fn commit(&self, src: &spool::Source, offset: u64) {
        let pos = spool::Position {
            dev: src.dev,
            ino: src.ino,
            offset,
        };
        if let Err(e) = spool::commit(&self.log, pos) {
            // Not fatal: the body is sent again later (decision_id dedups).
            tracing::error!(path = %esc(&spool::state_path(&self.log).display().to_string()), "decision-log shipping cannot commit its position: {e}");
        }
    }
}

/// `<log>.ship.lock`, held for as long as this process ships the log.
fn take_lock(log: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let mut p = log.as_os_str().to_owned();
    p.push(".ship.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(p))
        .ok()?;
    // SAFETY: flock on a descriptor we own; released when `f` drops or the
    // process dies.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}
