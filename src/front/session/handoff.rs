//! A parked round answered on another instance (MCP 2026-07-28 over HTTP,
//! several `gavel serve` behind a round robin sharing Redis and the round
//! key).
//!
//! A legacy upstream's question parks its call in the upstream connection
//! of the instance that served the request (`parked.rs`); the host's retry
//! may land anywhere. The state names the instance that holds the call
//! (`<instance>/<id>`). The instance the retry reached opens and spends the
//! state and decides the retry by policy as always — it is that instance's
//! request — and then, when the call is held elsewhere, hands the host's
//! answers to the holder over the bus (`state::bus`, Redis pub/sub) and
//! waits for what the call comes to: its result (answered here, with this
//! retry's permit, through the result policy here), its next questions (a
//! new round, sealed here, still naming the holder), or an error.
//!
//! Trust: every message is signed with the round key
//! (`Sealer::sign_message`) and checked before it is parsed, so only an
//! instance holding the key can resume, abandon or answer a call — Redis
//! access alone is not enough. Bounds: a message is at most
//! `bus::MAX_MESSAGE_BYTES`; at most [`MAX_WAITING`] hand-offs wait at once
//! per instance; each waits at most the server's `call_timeout` (plus a
//! margin), then gives the call up. Failures are told plainly: no
//! instance listening (it stopped: the call is gone), Redis unreachable,
//! no answer in time — each "send the request again without
//! requestState".
//!
//! Progress of the resumed call travels back too ([`Message::Progress`],
//! to the retry's own token) — best effort: pub/sub keeps no order across
//! the holder's connections, and a notification that arrives after the
//! outcome is dropped (the request it was for is answered).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, ErrorCode, InputRequests, InputResponses, ProgressNotificationParam,
    ServerResult,
};
use rmcp::service::{RequestContext, RoleServer};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Session;
use super::host_round::HostRound;
use super::parked::{ParkedTable, Resumed, Step};
use super::rounds::Forwarded;
use crate::decision::Permit;
use crate::host::seal::Sealer;
use crate::state::bus::Bus;
use crate::sync::Recover;
use crate::upstream::progress::Target;

/// Hand-offs one instance waits for at once; past it a retry is refused
/// (503) rather than queued.
pub const MAX_WAITING: usize = 256;

/// How much longer than the server's `call_timeout` a hand-off waits for
/// its outcome (the holder's own wait is the call's).
const MARGIN: Duration = Duration::from_secs(5);

/// What instances say to each other about parked calls.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    /// Answer a parked call's questions (see [`Resume`]).
    Resume(Resume),
    /// A resumed call's progress, for the retry `reply` (best effort: one
    /// that arrives after the outcome is dropped).
    Progress {
        reply: String,
        progress: ProgressNotificationParam,
    },
    /// Give call `id` up (its retry was denied, cancelled or timed out).
    Abandon { id: String, why: String },
    /// What a resumed call came to.
    Outcome { reply: String, outcome: Remote },
}

/// Answer the questions of call `id` with `responses` and send what comes
/// of it to instance `reply_to` as `reply`.
#[derive(Debug, Serialize, Deserialize)]
struct Resume {
    id: String,
    server: String,
    reply_to: String,
    reply: String,
    responses: InputResponses,
    /// The retry's own capabilities: which next questions it can take.
    caps: ClientCapabilities,
    /// Whether the retry has a progress token: the resumed call's
    /// progress is then sent back as [`Message::Progress`].
    #[serde(default)]
    progress: bool,
}

/// Progress notifications of one resumed call that may wait to be sent
/// back at once; past it they are dropped (progress is advisory).
const PROGRESS_QUEUE: usize = 64;

/// What a resumed call came to, as it travels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Remote {
    /// The call's result.
    Done(serde_json::Value),
    /// The call failed (or could not be resumed).
    Failed(ErrorData),
    /// The upstream asked again: the call is parked under `id` there.
    Asked { id: String, requests: InputRequests },
}

/// This instance's hand-offs: the parked tables of its sessions (calls
/// others may resume), the hand-offs it waits for, and the calls it
/// resumed for others (so they can be cancelled).
pub struct Handoffs {
    bus: Arc<Bus>,
    sealer: Arc<Sealer>,
    runtime: tokio::runtime::Handle,
    tables: Mutex<Vec<Weak<ParkedTable>>>,
    waiting: Mutex<HashMap<String, Waiter>>,
    resumed: Mutex<HashMap<String, CancellationToken>>,
}

/// What comes back for a hand-off, in the order it was sent: the call's
/// progress, then its outcome.
enum Back {
    Progress(ProgressNotificationParam),
    Outcome(Remote),
}

