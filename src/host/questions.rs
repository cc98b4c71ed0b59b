//! A legacy upstream's server→client requests (`elicitation/create`,
//! `sampling/createMessage`, `roots/list`) while it serves a call of a
//! 2026-07-28 host (reference §2.3 shape 2, checklist B7/B8).
//!
//! Such a host never receives a request from gavel: the question is handed
//! to the host's call that is in flight at the upstream, and that call
//! answers the host `input_required` with it (`front/session/parked.rs`).
//! This module is the meeting point of the two sides: every upstream call a
//! modern host's session has in flight is entered here, per server, for as
//! long as it is in flight ([`InFlight::enter`]); an upstream's question is
//! attributed to the one call in flight at its server ([`InFlight::attribute`])
//! and put to it ([`Slot::ask`]), the upstream's request waiting for the
//! host's answer.
//!
//! Attribution fails closed: a legacy upstream's request names no call
//! (stdio has no link between the two), so when its server has no call in
//! flight, more than one, or one that cannot take a round (a
//! `completion/complete`), the request is refused on its id with an error
//! that says why — a question is never delivered to another caller's call.
//! gavel's own list fetches are not entered: gavel asks no upstream for
//! input during a list, and an upstream asking then is asking the one call
//! in flight, if any.
// Sampling and roots are deprecated in MCP 2026-07-28 (SEP-2577) but are
// what a legacy upstream asks.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ErrorCode, ErrorData, InputRequest, ListRootsRequest};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::decision::Permit;
use crate::sync::Recover;

/// One question of an upstream, waiting for the host's answer (the bare
/// result object, as `inputResponses` carries it), or for the error the
/// upstream's request is to get.
#[derive(Debug)]
pub struct Question {
    pub request: InputRequest,
    pub reply: oneshot::Sender<Result<Value, ErrorData>>,
}

/// The upstream calls of one host session in flight, per server.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<HashMap<String, Vec<Entry>>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// Where the call takes questions: `None` for a call that cannot
    /// answer with an input round.
    asks: Option<mpsc::Sender<Question>>,
    /// Where the upstream's log messages for the call go: `None` unless
    /// the request set a log level and its upstream is told it.
    log: Option<LogSink>,
}

/// A request's log level and the request's own peer, on whose stream its
/// log messages go (2026-07-28: only for a request that set a level, only
/// at or above it, only on its own stream).
#[derive(Debug, Clone)]
pub struct LogSink {
    pub min: rmcp::model::LoggingLevel,
    pub peer: rmcp::service::Peer<rmcp::service::RoleServer>,
}

/// A call entered in [`InFlight`]: it leaves when this is dropped (the
/// call ended, however).
#[derive(Debug)]
pub struct Entered {
    table: Arc<InFlight>,
    server: String,
    id: u64,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let mut calls = self.table.calls.lock().recover();
        if let Some(list) = calls.get_mut(&self.server) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                calls.remove(&self.server);
            }
        }
    }
}

/// The call an upstream's question was attributed to.
#[derive(Debug, Clone)]
pub struct Slot {
    server: String,
    asks: mpsc::Sender<Question>,
}

impl InFlight {
    /// Enters a call of the host at `server` until the guard drops; `asks`
    /// is where it takes the upstream's questions, `None` when it cannot.
    pub fn enter(self: &Arc<Self>, server: &str, asks: Option<mpsc::Sender<Question>>) -> Entered {
        self.enter_logging(server, asks, None)
    }

