//! Bounded newline-delimited JSON-RPC transport for stdio (host side and
//! upstream children). See `README.md` beside this file for the trade-off.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{ErrorCode, ErrorData, ProgressToken, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use super::idscan::{IdScanner, ScanResult};
use super::typed::{Asked, Typed};

/// Which end of the link this transport serves; only changes what is logged and
/// whether garbage from the peer is answered (a host is answered, an upstream
/// printing logs on stdout is not).
#[derive(Debug, Clone)]
pub struct LinkLabel {
    /// e.g. `host` or `upstream fs`.
    pub name: Arc<str>,
    /// Answer unparsable input with a JSON-RPC error (host side only).
    pub answer_garbage: bool,
    /// Answer a `ping` that carries the MCP 2026-07-28 envelope with -32601
    /// before rmcp sees it (host side).
    ///
    /// `ping` is removed in 2026-07-28. rmcp refuses it on a connection
    /// already in that era, but before a connection has chosen its era it
    /// answers every `ping` itself, envelope or not.
    pub refuse_modern_ping: bool,
}

enum ReadState {
    Normal,
    /// Skipping the rest of an oversized line, scanning it for its id.
    Discarding {
        scanner: IdScanner,
        seen: usize,
    },
}

/// Sees the token of every progress notification the peer sends, in the
/// order it sent them (see `upstream::progress`).
pub type ProgressObserver = Arc<dyn Fn(ProgressToken) + Send + Sync>;

/// Told of every log notification (`notifications/message`) the peer
/// sends, as it is read (see `upstream::progress`).
pub type LogObserver = Arc<dyn Fn() + Send + Sync>;

/// Bytes that may wait to be written to one peer. A peer that stops reading
/// (a stuck host, an upstream flooding requests without reading their
/// answers) would otherwise make gavel hold every message for it: one more
/// send fails at once instead (a request sent so fails as a closed link; an
/// answer or notification is dropped and logged by rmcp). One message is
/// always accepted when nothing waits, whatever its size.
pub const MAX_PENDING_WRITE_BYTES: usize = 64 << 20;

pub struct LineTransport<Role, R, W> {
    progress: Option<ProgressObserver>,
    logs: Option<LogObserver>,
    reader: BufReader<R>,
    line: Vec<u8>,
    state: ReadState,
    max_bytes: usize,
    writer: Arc<Mutex<Option<W>>>,
    /// Bytes queued for or being written to `writer` ([`MAX_PENDING_WRITE_BYTES`]).
    pending: Arc<AtomicUsize>,
    label: LinkLabel,
    /// What the requests sent and not yet answered asked for (`typed`).
    asked: Asked,
    _role: PhantomData<fn() -> Role>,
}

/// One serialized message counted in its transport's pending bytes until
/// written or dropped.
struct Queued {
    bytes: Vec<u8>,
    pending: Arc<AtomicUsize>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.bytes.len(), Ordering::AcqRel);
    }
}

