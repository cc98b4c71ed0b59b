# METADATA
# title: Filesystem server — path scoping and destructive operations
# description: >-
#   Agents may read under data.mcp.filesystem.readable and write only
#   under data.mcp.filesystem.writable (directories relative to the server's
#   root, servers.toml path_root; "." is the root itself); moving files is
#   refused; a ".." that climbs above where its path starts is refused (one
#   that stays below it is checked on the canonical form). move_file is not even
#   listed. Scopes are checked on gavel's canonical form of each path
#   (input.action.canonical_args, with "./", "//", a trailing "/", ".." and
#   Unicode NFC resolved, absolute paths under the root made root-relative), by
#   whole segments with gavel's policy library (data.gavel.lib.paths.within:
#   "public-x" is not within "public"), so no spelling of a path escapes them;
#   a path argument gavel could not place, or did not place at all, is refused.
package mcp.filesystem

import data.gavel.lib.args
import data.gavel.lib.paths

read_tools := {
	"read_file", "read_text_file", "read_media_file", "read_multiple_files", "list_directory",
	"list_directory_with_sizes", "directory_tree", "search_files", "get_file_info", "list_allowed_directories",
}

write_tools := {"write_file", "edit_file", "create_directory"}

# The exact path arguments, as the upstream gets them (path, paths[],
# source, destination, uri; every element of an array).
raw_paths := args.paths(raw_args)

default raw_args := {}

raw_args := input.action.args

# gavel's canonical form of each: root-relative inside the root, "/…" outside,
# null when it has none (a ".." above the root).
canonical_paths := args.paths(canonical_args)

# Absent (a gavel without the canonical view, a test input): {} — every path
# argument is then missing its canonical form, and refused.
default canonical_args := {}

canonical_args := input.action.canonical_args

in_scope(p) if paths.within_any(p, data.mcp.filesystem.readable)

writable_path(p) if paths.within_any(p, data.mcp.filesystem.writable)

violations contains "action_not_permitted" if input.action.type != "tool_call"

# A ".." that climbs above where its path starts (a backslash read as "/"
# too, as some servers do): out of its directory whatever the root. A ".."
# that stays below its start ("public/x/../readme.txt") is resolved by the
# server lexically, as gavel's canonical form is, and that form is what the
# scopes below check.
violations contains "path_traversal" if {
	some p in raw_paths
	paths.climbs(replace(p, `\`, "/"))
}

violations contains "path_unresolvable" if {
	some p in canonical_paths
	not is_string(p)
}

# A path argument with no canonical form beside it (a gavel without the
# canonical view, a test input): refused rather than unchecked.
violations contains "path_unresolvable" if count(args.missing_canonical(raw_args, canonical_args)) > 0

violations contains "path_outside_scope" if {
	some p in canonical_paths
	not in_scope(p)
}

violations contains "write_outside_writable" if {
	input.action.tool in write_tools
	some p in canonical_paths
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

# Result policy (docs/policy.md, "Result policy"): what the server answers is
# decided too. Every result has email addresses and card-number-like
# strings redacted (data.mcp.filesystem.result_patterns; gavel applies them
# to the whole output and its structuredContent mirror). The listings of
# search_files (one path a line) and directory_tree (a JSON tree) lose each
# entry classified for a data class the user is not authorized for
# (result_item, per entry, on its path's classification), so a search
# cannot reveal what a read would refuse.
listing_items := {"search_files": "lines", "directory_tree": "tree"}

default result := {"redact": {"patterns": ["email", "card_number"]}}

result := {"redact": {"patterns": ["email", "card_number"]}, "filter": {"items": listing_items[input.action.tool]}} if {
	listing_items[input.action.tool]
	not input.output.isError
}

authorized_classes := {c | some c in input.user.data_classifications_authorized}

unauthorized_item_classes := {c |
	some c in input.item.data_classes
	not c in authorized_classes
}

default result_item := false

result_item if count(unauthorized_item_classes) == 0
