package gavel.lib.urls_test

import data.gavel.lib.urls

test_parse_whole if {
	urls.parse("HTTPS://User:pw@Example.COM:8443/a/b?q=1&r#frag") == {
		"scheme": "https", "userinfo": "User:pw", "host": "example.com", "port": 8443,
		"path": "/a/b", "query": "q=1&r", "fragment": "frag",
	}
	urls.parse("http://example.com") == {
		"scheme": "http", "userinfo": null, "host": "example.com", "port": null,
		"path": "", "query": null, "fragment": null,
	}
}

test_userinfo_is_not_the_host if {
	urls.host("http://trusted@evil/") == "evil"
	urls.host("http://trusted.com@evil.com:80/x") == "evil.com"
	urls.host("http://a@b@evil.com/") == "evil.com"
	urls.userinfo("http://a@b@evil.com/") == "a@b"
	urls.host("http://evil.com/@trusted.com") == "evil.com"
	urls.host("http://evil.com?@trusted.com") == "evil.com"
	urls.host("http://evil.com#@trusted.com") == "evil.com"
	not urls.userinfo("http://example.com/")
}

test_host_case_port_trailing_dot if {
	urls.host("http://EXAMPLE.com./") == "example.com"
	urls.port("http://example.com/") == 80
	urls.port("https://example.com/") == 443
	urls.port("https://example.com:8443/") == 8443
	urls.port("https://example.com:/") == 443
	not urls.port("gopher://example.com/")
	not urls.parse("http://example.com:80:81/")
	not urls.parse("http://example.com:http/")
	not urls.parse("http://example.com:65536/")
}

test_ipv6_literals if {
	urls.host("http://[::1]:8080/x") == "::1"
	urls.port("http://[::1]:8080/x") == 8080
	urls.host("http://[2001:DB8::1]/") == "2001:db8::1"
	not urls.parse("http://[::1/")
	not urls.parse("http://[fe80::1%25eth0]/")
	urls.is_ip("::1")
	urls.is_ip("127.0.0.1")
	not urls.is_ip("example.com")
}

test_no_scheme_no_host if {
	urls.parse("example.com/x").scheme == null
	not urls.host("example.com/x")
	urls.path("example.com/x") == "example.com/x"
	urls.host("//example.com/x") == "example.com"
	not urls.scheme("//example.com/x")
	not urls.host("file:///etc/passwd")
	urls.path("file:///etc/passwd") == "/etc/passwd"
	urls.scheme("mailto:a@example.com") == "mailto"
	not urls.host("mailto:a@example.com")
}

test_ambiguous_urls_have_no_parse if {
	not urls.parse(`http://evil.com\@trusted.com/`)
	not urls.parse("http://exa mple.com/")
	not urls.parse("http://example.com/\n")
	not urls.parse("http://ex%61mple.com/")
	not urls.parse("http://\u0130stanbul.example/")
	not urls.host_matches("b\u00fccher.example", "*")
	urls.host("http://xn--bcher-kva.example/") == "xn--bcher-kva.example"
	not urls.parse(42)
	not urls.host(concat("", ["http://a.com/", concat("", [x | some _ in numbers.range(1, 8200); x := "a"])]))
}

test_query_and_fragment if {
	urls.parse("http://h/p?a=1#f?g").query == "a=1"
	urls.parse("http://h/p#f?g").query == null
	urls.parse("http://h/p#f?g").fragment == "f?g"
	urls.parse("http://h/p?").query == ""
}

test_host_matches_exact_and_subdomains if {
	urls.host_matches("example.com", "example.com")
	urls.host_matches("Example.COM.", "example.com")
	not urls.host_matches("evilexample.com", "example.com")
	not urls.host_matches("api.example.com", "example.com")
	urls.host_matches("api.example.com", "*.example.com")
	urls.host_matches("a.b.example.com", "*.EXAMPLE.com")
	not urls.host_matches("example.com", "*.example.com")
	not urls.host_matches("evilexample.com", "*.example.com")
	not urls.host_matches("example.com.evil.net", "*.example.com")
	urls.host_matches("anything.net", "*")
	not urls.host_matches("", "*")
	not urls.host_matches(null, "*")
	not urls.host_matches(".", "*")
	not urls.host_matches("a.example.com", "*.")
	not urls.host_matches("a.example.com", "*.*.com")
	not urls.host_matches("a.example.com", "")
	not urls.host_matches("example.com", "*example.com")
}

test_host_allowed if {
	allowed := ["api.github.com", "*.githubusercontent.com"]
	urls.host_allowed("https://api.github.com/repos", allowed)
	urls.host_allowed("https://raw.githubusercontent.com/x", allowed)
	not urls.host_allowed("https://api.github.com@evil.com/", allowed)
	not urls.host_allowed("https://api.github.com.evil.com/", allowed)
	not urls.host_allowed("https://githubusercontent.com/", allowed)
	not urls.host_allowed("api.github.com/repos", allowed)
	not urls.host_allowed(`https://evil.com\@api.github.com/`, allowed)
}

test_scheme_allowed if {
	urls.scheme_allowed("HTTPS://x/", ["https"])
	urls.scheme_allowed("https://x/", ["HTTPS"])
	not urls.scheme_allowed("http://x/", ["https"])
	not urls.scheme_allowed("x/y", ["https"])
}
