//! The HTTP client of a 2026-07-28 (modern) upstream connection, under
//! rmcp's streamable HTTP transport. It reads the answer to a POST as that
//! revision allows it — one JSON-RPC message (`application/json`) or a
//! request-scoped SSE stream — and, as well, as several JSON-RPC messages in
//! a row under `application/json` (JSON lines: the conformance suite's own
//! reference server streams a `subscriptions/listen` and a tool's progress
//! that way). rmcp's client reads an `application/json` body whole as one
//! message: such a listen never acknowledged and such a call failed, so the
//! server's list changes never arrived and a tool worked directly but not
//! through gavel. A proxy that is to be invisible reads what servers send.
//!
//! Everything is bounded as rmcp bounds it (`StreamableHttpResponseLimits`):
//! each message to `max_json_response_size` (the messages of a stream each,
//! so a long listen is not cut), each SSE event to `max_sse_event_size`,
//! an error body to the same. A legacy connection (sessions, the
//! `initialize` era) keeps rmcp's own client: this one knows no sessions.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use http::{HeaderName, HeaderValue, StatusCode, header};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

type Error = StreamableHttpError<reqwest::Error>;
type Events = BoxStream<'static, Result<Sse, SseError>>;

/// Redirects followed for one request (same origin, 307/308 only).
const MAX_REDIRECTS: usize = 10;

#[derive(Clone)]
pub struct ModernHttp {
    client: reqwest::Client,
}

impl ModernHttp {
    /// A client that keeps no idle connection (a connection whose previous
    /// answer was not read to the end stalls the next request on delayed
    /// ACKs) and follows only same-origin 307/308 redirects, which keep the
    /// method, the body and the headers' destination.
    pub fn new() -> Self {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let keeps_body = matches!(
                attempt.status(),
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if keeps_body && same_origin {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(policy)
            .build()
            .unwrap_or_default();
        Self { client }
    }
}

impl Default for ModernHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamableHttpClient for ModernHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut request = self
            .client
            .post(uri.as_ref())
            .header(header::ACCEPT, "text/event-stream, application/json");
        if let Some(token) = auth_header {
            request = request.bearer_auth(token);
        }
        for (name, value) in custom_headers {
            if name == header::ACCEPT || name == header::CONTENT_TYPE {
                return Err(StreamableHttpError::ReservedHeaderConflict(
                    name.to_string(),
                ));
            }
            request = request.header(name, value);
        }
        if let Some(id) = session_id {
            request = request.header("mcp-session-id", id.as_ref());
        }
        let response = request
            .json(&message)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        let kind = media(&response);
        if !status.is_success() {
            return failure(response, status, kind, &limits).await;
        }
        // A notification or a response: nothing in the body is needed.
        if !matches!(message, ClientJsonRpcMessage::Request(_)) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        let expected = response.content_length();
        let body = response.bytes_stream().boxed();
        let answer = match kind {
            Media::Sse => {
                StreamableHttpPostResponse::Sse(bounded_sse(body, limits.max_sse_event_size), None)
            }
            Media::Json => json_answer(body, expected, limits.max_json_response_size).await?,
            Media::Other(ct) => return Err(StreamableHttpError::UnexpectedContentType(ct)),
        };
        Ok(match (answer, listen_id(&message)) {
            (StreamableHttpPostResponse::Sse(events, s), Some(id)) => {
                StreamableHttpPostResponse::Sse(tagged_as_number(events, id), s)
            }
            (answer, _) => answer,
        })
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        self.client
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<Events, Error> {
        self.client
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<Events, Error> {
        self.client
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// The numeric id of a `subscriptions/listen` request.
fn listen_id(message: &ClientJsonRpcMessage) -> Option<i64> {
    match message {
        ClientJsonRpcMessage::Request(r) => match (&r.request, &r.id) {
            (ClientRequest::SubscriptionsListenRequest(_), RequestId::Number(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

/// The key a listen stream's frames are tagged with.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// A listen stream's frames with their `subscriptionId` as the request's
/// id, a number, where the server wrote that number as a string (`"3"` for
/// 3: the conformance suite's reference server does). The tag must equal
/// the listen's id for rmcp to route the frame to the listen; only this
/// request's own stream is touched, and only a tag that already names it.
fn tagged_as_number(events: Events, id: i64) -> Events {
    let text = id.to_string();
    events
        .map(move |e| {
            e.map(|mut sse| {
                if let Some(fixed) = sse.data.as_deref().and_then(|d| retag(d, id, &text)) {
                    sse.data = Some(fixed);
                }
                sse
            })
        })
        .boxed()
}

fn retag(data: &str, id: i64, text: &str) -> Option<String> {
    if !data.contains(SUBSCRIPTION_ID) {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_str(data).ok()?;
    let body = if v.get("params").is_some() {
        "params"
    } else {
        "result"
    };
    let tag = v
        .get_mut(body)?
        .get_mut("_meta")?
        .get_mut(SUBSCRIPTION_ID)?;
    if tag.as_str() != Some(text) {
        return None;
    }
    *tag = serde_json::Value::from(id);
    serde_json::to_string(&v).ok()
}

enum Media {
    Json,
    Sse,
    Other(Option<String>),
}

fn media(response: &reqwest::Response) -> Media {
    let ct = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = ct
        .and_then(|c| c.split(';').next())
        .map(|e| e.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Media::Json,
        Some("text/event-stream") => Media::Sse,
        _ => Media::Other(ct.map(String::from)),
    }
}

/// A non-2xx answer: the JSON-RPC error it carries (a modern server answers
/// a malformed request with HTTP 400 and one), else the status and the
/// start of the body.
async fn failure(
    response: reqwest::Response,
    status: StatusCode,
    kind: Media,
    limits: &StreamableHttpResponseLimits,
) -> Result<StreamableHttpPostResponse, Error> {
    let max = match kind {
        Media::Json => limits.max_json_response_size,
        _ => limits.max_error_response_size,
    };
    let (body, _) = read_prefix(response.bytes_stream().boxed(), max).await;
    if matches!(kind, Media::Json)
        && let Ok(m @ ServerJsonRpcMessage::Error(_)) = serde_json::from_slice(&body)
    {
        return Ok(StreamableHttpPostResponse::Json(m, None));
    }
    // Refused, not unreadable (`UnexpectedServerResponse` is kept for an
    // answer gavel cannot read): the status and the start of the body.
    let shown = &body[..body.len().min(limits.max_error_response_size)];
    Err(StreamableHttpError::Io(std::io::Error::other(format!(
        "HTTP {status}: {}",
        crate::text::escape_controls(&String::from_utf8_lossy(shown))
    ))))
}

/// Up to `max` bytes of `body`, and whether it held more.
async fn read_prefix(
    mut body: BoxStream<'static, reqwest::Result<Bytes>>,
    max: usize,
) -> (BytesMut, bool) {
    let mut out = BytesMut::new();
    while let Some(Ok(chunk)) = body.next().await {
        let room = max - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return (out, true);
        }
        out.extend_from_slice(&chunk);
    }
    (out, false)
}

#[path = "modern_http_read.rs"]
pub(crate) mod read;
use read::{bounded_sse, json_answer};

#[cfg(test)]
#[path = "modern_http_tests.rs"]
mod tests;
