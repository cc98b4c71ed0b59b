# Library calls evaluated in OPA and in gavel (tests/e2e/e2e_opa_parity.rs):
# every r["id"] must have the same value in both engines, or be undefined in
# both. Hostile inputs on purpose: what one engine reads differently from the
# other is a policy bypass in one of them. Sets are sorted into arrays (JSON
# has no sets).
package parity

import data.gavel.lib.args
import data.gavel.lib.names
import data.gavel.lib.paths
import data.gavel.lib.urls

long(n) := concat("", [x | some _ in numbers.range(1, n); x := "a"])

r["clean_empty"] := paths.clean("")
r["clean_dots"] := paths.clean("a/./b/../../../c//d/.")
r["clean_root_dotdot"] := paths.clean("/../../x/..")
r["clean_backslash"] := paths.clean(`..\a\..\b`)
r["clean_unicode"] := paths.clean("/srv/caf\u00e9/./\u0301x/")
r["clean_nul"] := paths.clean("a/\u0000/..")
r["clean_long_ok"] := count(paths.clean(concat("/", [x | some _ in numbers.range(1, 1500); x := "ab"])))
r["clean_too_long"] := paths.clean(long(4097))
r["clean_number"] := paths.clean(42)
r["segments"] := paths.segments("//a/.//b/../c/")
r["climbs_mixed"] := [count({1 | paths.climbs("a/../..")}) == 1, count({1 | paths.climbs("a/b/../../c")}) == 1]
r["valid_many"] := [x | some p in ["", "~", "~x", "~/x", "C:\\x", "d:", " a", "a ", "'a'", "a\u2028", "a\ufeffb", "a\ufeff", "a\u0000", "ok/p"]; x := count({1 | paths.valid(p)}) == 1]
r["within_table"] := [x |
	some pair in [
		["/srv/data", "/srv/data"], ["/srv/data-evil", "/srv/data"], ["/srv/data/../data-evil", "/srv/data"],
		["/srv//data/x/", "/srv/data"], ["a", "."], ["..", "."], ["./a/../..", "."], ["/x", "."],
		["x", "/"], ["/", "/"], ["", ""], [`/srv/data\..\x`, "/srv/data"], ["/SRV/data", "/srv/data"],
	]
	x := count({1 | paths.within(pair[0], pair[1])}) == 1
]
r["resolve_table"] := [x |
	some p in ["x", "./x/../y", "/abs", "../up", "root/x", "", "~", "~/x", "a\u0000"]
	x := [v | v := paths.resolve(p, "/srv/root")]
]
r["relative_to"] := [paths.relative_to("/srv/root/a//b/.", "/srv/root"), paths.relative_to("/srv/root", "/srv/root")]
r["relative_to_outside"] := paths.relative_to("/srv/rootx", "/srv/root")
r["inside_escapes"] := [count({1 | paths.inside("x/../y", "/srv/root")}) == 1, count({1 | paths.escapes("x/../../y", "/srv/root")}) == 1, count({1 | paths.escapes("~/y", "/srv/root")}) == 1]
r["has_dotdot"] := [count({1 | paths.has_dotdot(`a\..`)}) == 1, count({1 | paths.has_dotdot("a..b")}) == 1, count({1 | paths.has_dotdot("/..")}) == 1]

r["url_full"] := urls.parse("HTTP://u:p@EXAMPLE.com.:8080/a%2F..;x?q=1?2#f#g")
r["url_userinfo"] := urls.parse("http://trusted.com@evil.com/")
r["url_two_at"] := urls.parse("https://a@b@evil.com:443/")
r["url_v6"] := urls.parse("http://[::FFFF:127.0.0.1]:80/")
r["url_v6_unclosed"] := urls.parse("http://[::1/")
r["url_v6_zone"] := urls.parse("http://[fe80::1%25en0]/")
r["url_backslash"] := urls.parse(`http://evil.com\@good.com/`)
r["url_space"] := urls.parse("http://a b/")
r["url_tab"] := urls.parse("http://a\tb/")
r["url_del"] := urls.parse("http://a\u007fb/")
r["url_percent_host"] := urls.parse("http://%65vil.com/")
r["url_no_scheme"] := urls.parse("example.com:8080/x")
r["url_scheme_relative"] := urls.parse("//Example.com/x")
r["url_empty"] := urls.parse("")
r["url_file"] := urls.parse("file:///etc/passwd")
r["url_mailto"] := urls.parse("mailto:root@example.com")
r["url_port_big"] := urls.parse("http://a:99999/")
r["url_port_zero"] := urls.parse("http://a:0/")
r["url_port_empty"] := urls.parse("http://a:/")
r["url_unicode_host"] := urls.parse("http://B\u00dcCHER.example/")
r["url_turkish_host"] := urls.parse("http://\u0130stanbul.example/")
r["url_too_long"] := urls.parse(concat("", ["http://a/", long(8200)]))
r["host_port_defaults"] := [urls.port("https://x/"), urls.port("ws://x/"), urls.port("http://x:81/")]
r["host_matches_table"] := [x |
	some pair in [
		["example.com", "example.com"], ["evilexample.com", "example.com"], ["a.example.com", "*.example.com"],
		["example.com", "*.example.com"], ["evilexample.com", "*.example.com"], ["A.EXAMPLE.COM.", "*.example.com"],
		["x", "*"], ["", "*"], ["example.com", "*example.com"], ["a.example.com", "*."], ["example.com", ""],
	]
	x := count({1 | urls.host_matches(pair[0], pair[1])}) == 1
]
r["host_allowed_table"] := [x |
	some u in [
		"https://api.example.com/x", "https://api.example.com@evil.com/", "https://evil.com/?api.example.com",
		"https://evil.com#@api.example.com", "https://api.example.com.evil.com/", "api.example.com/x",
		"https://API.Example.com:8443/", `https://evil.com\.api.example.com/`,
	]
	x := count({1 | urls.host_allowed(u, ["api.example.com", "*.cdn.example.com"])}) == 1
]
r["is_ip"] := [count({1 | urls.is_ip("10.0.0.1")}) == 1, count({1 | urls.is_ip("::1")}) == 1, count({1 | urls.is_ip("1.2.3")}) == 1, count({1 | urls.is_ip("example.com")}) == 1]

