//! Aggregation and routing for one host session: the name table that maps what
//! the host sees to (server, upstream name), rebuilt whenever an upstream's
//! lists change.
//!
//! Naming depends only on how many servers are enabled in the config: one →
//! names unchanged; more → `<prefix>__<name>` for tools and prompts. Resource
//! URIs are never rewritten (rewriting breaks URIs inside results and
//! `resource_link`s); they route by exact URI, then by template, then to the
//! only resource-capable server. Routing is always by table lookup, never by
//! splitting a name on `__`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::decision::Enforcer;
use crate::sync::Recover;
use crate::upstream::uri_template::UriTemplate;
use crate::upstream::{Upstream, UpstreamLists};
use serde_json::{Value, json};

mod notice;
pub mod reserved;
mod resources;
mod unlisted;

pub const SEPARATOR: &str = "__";

#[derive(Debug, Clone)]
pub struct ToolRoute {
    pub server: String,
    pub name: String,
    pub tool: Arc<Tool>,
    /// The tool's annotations as the input contract has them
    /// ([`annotations_value`]), made once when the table is built.
    pub annotations: Value,
    pub digest: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PromptRoute {
    pub server: String,
    pub name: String,
}

/// Everything the host can see and how it routes. Immutable; swapped whole.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub tools: Vec<Tool>,
    pub tool_routes: HashMap<String, ToolRoute>,
    pub prompts: Vec<Prompt>,
    pub prompt_routes: HashMap<String, PromptRoute>,
    pub resources: Vec<Resource>,
    pub resource_routes: HashMap<String, String>,
    pub templates: Vec<ResourceTemplate>,
    template_routes: Vec<(UriTemplate, String)>,
    /// Names withheld because another server already exposes them.
    pub withheld: Vec<String>,
    /// The rebuild at which each list kind (tools, resources, prompts) last
    /// changed: what the host has been told of is compared against it.
    changed_at: [u64; 3],
    /// The upstream lists this table was built from (each swapped whole on
    /// a re-fetch), so [`Router::refresh`] can tell whether it is current.
    sources: BTreeMap<String, Arc<UpstreamLists>>,
}

impl RouteTable {
    pub fn route_resource(
        &self,
        uri: &str,
        upstreams: &BTreeMap<String, Arc<Upstream>>,
    ) -> Option<String> {
        if let Some(s) = self.resource_routes.get(uri) {
            return Some(s.clone());
        }
        if let Some((_, s)) = self.template_routes.iter().find(|(t, _)| t.matches(uri)) {
            return Some(s.clone());
        }
        // A URI nobody listed (dynamic resources): the only server that serves
        // resources at all may still own it.
        let mut capable = upstreams.values().filter(|u| {
            u.connection()
                .is_some_and(|c| c.capabilities.resources.is_some())
        });
        match (capable.next(), capable.next()) {
            (Some(one), None) => Some(one.name.clone()),
            _ => None,
        }
    }

    /// Which server owns a resource template (for `completion/complete`).
    pub fn route_template(&self, template: &str) -> Option<String> {
        self.templates
            .iter()
            .zip(self.template_routes.iter())
            .find(|(t, _)| t.uri_template == template)
            .map(|(_, (_, s))| s.clone())
    }
}

/// Per-session router: the upstreams, the naming rule and the current table.
pub struct Router {
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    prefixes: BTreeMap<String, Option<String>>,
    table: RwLock<Arc<RouteTable>>,
    /// Which server first claimed each exposed name: on a later collision the
    /// first claimant keeps it and the newcomer is withheld.
    claims: Mutex<HashMap<String, String>>,
    first_build_done: std::sync::atomic::AtomicBool,
    /// Rebuilds that changed something, counted.
    generation: std::sync::atomic::AtomicU64,
    /// Per list kind, the change the host knows of: announced, or answered
    /// in a list response. Any rebuild may find a change (a request waiting
    /// for a starting server rebuilds too), so what was found is never lost
    /// between a rebuild and the announcement: see
    /// [`Router::take_unannounced`].
    known: Mutex<[u64; 3]>,
    /// Agent tools on: upstream names in gavel's reserved space
    /// ([`reserved`]) are withheld.
    reserve: bool,
    /// Each server's resources as this session is shown them, decided by
    /// its result rules once per upstream list and policy ([`resources`]).
    shown: resources::ShownCache,
}

