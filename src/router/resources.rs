//! What a session is shown of each server's resources: the server's list
//! as its result rules decide it for this session's identity
//! (`decision::result::list`, docs/policy.md "Resource lists"), kept per
//! server until the upstream's resources or the server's policy change — a
//! table rebuild (every `resources/list` answer rebuilds) reuses it instead
//! of evaluating each resource again. A hidden resource keeps its route:
//! listing is not access, and a read of it is decided (request and result
//! rules) like any other.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::Resource;

use super::Router;
use crate::decision::result::list::{ListPolicy, ListVerdict};
use crate::decision::{DecisionContext, Enforcer};
use crate::sync::Recover;
use crate::upstream::UpstreamLists;

/// One server's shown resources, and what they were decided from.
pub(super) struct Shown {
    /// The upstream's lists they were decided from (held: a pointer
    /// compared must not be reused).
    lists: Arc<UpstreamLists>,
    policy: ListPolicy,
    /// `None`: the list as the upstream sent it.
    resources: Option<Arc<Vec<Resource>>>,
}

/// The cache, per server.
pub(super) type ShownCache = std::sync::Mutex<HashMap<String, Shown>>;

impl Router {
    /// `server`'s resources as this session is shown them: `None` for the
    /// list as the upstream sent it (no result rule, or every rule passed
    /// it), else the filtered list (empty when the list was denied or
    /// could not be decided).
    pub(super) fn shown_resources(
        &self,
        server: &str,
        lists: &Arc<UpstreamLists>,
        enforcer: &Enforcer,
        ctx: &DecisionContext,
    ) -> Option<Arc<Vec<Resource>>> {
        if lists.resources.is_empty() {
            return None;
        }
        let Some(policy) = enforcer.resource_list_policy(server, ctx) else {
            self.shown.lock().recover().remove(server);
            return None;
        };
        // The same list re-fetched (an upstream announces changes that
        // change nothing: server-everything does at start) is the same.
        if let Some(s) = self.shown.lock().recover().get(server)
            && s.policy.same(&policy)
            && (Arc::ptr_eq(&s.lists, lists) || s.lists.resources == lists.resources)
        {
            return s.resources.clone();
        }
        let resources = decide(server, lists, &policy, enforcer, ctx);
        self.shown.lock().recover().insert(
            server.to_string(),
            Shown {
                lists: lists.clone(),
                policy,
                resources: resources.clone(),
            },
        );
        resources
    }
}

/// The list decided (one result decision, its record written).
fn decide(
    server: &str,
    lists: &UpstreamLists,
    policy: &ListPolicy,
    enforcer: &Enforcer,
    ctx: &DecisionContext,
) -> Option<Arc<Vec<Resource>>> {
    let as_json: Result<Vec<_>, _> = lists.resources.iter().map(serde_json::to_value).collect();
    let verdict = match as_json {
        Ok(v) => enforcer.decide_resource_list(policy, server, ctx, v),
        Err(e) => {
            tracing::error!(server = %server, "the server's resource list cannot be read for its result rules ({e}); none of its resources are listed");
            return Some(Arc::default());
        }
    };
    match verdict {
        ListVerdict::Unchanged => None,
        // Logged by the enforcer, with the record's decision id.
        ListVerdict::Hidden(_) => Some(Arc::default()),
        ListVerdict::Shown(shown) => {
            let typed: Result<Vec<Resource>, _> =
                shown.into_iter().map(serde_json::from_value).collect();
            Some(Arc::new(typed.unwrap_or_else(|e| {
                tracing::error!(server = %server, "the server's resource list as its result rules left it is no resource list ({e}); none of its resources are listed");
                vec![]
            })))
        }
    }
}
