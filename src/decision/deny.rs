//! What the agent sees when it is denied.
//!
//! A denied `tools/call` is a `CallToolResult{isError:true}` (the spec's channel
//! for failures the model should read and act on), never a JSON-RPC error: text
//! a model can act on, the decision in `_meta["dev.gavel/decision"]`, the
//! SEP-2643 envelope in `_meta["io.modelcontextprotocol/authorization"]`, and
//! the decision as `structuredContent` only when the tool declares no
//! `outputSchema` (clients validate structuredContent against it even on
//! errors). Other denied requests get a JSON-RPC error with code
//! [`DENIED_CODE`] and the same decision in `data`.

use rmcp::model::{CallToolResult, ContentBlock, ErrorCode, ErrorData, MetaObject};
use serde_json::{Value, json};

use super::{Decision, Disclosure};

/// JSON-RPC code for a denied non-tool request. Outside -32768..-32000 (the
/// JSON-RPC and MCP reserved ranges), like ToolHive's 403; documented in
/// docs/denials.md.
pub const DENIED_CODE: i32 = 403;
pub const META_DECISION: &str = "dev.gavel/decision";
pub const META_AUTHZ: &str = "io.modelcontextprotocol/authorization";

/// The decision as the agent may see it: everything when disclosure is
/// `explain`; only the verdict and ids when it is `withhold`.
pub fn visible_decision(d: &Decision) -> Value {
    match d.disclosure {
        Disclosure::Explain => serde_json::to_value(d).unwrap_or(Value::Null),
        Disclosure::Withhold => json!({
            "allow": d.allow,
            "decision_id": d.decision_id,
            "remediation": "undisclosed",
            "disclosure": "withhold",
        }),
    }
}

/// SEP-2643 structured authorization denial envelope.
pub fn authorization_envelope(d: &Decision) -> Value {
    let remediation = match d.disclosure {
        Disclosure::Withhold => "undisclosed",
        Disclosure::Explain if d.remediation.is_some() || d.appeal_path.is_some() => "available",
        Disclosure::Explain => "unavailable",
    };
    let mut env = json!({
        "reason": "insufficient_authorization",
        "remediation": remediation,
        "authorizationContextId": d.decision_id,
    });
    if d.disclosure == Disclosure::Explain
        && let Some(appeal) = &d.appeal_path
        && (appeal.starts_with("https://") || appeal.starts_with("http://"))
    {
        env["remediationHints"] = json!([{ "type": "url", "url": appeal }]);
    }
    env
}

/// Text a model can act on: what was denied, why, what to do, where to appeal,
/// and not to work around it.
pub fn denial_text(d: &Decision, what: &str) -> String {
    if d.disclosure == Disclosure::Withhold {
        return format!(
            "Denied by policy: {what} is not permitted. The policy withholds the details. \
             Do not try to reach the same result another way; tell the user this action is not permitted \
             (decision {}).",
            d.decision_id.as_deref().unwrap_or("-")
        );
    }
    let mut s = format!("Denied by policy: {what} was refused.\n");
    let reasons: Vec<String> = d
        .reasons
        .iter()
        .map(|code| match d.reason_texts.get(code) {
            Some(text) => format!("{code} ({text})"),
            None => code.clone(),
        })
        .collect();
    if !reasons.is_empty() {
        s.push_str(&format!("Why: {}\n", reasons.join("; ")));
    }
    if let Some(r) = &d.remediation {
        s.push_str(&format!("What to do: {r}\n"));
    }
    if let Some(secs) = d.retry_after_seconds {
        s.push_str(&format!(
            "Retry after: {secs:.1} s (rate limit; {} calls left now)\n",
            d.rate_limit_remaining.unwrap_or(0)
        ));
    }
    if let Some(a) = &d.appeal_path {
        s.push_str(&format!("Appeal: {a}\n"));
    }
    if let Some(v) = &d.policy_version {
        s.push_str(&format!("Policy version: {v}\n"));
    }
    if !d.matched_rules.is_empty() {
        s.push_str(&format!("Matched rules: {}\n", d.matched_rules.join(", ")));
    }
    for m in &d.policy_metadata {
        let mut said = Vec::new();
        if let Some(v) = &m.policy_version {
            said.push(format!("version {v}"));
        }
        if !m.matched_rules.is_empty() {
            said.push(format!("matched rules {}", m.matched_rules.join(", ")));
        }
        if let Some(n) = m.rate_limit_remaining {
            said.push(format!("rate limit remaining {n}"));
        }
        if !said.is_empty() {
            s.push_str(&format!(
                "Policy {} reports: {}\n",
                m.bundle,
                said.join("; ")
            ));
        }
    }
    s.push_str(&format!(
        "Do not try to work around this denial with other tools or different arguments; \
         explain it to the user (decision {}).",
        d.decision_id.as_deref().unwrap_or("-")
    ));
    s
}