impl<Role, R, W> LineTransport<Role, R, W>
where
    Role: Typed,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(reader: R, writer: W, max_bytes: usize, label: LinkLabel) -> Self {
        Self {
            progress: None,
            logs: None,
            reader: BufReader::with_capacity(64 * 1024, reader),
            line: Vec::new(),
            state: ReadState::Normal,
            max_bytes,
            writer: Arc::new(Mutex::new(Some(writer))),
            pending: Arc::new(AtomicUsize::new(0)),
            label,
            asked: Asked::default(),
            _role: PhantomData,
        }
    }

    /// Reports each progress notification read (before rmcp handles it).
    pub fn with_progress_observer(mut self, observer: ProgressObserver) -> Self {
        self.progress = Some(observer);
        self
    }

    /// Reports each log notification read (before rmcp handles it).
    pub fn with_log_observer(mut self, observer: LogObserver) -> Self {
        self.logs = Some(observer);
        self
    }

    /// Serializes `msg` and counts it as pending, or refuses it when the
    /// peer already has [`MAX_PENDING_WRITE_BYTES`] waiting.
    fn queue(&self, msg: &TxJsonRpcMessage<Role>) -> std::io::Result<Queued> {
        let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        self.queue_bytes(bytes)
    }

    /// [`Self::queue`] for bytes already serialized.
    fn queue_bytes(&self, mut bytes: Vec<u8>) -> std::io::Result<Queued> {
        bytes.push(b'\n');
        let len = bytes.len();
        let before = self.pending.fetch_add(len, Ordering::AcqRel);
        let queued = Queued {
            bytes,
            pending: self.pending.clone(),
        };
        if before > 0 && before + len > MAX_PENDING_WRITE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "{} is not reading what gavel writes ({before} bytes already wait for it); a message of {len} bytes was not sent",
                    self.label.name
                ),
            ));
        }
        Ok(queued)
    }

    async fn write_queued(writer: &Mutex<Option<W>>, queued: Queued) -> std::io::Result<()> {
        let mut guard = writer.lock().await;
        let w = guard
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "closed"))?;
        w.write_all(&queued.bytes).await?;
        w.flush().await
    }

    /// Answers the peer without awaiting the write: `receive` runs inside rmcp's
    /// `select!` and may be dropped at any await, which must not lose the answer.
    ///
    /// With no id the answer carries `"id": null`, as JSON-RPC 2.0 §5 asks of
    /// an error whose request id could not be determined (rmcp's type would
    /// omit the member).
    fn reply_error(&self, error: ErrorData, id: Option<RequestId>) {
        let bytes = match id {
            Some(id) => serde_json::to_vec(&TxJsonRpcMessage::<Role>::error(error, Some(id))),
            None => serde_json::to_vec(
                &serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error}),
            ),
        };
        let link = self.label.name.clone();
        let queued = match bytes
            .map_err(std::io::Error::other)
            .and_then(|b| self.queue_bytes(b))
        {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(link = %link, "could not answer a bad message: {e}");
                return;
            }
        };
        let writer = self.writer.clone();
        tokio::spawn(async move {
            if let Err(e) = Self::write_queued(&writer, queued).await {
                tracing::warn!(link = %link, "could not answer a bad message: {e}");
            }
        });
    }

    /// A line that cannot be delivered as it is (too large, too deep, not
    /// JSON): answered, or turned into an error for the call it answers, on
    /// the id the scanner found, so that nobody waits for it forever.
    ///
    /// - a request (top-level `method`) with an id: answered on its id, on
    ///   both sides (-32600, or -32700 for a line that is not JSON);
    /// - a reply (`result`/`error`, or on the upstream side any message with
    ///   an id and no method): delivered locally as an error on its id, so the
    ///   call it answers fails;
    /// - no id found: the host gets the error with `"id": null`; an upstream's
    ///   line is logged and dropped (it may be a stray log line on stdout).
    fn unreadable(&self, why: Unreadable, scan: ScanResult) -> Option<RxJsonRpcMessage<Role>> {
        let what = why.describe(self.max_bytes);
        let link = &self.label.name;
        let is_reply = scan.has_outcome || (!scan.has_method && !self.label.answer_garbage);
        match scan.id {
            Some(id) if is_reply => {
                tracing::warn!(link = %link, %id, "reply refused: {what}");
                let msg = format!(
                    "Reply from {link} {}: {what}{}",
                    why.reply_word(),
                    why.hint()
                );
                Some(RxJsonRpcMessage::<Role>::error(
                    ErrorData::new(ErrorCode::INTERNAL_ERROR, msg, None),
                    Some(id),
                ))
            }
            Some(id) => {
                tracing::warn!(link = %link, %id, "request refused: {what}");
                self.reply_error(why.request_error(&what), Some(id));
                None
            }
            None if self.label.answer_garbage => {
                tracing::warn!(link = %link, "refused a message with no id: {what}");
                self.reply_error(why.request_error(&what), None);
                None
            }
            None => {
                let hint = match why {
                    Unreadable::NotJson { .. } => " (a server must log to stderr, never stdout)",
                    _ => "",
                };
                tracing::warn!(link = %link, "dropped a message with no id: {what}{hint}");
                None
            }
        }
    }

    /// The end of an over-long line: answered on the id the scanner found
    /// (or refused with `"id": null`), reading resumes normally.
    fn finish_discard(&mut self) -> Option<RxJsonRpcMessage<Role>> {
        let ReadState::Discarding { scanner, seen } =
            std::mem::replace(&mut self.state, ReadState::Normal)
        else {
            unreachable!("DiscardDone is only produced while discarding")
        };
        self.line = Vec::new(); // release the memory a big line may have grown
        let scan = scanner.result();
        self.unreadable(Unreadable::TooLarge(seen), scan)
    }

    fn parse_line(&mut self) -> Option<RxJsonRpcMessage<Role>> {
        let raw = std::mem::take(&mut self.line);
        let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().all(u8::is_ascii_whitespace) {
            self.line = raw;
            self.line.clear();
            return None;
        }
        if self.label.refuse_modern_ping && self.refused_modern_ping(body) {
            self.line = raw;
            self.line.clear();
            return None;
        }
        // The forwarded call's messages straight into their types; the
        // rest (and whatever that read refuses) as rmcp reads them.
        let parsed = match Role::read(body, &mut self.asked) {
            Some(msg) => Ok(msg),
            None => serde_json::from_slice::<RxJsonRpcMessage<Role>>(body),
        };
        let out = match parsed {
            Ok(msg) => {
                if let Some(observe) = &self.progress
                    && let Some(token) = progress_token_of(body)
                {
                    observe(token);
                }
                if let Some(observe) = &self.logs
                    && is_log(body)
                {
                    observe();
                }
                Some(msg)
            }
            Err(e) => self.bad_message(body, e),
        };
        self.line = raw;
        self.line.clear();
        out
    }

    /// `true` when `body` was a `ping` under the 2026-07-28 envelope, now
    /// answered -32601 (a legacy `ping` carries no protocol version).
    fn refused_modern_ping(&self, body: &[u8]) -> bool {
        const NEEDLE: &[u8] = b"io.modelcontextprotocol/protocolVersion";
        if !body.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        if v.get("method").and_then(|m| m.as_str()) != Some("ping") {
            return false;
        }
        let modern = v
            .pointer("/params/_meta")
            .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
            .and_then(|p| p.as_str())
            .is_some_and(|p| p >= "2026-07-28");
        let id = v
            .get("id")
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
        if !modern || id.is_none() {
            return false;
        }
        self.reply_error(
            ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "Method not found: ping (removed in MCP 2026-07-28)",
                None,
            ),
            id,
        );
        true
    }

    fn bad_message(&self, body: &[u8], e: serde_json::Error) -> Option<RxJsonRpcMessage<Role>> {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            // Not readable as JSON at all: a syntax error, or nesting deeper
            // than serde_json reads. The scanner still finds a top-level id.
            let mut scanner = IdScanner::new();
            scanner.feed(body);
            let scan = scanner.result();
            let why = if scan.max_depth > MAX_JSON_DEPTH {
                Unreadable::TooDeep(scan.max_depth)
            } else {
                let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                Unreadable::NotJson { error: e, shown }
            };
            return self.unreadable(why, scan);
        };
        let id = value
            .get("id")
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
        let is_request = value.get("method").is_some();
        tracing::warn!(link = %self.label.name, "malformed JSON-RPC message: {e}");
        if self.label.answer_garbage || (is_request && id.is_some()) {
            let msg =
                format!("Invalid Request: not a JSON-RPC 2.0 message this server understands: {e}");
            self.reply_error(ErrorData::new(ErrorCode::INVALID_REQUEST, msg, None), id);
        }
        None
    }
}