    /// [`Self::enter`], with where the call's log messages go.
    pub fn enter_logging(
        self: &Arc<Self>,
        server: &str,
        asks: Option<mpsc::Sender<Question>>,
        log: Option<LogSink>,
    ) -> Entered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut calls = self.calls.lock().recover();
        calls
            .entry(server.to_string())
            .or_default()
            .push(Entry { id, asks, log });
        Entered {
            table: self.clone(),
            server: server.to_string(),
            id,
        }
    }

    /// Where a log message of `server` goes: the calls in flight there
    /// that asked for its log messages. A modern upstream logs only for a
    /// request that carries a level, so one such call is the one the
    /// message is for; with several, gavel cannot tell which (the caller
    /// drops it rather than risk another caller's stream).
    pub fn log_sinks(&self, server: &str) -> Vec<LogSink> {
        let calls = self.calls.lock().recover();
        calls
            .get(server)
            // Two are as many as it takes to know it is ambiguous.
            .map(|l| l.iter().filter_map(|e| e.log.clone()).take(2).collect())
            .unwrap_or_default()
    }

    /// The call `server`'s `method` request belongs to: the one call in
    /// flight there, when it takes questions. Anything else is refused.
    pub fn attribute(&self, server: &str, method: &str) -> Result<Slot, ErrorData> {
        let calls = self.calls.lock().recover();
        let list = calls.get(server).map(Vec::as_slice).unwrap_or_default();
        let why = match list {
            [one] => match &one.asks {
                Some(asks) => {
                    return Ok(Slot {
                        server: server.to_string(),
                        asks: asks.clone(),
                    });
                }
                None => "the request of the agent host it came during cannot carry an input round (only tools/call, prompts/get and resources/read can)".to_string(),
            },
            [] => "no request of the agent host is in flight at this server".to_string(),
            many => format!(
                "{} requests of the agent host are in flight at this server, and gavel cannot tell which one it belongs to",
                many.len()
            ),
        };
        Err(refused(server, method, &why))
    }
}

/// The error an upstream's request gets when gavel cannot pass it on.
pub fn refused(server: &str, method: &str, why: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_REQUEST,
        format!(
            "gavel did not pass {method} from server {server:?} to the agent host: the host speaks MCP 2026-07-28, where a server's question reaches it only as an input round (MRTR) of the request it belongs to, and {why}"
        ),
        None,
    )
}

impl Slot {
    /// Puts an upstream's decided request (the [`Permit`] proves it passed
    /// [`crate::host::authorize`]) to the host's call and waits for the
    /// host's answer: until the upstream withdraws its request (`ct`),
    /// the call gives up on it (the reply is dropped: the call ended, or
    /// its parked round expired), or `timeout`.
    pub async fn ask(
        &self,
        _permit: &Permit,
        method: &str,
        request: InputRequest,
        ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<Value, ErrorData> {
        self.put(method, request, ct, timeout).await
    }

    /// gavel's own approval `question` for the upstream's `method` request
    /// (`host::approval_round`), put to the call before the request itself
    /// and answered in a round of its own: MRTR has the host fulfil every
    /// input request of a round before it retries, so a question beside
    /// its approval would be answered (a sampling request run) before the
    /// person approved it. No permit: what reaches the host is gavel's
    /// question, naming the server and the request, not the upstream's.
    pub async fn ask_approval(
        &self,
        method: &str,
        question: InputRequest,
        ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<Value, ErrorData> {
        self.put(method, question, ct, timeout).await
    }

    /// `roots/list`: plumbing, as for a legacy host (`HostLink::list_roots`),
    /// and built here, so this path carries nothing else.
    pub async fn ask_roots(
        &self,
        ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<Value, ErrorData> {
        let request = InputRequest::ListRoots(ListRootsRequest::default());
        self.put("roots/list", request, ct, timeout).await
    }

    async fn put(
        &self,
        method: &str,
        request: InputRequest,
        ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<Value, ErrorData> {
        let (reply, answer) = oneshot::channel();
        if let Err(e) = self.asks.try_send(Question { request, reply }) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => {
                    "the call it belongs to already holds as many unanswered questions as gavel passes in one round"
                }
                mpsc::error::TrySendError::Closed(_) => "the call it belongs to has ended",
            };
            return Err(refused(&self.server, method, why));
        }
        tokio::select! {
            r = tokio::time::timeout(timeout, answer) => match r {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(refused(&self.server, method, "the call it belongs to ended before the host answered")),
                Err(_) => Err(refused(&self.server, method, &format!("the host did not answer within {timeout:?}"))),
            },
            _ = ct.cancelled() => Err(ErrorData::internal_error(
                "cancelled by the upstream server",
                None,
            )),
        }
    }
}

#[cfg(test)]
#[path = "questions_tests.rs"]
mod tests;