/// The `tools/call` answer for a denied call.
pub fn tool_denial(d: &Decision, tool: &str, has_output_schema: bool) -> CallToolResult {
    tool_error(d, &format!("the call to tool {tool:?}"), has_output_schema)
}

/// A `tools/call` answer carrying the denial `d` of `what` (the call, or
/// its result): an `isError` result the model reads, the decision in
/// `_meta` (and in `structuredContent` when the tool declares no output
/// schema, which its result would otherwise have to match).
pub fn tool_error(d: &Decision, what: &str, has_output_schema: bool) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(denial_text(d, what))]);
    let visible = visible_decision(d);
    if !has_output_schema {
        result.structured_content = Some(visible.clone());
    }
    let mut meta = MetaObject::new();
    meta.0.insert(META_DECISION.into(), visible);
    meta.0.insert(META_AUTHZ.into(), authorization_envelope(d));
    result.meta = Some(meta);
    result
}

/// The JSON-RPC error for a denied non-tool request.
pub fn request_denial(d: &Decision, what: &str) -> ErrorData {
    let mut data = json!({ "decision": visible_decision(d) });
    data[META_AUTHZ] = authorization_envelope(d);
    ErrorData::new(ErrorCode(DENIED_CODE), denial_text(d, what), Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> Decision {
        Decision {
            allow: false,
            decision_id: Some("d-1".into()),
            reasons: vec!["data_class_unauthorized_for_user".into()],
            reason_texts: [(
                "data_class_unauthorized_for_user".to_string(),
                "the file holds PII".to_string(),
            )]
            .into(),
            remediation: Some("ask for pii access".into()),
            appeal_path: Some("https://example.test/appeal".into()),
            policy_version: Some("fs@1.2.0".into()),
            matched_rules: vec!["data.mcp.fs.decision".into()],
            ..Default::default()
        }
    }

    #[test]
    fn tool_denial_carries_everything_when_explained() {
        let r = tool_denial(&denied(), "fs__read", false);
        assert_eq!(r.is_error, Some(true));
        let v = serde_json::to_value(&r).unwrap();
        let text = v["content"][0]["text"].as_str().unwrap();
        for needle in [
            "fs__read",
            "the file holds PII",
            "ask for pii access",
            "https://example.test/appeal",
            "fs@1.2.0",
            "data.mcp.fs.decision",
            "Do not try to work around",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(
            v["structuredContent"]["reasons"][0],
            "data_class_unauthorized_for_user"
        );
        assert_eq!(
            v["_meta"][META_DECISION]["appeal_path"],
            "https://example.test/appeal"
        );
        assert_eq!(v["_meta"][META_AUTHZ]["remediation"], "available");
        assert_eq!(v["_meta"][META_AUTHZ]["authorizationContextId"], "d-1");
        assert_eq!(v["_meta"][META_AUTHZ]["remediationHints"][0]["type"], "url");
    }

    #[test]
    fn output_schema_tools_get_no_structured_content() {
        let r = tool_denial(&denied(), "t", true);
        assert!(r.structured_content.is_none());
        assert!(r.meta.unwrap().0.contains_key(META_DECISION));
    }

    #[test]
    fn withhold_hides_reasons_everywhere_the_agent_looks() {
        let mut d = denied();
        d.disclosure = Disclosure::Withhold;
        let v = serde_json::to_value(tool_denial(&d, "t", false)).unwrap();
        let all = v.to_string();
        assert!(!all.contains("PII") && !all.contains("pii") && !all.contains("appeal"));
        assert_eq!(v["_meta"][META_AUTHZ]["remediation"], "undisclosed");
    }

    #[test]
    fn request_denial_uses_a_code_outside_reserved_ranges() {
        let e = request_denial(&denied(), "resources/read of x");
        assert!(!(-32768..=-32000).contains(&e.code.0));
        assert_eq!(
            e.data.unwrap()["decision"]["reasons"][0],
            "data_class_unauthorized_for_user"
        );
    }
}
