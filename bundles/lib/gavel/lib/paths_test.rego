package gavel.lib.paths_test

import data.gavel.lib.paths

test_clean_like_go_path_clean if {
	paths.clean("") == "."
	paths.clean(".") == "."
	paths.clean("./") == "."
	paths.clean("/") == "/"
	paths.clean("//") == "/"
	paths.clean("/..") == "/"
	paths.clean("/../..//etc") == "/etc"
	paths.clean("a//b") == "a/b"
	paths.clean("a/./b/") == "a/b"
	paths.clean("./a/b/.") == "a/b"
	paths.clean("a/../b") == "b"
	paths.clean("a/..") == "."
	paths.clean("..") == ".."
	paths.clean("../..//x/") == "../../x"
	paths.clean("a/../../b") == "../b"
	paths.clean("a/b/../../../c/./d/..") == "../c"
	paths.clean("/srv/data/../data-evil") == "/srv/data-evil"
	paths.clean("...") == "..."
	paths.clean("a/.../b") == "a/.../b"
	paths.clean(`a\..\b`) == `a\..\b`
}

test_clean_bounded if {
	not paths.clean(concat("", [x | some _ in numbers.range(1, 4097); x := "a"]))
	paths.clean(concat("/", [x | some _ in numbers.range(1, 2000); x := "a"])) != ""
	not paths.clean(7)
}

test_segments if {
	paths.segments("/a//b/./c/") == ["a", "b", "c"]
	paths.segments("/") == []
	paths.segments(".") == []
	paths.segments("../x") == ["..", "x"]
}

test_climbs if {
	paths.climbs("..")
	paths.climbs("../x")
	paths.climbs("a/../../x")
	paths.climbs("/../etc")
	not paths.climbs("a/../x")
	not paths.climbs("a/b/../..")
	not paths.climbs("/srv/x")
	not paths.climbs("")
	not paths.climbs("...")
}

test_valid if {
	paths.valid("/srv/data")
	paths.valid("a b/c")
	paths.valid("notes..txt")
	not paths.valid("")
	not paths.valid(null)
	not paths.valid(["a"])
	not paths.valid(`a\b`)
	not paths.valid("a\u0000b")
	not paths.valid("~")
	not paths.valid("~/x")
	paths.valid("x/~")
	not paths.valid("C:/Windows")
	not paths.valid("c:")
	not paths.valid(" /etc")
	not paths.valid("x\n")
	not paths.valid("'x'")
	not paths.valid("x\u00a0")
}

test_within_is_segment_aware if {
	paths.within("/srv/data", "/srv/data")
	paths.within("/srv/data/", "/srv/data")
	paths.within("/srv/data/x/y", "/srv/data")
	paths.within("/srv/data//x", "/srv/data/")
	paths.within("/srv/other/../data/x", "/srv/data")
	not paths.within("/srv/data-evil", "/srv/data")
	not paths.within("/srv/data-evil/x", "/srv/data")
	not paths.within("/srv/data/../data-evil/x", "/srv/data")
	not paths.within("/srv", "/srv/data")
	paths.within("/anything", "/")
}

test_within_relative if {
	paths.within("public/a", "public")
	paths.within("./public//a/", "public")
	not paths.within("public-x/a", "public")
	paths.within("a", ".")
	paths.within(".", ".")
	not paths.within("../a", ".")
	not paths.within("a/../../b", ".")
	not paths.within("/etc/passwd", ".")
	not paths.within("public/a", "/srv")
	not paths.within("/srv/a", "srv")
}

test_within_refuses_what_it_cannot_read if {
	not paths.within("", "/")
	not paths.within(`\srv\data\x`, "/")
	not paths.within(`/srv/data/..\..\etc`, "/srv/data")
	not paths.within("/srv/data/x", "")
	not paths.within(null, "/")
	not paths.within("~/x", ".")
}

test_within_any if {
	paths.within_any("/b/x", ["/a", "/b"])
	not paths.within_any("/c/x", ["/a", "/b"])
	not paths.within_any("/c/x", [])
}

test_resolve_like_server_filesystem if {
	paths.resolve("x", "/srv/root") == "/srv/root/x"
	paths.resolve("./x//y/", "/srv/root") == "/srv/root/x/y"
	paths.resolve(".", "/srv/root") == "/srv/root"
	paths.resolve("/srv/root/x", "/srv/root") == "/srv/root/x"
	paths.resolve("/etc/passwd", "/srv/root") == "/etc/passwd"
	paths.resolve("../x", "/srv/root") == "/srv/x"
	paths.resolve("root/x", "/srv/root") == "/srv/root/root/x"
	not paths.resolve("~/x", "/srv/root")
	not paths.resolve("x", "relative/root")
	not paths.resolve("", "/srv/root")
	not paths.resolve(`..\x`, "/srv/root")
}

test_inside_and_escapes if {
	paths.inside("x", "/srv/root")
	paths.inside("/srv/root/x", "/srv/root")
	paths.inside("/srv/root", "/srv/root")
	paths.inside(".", "/srv/root")
	not paths.inside("../x", "/srv/root")
	not paths.inside("x/../../root-evil", "/srv/root")
	not paths.inside("/srv/root-evil/x", "/srv/root")
	paths.escapes("../x", "/srv/root")
	paths.escapes("~/x", "/srv/root")
	paths.escapes("", "/srv/root")
	not paths.escapes("x/../y", "/srv/root")
}

test_relative_to if {
	paths.relative_to("/srv/root/a/b", "/srv/root") == "a/b"
	paths.relative_to("a//b/", "/srv/root") == "a/b"
	paths.relative_to("/srv/root", "/srv/root/") == "."
	paths.relative_to("/x", "/") == "x"
	not paths.relative_to("/etc", "/srv/root")
}

test_has_dotdot if {
	paths.has_dotdot("..")
	paths.has_dotdot("a/../b")
	paths.has_dotdot(`a\..\b`)
	paths.has_dotdot("/..")
	not paths.has_dotdot("notes..txt")
	not paths.has_dotdot("...")
	not paths.has_dotdot(1)
}
