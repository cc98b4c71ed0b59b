"""Evaluates gavel's policy library in OPA (PyPI opa-golib-python-bindings,
installed into .deps/venv by scripts/setup) for tests/e2e/e2e_opa_parity.rs.

    python opa_parity.py tests BUNDLE_DIR…     -> {"data.pkg.test_x": true|false|"error: …"}
    python opa_parity.py cases BUNDLE_DIR FILE  -> the value of data.parity.r

Several bundle directories load into one engine, as `opa test a b` does
(each directory's data.json files at their directory path).

Test rules are found as `opa test` finds them: every rule whose name starts
with test_ (here: defined at the start of a line of a *_test.rego file, the
layout of bundles/lib), evaluated on an empty input; a test passes iff its
value is true. Prints JSON on stdout; exits 2 when the bindings are missing.
"""

import json
import pathlib
import re
import sys

try:
    from opa_bindings import OpaEngine, OpaError
except ImportError as e:  # the test must fail, not skip: setup installs them
    print(f"opa_bindings is not installed ({e}); run scripts/setup", file=sys.stderr)
    sys.exit(2)


def engine(*bundles: pathlib.Path):
    e = OpaEngine()
    sources = {}
    for bundle in bundles:
        for f in sorted(bundle.rglob("*.rego")):
            rel = f"{bundle.name}/{f.relative_to(bundle)}"
            sources[rel] = f.read_text()
            e.add_policy(rel, sources[rel])
        for f in sorted(bundle.rglob("data.json")):
            e.add_data(json.loads(f.read_text()), ".".join(f.parent.relative_to(bundle).parts))
    return e, sources


def tests(*bundles: pathlib.Path):
    e, sources = engine(*bundles)
    out = {}
    for rel, src in sources.items():
        pkg = re.search(r"^package\s+([\w.]+)", src, re.M).group(1)
        for name in dict.fromkeys(re.findall(r"^(test_\w+)", src, re.M)):
            rule = f"data.{pkg}.{name}"
            try:
                rs = e.eval_query(f"x := {rule}", input={})
                out[rule] = bool(rs) and rs[0].get("x") is True
            except OpaError as err:
                out[rule] = f"error: {err}"
    return out


def cases(bundle: pathlib.Path, file: pathlib.Path):
    e, _ = engine(bundle)
    e.add_policy("parity/cases.rego", file.read_text())
    rs = e.eval_query("x := data.parity.r", input={})
    return rs[0]["x"] if rs else None


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "tests":
        result = tests(*map(pathlib.Path, sys.argv[2:]))
    else:
        result = cases(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    json.dump(result, sys.stdout, sort_keys=True, ensure_ascii=True)
