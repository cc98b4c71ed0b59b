# METADATA
# title: Runaway-agent brakes
# description: Org-wide workflow layer. Stops loops (the same tool many times in
#   a row), bursts (too many calls a minute) and sessions over their token
#   budget; flags calls once 80 % of the cross-session budget is spent, and
#   rate-limits each user (data.gavel.workflow.limits, enforced by gavel).
#   Workflow reasons may be waived by an override layer.
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

# Budgets across sessions (servers.toml [budget]): gavel refuses a call over
# the budget itself; this layer flags the calls made once 80 % is spent so
# they are audited, and tells the agent why.
nearly_spent if input.context.budget.used_fraction >= data.gavel.workflow.budget_warn_fraction

# The common case first, in one body: nothing near any limit. regorus's
# interpreter charges a few microseconds for every rule a decision consults;
# the full rules below run only when something is close.
# `decision_is_full_decision` in the tests holds the two to the same answer.
# Each counter is read only in a comparison with a threshold from this
# bundle's data, so gavel's memo keys it on the comparisons' outcomes, not on
# its value (docs/policy.md, "Counters keyed on their thresholds"): calls
# below every threshold share one memo entry. Keep it so — a counter bound
# to a variable, or passed to a function, is keyed on its value again.
decision := {"allow": true} if {
	input.context.consecutive_same_tool < data.gavel.workflow.max_consecutive_same_tool
	input.context.calls_last_minute < data.gavel.workflow.max_calls_per_minute
	input.context.cumulative_tokens <= data.gavel.workflow.max_session_tokens
	not input.context.budget.used_fraction >= data.gavel.workflow.budget_warn_fraction
} else := full_decision

full_decision := {"allow": true} if {
	count(violations) == 0
	not nearly_spent
}

full_decision := {"allow": true, "audit_required": true} if {
	count(violations) == 0
	nearly_spent
}

full_decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": "Stop and check with the user before continuing; start a new session if the task really needs more.",
} if count(violations) > 0