/// A hand-off waiting for what comes back. One thread (the bus's) sends
/// on it, and progress is only queued while room for the outcome is left,
/// so the outcome is never lost to a flood of progress.
struct Waiter {
    back: mpsc::Sender<Back>,
}

fn unavailable(message: String) -> ErrorData {
    ErrorData::new(ErrorCode(503), message, None)
}

impl Handoffs {
    /// Takes messages from `bus` from now on (call on the runtime).
    pub fn start(bus: Arc<Bus>, sealer: Arc<Sealer>) -> Arc<Self> {
        let me = Arc::new(Self {
            bus: bus.clone(),
            sealer,
            runtime: tokio::runtime::Handle::current(),
            tables: Mutex::default(),
            waiting: Mutex::default(),
            resumed: Mutex::default(),
        });
        let weak = Arc::downgrade(&me);
        bus.set_inbox(Arc::new(move |bytes| {
            if let Some(h) = weak.upgrade() {
                h.receive(&bytes);
            }
        }));
        me
    }

    /// Lets other instances resume the calls parked in `table`.
    pub(super) fn serve(&self, table: &Arc<ParkedTable>) {
        let mut all = self.tables.lock().recover();
        all.retain(|t| t.strong_count() > 0);
        all.push(Arc::downgrade(table));
    }

