package mcp.everything

test_echo_allowed if {
	decision.allow with input as {"action": {"type": "tool_call", "tool": "echo", "args": {"message": "hi"}}}
}

test_long_operation_capped if {
	d := decision with input as {"action": {"type": "tool_call", "tool": "trigger-long-running-operation", "args": {"duration": 600}}}
	d.reasons == ["operation_too_long"]
}

test_sampling_refused if {
	d := decision with input as {"action": {"type": "sampling_request", "tool": "sampling/createMessage", "args": {}}}
	d.reasons == ["action_not_permitted"]
}

test_blocked_hidden if {
	not visible with input as {"action": {"type": "tool_call", "tool": "get-env"}}
}

test_unreviewed_tool_refused_and_hidden if {
	d := decision with input as {"action": {"type": "tool_call", "tool": "trigger-sampling-request", "args": {}}}
	d.reasons == ["tool_not_reviewed"]
	not visible with input as {"action": {"type": "tool_call", "tool": "trigger-sampling-request"}}
	visible with input as {"action": {"type": "tool_call", "tool": "get-sum"}}
}

test_blocked_is_blocked_not_unreviewed if {
	d := decision with input as {"action": {"type": "tool_call", "tool": "get-env", "args": {}}}
	d.reasons == ["tool_blocked"]
}
