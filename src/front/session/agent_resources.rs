//! The policy resources of the agent tools: `gavel://policy/<server>`, the
//! plain-language policy of each server this session can see (what `gavel
//! explain --config … --server …` prints, as the caller's identity sees
//! it), so an agent can read the rules it works under. Reading one is
//! decided first (`policy_query`, tool `policy`), like any request.

use rmcp::ErrorData;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

use super::Session;
use crate::decision::{ActionType, deny};

const POLICY_URI: &str = "gavel://policy/";

impl Session {
    /// The policy resources of the servers this session can see (none when
    /// the agent tools are off).
    pub(super) async fn agent_resources(&self) -> Result<Vec<Resource>, ErrorData> {
        if !self.inner.gw.config.agent_tools.enabled() {
            return Ok(vec![]);
        }
        let table = self.listing().await?.table();
        Ok(self
            .visible_servers(&table)
            .into_iter()
            .map(|server| {
                let mut r = Resource::new(
                    format!("{POLICY_URI}{server}"),
                    format!("gavel policy: {server}"),
                );
                r.description = Some(format!(
                    "The rules gavel enforces on server {server:?}, in plain language."
                ));
                r.mime_type = Some("text/plain".into());
                r
            })
            .collect())
    }

    /// Reads a `gavel://` resource; None when `uri` is not one (or the agent
    /// tools are off). A server this session cannot see is an unknown
    /// resource, answered as any other.
    pub(super) async fn agent_read(
        &self,
        uri: &str,
        cx: &RequestContext<RoleServer>,
    ) -> Option<Result<ReadResourceResult, ErrorData>> {
        let mode = self.inner.gw.config.agent_tools;
        if !mode.enabled() {
            return None;
        }
        if !crate::router::reserved::is_reserved_uri(uri) {
            // Under `gavel policy-server` nothing is read from an upstream.
            return (mode == crate::config::AgentToolsMode::Only)
                .then(|| Err(self.serves_upstreams().unwrap_err()));
        }
        Some(self.read_policy(uri, cx).await)
    }

    async fn read_policy(
        &self,
        uri: &str,
        cx: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        let unknown = || {
            ErrorData::resource_not_found(
                format!(
                    "Unknown resource: {uri} (no upstream server lists it or a template matching it)"
                ),
                Some(json!({ "uri": uri })),
            )
        };
        let table = self.listing().await?.table();
        let server = uri
            .strip_prefix(POLICY_URI)
            .filter(|s| self.visible_servers(&table).iter().any(|v| v == s))
            .ok_or_else(unknown)?
            .to_string();
        let action = self.action(
            ActionType::PolicyQuery,
            &server,
            "policy",
            json!({ "uri": uri }),
        );
        if let Err(d) = self.authorize(action, cx).await {
            return Err(deny::request_denial(&d, &format!("reading resource {uri}")));
        }
        let texts = self.inner.gw.policy_texts().cloned().ok_or_else(|| {
            ErrorData::internal_error(
                "this gavel cannot explain its policy (no explainer installed)",
                None,
            )
        })?;
        let config = self.inner.gw.config.clone();
        let identity = self
            .inner
            .state
            .identity
            .get()
            .map(|i| (**i).clone())
            .unwrap_or_else(|| config.identity.clone());
        let text =
            tokio::task::spawn_blocking(move || texts.server_policy(&config, &server, &identity))
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
                .map_err(|e| {
                    ErrorData::internal_error(
                        format!("the policy of {uri} cannot be explained now: {e}"),
                        None,
                    )
                })?;
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )]))
    }
}
