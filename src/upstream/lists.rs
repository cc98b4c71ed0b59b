//! What one upstream offers, fetched in full (every page) so the host sees one
//! complete list. The response cache is off for upstream peers (it can return
//! stale lists as success when the upstream fails), so every fetch is real.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::{PaginatedRequestParams, Prompt, Resource, ResourceTemplate, Tool};
use rmcp::service::{Peer, RoleClient};
use sha2::{Digest, Sha256};

use super::ListKind;

/// Bounds on what one upstream may list: a server that pages forever or
/// repeats its cursor must not hang or exhaust gavel.
const MAX_PAGES: usize = 1000;
const MAX_ITEMS: usize = 20_000;

#[derive(Debug, Default, Clone)]
pub struct UpstreamLists {
    pub tools: Vec<Tool>,
    /// sha256 of each tool's canonical definition (rug-pull detection).
    pub tool_digests: HashMap<String, String>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
}

/// sha256 over the tool definition as canonical JSON (sorted keys: serde_json
/// maps are BTreeMaps in this build).
pub fn tool_digest(tool: &Tool) -> String {
    let v = serde_json::to_value(tool).unwrap_or_default();
    let bytes = serde_json::to_vec(&v).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

macro_rules! fetch_all {
    ($peer:expr, $method:ident, $field:ident, $timeout:expr, $what:expr) => {{
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0usize;
        loop {
            pages += 1;
            let params = cursor.clone().map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            let page = tokio::time::timeout($timeout, $peer.$method(params))
                .await
                .map_err(|_| format!("{} did not answer within {:?}", $what, $timeout))?
                .map_err(|e| format!("{} failed: {e}", $what))?;
            out.extend(page.$field);
            match page.next_cursor {
                Some(next) if Some(&next) == cursor.as_ref() => {
                    tracing::warn!("{} repeated its cursor {next:?}; stopping at {} items", $what, out.len());
                    break;
                }
                Some(next) if pages < MAX_PAGES && out.len() < MAX_ITEMS => cursor = Some(next),
                Some(_) => {
                    tracing::warn!("{} has more than {MAX_PAGES} pages or {MAX_ITEMS} items; the rest is not listed", $what);
                    break;
                }
                None => break,
            }
        }
        out.truncate(MAX_ITEMS);
        Ok::<_, String>(out)
    }};
}

pub async fn fetch(
    peer: &Peer<RoleClient>,
    caps: &rmcp::model::ServerCapabilities,
    kind: ListKind,
    into: &mut UpstreamLists,
    timeout: Duration,
) -> Result<(), String> {
    match kind {
        ListKind::Tools if caps.tools.is_some() => {
            into.tools = fetch_all!(peer, list_tools, tools, timeout, "tools/list")?;
            into.tool_digests = into
                .tools
                .iter()
                .map(|t| (t.name.to_string(), tool_digest(t)))
                .collect();
        }
        ListKind::Resources if caps.resources.is_some() => {
            into.resources =
                fetch_all!(peer, list_resources, resources, timeout, "resources/list")?;
            into.templates = fetch_all!(
                peer,
                list_resource_templates,
                resource_templates,
                timeout,
                "resources/templates/list"
            )?;
            for t in &into.templates {
                let parsed = crate::upstream::uri_template::UriTemplate::parse(&t.uri_template);
                if let Some(problem) = parsed.problem() {
                    tracing::warn!(
                        "resources/templates/list: template {:?}…: {problem}; shorten it upstream",
                        t.uri_template.chars().take(80).collect::<String>()
                    );
                }
            }
        }
        ListKind::Prompts if caps.prompts.is_some() => {
            into.prompts = fetch_all!(peer, list_prompts, prompts, timeout, "prompts/list")?;
        }
        _ => {}
    }
    Ok(())
}