    /// A message from the bus (on the bus's thread): checked, then handed
    /// to the runtime.
    fn receive(self: &Arc<Self>, bytes: &[u8]) {
        let Some(body) = self.sealer.open_message(bytes) else {
            tracing::warn!(
                "dropped a message on this instance's bus channel: not signed with this instance's round key (another key, or not gavel's)"
            );
            return;
        };
        let msg: Message = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    "dropped a signed message from another instance that does not parse ({e}): an instance of another gavel version?"
                );
                return;
            }
        };
        match msg {
            Message::Outcome { reply, outcome } => {
                if let Some(w) = self.waiting.lock().recover().remove(&reply) {
                    let _ = w.back.try_send(Back::Outcome(outcome));
                }
            }
            Message::Progress { reply, progress } => {
                if let Some(w) = self.waiting.lock().recover().get(&reply)
                    && w.back.capacity() > 1
                {
                    let _ = w.back.try_send(Back::Progress(progress));
                }
            }
            Message::Abandon { id, why } => {
                for t in self.live_tables() {
                    t.abandon(&id, &why);
                }
                if let Some(ct) = self.resumed.lock().recover().get(&id) {
                    ct.cancel();
                }
            }
            Message::Resume(resume) => {
                self.runtime.spawn(self.clone().serve_resume(resume));
            }
        }
    }

    fn live_tables(&self) -> Vec<Arc<ParkedTable>> {
        self.tables
            .lock()
            .recover()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Resumes call `id` for instance `reply_to`'s retry `reply` and
    /// sends back, in order on one sender, the call's progress (when the
    /// retry has a token; bounded, the excess dropped) and its outcome.
    async fn serve_resume(self: Arc<Self>, resume: Resume) {
        let Resume {
            id,
            server,
            reply_to,
            reply,
            responses,
            caps,
            progress,
        } = resume;
        let (out, mut queue) = tokio::sync::mpsc::channel::<Message>(PROGRESS_QUEUE);
        let relay = progress.then(|| {
            let (out, reply) = (out.clone(), reply.clone());
            Target::Relay(Arc::new(move |progress| {
                let _ = out.try_send(Message::Progress {
                    reply: reply.clone(),
                    progress,
                });
            }))
        });
        let me = self.clone();
        let sender = self.runtime.spawn(async move {
            while let Some(m) = queue.recv().await {
                let last = matches!(m, Message::Outcome { .. });
                if let Err(e) = me.send(&reply_to, &m).await {
                    tracing::warn!("a message to the instance that resumed a parked call could not be sent: {}", e.message);
                }
                if last {
                    return;
                }
            }
        });
        let outcome = self
            .resume_here(&id, &server, (&responses, &caps), relay)
            .await;
        let _ = out.send(Message::Outcome { reply, outcome }).await;
        let _ = sender.await;
    }

    /// Resumes call `id`, parked here, for another instance; its progress
    /// to `progress` from now on.
    async fn resume_here(
        &self,
        id: &str,
        server: &str,
        (responses, caps): (&InputResponses, &ClientCapabilities),
        progress: Option<Target>,
    ) -> Remote {
        let Some(table) = self.live_tables().into_iter().find(|t| t.holds(id)) else {
            return Remote::Failed(super::parked::no_longer_waiting(server));
        };
        table.follow(id, progress);
        let running = match table.resume(id, server, responses) {
            Err(e) => return Remote::Failed(e),
            Ok(Resumed::Asked(id, requests)) => return Remote::Asked { id, requests },
            Ok(Resumed::Running(r)) => r,
        };
        let ct = CancellationToken::new();
        self.resumed
            .lock()
            .recover()
            .insert(id.to_string(), ct.clone());
        let step = table.next_step(running, caps, &ct).await;
        self.resumed.lock().recover().remove(id);
        let step = step.map(|s| match s {
            Step::Done(done) => Ok(done.1),
            Step::Asked(id, requests) => Err((id, requests)),
        });
        match step {
            Ok(Ok(Ok(result))) => match serde_json::to_value(&result) {
                Ok(v) => Remote::Done(v),
                Err(e) => Remote::Failed(ErrorData::internal_error(
                    format!("the result of server {server:?} could not be passed on: {e}"),
                    None,
                )),
            },
            Ok(Ok(Err(e))) | Err(e) => Remote::Failed(e),
            Ok(Err((id, requests))) => Remote::Asked { id, requests },
        }
    }

    /// Signs `msg` and publishes it to instance `to`: whether it listens.
    async fn send(&self, to: &str, msg: &Message) -> Result<bool, ErrorData> {
        let body = serde_json::to_vec(msg).map_err(|e| {
            ErrorData::internal_error(format!("a message to another instance: {e}"), None)
        })?;
        let signed = self.sealer.sign_message(&body);
        let bus = self.bus.clone();
        let to = to.to_string();
        tokio::task::spawn_blocking(move || bus.publish(&to, &signed))
            .await
            .map_err(|e| unavailable(format!("the message to another instance was lost: {e}")))?
            .map_err(|e| unavailable(e.to_string()))
    }

    /// Gives call `id` at instance `at` up (best effort: the holder gives
    /// it up on its own after its timeout anyway).
    pub(super) fn abandon_at(self: &Arc<Self>, at: &str, id: &str, why: &str) {
        let me = self.clone();
        let (at, msg) = (
            at.to_string(),
            Message::Abandon {
                id: id.to_string(),
                why: why.to_string(),
            },
        );
        tokio::spawn(async move {
            let _ = me.send(&at, &msg).await;
        });
    }

    /// Hands the retry `round` of call `id` at instance `at` to it, and
    /// waits (at most `wait`, or until the host cancels `cx`) for what
    /// comes of it, passing the call's progress on to `cx`'s token.
    async fn resume_at(
        self: &Arc<Self>,
        (at, id): (&str, &str),
        server: &str,
        round: &HostRound,
        cx: &RequestContext<RoleServer>,
        wait: Duration,
    ) -> Result<Remote, ErrorData> {
        let ct = &cx.ct;
        if !self.bus.listening() {
            return Err(unavailable(format!(
                "the input round this retry answers is held by another gavel instance, and this one cannot take its answer now (Redis is unreachable); retry, or send the request again without requestState (server {server:?})"
            )));
        }
        let reply = uuid::Uuid::new_v4().simple().to_string();
        let (tx, mut rx) = mpsc::channel(PROGRESS_QUEUE + 1);
        {
            let mut waiting = self.waiting.lock().recover();
            if waiting.len() >= MAX_WAITING {
                return Err(unavailable(format!(
                    "this gavel instance is already waiting on {MAX_WAITING} rounds held by other instances; retry shortly (server {server:?})"
                )));
            }
            waiting.insert(reply.clone(), Waiter { back: tx });
        }
        // Whatever happens next, this hand-off stops waiting.
        struct Forget<'a>(&'a Handoffs, &'a str);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.waiting.lock().recover().remove(self.1);
            }
        }
        let _forget = Forget(self, &reply);
        let msg = Message::Resume(Resume {
            id: id.to_string(),
            server: server.to_string(),
            reply_to: self.bus.me().to_string(),
            reply: reply.clone(),
            responses: round.responses.clone(),
            caps: round.caps.clone(),
            progress: cx.meta.get_progress_token().is_some(),
        });
        if !self.send(at, &msg).await? {
            return Err(ErrorData::invalid_params(
                format!(
                    "the input round this retry answers was held by another gavel instance that is not running any more, so its call to server {server:?} is gone; send the request again without requestState"
                ),
                None,
            ));
        }
        let token = cx.meta.get_progress_token();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                back = rx.recv() => match back {
                    Some(Back::Progress(mut p)) => {
                        // Awaited here: it reaches the host before the result.
                        if let Some(t) = &token {
                            p.progress_token = t.clone();
                            let _ = cx.peer.notify_progress(p).await;
                        }
                    }
                    Some(Back::Outcome(r)) => return Ok(r),
                    None => return Err(unavailable(format!("the hand-off of a round of server {server:?} to another instance ended without an outcome; send the request again without requestState"))),
                },
                _ = &mut deadline => {
                    self.abandon_at(at, id, "the instance the host's retry reached got no outcome in time");
                    return Err(unavailable(format!(
                        "the gavel instance that holds this round's call to server {server:?} gave no outcome within {wait:?}; send the request again without requestState"
                    )));
                }
                _ = ct.cancelled() => {
                    self.abandon_at(at, id, "the host cancelled its retry");
                    return Err(ErrorData::internal_error("request not finished: cancelled by the agent host", None));
                }
            }
        }
    }
}

