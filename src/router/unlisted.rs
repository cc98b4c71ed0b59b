//! Calls to a tool no upstream lists, for servers configured to take them
//! (`servers.NAME.unlisted_tools = "forward"`). Some servers serve tools
//! they do not list (hooks, tools revealed to some clients only — the
//! conformance suite's own reference server does); a transparent proxy in
//! front of one should not be the reason such a call fails. It stays off
//! by default: gavel knows nothing of an unlisted tool (no schema, no
//! annotations, no definition digest), so only the operator can say the
//! policy is written for it.
//!
//! The name maps to a server the way listed names do: unchanged with one
//! server; with several, only `<prefix>__<tool>` of a server that forwards
//! (its own prefix, compared whole: never a split on `__`). A name in
//! gavel's reserved space (agent tools) never maps. What is routed is only
//! routed: the call is decided by the server's policy like any other, with
//! `input.action.annotations` `{}` and no `tool_digest`.

use std::sync::Arc;

use rmcp::model::Tool;
use serde_json::json;

use super::{Router, SEPARATOR, ToolRoute, reserved};

impl Router {
    /// The route of `name`, which no upstream lists, to the forwarding
    /// server it can belong to; `None` when none can take it.
    pub fn unlisted_route(&self, name: &str) -> Option<ToolRoute> {
        if name.is_empty() || (self.reserve && reserved::is_reserved_tool(name)) {
            return None;
        }
        let (server, tool) = self.upstreams.iter().find_map(|(server, up)| {
            if !up.cfg.forward_unlisted {
                return None;
            }
            let tool = match self.prefixes.get(server).and_then(|p| p.as_deref()) {
                Some(p) => name.strip_prefix(p)?.strip_prefix(SEPARATOR)?,
                None if self.upstreams.len() == 1 => name,
                None => return None,
            };
            (!tool.is_empty()).then_some((server, tool))
        })?;
        let schema = serde_json::Map::from_iter([("type".to_string(), json!("object"))]);
        let definition = Tool::new(tool.to_string(), String::new(), Arc::new(schema));
        Some(ToolRoute {
            server: server.clone(),
            name: tool.to_string(),
            tool: Arc::new(definition),
            annotations: json!({}),
            digest: None,
        })
    }
}
