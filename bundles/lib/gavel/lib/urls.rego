# METADATA
# title: gavel.lib.urls — URLs for MCP policies
# description: >-
#   Parse a URL into scheme, userinfo, host, port, path, query and
#   fragment (RFC 3986's generic syntax, read the way that leaves nothing
#   for a browser-style parser to read differently), and match hosts against
#   allow-lists with explicit subdomain rules. Pure Rego: evaluates
#   identically in OPA and in gavel (regorus). A URL the library cannot read
#   unambiguously has no host: an allow rule built on it fails closed.
package gavel.lib.urls

# The longest URL the library reads, in characters.
max_length := 8192

# The ports a scheme implies when the URL names none.
default_ports := {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}

# parse(u): {"scheme", "userinfo", "host", "port", "path", "query",
# "fragment"}; a part the URL does not have is null. The scheme and host are
# lower-cased, a host's one trailing "." removed, an IPv6 literal given
# without its brackets; the port is a number (null: none written, see
# port). "http://trusted@evil/" has host "evil" (what precedes the last "@"
# is userinfo). No scheme ("example.com/x"): scheme and host are null —
# the library does not guess. Undefined for a non-string, a URL over
# max_length, or a URL with a space, a control character or a backslash
# anywhere (parsers disagree on those: "http://evil\@trusted/" is host evil
# to a browser, trusted to RFC 3986), or an authority it cannot read (two
# ports, a "%" or a non-ASCII character in the host — write an
# internationalized name in its xn-- form —, a non-numeric port, an
# unclosed "[").
parse(u) := object.union(_authority(a), {
	"scheme": scheme,
	"path": _path(tail),
	"query": _query(tail),
	"fragment": _fragment(tail),
}) if {
	_readable(u)
	scheme := _scheme(u)
	rest := _after_scheme(u, scheme)
	[a, tail] := _split_authority(rest)
}

# scheme(u), userinfo(u), host(u), path(u): the part, undefined when the
# URL has none (host: also when it is empty, as in "file:///x").
scheme(u) := s if {
	s := parse(u).scheme
	s != null
}

userinfo(u) := s if {
	s := parse(u).userinfo
	s != null
}

host(u) := h if {
	h := parse(u).host
	h != null
	h != ""
}

path(u) := parse(u).path

# port(u): the port written, else the scheme's default (80 for http, 443
# for https, …); undefined when neither.
port(u) := p if {
	p := parse(u).port
	p != null
}

port(u) := default_ports[parse(u).scheme] if parse(u).port == null

# host_matches(host, pattern): "example.com" matches exactly that host;
# "*.example.com" matches every subdomain of it ("a.example.com",
# "a.b.example.com") but not "example.com" itself; "*" matches any host.
# Case-insensitive; a trailing "." on either side is ignored.
# "evilexample.com" never matches "example.com" or "*.example.com".
host_matches(host, pattern) if {
	_host_norm(host) != ""
	not startswith(pattern, "*")
	_host_norm(host) == _host_norm(pattern)
}

host_matches(host, pattern) if {
	_host_norm(host) != ""
	startswith(pattern, "*.")
	base := _host_norm(substring(pattern, 2, -1))
	base != ""
	not contains(base, "*")
	endswith(_host_norm(host), concat("", [".", base]))
}

host_matches(host, "*") if _host_norm(host) != ""

# host_allowed(u, patterns): the URL has a host and it matches one of the
# patterns.
host_allowed(u, patterns) if {
	h := host(u)
	some p in patterns
	host_matches(h, p)
}

# scheme_allowed(u, schemes): the URL's scheme is one of schemes (compare
# lower-case names: "https").
scheme_allowed(u, schemes) if scheme(u) in {lower(s) | some s in schemes}

# is_ip(host): an IPv4 dotted quad or an IPv6 literal (as host returns it,
# without brackets). Deny-lists of addresses are weak (a name can resolve
# to any address): prefer allow-lists of names.
is_ip(h) if regex.match(`^[0-9]{1,3}(\.[0-9]{1,3}){3}$`, h)

is_ip(h) if {
	is_string(h)
	contains(h, ":")
	regex.match(`^[0-9a-f:.]+$`, h)
}

_readable(u) if {
	is_string(u)
	count(u) <= max_length
	not regex.match(`[\x00-\x20\x7F\\]`, u)
}

# ASCII only: lower-casing other characters differs between engines (Go
# lowers "İ" to "i", Rust to "i̇"), and a browser sends an internationalized
# name in its xn-- form anyway: write IDNs that way.
_host_norm(h) := trim_suffix(lower(h), ".") if {
	is_string(h)
	regex.match(`^[\x{21}-\x{7E}]*$`, h)
}

# The scheme (lower-cased) or null; RFC 3986: ALPHA *( ALPHA / DIGIT / "+" /
# "-" / "." ) ":".
_scheme(u) := lower(substring(u, 0, indexof(u, ":"))) if regex.match(`^[A-Za-z][A-Za-z0-9+.-]*:`, u)

_scheme(u) := null if not regex.match(`^[A-Za-z][A-Za-z0-9+.-]*:`, u)

_after_scheme(u, null) := u

_after_scheme(u, s) := substring(u, count(s) + 1, -1) if s != null

# [authority or null, the rest]: an authority follows "//".
_split_authority(rest) := [null, rest] if not startswith(rest, "//")

_split_authority(rest) := [a, substring(after, count(a), -1)] if {
	startswith(rest, "//")
	after := substring(rest, 2, -1)
	a := regex.split(`[/?#]`, after)[0]
}

_authority(null) := {"userinfo": null, "host": null, "port": null}

_authority(a) := {"userinfo": _userinfo(a), "host": h, "port": p} if {
	a != null
	hostport := regex.replace(a, `^.*@`, "")
	[h, p] := _hostport(hostport)
}

_userinfo(a) := regex.replace(a, `@[^@]*$`, "") if contains(a, "@")

_userinfo(a) := null if not contains(a, "@")

# [host, port]: "[v6]" or "[v6]:port", else "name" or "name:port".
_hostport(hp) := [lower(substring(v6, 1, -1)), _port(rest)] if {
	startswith(hp, "[")
	v6 := regex.split(`\]`, hp)[0]
	count(v6) < count(hp)
	rest := substring(hp, count(v6) + 1, -1)
	regex.match(`^[0-9A-Fa-f:.]+$`, substring(v6, 1, -1))
}

_hostport(hp) := [_host_norm(name), _port(rest)] if {
	not startswith(hp, "[")
	name := regex.split(`:`, hp)[0]
	rest := substring(hp, count(name), -1)
	not contains(name, "%")
	not contains(name, "]")
}

_port("") := null

_port(":") := null

_port(rest) := n if {
	regex.match(`^:[0-9]{1,5}$`, rest)
	n := to_number(substring(rest, 1, -1))
	n <= 65535
}

_path(tail) := regex.split(`[?#]`, tail)[0]

# The query runs from the first "?" to the first "#" after it; a "?" after
# the "#" is the fragment's.
_query(tail) := regex.split(`#`, substring(tail, indexof(tail, "?") + 1, -1))[0] if _has_query(tail)

_query(tail) := null if not _has_query(tail)

_has_query(tail) if {
	q := indexof(tail, "?")
	q >= 0
	h := indexof(tail, "#")
	_before(q, h)
}

_before(_, h) if h < 0

_before(q, h) if {
	h >= 0
	q < h
}

_fragment(tail) := substring(tail, indexof(tail, "#") + 1, -1) if indexof(tail, "#") >= 0

_fragment(tail) := null if indexof(tail, "#") < 0