/// The list kinds of [`Router::rebuild`]'s answer, as indices.
pub const TOOLS: usize = 0;
pub const RESOURCES: usize = 1;
pub const PROMPTS: usize = 2;

impl Router {
    pub fn new(upstreams: BTreeMap<String, Arc<Upstream>>, prefixed: bool) -> Self {
        let prefixes = upstreams
            .iter()
            .map(|(n, u)| (n.clone(), prefixed.then(|| u.cfg.prefix.clone())))
            .collect();
        Self {
            upstreams,
            prefixes,
            table: RwLock::new(Arc::new(RouteTable::default())),
            claims: Mutex::new(HashMap::new()),
            first_build_done: false.into(),
            generation: 0.into(),
            known: Mutex::new([0; 3]),
            reserve: false,
            shown: Default::default(),
        }
    }

    /// Withholds upstream names in gavel's reserved space ([`reserved`]):
    /// set when the session offers gavel's agent tools.
    pub fn reserving(mut self, on: bool) -> Self {
        self.reserve = on;
        self
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().recover().clone()
    }

    /// The upstream a tool name missing from the table would belong to,
    /// when that upstream is not connected (down, starting, or refusing
    /// its era): with prefixes, the server whose `<prefix>__` the name
    /// starts with; without, the one server. Only to say why a call cannot
    /// be routed ("server X is down: …" rather than "Unknown tool") —
    /// routing itself is by table (invariant 10).
    pub fn unready_owner(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams
            .iter()
            .find(|(server, up)| {
                up.connection().is_none()
                    && match self.prefixes.get(*server).and_then(|p| p.as_deref()) {
                        Some(p) => name
                            .strip_prefix(p)
                            .is_some_and(|rest| rest.starts_with(SEPARATOR)),
                        None => self.upstreams.len() == 1,
                    }
            })
            .map(|(_, up)| up)
    }

    pub fn exposed_name(&self, server: &str, name: &str) -> String {
        match self.prefixes.get(server).and_then(|p| p.as_deref()) {
            Some(p) => format!("{p}{SEPARATOR}{name}"),
            None => name.to_string(),
        }
    }

    /// Rebuilds the table from every ready upstream's lists. Returns which list
    /// kinds changed (tools, resources, prompts) so the host is told only then.
    /// `ctx` is the session's (its identity decides what `visible` shows).
    pub fn rebuild(
        &self,
        enforcer: &Enforcer,
        ctx: &crate::decision::DecisionContext,
    ) -> (bool, bool, bool) {
        let mut claims = self.claims.lock().recover();
        let mut b = Building {
            t: RouteTable::default(),
            still_claimed: HashMap::new(),
            startup: !self
                .first_build_done
                .swap(true, std::sync::atomic::Ordering::Relaxed),
            reserve: self.reserve,
        };
        // Previous claimants first, so an arriving server never displaces one
        // that was already listed.
        let mut order: Vec<&String> = self.upstreams.keys().collect();
        order.sort_by_key(|s| !claims.values().any(|c| c == *s));
        for server in order {
            let lists = self.upstreams[server].lists();
            b.t.sources.insert(server.clone(), lists.clone());
            self.add_tools(&mut b, server, &lists, enforcer, ctx);
            // Prompts and resources of a server this session may not use
            // are routed (a request gets the denial) but not listed.
            let listed = enforcer.server_listed(server, ctx);
            self.add_prompts(&mut b, server, &lists, listed);
            let shown = match listed {
                true => self.shown_resources(server, &lists, enforcer, ctx),
                false => Some(Arc::default()),
            };
            b.add_resources(server, &lists, shown.as_deref().map(Vec::as_slice), listed);
        }
        *claims = b.still_claimed;
        // The claims lock is held until the new table is in place: rebuilds
        // run one at a time, so an older build never replaces a newer one
        // and each compares against the table it replaces.
        let changed = self.install(b.t);
        drop(claims);
        changed
    }

