//! Data flow across a session: an answer the host gets adds the data
//! classes it carries to the session's `input.context.data_classes_seen`
//! (`decision::seen`), so the session's later decisions can refuse to send
//! data out after it read private data. One call, [`Session::saw`], made by
//! the handler where an answer is handed to the host.

use rmcp::model::ServerResult;
use serde_json::Value;

use super::Session;
use crate::decision::Permit;

impl Session {
    /// `result`, the upstream's answer to the request `permit` allowed
    /// (`server`'s `tool`, or the resource URI read), is what the host now
    /// gets. An error result adds nothing (nothing was read); a result that
    /// policy withholds must not be passed here. The answer is serialized
    /// for the path classifier only when the server's policy classifies by
    /// path.
    pub(super) fn saw(&self, server: &str, tool: &str, permit: &Permit, result: &ServerResult) {
        self.saw_json(server, tool, permit, result, None);
    }

    /// [`Session::saw`] with the result's JSON when the result step already
    /// made it (`json`, [`Session::result_policy_seen`]): not serialized
    /// again for the path classifier.
    pub(super) fn saw_json(
        &self,
        server: &str,
        tool: &str,
        permit: &Permit,
        result: &ServerResult,
        json: Option<Value>,
    ) {
        if let ServerResult::CallToolResult(r) = result
            && r.is_error == Some(true)
        {
            return;
        }
        let enforcer = &self.inner.gw.enforcer;
        let output = enforcer
            .classifies_output(server)
            .then(|| json.or_else(|| serde_json::to_value(result).ok()))
            .flatten();
        self.inner
            .state
            .saw(enforcer, (server, tool), permit, output.as_ref());
    }
}
