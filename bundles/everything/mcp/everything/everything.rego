# METADATA
# title: Everything reference server
# description: Allows only the tools reviewed for agents (data.mcp.everything.reviewed;
#   a tool a server upgrade adds is refused and hidden until someone reviews it),
#   blocks tools that leak the environment or fetch from the network, caps
#   long-running operations, and refuses the server's own sampling and
#   elicitation requests. Resources, prompts and completions are allowed.
package mcp.everything

allowed_types := {"tool_call", "resource_read", "resource_subscribe", "prompt_get", "completion"}

violations contains "action_not_permitted" if not input.action.type in allowed_types

violations contains "tool_blocked" if {
	input.action.type == "tool_call"
	input.action.tool in data.mcp.everything.blocked
}

violations contains "tool_not_reviewed" if {
	input.action.type == "tool_call"
	not input.action.tool in data.mcp.everything.reviewed
	not input.action.tool in data.mcp.everything.blocked
}

violations contains "operation_too_long" if {
	input.action.tool == "trigger-long-running-operation"
	input.action.args.duration > data.mcp.everything.max_operation_seconds
}

decision := {"allow": true} if count(violations) == 0

decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": "Use another tool, or ask for an exception.",
	"appeal_path": data.mcp.everything.appeal_path,
} if count(violations) > 0

default visible := true

visible := false if input.action.tool in data.mcp.everything.blocked

visible := false if not input.action.tool in data.mcp.everything.reviewed
