# METADATA
# title: Filesystem server — path scoping and destructive operations
# description: Agents may read under data.mcp.filesystem.readable and write only
#   under data.mcp.filesystem.writable; moving files is refused; any path with
#   ".." is refused. move_file is not even listed.
package mcp.filesystem

read_tools := {
	"read_file", "read_text_file", "read_media_file", "read_multiple_files", "list_directory",
	"list_directory_with_sizes", "directory_tree", "search_files", "get_file_info", "list_allowed_directories",
}

write_tools := {"write_file", "edit_file", "create_directory"}

paths contains p if p := input.action.args.path

paths contains p if some p in input.action.args.paths

paths contains p if p := input.action.args.source

paths contains p if p := input.action.args.destination

in_scope(p) if {
	some prefix in data.mcp.filesystem.readable
	startswith(p, prefix)
}

writable_path(p) if {
	some prefix in data.mcp.filesystem.writable
	startswith(p, prefix)
}

violations contains "action_not_permitted" if input.action.type != "tool_call"

violations contains "path_traversal" if {
	some p in paths
	contains(p, "..")
}

violations contains "path_outside_scope" if {
	some p in paths
	not in_scope(p)
}

violations contains "write_outside_writable" if {
	input.action.tool in write_tools
	some p in paths
	not writable_path(p)
}

violations contains "destructive_operation" if input.action.tool == "move_file"

violations contains "action_not_permitted" if {
	input.action.type == "tool_call"
	not input.action.tool in read_tools
	not input.action.tool in write_tools
	input.action.tool != "move_file"
}

decision := {"allow": true} if count(violations) == 0

decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": concat(" ", [sprintf("%s: %s.", [r, data.mcp.filesystem.reasons[r]]) | some r in sort(violations)]),
	"appeal_path": data.mcp.filesystem.appeal_path,
} if count(violations) > 0

default visible := true

visible := false if input.action.tool == "move_file"
