package mcp.filesystem

# What gavel sends: the exact arguments and their canonical forms
# (root-relative inside servers.toml path_root, "/…" outside, null if none).
call(tool, args, canonical) := {"action": {"type": "tool_call", "tool": tool, "args": args, "canonical_args": canonical}}

test_read_in_scope if {
	decision.allow with input as call("read_text_file", {"path": "public/readme.txt"}, {"path": "public/readme.txt"})
}

test_read_outside_scope if {
	d := decision with input as call("read_text_file", {"path": "/etc/passwd"}, {"path": "/etc/passwd"})
	d.reasons == ["path_outside_scope"]
	contains(d.remediation, "outside the directories")
}

test_any_spelling_is_checked_on_its_canonical_form if {
	# "/srv/demo-data//public/./a.txt" under the root: root-relative, in scope.
	decision.allow with input as call("read_text_file", {"path": "/srv/demo-data//public/./a.txt"}, {"path": "public/a.txt"})
	d := decision with input as call("write_file", {"path": "./confidential//x/", "content": "x"}, {"path": "confidential/x"})
	d.reasons == ["write_outside_writable"]
	e := decision with input as call("write_file", {"path": "public-x/y", "content": "x"}, {"path": "public-x/y"})
	e.reasons == ["write_outside_writable"]
}

test_every_element_of_paths if {
	d := decision with input as call("read_multiple_files", {"paths": ["public/a", "/etc//shadow"]}, {"paths": ["public/a", "/etc/shadow"]})
	d.reasons == ["path_outside_scope"]
}

test_traversal if {
	d := decision with input as call("read_text_file", {"path": "public/../../servers.toml"}, {"path": null})
	"path_traversal" in d.reasons
	e := decision with input as call("read_text_file", {"path": "/srv/demo-data/../../etc/passwd"}, {"path": "/etc/passwd"})
	"path_outside_scope" in e.reasons
}

# The server resolves "x/.." lexically, as gavel's canonical form does: a
# ".." that stays inside is the file it names, and is allowed where that is.
test_a_dotdot_that_stays_inside_is_its_canonical_path if {
	decision.allow with input as call("read_text_file", {"path": "public/x/../readme.txt"}, {"path": "public/readme.txt"})
	d := decision with input as call("write_file", {"path": "public/../confidential/x", "content": "x"}, {"path": "confidential/x"})
	d.reasons == ["write_outside_writable"]
}

test_unplaceable_path_refused if {
	d := decision with input as call("read_text_file", {"path": "../../etc/passwd"}, {"path": null})
	"path_unresolvable" in d.reasons
	"path_outside_scope" in d.reasons
	e := decision with input as call("read_multiple_files", {"paths": ["public/a", "../x"]}, {"paths": ["public/a", null]})
	"path_unresolvable" in e.reasons
}

test_missing_canonical_form_refused if {
	d := decision with input as {"action": {"type": "tool_call", "tool": "read_text_file", "args": {"path": "public/a"}}}
	d.reasons == ["path_unresolvable"]
}

test_write_only_where_writable if {
	decision.allow with input as call("write_file", {"path": "public/new.txt", "content": "x"}, {"path": "public/new.txt"})
	d := decision with input as call("write_file", {"path": "confidential/plan.txt", "content": "x"}, {"path": "confidential/plan.txt"})
	d.reasons == ["write_outside_writable"]
}

test_move_refused_and_hidden if {
	d := decision with input as call("move_file", {"source": "public/a", "destination": "public/b"}, {"source": "public/a", "destination": "public/b"})
	d.reasons == ["destructive_operation"]
	not visible with input as call("move_file", {}, {})
}

test_other_request_types_refused if {
	d := decision with input as {"action": {"type": "resource_read", "tool": "file:///etc/passwd", "args": {}}}
	"action_not_permitted" in d.reasons
}

test_dots_in_a_name_are_not_traversal if {
	decision.allow with input as call("read_text_file", {"path": "public/notes..txt"}, {"path": "public/notes..txt"})
	d := decision with input as call("read_text_file", {"path": `public\..\..\x`}, {"path": `public\..\..\x`})
	"path_traversal" in d.reasons
}

test_scopes_are_whole_segments if {
	d := decision with input as call("write_file", {"path": "public-evil/x", "content": "x"}, {"path": "public-evil/x"})
	d.reasons == ["write_outside_writable"]
	e := decision with input as call("read_text_file", {"path": "/srv/demo-data-evil/x"}, {"path": "/srv/demo-data-evil/x"})
	e.reasons == ["path_outside_scope"]
}

test_an_array_where_a_string_belongs_is_read_element_by_element if {
	d := decision with input as call("write_file", {"path": ["public/a", "confidential/b"], "content": "x"}, {"path": ["public/a", "confidential/b"]})
	d.reasons == ["write_outside_writable"]
	e := decision with input as call("write_file", {"path": ["public/a", "confidential/b"], "content": "x"}, {"path": "public/a"})
	"path_unresolvable" in e.reasons
}

# Result policy: listings are filtered, every result redacted.
listing(tool, is_error) := {"action": {"type": "tool_call", "tool": tool}, "output": {"isError": is_error}}

test_listings_are_filtered_and_every_result_redacted if {
	r := result with input as listing("search_files", false)
	r.filter.items == "lines"
	r.redact.patterns == ["email", "card_number"]
	t := result with input as listing("directory_tree", false)
	t.filter.items == "tree"
	e := result with input as listing("read_text_file", false)
	not e.filter
	e.redact.patterns == ["email", "card_number"]
	# An error is not a listing: redacted, not filtered.
	x := result with input as listing("directory_tree", true)
	not x.filter
}

test_confidential_entries_need_the_class if {
	item := {"kind": "line", "path": "confidential/plan.txt", "data_classes": ["confidential"]}
	not result_item with input as {"item": item, "user": {"data_classifications_authorized": ["public"]}}
	result_item with input as {"item": item, "user": {"data_classifications_authorized": ["confidential"]}}
	result_item with input as {"item": {"path": "public/a.txt", "data_classes": []}, "user": {}}
}
