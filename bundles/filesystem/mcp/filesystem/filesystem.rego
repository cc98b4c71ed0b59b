# METADATA
# title: Filesystem server — path scoping and destructive operations
# description: Agents may read under data.mcp.filesystem.readable and write only
#   under data.mcp.filesystem.writable (directories relative to the server's
#   root, servers.toml path_root; "." is the root itself); moving files is
#   refused; any path with ".." is refused. move_file is not even listed.
#   Scopes are checked on gavel's canonical form of each path
#   (input.action.canonical_args, with "./", "//", a trailing "/", ".." and
#   Unicode NFC resolved, absolute paths under the root made root-relative), so
#   no spelling of a path escapes them; a path argument gavel could not place,
#   or did not place at all, is refused.
package mcp.filesystem

read_tools := {
	"read_file", "read_text_file", "read_media_file", "read_multiple_files", "list_directory",
	"list_directory_with_sizes", "directory_tree", "search_files", "get_file_info", "list_allowed_directories",
}

write_tools := {"write_file", "edit_file", "create_directory"}

path_args := ["path", "paths", "source", "destination"]

# The exact arguments, as the upstream gets them.
raw_paths contains p if {
	some k in path_args
	p := input.action.args[k]
	is_string(p)
}

raw_paths contains p if some p in input.action.args.paths

# gavel's canonical form of each: root-relative inside the root, "/…" outside,
# null when it has none (a ".." above the root).
paths contains p if {
	some k in path_args
	p := input.action.canonical_args[k]
	not is_array(p)
}

paths contains p if some p in input.action.canonical_args.paths

# A directory holds itself and what is below it, by whole segments:
# "confidential-x" is not within "confidential". "." is the root: every
# root-relative path.
within(p, dir) if p == dir

within(p, dir) if startswith(p, concat("", [dir, "/"]))

within(p, dir) if {
	dir == "."
	is_string(p)
	not startswith(p, "/")
}

in_scope(p) if {
	some dir in data.mcp.filesystem.readable
	within(p, dir)
}

writable_path(p) if {
	some dir in data.mcp.filesystem.writable
	within(p, dir)
}

violations contains "action_not_permitted" if input.action.type != "tool_call"

violations contains "path_traversal" if {
	some p in raw_paths
	contains(p, "..")
}

violations contains "path_unresolvable" if {
	some p in paths
	not is_string(p)
}

# A path argument with no canonical form beside it (a gavel without the
# canonical view, a test input): refused rather than unchecked.
violations contains "path_unresolvable" if {
	some k in path_args
	input.action.args[k]
	not input.action.canonical_args[k]
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
