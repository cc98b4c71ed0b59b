# METADATA
# title: gavel.lib.args — the arguments of an MCP call
# description: >-
#   Every path-like argument of a call in the common tool shapes
#   (path, paths[], source/destination, uri), beside gavel's canonical view
#   (input.action.canonical_args), and size and type checks. Pure Rego,
#   identical in OPA and gavel; pass the arguments in (args.paths(
#   input.action.args), args.paths(input.action.canonical_args)): nothing
#   here reads input, so a policy's memo key stays what it reads.
package gavel.lib.args

# The argument names that hold a path or a URI in the common servers
# (server-filesystem: path, paths, source, destination; resource-style
# tools: uri) — the keys gavel canonicalizes.
path_keys := ["path", "paths", "source", "destination", "uri"]

# paths(a): every value of a path-like argument of the arguments object a,
# each element of an array one by one (the shape the tool declares does not
# matter: an array where a string was expected is still read). Non-string
# values (null too) are included as they are: check them with all_strings.
paths(a) := {v | some k in path_keys; some v in _values(a[k])}

# path_arguments(a): [key, value] of every path-like argument, one pair per
# array element.
path_arguments(a) := {[k, v] | some k in path_keys; some v in _values(a[k])}

# missing_canonical(a, canonical): the path-like keys present in the
# arguments a whose canonical form (gavel: input.action.canonical_args) is
# absent or of another shape (a count that differs for an array). A policy
# should refuse them, not skip them. Pass {} for canonical when the input
# has none (a default rule): an undefined argument makes the call undefined,
# and `count(undefined) > 0` is not true.
missing_canonical(a, canonical) := {k |
	some k in path_keys
	raw := a[k]
	not _placed(canonical, k, raw)
}

# all_strings(values): every element is a string (true for none).
all_strings(values) if {
	every v in values {
		is_string(v)
	}
}

# string_at_most(v, n): v is a string of at most n characters.
string_at_most(v, n) if {
	is_string(v)
	count(v) <= n
}

# strings_at_most(v, n): every string anywhere in v (object keys too) has
# at most n characters.
strings_at_most(v, n) if not _long_string(v, n)

# array_at_most(v, n): v is an array of at most n elements.
array_at_most(v, n) if {
	is_array(v)
	count(v) <= n
}

# number_between(v, lo, hi): v is a number, lo <= v <= hi.
number_between(v, lo, hi) if {
	is_number(v)
	v >= lo
	v <= hi
}

# integer_between(v, lo, hi): number_between and a whole number.
integer_between(v, lo, hi) if {
	number_between(v, lo, hi)
	v == round(v)
}

# type_is(v, t): type_name(v) == t ("string", "number", "boolean", "null",
# "array", "object").
type_is(v, t) if type_name(v) == t

# only_keys(a, allowed): a is an object and every key of it is in allowed.
only_keys(a, allowed) if {
	is_object(a)
	every k, _ in a {
		k in allowed
	}
}

# unknown_keys(a, allowed): the keys of a that are not in allowed.
unknown_keys(a, allowed) := {k | some k, _ in a; not k in allowed}

_values(v) := v if is_array(v)

_values(v) := [v] if not is_array(v)

# The canonical view has the key (null counts: gavel could not place the
# value) in the raw value's shape.
_placed(canonical, k, raw) if {
	is_object(canonical)
	_same_shape(raw, canonical[k])
}

_same_shape(raw, c) if {
	is_array(raw)
	is_array(c)
	count(raw) == count(c)
}

_same_shape(raw, c) if {
	not is_array(raw)
	not is_array(c)
}

_long_string(v, n) if {
	walk(v, [path, x])
	is_string(x)
	count(x) > n
}

_long_string(v, n) if {
	walk(v, [path, x])
	is_object(x)
	some k, _ in x
	is_string(k)
	count(k) > n
}
