package gavel.workflow

call(ctx) := {"action": {"type": "tool_call", "tool": "t"}, "context": ctx}

test_normal_pace_allowed if {
	decision.allow with input as call({"consecutive_same_tool": 3, "calls_last_minute": 10, "cumulative_tokens": 1000})
}

test_loop_denied if {
	d := decision with input as call({"consecutive_same_tool": 20, "calls_last_minute": 20, "cumulative_tokens": 0})
	d.reasons == ["same_tool_loop"]
}

test_burst_denied if {
	d := decision with input as call({"consecutive_same_tool": 0, "calls_last_minute": 60, "cumulative_tokens": 0})
	d.reasons == ["too_many_calls_per_minute"]
}

test_budget_denied if {
	d := decision with input as call({"consecutive_same_tool": 0, "calls_last_minute": 0, "cumulative_tokens": 200001})
	d.reasons == ["token_budget_exceeded"]
}

test_budget_nearly_spent_is_audited if {
	d := decision with input as {"action": {"type": "tool_call"}, "context": {"consecutive_same_tool": 0, "calls_last_minute": 1, "cumulative_tokens": 10, "budget": {"used": {"calls": 80, "tokens": 0}, "limit": {"calls": 100, "tokens": null}}}}
	d.allow
	d.audit_required
}

test_budget_with_room_is_plain if {
	d := decision with input as {"action": {"type": "tool_call"}, "context": {"consecutive_same_tool": 0, "calls_last_minute": 1, "cumulative_tokens": 10, "budget": {"used": {"calls": 10, "tokens": 0}, "limit": {"calls": 100, "tokens": null}}}}
	d.allow
	not d.audit_required
}