    /// Routes `server`'s tools; lists those the static rules do not deny.
    fn add_tools(
        &self,
        b: &mut Building,
        server: &str,
        lists: &UpstreamLists,
        enforcer: &Enforcer,
        ctx: &crate::decision::DecisionContext,
    ) {
        for tool in &lists.tools {
            let annotations = annotations_value(tool);
            let listed = enforcer.tool_listed(server, &tool.name, &annotations, ctx);
            let exposed = self.exposed_name(server, &tool.name);
            if self.reserve && reserved::is_reserved_tool(&exposed) {
                reserved::withhold(&mut b.t.withheld, &exposed, server, b.startup);
                continue;
            }
            if let Some(owner) = claim(&mut b.still_claimed, &exposed, server) {
                report_collision(&mut b.t.withheld, &exposed, server, &owner, b.startup);
                continue;
            }
            let mut shown = tool.clone();
            shown.name = exposed.clone().into();
            b.t.tool_routes.insert(
                exposed,
                ToolRoute {
                    server: server.to_string(),
                    name: tool.name.to_string(),
                    tool: Arc::new(tool.clone()),
                    annotations,
                    digest: lists.tool_digests.get(tool.name.as_ref()).cloned(),
                },
            );
            // A statically denied tool keeps its route (a call to it gets
            // the structured denial) but is not listed.
            if listed {
                b.t.tools.push(shown);
            }
        }
    }

    fn add_prompts(&self, b: &mut Building, server: &str, lists: &UpstreamLists, listed: bool) {
        for prompt in &lists.prompts {
            let exposed = self.exposed_name(server, &prompt.name);
            let key = format!("prompt:{exposed}");
            if let Some(owner) = claim(&mut b.still_claimed, &key, server) {
                report_collision(&mut b.t.withheld, &key, server, &owner, b.startup);
                continue;
            }
            let mut shown = prompt.clone();
            shown.name = exposed.clone();
            b.t.prompt_routes.insert(
                exposed,
                PromptRoute {
                    server: server.to_string(),
                    name: prompt.name.clone(),
                },
            );
            if listed {
                b.t.prompts.push(shown);
            }
        }
    }

    /// Swaps in the new table; which list kinds changed (tools, resources,
    /// prompts), each marked with a new generation.
    fn install(&self, mut t: RouteTable) -> (bool, bool, bool) {
        let changed = list_changes(&self.table(), &t);
        let mut slot = self.table.write().recover();
        t.changed_at = slot.changed_at;
        if changed.0 || changed.1 || changed.2 {
            let g = self
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            for (kind, c) in [changed.0, changed.1, changed.2].into_iter().enumerate() {
                if c {
                    t.changed_at[kind] = g;
                }
            }
        }
        *slot = Arc::new(t);
        changed
    }

    /// Rebuilds only if an upstream's lists changed since the table was
    /// built (a server that just became ready, a re-fetch not yet picked
    /// up). Routing depends on nothing else, so a request that only routes
    /// (a resource read, a prompt, a completion, an unknown tool's second
    /// look) never pays for a rebuild, whose `visible` evaluations cost one
    /// policy evaluation per tool. A list answer rebuilds in full instead:
    /// what it shows also depends on the policy and the clock.
    pub fn refresh(
        &self,
        enforcer: &Enforcer,
        ctx: impl FnOnce() -> crate::decision::DecisionContext,
    ) {
        if !self.is_current() {
            self.rebuild(enforcer, &ctx());
        }
    }

    fn is_current(&self) -> bool {
        let t = self.table();
        t.sources.len() == self.upstreams.len()
            && self.upstreams.iter().all(|(name, up)| {
                t.sources
                    .get(name)
                    .is_some_and(|built| Arc::ptr_eq(built, &up.lists()))
            })
    }

    /// The host was just sent `kind`'s list from `table`: it knows that
    /// list, so a change that table already holds needs no announcement.
    pub fn answered(&self, kind: usize, table: &RouteTable) {
        let mut known = self.known.lock().recover();
        known[kind] = known[kind].max(table.changed_at[kind]);
    }

    /// Which list kinds changed since the host last heard of them (by an
    /// announcement or a list answer), now marked as told: what to
    /// announce. Whichever rebuild found the change — the listener's own or
    /// one a request made while waiting for a starting server — it is
    /// announced once, unless the host already listed it.
    pub fn take_unannounced(&self) -> (bool, bool, bool) {
        let t = self.table();
        let mut known = self.known.lock().recover();
        let mut out = [false; 3];
        for kind in [TOOLS, RESOURCES, PROMPTS] {
            if t.changed_at[kind] > known[kind] {
                out[kind] = true;
                known[kind] = t.changed_at[kind];
            }
        }
        (out[0], out[1], out[2])
    }
}

