package gavel.lib.names_test

import data.gavel.lib.names

test_glob if {
	names.glob("read_*", "read_file")
	names.glob("read_*", "read_")
	not names.glob("read_*", "xread_file")
	names.glob("*_file", "write_file")
	names.glob("*", "a.b/c")
	names.glob("get_?", "get_x")
	not names.glob("get_?", "get_xy")
	not names.glob("Read_*", "read_file")
	names.glob("fs.read", "fs.read")
	not names.glob("fs.read", "fsxread")
	names.glob("a+b(c)[d]{e}|^$", "a+b(c)[d]{e}|^$")
	not names.glob("a+b", "aab")
	names.glob(`a\b`, `a\b`)
	names.glob("*", "line\nbreak")
	not names.glob("read_*", 1)
	not names.glob(1, "read_file")
}

test_glob_any if {
	names.glob_any(["read_*", "list_*"], "list_directory")
	not names.glob_any(["read_*", "list_*"], "write_file")
	not names.glob_any([], "write_file")
}
