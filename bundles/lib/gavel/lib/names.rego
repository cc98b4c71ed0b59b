# METADATA
# title: gavel.lib.names — globs on tool (and prompt, resource) names
# description: >-
#   "*" matches any run of characters (dots, slashes and
#   underscores included: MCP names use all of them), "?" exactly one; every
#   other character matches itself, case-sensitively (MCP names are). Pure
#   Rego, identical in OPA and gavel; built on regex.match rather than
#   glob.match, whose default delimiters differ between engines.
package gavel.lib.names

# The longest pattern or name the library matches, in characters.
max_length := 1024

# glob(pattern, name): the whole name matches the pattern.
glob(pattern, name) if {
	is_string(pattern)
	is_string(name)
	count(pattern) <= max_length
	count(name) <= max_length
	regex.match(_regex(pattern), name)
}

# glob_any(patterns, name): glob(p, name) for some p in patterns.
glob_any(patterns, name) if {
	some p in patterns
	glob(p, name)
}

# The pattern as an anchored regex: metacharacters quoted, then "*" and "?"
# translated. (?s): "*" also spans newlines.
_regex(pattern) := concat("", ["(?s)^", translated, "$"]) if {
	quoted := regex.replace(pattern, `([.+()|\[\]{}^$\\])`, `\${1}`)
	translated := replace(replace(quoted, "*", ".*"), "?", ".")
}