fn tool_names(tools: &[Tool]) -> Vec<&str> {
    tools.iter().map(|t| t.name.as_ref()).collect()
}

fn tools_differ(old: &RouteTable, new: &RouteTable) -> bool {
    new.tool_routes
        .iter()
        .any(|(k, r)| old.tool_routes.get(k).map(|o| &o.digest) != Some(&r.digest))
}

/// A table being built, with the names claimed so far.
struct Building {
    t: RouteTable,
    still_claimed: HashMap<String, String>,
    /// The first build: collisions are reported at startup level.
    startup: bool,
    /// [`Router::reserving`].
    reserve: bool,
}

impl Building {
    /// Routes `server`'s resources (the first server to list a URI keeps
    /// it) and templates; lists those of `shown` (what its result rules
    /// show this session; `None`: all), each as `shown` has it. A resource
    /// left out keeps its route: a read of it is decided like any other.
    fn add_resources(
        &mut self,
        server: &str,
        lists: &UpstreamLists,
        shown: Option<&[Resource]>,
        listed: bool,
    ) {
        let shown: Option<HashMap<&str, &Resource>> =
            shown.map(|s| s.iter().map(|r| (r.uri.as_str(), r)).collect());
        for r in &lists.resources {
            if self.reserve && reserved::is_reserved_uri(&r.uri) {
                reserved::withhold(&mut self.t.withheld, &r.uri, server, self.startup);
                continue;
            }
            if self.t.resource_routes.contains_key(&r.uri) {
                report_collision(
                    &mut self.t.withheld,
                    &r.uri,
                    server,
                    "another server",
                    self.startup,
                );
                continue;
            }
            self.t
                .resource_routes
                .insert(r.uri.clone(), server.to_string());
            match &shown {
                None => self.t.resources.push(r.clone()),
                Some(s) => {
                    if let Some(r) = s.get(r.uri.as_str()) {
                        self.t.resources.push((*r).clone());
                    }
                }
            }
        }
        for tpl in &lists.templates {
            if self.reserve && reserved::is_reserved_uri(&tpl.uri_template) {
                reserved::withhold(
                    &mut self.t.withheld,
                    &tpl.uri_template,
                    server,
                    self.startup,
                );
                continue;
            }
            self.t
                .template_routes
                .push((UriTemplate::parse(&tpl.uri_template), server.to_string()));
            if listed {
                self.t.templates.push(tpl.clone());
            }
        }
    }
}

/// Which list kinds differ between two tables (tools, resources, prompts).
fn list_changes(old: &RouteTable, t: &RouteTable) -> (bool, bool, bool) {
    (
        tool_names(&old.tools) != tool_names(&t.tools) || tools_differ(old, t),
        old.resources.len() != t.resources.len()
            || old.templates.len() != t.templates.len()
            || old
                .resources
                .iter()
                .zip(&t.resources)
                .any(|(a, b)| a.uri != b.uri),
        old.prompts
            .iter()
            .map(|p| &p.name)
            .ne(t.prompts.iter().map(|p| &p.name)),
    )
}

/// Claims `key` for `server`; `Some(owner)` if another server holds it.
fn claim(now: &mut HashMap<String, String>, key: &str, server: &str) -> Option<String> {
    match now.get(key) {
        Some(owner) if owner != server => Some(owner.clone()),
        Some(_) => None,
        None => {
            now.insert(key.to_string(), server.to_string());
            None
        }
    }
}

fn report_collision(
    withheld: &mut Vec<String>,
    name: &str,
    server: &str,
    owner: &str,
    startup: bool,
) {
    let msg = format!(
        "{name:?} from server {server:?} collides with the same name from {owner:?}; withheld"
    );
    if startup {
        tracing::error!(
            "name collision at startup: {msg}. Give the servers distinct prefixes in servers.toml"
        );
    } else {
        tracing::warn!("name collision: {msg}");
    }
    withheld.push(format!("{name} (server {server})"));
}

/// A tool's annotations as the input contract has them: an object, empty
/// when the upstream declared none.
pub fn annotations_value(tool: &Tool) -> Value {
    tool.annotations
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok())
        .unwrap_or_else(|| json!({}))
}

#[cfg(test)]
mod tests;
