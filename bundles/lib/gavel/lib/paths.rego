# METADATA
# title: gavel.lib.paths — lexical paths for MCP policies
# description: >-
#   Clean a path the way Go's path.Clean does, compare paths by
#   whole segments, and resolve a path the way server-filesystem does
#   (relative against the server's root). Lexical only: no file is read, so
#   symlinks stay the server's business. Pure Rego: evaluates identically in
#   OPA and in gavel (regorus). Every function is undefined (or false) on
#   input it cannot reason about — see valid — so an allow rule built on it
#   fails closed.
package gavel.lib.paths

# The longest path the library reads (Linux PATH_MAX, in characters): a
# longer one has no clean form and is never within anything.
max_length := 4096

# Characters JavaScript's String.prototype.trim removes (server-filesystem
# trims the path it checks) and the quotes it strips: a path that starts or
# ends with one is checked by the server in another spelling than it uses.
_edge := `[\t\n\x{0B}\f\r "'\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]`

# valid(p): p is a path the library can reason about: a non-empty string of
# at most max_length characters, without a NUL, without a backslash (a name
# character on POSIX, a separator on Windows: the policy cannot know which
# the server uses), not starting with "~" (the server expands it to its
# user's home), not a Windows drive path ("C:…"), and without whitespace or a
# quote at either end.
valid(p) if {
	is_string(p)
	p != ""
	count(p) <= max_length
	not contains(p, "\u0000")
	not contains(p, `\`)
	not _home(p)
	not regex.match(`^[A-Za-z]:`, p)
	not regex.match(concat("", ["^", _edge, "|", _edge, "$"]), p)
}

_home(p) if p == "~"

_home(p) if startswith(p, "~/")

# is_absolute(p): p starts with "/".
is_absolute(p) if startswith(p, "/")

# segments(p): the names of clean(p), in order ([] for "/" and ".").
segments(p) := [s | some s in split(trim_prefix(clean(p), "/"), "/"); s != "."; s != ""]

# clean(p): the shortest lexically equivalent path, exactly Go's path.Clean:
# repeated "/" become one, "." segments go, a ".." removes the segment before
# it, a ".." at the start of an absolute path is dropped ("/.." is "/"), a
# relative path keeps its leading ".." ("a/../../b" is "../b"), a trailing
# "/" goes, and the empty path is ".". Any string of at most max_length
# characters (backslashes are ordinary characters here).
clean(p) := _join(_kept(_segs(p), abs), abs) if {
	is_string(p)
	count(p) <= max_length
	abs := startswith(p, "/")
}

# climbs(p): a ".." in p goes above where p starts ("../x", "a/../../x",
# "/../etc"): relative to a root, such a path leaves it.
climbs(p) if {
	is_string(p)
	count(p) <= max_length
	sums := _sums(_segs(p))
	count(sums) > 0
	min(sums) < 0
}

# within(p, root): p is root or below it, by whole segments, after both are
# cleaned: "/srv/data/x" is within "/srv/data", "/srv/data-evil" is not.
# Both absolute, or both relative ("." holds every relative path that does
# not climb). False unless both are valid.
within(p, root) if {
	valid(p)
	valid(root)
	cp := clean(p)
	cr := clean(root)
	startswith(cp, "/") == startswith(cr, "/")
	_under(cp, cr)
}

_under(cp, cr) if cp == cr

_under(cp, cr) if {
	cr == "/"
	is_absolute(cp)
}

_under(cp, cr) if {
	cr == "."
	cp != ".."
	not startswith(cp, "../")
}

_under(cp, cr) if {
	cr != "/"
	cr != "."
	startswith(cp, concat("", [cr, "/"]))
}

# within_any(p, roots): within(p, r) for some r in roots.
within_any(p, roots) if {
	some r in roots
	within(p, r)
}

# resolve(p, root): the absolute, clean path a server whose root is the
# absolute path root opens for p: an absolute p as it is, a relative p
# against root (server-filesystem: against its first allowed directory).
# Undefined unless p and root are valid and root is absolute.
resolve(p, root) := clean(p) if {
	valid(p)
	valid(root)
	is_absolute(root)
	is_absolute(p)
}

resolve(p, root) := clean(concat("/", [root, p])) if {
	valid(p)
	valid(root)
	is_absolute(root)
	not is_absolute(p)
}

# inside(p, root): p, resolved as the server resolves it, is root or below
# it. "x", "./x", "/srv/root/x" are inside "/srv/root"; "../x",
# "/srv/root-evil/x", "~/x" are not.
inside(p, root) if within(resolve(p, root), root)

# escapes(p, root): not inside(p, root) — also when p cannot be resolved.
escapes(p, root) if not inside(p, root)

# relative_to(p, root): p as a clean root-relative path ("." for the root
# itself); undefined when p is not inside root. Compare it with
# directories written relative to the root.
relative_to(p, root) := "." if {
	inside(p, root)
	resolve(p, root) == clean(root)
}

relative_to(p, root) := substring(r, count(base), -1) if {
	inside(p, root)
	r := resolve(p, root)
	r != clean(root)
	base := _slash(clean(root))
}

_slash("/") := "/"

_slash(r) := concat("", [r, "/"]) if r != "/"

# has_dotdot(p): some segment of p, split at "/" or "\", is "..": a climb
# as written, whatever the path resolves to.
has_dotdot(p) if {
	is_string(p)
	some s in regex.split(`[/\\]`, p)
	s == ".."
}

# The segments of p without empty and "." ones ("..": kept).
_segs(p) := [s | some s in split(p, "/"); s != ""; s != "."]

_weight(s) := -1 if s == ".."

_weight(s) := 1 if s != ".."

# Depth after each segment, from 0 at the start, unclamped. Each step is
# one builtin call over the prefix: linear in interpreted steps.
_sums(segs) := [sum(array.slice(w, 0, i + 1)) | some i, _ in w] if {
	w := [_weight(s) | some s in segs]
}

# The segments of the clean path: a name survives when no later ".."
# removes it (the depth never falls below its own afterwards); a ".." of a
# relative path survives when it climbs above every depth before it.
_kept(segs, absolute) := [s | some i, s in segs; _survives(segs, sums, i, absolute)] if {
	sums := _sums(segs)
}

_survives(segs, sums, i, _) if {
	segs[i] != ".."
	min(array.concat(array.slice(sums, i + 1, count(sums)), [sums[i]])) == sums[i]
}

_survives(segs, sums, i, absolute) if {
	absolute == false
	segs[i] == ".."
	sums[i] < min(array.concat(array.slice(sums, 0, i), [0]))
}

_join(kept, absolute) := concat("", ["/", concat("/", kept)]) if absolute == true

_join(kept, absolute) := concat("/", kept) if {
	absolute == false
	count(kept) > 0
}

_join(kept, absolute) := "." if {
	absolute == false
	count(kept) == 0
}
