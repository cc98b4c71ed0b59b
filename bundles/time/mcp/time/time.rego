# METADATA
# title: Time server
# description: Read-only clock tools; everything else is refused.
package mcp.time

tools := {"get_current_time", "convert_time"}

decision := {"allow": true} if {
	input.action.type == "tool_call"
	input.action.tool in tools
}

decision := {"allow": false, "reasons": ["action_not_permitted"], "remediation": "Only get_current_time and convert_time are available."} if {
	not input.action.type == "tool_call"
}

decision := {"allow": false, "reasons": ["action_not_permitted"], "remediation": "Only get_current_time and convert_time are available."} if {
	input.action.type == "tool_call"
	not input.action.tool in tools
}