/// The deepest nesting serde_json reads (its recursion limit refuses the
/// 128th level); rmcp's parsing and gavel's own use it.
const MAX_JSON_DEPTH: u32 = 127;

/// Why a line could not be delivered as a message.
enum Unreadable {
    /// Over `limits.max_message_bytes`: at least this many bytes were seen.
    TooLarge(usize),
    /// Nested this many levels deep, beyond `MAX_JSON_DEPTH`.
    TooDeep(u32),
    /// Not JSON; `shown` is the start of the line, for the log.
    NotJson {
        error: serde_json::Error,
        shown: String,
    },
}

impl Unreadable {
    fn describe(&self, max_bytes: usize) -> String {
        match self {
            Unreadable::TooLarge(seen) => format!(
                "message of at least {seen} bytes exceeds the {max_bytes} byte limit (limits.max_message_bytes)"
            ),
            Unreadable::TooDeep(depth) => format!(
                "message nested {depth} levels deep; gavel reads JSON nested at most {MAX_JSON_DEPTH} levels"
            ),
            Unreadable::NotJson { error, shown } => format!("not JSON ({error}): {shown}"),
        }
    }

    fn reply_word(&self) -> &'static str {
        match self {
            Unreadable::TooLarge(_) => "too large",
            _ => "unreadable",
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Unreadable::TooLarge(_) => {
                "; ask for less data or raise limits.max_message_bytes in gavel's config"
            }
            Unreadable::TooDeep(_) => "; its sender must nest less deeply",
            Unreadable::NotJson { .. } => "",
        }
    }

    /// The error a request gets: -32700 for a line that is not JSON,
    /// -32600 for JSON gavel will not read.
    fn request_error(&self, what: &str) -> ErrorData {
        let (code, msg) = match self {
            Unreadable::TooLarge(_) => (
                ErrorCode::INVALID_REQUEST,
                format!(
                    "Request too large: {what}; send less data or raise limits.max_message_bytes in gavel's config"
                ),
            ),
            Unreadable::TooDeep(_) => (
                ErrorCode::INVALID_REQUEST,
                format!("Invalid Request: {what}; send a flatter structure"),
            ),
            Unreadable::NotJson { error, .. } => {
                (ErrorCode::PARSE_ERROR, format!("Parse error: {error}"))
            }
        };
        ErrorData::new(code, msg, None)
    }
}