r["glob_table"] := [x |
	some pair in [
		["read_*", "read_file"], ["read_*", "Read_file"], ["*", ""], ["?", ""], ["a.b", "axb"], ["a\\*", "a\\xyz"],
		["(x)", "(x)"], ["[ab]", "a"], ["[ab]", "[ab]"], ["a$", "a$"], ["*_file", "read\nfile_file"], ["\u00e9*", "\u00e9t\u00e9"],
	]
	x := count({1 | names.glob(pair[0], pair[1])}) == 1
]

r["args_paths"] := sort(args.paths({"path": "a", "paths": ["b", null, 3], "source": ["c"], "destination": {"x": 1}, "uri": "file:///d"}))
r["args_path_arguments"] := sort(args.path_arguments({"paths": ["b", "a"], "uri": "u"}))
r["args_missing"] := sort(args.missing_canonical({"path": "a", "paths": ["x", "y"], "source": "s"}, {"path": null, "paths": ["x"]}))
r["args_checks"] := [count({1 | args.string_at_most("\u00e9\u00e9", 2)}) == 1, count({1 | args.array_at_most([], 0)}) == 1, count({1 | args.number_between(1.5, 1, 2)}) == 1, count({1 | args.integer_between(2.0, 1, 2)}) == 1, count({1 | args.type_is([], "array")}) == 1, count({1 | args.type_is({"a"}, "set")}) == 1, count({1 | args.only_keys({}, set())}) == 1, count({1 | args.strings_at_most({"k": [["deep", {"kk": "v"}]]}, 4)}) == 1]
r["args_unknown_keys"] := sort(args.unknown_keys({"path": 1, "x": 2, "y": 3}, {"path"}))

r["clean_slashes"] := [paths.clean("///"), paths.clean("a///"), paths.clean("./../."), paths.clean("/./")]
r["valid_length_edge"] := [count({1 | paths.valid(long(4096))}) == 1, count({1 | paths.valid(long(4097))}) == 1]
r["within_any"] := [count({1 | paths.within_any("/b/x", ["/a", "/b"])}) == 1, count({1 | paths.within_any("/bb", ["/a", "/b"])}) == 1]
r["url_parts"] := [urls.scheme("HtTpS://h/"), urls.userinfo("ftp://u@h/"), urls.host("ftp://u@H/"), urls.path("ftp://u@h/p?x"), urls.port("ftp://h/")]
r["url_host_only_at"] := urls.parse("http://@/")
r["url_userinfo_colon"] := urls.parse("http://user:pa:ss@h:1/")
r["url_query_before_at"] := urls.parse("http://h?x@evil/")
r["url_v4_mapped"] := urls.host("http://0x7f.1/")
r["url_nonascii_path"] := urls.parse("https://h/\u00fcber/\u2028x")
r["glob_long"] := names.glob("*", long(1025))
r["glob_any"] := [count({1 | names.glob_any(["a*", "b*"], "bx")}) == 1, count({1 | names.glob_any(["a*"], "bx")}) == 1]
r["args_not_object"] := sort(args.paths(["path"]))
r["args_missing_null_canonical"] := sort(args.missing_canonical({"path": "a"}, null))
r["args_long_key"] := count({1 | args.strings_at_most({"abcdef": "x"}, 3)}) == 1
r["args_between_strings"] := count({1 | args.number_between("2", 1, 3)}) == 1
