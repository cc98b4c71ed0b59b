//! Whether an upstream's own list-change notice may reach this session's
//! host when nothing it sees changed.
//!
//! gavel tells a host of changes in the lists it is shown — the aggregate,
//! after the policy's `visible` rules, static denials and the result rules
//! on resources. An upstream may also announce a change that changed
//! nothing gavel can see (a no-op notice, a hook that only notifies): a
//! transparent proxy passes that on as the server sent it. It may do so
//! only when the host is shown that server's whole list of that kind:
//! otherwise the notice could be about an item the policy hides from the
//! host, and passing it on would tell the host that hidden things came or
//! went.

use crate::upstream::client::ListKind;

use super::Router;

impl Router {
    /// This session is shown every item of `kind` that `server` lists
    /// (nothing hidden by the policy, withheld by a collision or reserved),
    /// as of the table's last build.
    pub fn shows_whole(&self, server: &str, kind: ListKind) -> bool {
        let t = self.table();
        let Some(lists) = t.sources.get(server) else {
            return false;
        };
        let named = (format!("(server {server})"), format!("(server {server},"));
        if t.withheld
            .iter()
            .any(|w| w.ends_with(&named.0) || w.contains(&named.1))
        {
            return false;
        }
        let mine = |s: &String| s == server;
        match kind {
            ListKind::Tools => {
                let shown = t
                    .tools
                    .iter()
                    .filter(|x| {
                        t.tool_routes
                            .get(x.name.as_ref())
                            .is_some_and(|r| mine(&r.server))
                    })
                    .count();
                shown == lists.tools.len()
            }
            ListKind::Prompts => {
                let shown = t
                    .prompts
                    .iter()
                    .filter(|x| {
                        t.prompt_routes
                            .get(&x.name)
                            .is_some_and(|r| mine(&r.server))
                    })
                    .count();
                shown == lists.prompts.len()
            }
            ListKind::Resources => {
                let shown = t
                    .resources
                    .iter()
                    .filter(|x| t.resource_routes.get(&x.uri).is_some_and(mine))
                    .count();
                shown == lists.resources.len()
            }
        }
    }
}