/// The progress token of a raw JSON-RPC line, if it is a progress
/// notification (checked cheaply first: most lines are not).
fn progress_token_of(line: &[u8]) -> Option<ProgressToken> {
    const NEEDLE: &[u8] = b"notifications/progress";
    if !line.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if v.get("method")?.as_str()? != "notifications/progress" {
        return None;
    }
    serde_json::from_value(v.get("params")?.get("progressToken")?.clone()).ok()
}

/// Whether a raw JSON-RPC line is a log notification (checked cheaply
/// first, as [`progress_token_of`]).
fn is_log(line: &[u8]) -> bool {
    const METHOD: &str = "notifications/message";
    line.windows(METHOD.len()).any(|w| w == METHOD.as_bytes())
        && serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .is_some_and(|v| v.get("method").and_then(|m| m.as_str()) == Some(METHOD))
}

enum Step {
    More,
    Line,
    Overflow,
    DiscardDone,
    Eof,
}

/// Takes what the reader has buffered, up to and including the next
/// newline: appended to `line`, or — once the line is over `max_bytes` —
/// fed to the id scanner and dropped. Returns the bytes taken and what they
/// completed.
fn take_chunk(
    state: &mut ReadState,
    line: &mut Vec<u8>,
    max_bytes: usize,
    available: &[u8],
) -> (usize, Step) {
    if available.is_empty() {
        return (0, Step::Eof);
    }
    let newline = available.iter().position(|b| *b == b'\n');
    let take = newline.map_or(available.len(), |i| i + 1);
    let ends = |done: Step, more: Step| if newline.is_some() { done } else { more };
    match state {
        ReadState::Discarding { scanner, seen } => {
            scanner.feed(&available[..take]);
            *seen += take;
            (take, ends(Step::DiscardDone, Step::More))
        }
        ReadState::Normal if line.len() + take > max_bytes + 2 => {
            let mut scanner = IdScanner::new();
            scanner.feed(line);
            scanner.feed(&available[..take]);
            let seen = line.len() + take;
            line.clear();
            *state = ReadState::Discarding { scanner, seen };
            (take, ends(Step::DiscardDone, Step::Overflow))
        }
        ReadState::Normal => {
            line.extend_from_slice(&available[..take]);
            (take, ends(Step::Line, Step::More))
        }
    }
}

impl<Role, R, W> Transport<Role> for LineTransport<Role, R, W>
where
    Role: Typed,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<Role>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let writer = self.writer.clone();
        Role::sent(&item, &mut self.asked);
        let queued = self.queue(&item);
        async move { Self::write_queued(&writer, queued?).await }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<Role>> {
        loop {
            let (consumed, step) = {
                let available = match self.reader.fill_buf().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(link = %self.label.name, "read error: {e}");
                        return None;
                    }
                };
                take_chunk(&mut self.state, &mut self.line, self.max_bytes, available)
            };
            self.reader.consume(consumed);
            match step {
                Step::More | Step::Overflow => {}
                Step::Eof => return None,
                Step::Line => {
                    if let Some(msg) = self.parse_line() {
                        return Some(msg);
                    }
                }
                Step::DiscardDone => {
                    if let Some(msg) = self.finish_discard() {
                        return Some(msg);
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        if let Some(mut w) = self.writer.lock().await.take() {
            let _ = w.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
