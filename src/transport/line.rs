//! Bounded newline-delimited JSON-RPC transport for stdio (host side and
//! upstream children). See `README.md` beside this file for the trade-off.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{ErrorCode, ErrorData, ProgressToken, RequestId};
use rmcp::service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use super::idscan::IdScanner;

/// Which end of the link this transport serves; only changes what is logged and
/// whether garbage from the peer is answered (a host is answered, an upstream
/// printing logs on stdout is not).
#[derive(Debug, Clone)]
pub struct LinkLabel {
    /// e.g. `host` or `upstream fs`.
    pub name: Arc<str>,
    /// Answer unparsable input with a JSON-RPC error (host side only).
    pub answer_garbage: bool,
    /// Answer `server/discover` with -32601 before rmcp sees it (host side).
    ///
    /// rmcp validates a discover request's 2026-07-28 `_meta` and version
    /// before any handler runs and answers -32602 or -32022 — which a
    /// dual-era host reads as "modern server" and then fails. A plain -32601
    /// is what makes it fall back to `initialize`.
    pub refuse_discover: bool,
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

/// Bytes that may wait to be written to one peer. A peer that stops reading
/// (a stuck host, an upstream flooding requests without reading their
/// answers) would otherwise make gavel hold every message for it: one more
/// send fails at once instead (a request sent so fails as a closed link; an
/// answer or notification is dropped and logged by rmcp). One message is
/// always accepted when nothing waits, whatever its size.
pub const MAX_PENDING_WRITE_BYTES: usize = 64 << 20;

pub struct LineTransport<Role, R, W> {
    progress: Option<ProgressObserver>,
    reader: BufReader<R>,
    line: Vec<u8>,
    state: ReadState,
    max_bytes: usize,
    writer: Arc<Mutex<Option<W>>>,
    /// Bytes queued for or being written to `writer` ([`MAX_PENDING_WRITE_BYTES`]).
    pending: Arc<AtomicUsize>,
    label: LinkLabel,
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
    Role: ServiceRole,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(reader: R, writer: W, max_bytes: usize, label: LinkLabel) -> Self {
        Self {
            progress: None,
            reader: BufReader::with_capacity(64 * 1024, reader),
            line: Vec::new(),
            state: ReadState::Normal,
            max_bytes,
            writer: Arc::new(Mutex::new(Some(writer))),
            pending: Arc::new(AtomicUsize::new(0)),
            label,
            _role: PhantomData,
        }
    }

    /// Reports each progress notification read (before rmcp handles it).
    pub fn with_progress_observer(mut self, observer: ProgressObserver) -> Self {
        self.progress = Some(observer);
        self
    }

