package mcp.filesystem

call(tool, args) := {"action": {"type": "tool_call", "tool": tool, "args": args}}

test_read_in_scope if {
	decision.allow with input as call("read_text_file", {"path": "demo-data/public/readme.txt"})
}

test_read_outside_scope if {
	d := decision with input as call("read_text_file", {"path": "/etc/passwd"})
	d.reasons == ["path_outside_scope"]
	contains(d.remediation, "outside the directories")
}

test_traversal if {
	d := decision with input as call("read_text_file", {"path": "demo-data/../servers.toml"})
	"path_traversal" in d.reasons
}

test_write_only_where_writable if {
	decision.allow with input as call("write_file", {"path": "demo-data/public/new.txt", "content": "x"})
	d := decision with input as call("write_file", {"path": "demo-data/confidential/plan.txt", "content": "x"})
	d.reasons == ["write_outside_writable"]
}

test_move_refused_and_hidden if {
	d := decision with input as call("move_file", {"source": "demo-data/public/a", "destination": "demo-data/public/b"})
	d.reasons == ["destructive_operation"]
	not visible with input as call("move_file", {})
}

test_other_request_types_refused if {
	d := decision with input as {"action": {"type": "resource_read", "tool": "file:///etc/passwd", "args": {}}}
	"action_not_permitted" in d.reasons
}
