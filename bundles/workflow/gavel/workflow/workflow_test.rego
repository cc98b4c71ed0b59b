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
	d := decision with input as {"action": {"type": "tool_call"}, "context": {"consecutive_same_tool": 0, "calls_last_minute": 1, "cumulative_tokens": 10, "budget": {"used": {"calls": 80, "tokens": 0}, "limit": {"calls": 100, "tokens": null}, "used_fraction": 0.8}}}
	d.allow
	d.audit_required
}

test_budget_with_room_is_plain if {
	d := decision with input as {"action": {"type": "tool_call"}, "context": {"consecutive_same_tool": 0, "calls_last_minute": 1, "cumulative_tokens": 10, "budget": {"used": {"calls": 10, "tokens": 0}, "limit": {"calls": 100, "tokens": null}, "used_fraction": 0.1}}}
	d.allow
	not d.audit_required
}

# The one-body fast path answers exactly as the full rules do, at and around
# every threshold, with and without a budget, for tool calls and other types.
test_decision_is_full_decision if {
	budgets := [
		null,
		{"used": {"calls": 79, "tokens": 0}, "limit": {"calls": 100, "tokens": null}, "used_fraction": 0.79},
		{"used": {"calls": 80, "tokens": 0}, "limit": {"calls": 100, "tokens": null}, "used_fraction": 0.8},
		{"used": {"calls": 0, "tokens": 800}, "limit": {"calls": null, "tokens": 1000}, "used_fraction": 0.8},
		{"used": {"calls": 100, "tokens": 1000}, "limit": {"calls": 100, "tokens": 1000}, "used_fraction": 1},
		{"used": {"calls": 0, "tokens": 0}, "limit": {"calls": null, "tokens": null}, "used_fraction": 0},
	]
	every type in ["tool_call", "resource_read"] {
		every same in [0, 19, 20, 21] {
			every per_minute in [0, 59, 60] {
				every tokens in [0, 200000, 200001] {
					every budget in budgets {
						ctx := object.filter(
							{"consecutive_same_tool": same, "calls_last_minute": per_minute, "cumulative_tokens": tokens, "budget": budget},
							[k | some k, v in {"consecutive_same_tool": same, "calls_last_minute": per_minute, "cumulative_tokens": tokens, "budget": budget}; v != null],
						)
						i := {"action": {"type": type, "tool": "t"}, "context": ctx}
						d := decision with input as i
						f := full_decision with input as i
						d == f
					}
				}
			}
		}
	}
}