    /// Serializes `msg` and counts it as pending, or refuses it when the
    /// peer already has [`MAX_PENDING_WRITE_BYTES`] waiting.
    fn queue(&self, msg: &TxJsonRpcMessage<Role>) -> std::io::Result<Queued> {
        let mut bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
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
    fn reply_error(&self, error: ErrorData, id: Option<RequestId>) {
        let msg = TxJsonRpcMessage::<Role>::error(error, id);
        let link = self.label.name.clone();
        let queued = match self.queue(&msg) {
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

    /// Called once an oversized line has been fully skipped.
    fn oversized(&self, scanner: IdScanner, seen: usize) -> Option<RxJsonRpcMessage<Role>> {
        let scan = scanner.result();
        let what = format!(
            "message of at least {seen} bytes exceeds the {} byte limit (limits.max_message_bytes)",
            self.max_bytes
        );
        match (scan.id, scan.has_method) {
            (Some(id), true) => {
                tracing::warn!(link = %self.label.name, %id, "request refused: {what}");
                let msg = format!(
                    "Request too large: {what}; send less data or raise limits.max_message_bytes in gavel's config"
                );
                self.reply_error(
                    ErrorData::new(ErrorCode::INVALID_REQUEST, msg, None),
                    Some(id),
                );
                None
            }
            (Some(id), false) => {
                tracing::warn!(link = %self.label.name, %id, "reply refused: {what}");
                let msg = format!(
                    "Reply from {} too large: {what}; ask for less data or raise limits.max_message_bytes in gavel's config",
                    self.label.name
                );
                Some(RxJsonRpcMessage::<Role>::error(
                    ErrorData::new(ErrorCode::INTERNAL_ERROR, msg, None),
                    Some(id),
                ))
            }
            (None, _) => {
                tracing::warn!(link = %self.label.name, "dropped a message with no id: {what}");
                None
            }
        }
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
        if self.label.refuse_discover && self.refused_discover(body) {
            self.line = raw;
            self.line.clear();
            return None;
        }
        let parsed = serde_json::from_slice::<RxJsonRpcMessage<Role>>(body);
        let out = match parsed {
            Ok(msg) => {
                if let Some(observe) = &self.progress
                    && let Some(token) = progress_token_of(body)
                {
                    observe(token);
                }
                Some(msg)
            }
            Err(e) => {
                self.bad_message(body, e);
                None
            }
        };
        self.line = raw;
        self.line.clear();
        out
    }

    /// `true` when `body` was a `server/discover` request, now answered.
    fn refused_discover(&self, body: &[u8]) -> bool {
        const NEEDLE: &[u8] = b"server/discover";
        if !body.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        if v.get("method").and_then(|m| m.as_str()) != Some("server/discover") {
            return false;
        }
        let id = v
            .get("id")
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
        if id.is_some() {
            self.reply_error(
                ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    "Method not found: server/discover (this server speaks MCP 2024-11-05 to 2025-11-25: use initialize)",
                    None,
                ),
                id,
            );
        }
        true
    }

    fn bad_message(&self, body: &[u8], e: serde_json::Error) {
        let value = serde_json::from_slice::<serde_json::Value>(body);
        let Ok(value) = value else {
            if self.label.answer_garbage {
                tracing::warn!(link = %self.label.name, "unparsable JSON: {e}");
                self.reply_error(
                    ErrorData::new(ErrorCode::PARSE_ERROR, format!("Parse error: {e}"), None),
                    None,
                );
            } else {
                let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                tracing::warn!(link = %self.label.name, "ignored non-JSON output on stdout (a server must log to stderr): {shown}");
            }
            return;
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

enum Step {
    More,
    Line,
    Overflow,
    DiscardDone,
    Eof,
}

impl<Role, R, W> Transport<Role> for LineTransport<Role, R, W>
where
    Role: ServiceRole,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<Role>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let writer = self.writer.clone();
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
                if available.is_empty() {
                    (0, Step::Eof)
                } else {
                    let newline = available.iter().position(|b| *b == b'\n');
                    let take = newline.map_or(available.len(), |i| i + 1);
                    match &mut self.state {
                        ReadState::Discarding { scanner, seen } => {
                            scanner.feed(&available[..take]);
                            *seen += take;
                            (
                                take,
                                if newline.is_some() {
                                    Step::DiscardDone
                                } else {
                                    Step::More
                                },
                            )
                        }
                        ReadState::Normal if self.line.len() + take > self.max_bytes + 2 => {
                            let mut scanner = IdScanner::new();
                            scanner.feed(&self.line);
                            scanner.feed(&available[..take]);
                            let seen = self.line.len() + take;
                            self.line.clear();
                            self.state = ReadState::Discarding { scanner, seen };
                            (
                                take,
                                if newline.is_some() {
                                    Step::DiscardDone
                                } else {
                                    Step::Overflow
                                },
                            )
                        }
                        ReadState::Normal => {
                            self.line.extend_from_slice(&available[..take]);
                            (
                                take,
                                if newline.is_some() {
                                    Step::Line
                                } else {
                                    Step::More
                                },
                            )
                        }
                    }
                }
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
                    let ReadState::Discarding { scanner, seen } =
                        std::mem::replace(&mut self.state, ReadState::Normal)
                    else {
                        unreachable!("DiscardDone is only produced while discarding")
                    };
                    self.line = Vec::new(); // release the memory a big line may have grown
                    if let Some(msg) = self.oversized(scanner, seen) {
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
mod tests {
    use super::*;
    use rmcp::RoleClient;
    use rmcp::RoleServer;
    use rmcp::model::NumberOrString;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    fn t(n: i64) -> ProgressToken {
        ProgressToken(NumberOrString::Number(n))
    }

    #[test]
    fn progress_lines_are_recognised() {
        let line = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1}}"#;
        assert_eq!(progress_token_of(line), Some(t(3)));
        let s = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"a","progress":1}}"#;
        assert_eq!(
            progress_token_of(s),
            Some(ProgressToken(NumberOrString::String("a".into())))
        );
        let result = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"notifications/progress"}]}}"#;
        assert_eq!(progress_token_of(result), None);
    }

    fn label(answer: bool) -> LinkLabel {
        LinkLabel {
            name: "test".into(),
            answer_garbage: answer,
            refuse_discover: answer,
        }
    }

    /// A transport reading `input`; returns what it delivered and what it wrote back.
    async fn run<Role: ServiceRole>(
        input: Vec<u8>,
        max: usize,
        answer: bool,
    ) -> (Vec<String>, Vec<serde_json::Value>) {
        let (mut feed, read_side) = tokio::io::duplex(1 << 20);
        let (write_side, out) = tokio::io::duplex(1 << 20);
        let mut t = LineTransport::<Role, _, _>::new(read_side, write_side, max, label(answer));
        tokio::spawn(async move {
            // Dribble the input in small writes to exercise partial lines.
            for chunk in input.chunks(7919) {
                feed.write_all(chunk).await.unwrap();
            }
        });
        let mut delivered = Vec::new();
        while let Some(m) = tokio::time::timeout(std::time::Duration::from_millis(500), t.receive())
            .await
            .ok()
            .flatten()
        {
            delivered.push(serde_json::to_string(&m).unwrap());
        }
        let mut replies = Vec::new();
        let mut lines = BufReader::new(out).lines();
        while let Ok(Ok(Some(l))) =
            tokio::time::timeout(std::time::Duration::from_millis(300), lines.next_line()).await
        {
            replies.push(serde_json::from_str(&l).unwrap());
        }
        t.close().await.unwrap();
        (delivered, replies)
    }

    /// A peer that does not read cannot make gavel hold unbounded output:
    /// past `MAX_PENDING_WRITE_BYTES` a send fails at once (it used to wait
    /// in line for the writer, holding its message, for ever).
    #[tokio::test]
    async fn writes_to_a_peer_that_does_not_read_are_bounded() {
        use tokio::io::DuplexStream;
        type T = LineTransport<RoleServer, DuplexStream, DuplexStream>;
        let (_unread, write_side) = tokio::io::duplex(64);
        let (read_side, _feed) = tokio::io::duplex(64);
        let t = T::new(read_side, write_side, 1 << 20, label(true));
        // What `send` does, without its `&mut self` borrow (so that many
        // sends can be started and held at once, as rmcp's tasks do).
        let send = |t: &T| {
            let msg = TxJsonRpcMessage::<RoleServer>::error(
                ErrorData::internal_error("x".repeat(1 << 20), None),
                None,
            );
            let writer = t.writer.clone();
            let queued = t.queue(&msg);
            Box::pin(async move { T::write_queued(&writer, queued?).await })
        };
        // Started (one holds the writer, stuck), never finished.
        let mut stuck: Vec<_> = (0..8).map(|_| send(&t)).collect();
        for f in &mut stuck {
            assert!(futures::FutureExt::now_or_never(f.as_mut()).is_none());
        }
        let mut waiting = Vec::new();
        let refused = loop {
            let mut f = send(&t);
            match futures::FutureExt::now_or_never(f.as_mut()) {
                None => waiting.push(f),
                Some(r) => break r,
            }
            assert!(
                waiting.len() < 100,
                "sends to a stuck peer are never refused"
            );
        };
        let e = refused.expect_err("refused, not written");
        assert!(e.to_string().contains("test is not reading"), "{e}");
        assert!(waiting.len() + stuck.len() <= MAX_PENDING_WRITE_BYTES >> 20);
        // Once what waited is gone (written or dropped), sending works again.
        drop(waiting);
        drop(stuck);
        let mut f = send(&t);
        assert!(futures::FutureExt::now_or_never(f.as_mut()).is_none());
    }

    #[tokio::test]
    async fn passes_normal_messages_and_answers_oversized_requests_on_their_id() {
        let big = "y".repeat(5000);
        let input = format!(
            "{}\n{}\n{}\n",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            format_args!(
                r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"e","arguments":{{"t":"{big}"}}}},"id":"req-9"}}"#
            ),
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        );
        let (delivered, replies) = run::<RoleServer>(input.into_bytes(), 1024, true).await;
        assert_eq!(delivered.len(), 2, "{delivered:?}");
        assert!(delivered[0].contains("\"id\":1") && delivered[1].contains("\"id\":2"));
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["id"], "req-9");
        assert_eq!(replies[0]["error"]["code"], -32600);
    }

    #[tokio::test]
    async fn oversized_reply_becomes_an_error_for_the_call_it_answers() {
        let big = "z".repeat(50_000);
        let input = format!(
            r#"{{"jsonrpc":"2.0","id":77,"result":{{"content":[{{"type":"text","text":"{big}"}}]}}}}"#
        ) + "\n";
        let (delivered, replies) = run::<RoleClient>(input.into_bytes(), 4096, false).await;
        assert!(replies.is_empty());
        assert_eq!(delivered.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&delivered[0]).unwrap();
        assert_eq!(v["id"], 77);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_message_bytes")
        );
    }

    #[tokio::test]
    async fn garbage_is_answered_on_the_host_side_and_ignored_upstream() {
        let input = b"not json\n{\"jsonrpc\":\"2.0\",\"id\":5}\n\n".to_vec();
        let (delivered, replies) = run::<RoleServer>(input.clone(), 1024, true).await;
        assert!(delivered.is_empty());
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert_eq!(replies[0]["error"]["code"], -32700);
        assert!(replies[0].get("id").is_none());
        assert_eq!(replies[1]["error"]["code"], -32600);
        assert_eq!(replies[1]["id"], 5);
        let (delivered, replies) =
            run::<RoleClient>(b"npm notice: hello\n".to_vec(), 1024, false).await;
        assert!(delivered.is_empty() && replies.is_empty());
    }
}
