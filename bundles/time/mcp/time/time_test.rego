package mcp.time

test_clock_allowed if {
	decision.allow with input as {"action": {"type": "tool_call", "tool": "get_current_time"}}
}

test_other_refused if {
	not decision.allow with input as {"action": {"type": "prompt_get", "tool": "x"}}
}
