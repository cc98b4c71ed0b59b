package gavel.lib.args_test

import data.gavel.lib.args

test_paths_of_every_shape if {
	args.paths({"path": "a"}) == {"a"}
	args.paths({"paths": ["a", "b"], "content": "x"}) == {"a", "b"}
	args.paths({"source": "s", "destination": "d"}) == {"s", "d"}
	args.paths({"uri": "file:///x"}) == {"file:///x"}
	args.paths({"path": ["a", "b"]}) == {"a", "b"}
	args.paths({"paths": "a"}) == {"a"}
	args.paths({"path": 7, "paths": [null, "x"]}) == {7, null, "x"}
	args.paths({"content": "/etc/passwd"}) == set()
	args.paths({}) == set()
	args.paths({"path": null}) == {null}
	args.paths("not an object") == set()
	args.path_arguments({"source": "s", "paths": ["a"]}) == {["source", "s"], ["paths", "a"]}
}

test_canonical_view_beside_args if {
	action := {"args": {"paths": ["./a", "../../x"]}, "canonical_args": {"paths": ["a", null]}}
	args.paths(action.canonical_args) == {"a", null}
	args.missing_canonical(action.args, action.canonical_args) == set()
}

test_missing_canonical if {
	args.missing_canonical({"path": "a"}, {}) == {"path"}
	args.missing_canonical({"path": "a"}, null) == {"path"}
	args.missing_canonical({"path": "a"}, {"path": null}) == set()
	args.missing_canonical({"path": "a"}, {"path": "a"}) == set()
	args.missing_canonical({"path": 7}, {"path": null}) == set()
	args.missing_canonical({"paths": ["a", "b"]}, {"paths": ["a"]}) == {"paths"}
	args.missing_canonical({"paths": ["a"]}, {"paths": "a"}) == {"paths"}
	args.missing_canonical({"path": "a"}, {"path": ["a"]}) == {"path"}
	args.missing_canonical({"source": "a", "destination": "b"}, {"source": "a"}) == {"destination"}
	args.missing_canonical({"content": "x"}, {}) == set()
	args.missing_canonical({"path": null}, {}) == {"path"}
}

test_type_and_size_checks if {
	args.all_strings(["a", "b"])
	args.all_strings([])
	not args.all_strings(["a", 1])
	args.string_at_most("abc", 3)
	not args.string_at_most("abcd", 3)
	not args.string_at_most(3, 3)
	args.string_at_most("ééé", 3)
	args.array_at_most([1, 2], 2)
	not args.array_at_most([1, 2, 3], 2)
	not args.array_at_most("ab", 2)
	args.number_between(5, 1, 10)
	not args.number_between("5", 1, 10)
	not args.number_between(11, 1, 10)
	args.integer_between(3, 1, 10)
	not args.integer_between(3.5, 1, 10)
	args.type_is({}, "object")
	args.type_is(null, "null")
	not args.type_is("1", "number")
}

test_strings_at_most_looks_everywhere if {
	args.strings_at_most({"a": ["xx", {"b": "yy"}]}, 2)
	not args.strings_at_most({"a": ["xx", {"b": "yyy"}]}, 2)
	not args.strings_at_most({"long_key": 1}, 2)
	args.strings_at_most(5, 0)
}

test_keys if {
	args.only_keys({"path": "a"}, {"path", "content"})
	not args.only_keys({"path": "a", "mode": "x"}, {"path", "content"})
	not args.only_keys(["path"], {"path"})
	args.unknown_keys({"path": "a", "mode": "x"}, {"path"}) == {"mode"}
}
