# METADATA
# title: Runaway-agent brakes
# description: Org-wide workflow layer. Stops loops (the same tool many times in
#   a row), bursts (too many calls a minute) and sessions over their token
#   budget. Workflow reasons may be waived by an override layer.
package gavel.workflow

violations contains "same_tool_loop" if {
	input.action.type == "tool_call"
	input.context.consecutive_same_tool >= data.gavel.workflow.max_consecutive_same_tool
}

violations contains "too_many_calls_per_minute" if {
	input.action.type == "tool_call"
	input.context.calls_last_minute >= data.gavel.workflow.max_calls_per_minute
}

violations contains "token_budget_exceeded" if input.context.cumulative_tokens > data.gavel.workflow.max_session_tokens

decision := {"allow": true} if count(violations) == 0

decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": "Stop and check with the user before continuing; start a new session if the task really needs more.",
} if count(violations) > 0
