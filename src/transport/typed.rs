//! The messages of every forwarded call read straight into their types
//! (issue 17).
//!
//! rmcp's message types are untagged unions: a line is buffered into a
//! tree, then tried against each variant in turn, and each miss builds an
//! error. A host's `tools/call` is the 14th `ClientRequest` tried and an
//! upstream's `CallToolResult` the 16th `ServerResult`: about thirty
//! failed attempts per forwarded call, a quarter of `gavel wrap`'s CPU.
//! Here the envelope is read first, cheaply (no payload is built), and the
//! line is then read once as the type it must be:
//!
//! - a request (`method` and `id`, no `result`/`error`) whose method is one
//!   of the forwarded ones ([`read_request`]): the one variant with that
//!   method — the variant the untagged union lands on too, since every
//!   earlier variant has another method;
//! - an upstream's reply to a request gavel sent ([`Asked`] remembers what
//!   each id asked for): the result type of that request. This is also
//!   more faithful than the union, which would take a tool result that
//!   happens to carry a `completion` or `tools` member for another result.
//!
//! Anything else, or a line the typed read refuses, goes to rmcp's own
//! read unchanged, so what is accepted or refused, and how, stays rmcp's.

use std::borrow::Cow;
use std::collections::HashMap;

use rmcp::model::{
    CallToolRequest, CallToolResult, ClientRequest, GetPromptRequest, GetPromptResult,
    JsonRpcMessage, JsonRpcRequest, JsonRpcResponse, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, ReadResourceRequest,
    ReadResourceResult, RequestId, ServerResult,
};
use rmcp::service::{RoleClient, RoleServer, RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage};
use serde::Deserialize;

/// Requests gavel has sent and not seen answered, remembered (up to
/// [`MAX_ASKED`]) with the result type each asked for.
#[derive(Default)]
pub struct Asked(HashMap<RequestId, Expect>);

/// How many unanswered requests [`Asked`] remembers; past it, it starts
/// over (replies of the forgotten ones are read the slow way: the table
/// stays bounded whatever a peer never answers).
pub const MAX_ASKED: usize = 1024;

/// The result a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    CallTool,
    GetPrompt,
    ReadResource,
    ListTools,
    ListPrompts,
    ListResources,
    ListResourceTemplates,
}

/// A line's envelope, its payload skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// A member that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The `result` of a reply line, the rest skipped.
#[derive(Deserialize)]
struct ResultOf<T> {
    result: T,
}

fn head(body: &[u8]) -> Option<Head<'_>> {
    let h: Head = serde_json::from_slice(body).ok()?;
    (h.jsonrpc.as_deref() == Some("2.0")).then_some(h)
}

/// What each role's transport reads straight into its type.
pub trait Typed: ServiceRole + Sized {
    /// Notes what a request about to be sent asks for.
    fn sent(_msg: &TxJsonRpcMessage<Self>, _asked: &mut Asked) {}
    /// `body` read as its type, or `None` for rmcp's own read.
    fn read(body: &[u8], asked: &mut Asked) -> Option<RxJsonRpcMessage<Self>>;
}

/// The host side: requests from the host.
impl Typed for RoleServer {
    fn read(body: &[u8], _asked: &mut Asked) -> Option<RxJsonRpcMessage<Self>> {
        read_request(body)
    }
}

/// A host's forwarded request, read as the one variant its method names.
pub fn read_request(body: &[u8]) -> Option<RxJsonRpcMessage<RoleServer>> {
    let h = head(body)?;
    if h.result || h.error {
        return None;
    }
    let (id, method) = (h.id?, h.method?);
    let request = match method.as_ref() {
        "tools/call" => {
            ClientRequest::CallToolRequest(serde_json::from_slice::<CallToolRequest>(body).ok()?)
        }
        "prompts/get" => {
            ClientRequest::GetPromptRequest(serde_json::from_slice::<GetPromptRequest>(body).ok()?)
        }
        "resources/read" => ClientRequest::ReadResourceRequest(
            serde_json::from_slice::<ReadResourceRequest>(body).ok()?,
        ),
        _ => return None,
    };
    Some(JsonRpcMessage::Request(JsonRpcRequest::new(id, request)))
}

/// The upstream side: replies to what gavel asked.
impl Typed for RoleClient {
    fn sent(msg: &TxJsonRpcMessage<Self>, asked: &mut Asked) {
        use rmcp::model::ClientRequest as R;
        let JsonRpcMessage::Request(r) = msg else {
            return;
        };
        let expect = match &r.request {
            R::CallToolRequest(_) => Expect::CallTool,
            R::GetPromptRequest(_) => Expect::GetPrompt,
            R::ReadResourceRequest(_) => Expect::ReadResource,
            R::ListToolsRequest(_) => Expect::ListTools,
            R::ListPromptsRequest(_) => Expect::ListPrompts,
            R::ListResourcesRequest(_) => Expect::ListResources,
            R::ListResourceTemplatesRequest(_) => Expect::ListResourceTemplates,
            _ => return,
        };
        if asked.0.len() >= MAX_ASKED {
            asked.0.clear();
        }
        asked.0.insert(r.id.clone(), expect);
    }

    fn read(body: &[u8], asked: &mut Asked) -> Option<RxJsonRpcMessage<Self>> {
        let h = head(body)?;
        // Any reply settles its request, read here or not.
        let expect = match (&h.id, h.method.is_some(), h.result || h.error) {
            (Some(id), false, true) => asked.0.remove(id)?,
            _ => return None,
        };
        if h.error {
            return None;
        }
        let result = read_result(body, expect)?;
        Some(JsonRpcMessage::Response(JsonRpcResponse {
            jsonrpc: Default::default(),
            id: h.id?,
            result,
        }))
    }
}

/// A reply's `result` read as what its request asked for.
fn read_result(body: &[u8], expect: Expect) -> Option<ServerResult> {
    fn of<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<T> {
        serde_json::from_slice::<ResultOf<T>>(body)
            .ok()
            .map(|r| r.result)
    }
    Some(match expect {
        Expect::CallTool => ServerResult::CallToolResult(of::<CallToolResult>(body)?),
        Expect::GetPrompt => ServerResult::GetPromptResult(of::<GetPromptResult>(body)?),
        Expect::ReadResource => ServerResult::ReadResourceResult(of::<ReadResourceResult>(body)?),
        Expect::ListTools => ServerResult::ListToolsResult(of::<ListToolsResult>(body)?),
        Expect::ListPrompts => ServerResult::ListPromptsResult(of::<ListPromptsResult>(body)?),
        Expect::ListResources => {
            ServerResult::ListResourcesResult(of::<ListResourcesResult>(body)?)
        }
        Expect::ListResourceTemplates => {
            ServerResult::ListResourceTemplatesResult(of::<ListResourceTemplatesResult>(body)?)
        }
    })
}

#[cfg(test)]
#[path = "typed_tests.rs"]
mod tests;