impl Session {
    /// Resumes the parked call `id` that instance `at` holds, for this
    /// retry (decided here, with `permit`).
    pub(super) async fn resume_elsewhere(
        &self,
        server: &str,
        permit: Permit,
        (at, id): (&str, &str),
        cx: &RequestContext<RoleServer>,
        round: &HostRound,
    ) -> Result<Forwarded, ErrorData> {
        let Some(h) = self.inner.handoffs.get() else {
            return Err(ErrorData::invalid_params(
                format!(
                    "the input round this retry answers was issued by another gavel instance, and this one shares no Redis with it to hand the answer over ([state] backend = \"redis\" on every instance); send the request again without requestState (server {server:?})"
                ),
                None,
            ));
        };
        let wait = self
            .router()?
            .upstreams
            .get(server)
            .map_or(Duration::from_secs(60), |u| u.cfg.call_timeout)
            + MARGIN;
        match h.resume_at((at, id), server, round, cx, wait).await? {
            Remote::Done(v) => {
                let r: ServerResult = serde_json::from_value(v).map_err(|e| {
                    ErrorData::internal_error(
                        format!("the result of server {server:?} passed on by another instance does not parse: {e}"),
                        None,
                    )
                })?;
                self.parked_done(round, permit, Ok(r)).await
            }
            Remote::Failed(e) => self.parked_done(round, permit, Err(e)).await,
            Remote::Asked { id, requests } => self.parked_round(round, Some(at), &id, requests),
        }
    }

    /// Lets this session's parked calls be resumed through other
    /// instances, and its retries reach theirs.
    pub(crate) fn join_handoffs(&self, handoffs: &Arc<Handoffs>) {
        if self.inner.handoffs.set(handoffs.clone()).is_ok() {
            handoffs.serve(&self.inner.parked);
        }
    }

    /// Gives up the parked call a denied retry answered, wherever it is.
    pub(super) fn abandon_parked(&self, reference: &str, why: &str) {
        match super::parked::split_ref(reference) {
            (Some(at), id) if at != crate::audit::record::instance_id() => {
                if let Some(h) = self.inner.handoffs.get() {
                    h.abandon_at(at, id, why);
                }
            }
            (_, id) => self.inner.parked.abandon(id, why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What travels is what was sent (the enum's tags are the wire).
    #[test]
    fn messages_travel_whole() {
        let m = Message::Resume(Resume {
            id: "abc".into(),
            server: "fx".into(),
            reply_to: "i2".into(),
            reply: "r1".into(),
            responses: [("fx.1".to_string(), serde_json::json!({"action": "accept"}))].into(),
            caps: serde_json::from_value(serde_json::json!({"elicitation": {}})).unwrap(),
            progress: true,
        });
        let back: Message = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
        let o = Message::Outcome {
            reply: "r1".into(),
            outcome: Remote::Failed(ErrorData::invalid_params("gone", None)),
        };
        let back: Message = serde_json::from_slice(&serde_json::to_vec(&o).unwrap()).unwrap();
        assert_eq!(format!("{o:?}"), format!("{back:?}"));
    }

    /// A message not signed with this instance's key is dropped unread: it
    /// reaches no waiting hand-off.
    #[tokio::test]
    async fn an_unsigned_outcome_reaches_nobody() {
        let store =
            Arc::new(crate::state::redis::RedisStore::open("redis://127.0.0.1:1/0", true).unwrap());
        let stop = CancellationToken::new();
        let bus = Bus::start(store, "me", stop.clone());
        let key = |b| crate::host::seal::SealKey::new(vec![b; 32]).unwrap();
        let h = Handoffs::start(bus, Arc::new(Sealer::new(key(1))));
        let (tx, mut rx) = mpsc::channel(2);
        h.waiting
            .lock()
            .recover()
            .insert("r1".into(), Waiter { back: tx });
        let o = serde_json::to_vec(&Message::Outcome {
            reply: "r1".into(),
            outcome: Remote::Done(serde_json::json!({})),
        })
        .unwrap();
        h.receive(&o);
        h.receive(&Sealer::new(key(2)).sign_message(&o));
        assert!(
            rx.try_recv().is_err(),
            "an unsigned or foreign outcome was taken"
        );
        h.receive(&Sealer::new(key(1)).sign_message(&o));
        assert!(matches!(rx.try_recv(), Ok(Back::Outcome(Remote::Done(_)))));
        stop.cancel();
    }
}
