//! Reading a modern upstream's POST answer (`modern_http`): JSON values in
//! a row, each bounded, cut from the bytes as they come; and an SSE body
//! whose events are bounded before they are parsed.

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

use super::{Error, Events};

pub(super) type Body = BoxStream<'static, reqwest::Result<Bytes>>;

/// JSON values cut from a byte stream, one at a time, each at most `max`
/// bytes. A value is looked for again only when it may have ended — the
/// new bytes hold a newline, the buffer doubled since the last look, or
/// the body ended — so a large value is not re-scanned chunk after chunk.
pub(crate) struct Values {
    buf: BytesMut,
    max: usize,
    /// The buffer's length at the last look that found no whole value.
    looked_at: usize,
}

impl Values {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
            looked_at: 0,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole value, `None` while it is still coming; an error for
    /// bytes that are not JSON, a value over `max`, or a body that ended
    /// inside a value. `fresh`: the last pushed bytes held a newline.
    pub(crate) fn next_value(&mut self, fresh: bool, ended: bool) -> Result<Option<Bytes>, String> {
        let start = self
            .buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.buf.len());
        let _ = self.buf.split_to(start);
        if self.buf.is_empty() {
            self.looked_at = 0;
            return Ok(None);
        }
        let due = ended || fresh || self.buf.len() >= 2 * self.looked_at.max(1);
        if !due {
            return self.check_size().map(|()| None);
        }
        let mut values =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde::de::IgnoredAny>();
        match values.next() {
            Some(Ok(_)) => {
                let end = values.byte_offset();
                if end > self.max {
                    return Err(format!(
                        "a message of {end} bytes, over the bound of {} bytes",
                        self.max
                    ));
                }
                self.looked_at = 0;
                Ok(Some(self.buf.split_to(end).freeze()))
            }
            Some(Err(e)) if e.is_eof() && !ended => {
                self.looked_at = self.buf.len();
                self.check_size().map(|()| None)
            }
            Some(Err(e)) => Err(format!("not a JSON message ({e})")),
            None => Ok(None),
        }
    }

    fn check_size(&self) -> Result<(), String> {
        if self.buf.len() > self.max {
            return Err(format!("a message over the bound of {} bytes", self.max));
        }
        Ok(())
    }

    /// Whether nothing but whitespace is left.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.iter().all(u8::is_ascii_whitespace)
    }
}

fn body_error(why: String) -> SseError {
    SseError::Body(Box::new(std::io::Error::other(why)))
}

fn event(value: Bytes) -> Result<Sse, SseError> {
    let data = String::from_utf8(value.to_vec()).map_err(|e| body_error(e.to_string()))?;
    Ok(Sse {
        event: None,
        data: Some(data),
        id: None,
        retry: None,
    })
}

/// An `application/json` answer to a request: one message, passed on as
/// such when the body is known to hold nothing more (its length said so,
/// or it ended); else the messages as a stream, one event each, as they
/// come (a listen's acknowledgement must not wait for the body to end).
pub(super) async fn json_answer(
    mut body: Body,
    expected: Option<u64>,
    max: usize,
) -> Result<StreamableHttpPostResponse, Error> {
    let mut values = Values::new(max);
    let mut read = 0u64;
    let mut ended = false;
    let mut fresh = false;
    // The usual answer: a length within the bound. Read whole, it is one
    // message parsed once — only a body that is not one message is cut.
    if let Some(n) = expected.filter(|&n| n <= max as u64) {
        let mut all = BytesMut::with_capacity(n as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StreamableHttpError::Client)?;
            if all.len() + chunk.len() > max {
                return Err(StreamableHttpError::UnexpectedServerResponse(
                    format!("an answer over the bound of {max} bytes").into(),
                ));
            }
            all.extend_from_slice(&chunk);
        }
        if let Ok(message) = serde_json::from_slice::<ServerJsonRpcMessage>(&all) {
            return Ok(StreamableHttpPostResponse::Json(message, None));
        }
        read = all.len() as u64;
        values.push(&all);
        ended = true;
    }
    let first = loop {
        match values.next_value(fresh, ended) {
            Ok(Some(v)) => break v,
            Ok(None) if ended => {
                return Err(StreamableHttpError::UnexpectedServerResponse(
                    "an empty application/json answer to a request".into(),
                ));
            }
            Ok(None) => {}
            Err(why) => return Err(StreamableHttpError::UnexpectedServerResponse(why.into())),
        }
        match body.next().await {
            Some(Ok(chunk)) => {
                read += chunk.len() as u64;
                fresh = chunk.contains(&b'\n');
                values.push(&chunk);
            }
            Some(Err(e)) => return Err(StreamableHttpError::Client(e)),
            None => ended = true,
        }
    };
    if values.is_empty() && (ended || expected == Some(read)) {
        let message: ServerJsonRpcMessage = serde_json::from_slice(&first)?;
        return Ok(StreamableHttpPostResponse::Json(message, None));
    }
    Ok(StreamableHttpPostResponse::Sse(
        json_lines(first, values, body, ended),
        None,
    ))
}

/// The messages after `first` as events, read on from `body`.
fn json_lines(first: Bytes, values: Values, body: Body, ended: bool) -> Events {
    let head = stream::once(async move { event(first) });
    let rest = stream::unfold(
        (values, body, ended, false, false),
        |(mut values, mut body, mut ended, mut fresh, failed)| async move {
            if failed {
                return None;
            }
            loop {
                match values.next_value(fresh, ended) {
                    Ok(Some(v)) => return Some((event(v), (values, body, ended, fresh, false))),
                    Ok(None) if ended => return None,
                    Ok(None) => {}
                    Err(why) => {
                        return Some((Err(body_error(why)), (values, body, true, false, true)));
                    }
                }
                match body.next().await {
                    Some(Ok(chunk)) => {
                        fresh = chunk.contains(&b'\n');
                        values.push(&chunk);
                    }
                    Some(Err(e)) => {
                        let e = Err(SseError::Body(Box::new(e)));
                        return Some((e, (values, body, true, false, true)));
                    }
                    None => {
                        ended = true;
                        fresh = false;
                    }
                }
            }
        },
    );
    head.chain(rest).boxed()
}

/// An SSE body whose events may each be at most `max` bytes, checked on
/// the raw bytes before the parser buffers them.
pub(super) fn bounded_sse(body: Body, max: usize) -> Events {
    let mut run = 0usize;
    let mut newline = false;
    let checked = body.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        for &b in chunk.iter() {
            match b {
                b'\n' if newline => run = 0,
                b'\n' => newline = true,
                b'\r' => {}
                _ => {
                    newline = false;
                    run += 1;
                }
            }
            if run > max {
                return Err(std::io::Error::other(format!(
                    "an SSE event over the bound of {max} bytes"
                )));
            }
        }
        Ok::<Bytes, std::io::Error>(chunk)
    });
    SseStream::from_bytes_stream(checked).boxed()
}
