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
    /// as of the table's last build: what the table shows of the server's
    /// is as many as it lists (an item hidden or withheld is not shown as
    /// the server's).
    pub fn shows_whole(&self, server: &str, kind: ListKind) -> bool {
        let t = self.table();
        let Some(lists) = t.sources.get(server) else {
            return false;
        };
        let of = |route: Option<&String>| route.is_some_and(|s| s == server);
        let (shown, listed) = match kind {
            ListKind::Tools => (
                t.tools
                    .iter()
                    .filter(|x| of(t.tool_routes.get(x.name.as_ref()).map(|r| &r.server)))
                    .count(),
                lists.tools.len(),
            ),
            ListKind::Prompts => (
                t.prompts
                    .iter()
                    .filter(|x| of(t.prompt_routes.get(&x.name).map(|r| &r.server)))
                    .count(),
                lists.prompts.len(),
            ),
            ListKind::Resources => (
                t.resources
                    .iter()
                    .filter(|x| of(t.resource_routes.get(&x.uri)))
                    .count(),
                lists.resources.len(),
            ),
        };
        shown == listed
    }
}
