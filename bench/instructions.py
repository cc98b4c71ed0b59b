#!/usr/bin/env python3
"""CPU work per forwarded call, counted in instructions (driven by
`bench/instructions.sh`; read that file's header first).

Wall-clock benches move with the machine's load; an instruction count of the
gavel process does not (within a fraction of a per cent). So this runs the
**release** gavel under `valgrind --tool=callgrind` (gavel only: the upstream
it spawns runs natively, `--trace-children=no`) serving a fixed number of
`tools/call`s from a closed-loop client (one request, then its answer), for
two paths:

- `wrap`: `gavel wrap` (no policy, no log) in front of `gavel-fixture`;
- `deployed`: `gavel run` as `bench/deployed.rs` builds it — the example's
  five layers (filesystem with its result rule and `echo` a read tool,
  override, identity, compliance, workflow with its thresholds and rate limit
  raised), the decision log, a daily budget and the workflow layer's rate
  limit — every call carrying `path: public/readme.txt`.

Start-up (bundle compilation, the stores) costs far more than a call, so
each path runs twice, with `LOW` and `HIGH` calls after the same warm-up, and
the per-call figure is the difference of the two totals over `HIGH - LOW`:
start-up, warm-up and shutdown cancel out. The callgrind output of each
`HIGH` run is kept (`callgrind.<path>.out` in the output directory) for
`callgrind_annotate`.

The last line printed is one JSON object: instructions per call for wrap and
deployed and their ratio (issue 17's target: deployed <= 2x wrap).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_num(name, default):
    v = os.environ.get(name)
    return int(v) if v else default


def deployed_bundles(out):
    """The example's layers copied as `bench/deployed.rs::bundles` does."""
    src = os.path.join(ROOT, "bundles")
    dst = os.path.join(out, "bundles")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for b in ["filesystem", "override", "identity", "compliance", "workflow"]:
        shutil.copytree(os.path.join(src, b), os.path.join(dst, b))
    fs = os.path.join(dst, "filesystem/mcp/filesystem/filesystem.rego")
    rego = open(fs).read()
    echo = rego.replace(
        '"list_allowed_directories",', '"list_allowed_directories", "echo",', 1
    )
    if echo == rego:
        sys.exit("filesystem.rego: its read_tools set moved (bench/deployed.rs too)")
    open(fs, "w").write(echo)
    wf = os.path.join(dst, "workflow/gavel/workflow/data.json")
    data = json.load(open(wf))
    data["max_consecutive_same_tool"] = 1_000_000_000
    data["max_calls_per_minute"] = 1_000_000_000
    data["max_session_tokens"] = 1_000_000_000_000
    data["limits"] = [
        {"scope": "user", "rate": 1_000_000_000, "per": "1m", "burst": 1_000_000}
    ]
    open(wf, "w").write(json.dumps(data))


def deployed_config(out, name, fixture):
    """`bench/deployed.rs::config`, with fresh state and log per run, and a
    long `eval_timeout`: under valgrind a first evaluation takes far over the
    default 100 ms and would be denied (`policy_timeout`), which is not the
    path to measure."""
    p = lambda s: os.path.join(out, s)
    for stale in [p(f"decisions-{name}.jsonl"), p(f"state-{name}")]:
        if os.path.isdir(stale):
            shutil.rmtree(stale)
        elif os.path.exists(stale):
            os.remove(stale)
    q = json.dumps
    text = f"""[identity.agent]
id = "bench-agent"
scope = ["tools:read", "tools:call"]
owner_team = "platform"

[identity.user]
id = "bench"
groups = ["engineering"]
data_classifications_authorized = ["public", "internal"]

[identity.environment]
region = "eu-west-1"
is_production = false

[policy]
eval_timeout = "60s"
shared_bundles = [{q(p("bundles/identity"))}, {q(p("bundles/compliance"))}, {q(p("bundles/workflow"))}]

[log]
decisions = {q(p(f"decisions-{name}.jsonl"))}

[state]
path = {q(p(f"state-{name}/state.sqlite"))}

[budget]
calls = 1000000000

[servers.filesystem]
command = {q(fixture)}
args = []
path_root = {q(os.path.join(ROOT, "demo-data"))}
bundles = [{q(p("bundles/filesystem"))}, {q(p("bundles/override"))}]
"""
    path = p(f"servers-{name}.toml")
    open(path, "w").write(text)
    return path


class Client:
    """A closed-loop MCP client over the child's pipes."""

    def __init__(self, argv, stderr):
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        self.id = 0
        self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "gavel-instructions", "version": "1"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.request("tools/list", {})

    def send(self, msg):
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method, params):
        self.id += 1
        self.send({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params})
        while True:
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"{method}: gavel closed its output (see its stderr log)")
            v = json.loads(line)
            if v.get("id") == self.id:
                if "error" in v:
                    sys.exit(f"{method} failed: {v}")
                return v

    def call(self):
        v = self.request(
            "tools/call",
            {"name": "echo", "arguments": {"text": "bench", "path": "public/readme.txt"}},
        )
        r = v.get("result") or {}
        if r.get("isError"):
            sys.exit(f"the bench call must succeed: {v}")

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def total_instructions(path):
    """The `summary:` (or `totals:`) line of a callgrind output file."""
    total = None
    for line in open(path):
        m = re.match(r"^(summary|totals):\s+(\d+)", line)
        if m:
            total = int(m.group(2))
    if total is None:
        sys.exit(f"{path}: no callgrind totals")
    return total


def run(out, name, argv, warmup, calls, keep):
    prof = os.path.join(out, f"callgrind.{name}.{calls}.out")
    vg = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=no",
        f"--callgrind-out-file={prof}",
        # One file for the whole process, threads summed.
        "--separate-threads=no",
    ]
    with open(os.path.join(out, f"stderr.{name}.{calls}.log"), "w") as err:
        c = Client(vg + argv, err)
        for _ in range(warmup + calls):
            c.call()
        c.close()
    total = total_instructions(prof)
    os.replace(prof, os.path.join(out, f"callgrind.{name}.{'high' if keep else 'low'}.out"))
    return total


def self_costs(path, inclusive=False):
    """Each function's own (or inclusive) instructions in a callgrind
    output, by name."""
    text = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
         "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*?)\s*$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            # The object in brackets names the binary's path: drop it, so
            # two binaries' profiles compare.
            fn = re.sub(r"\s*\[[^\]]*\]$", "", m.group(2))
            fn = fn.split(":", 1)[1] if fn.startswith("???:") else fn
            costs[fn] = costs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return costs


def per_call_profile(out, name, calls, top):
    """The functions that cost the most per call: the HIGH run's self cost
    minus the LOW run's, over the calls between them (written to
    `profile.<path>.txt`)."""
    lo = self_costs(os.path.join(out, f"callgrind.{name}.low.out"))
    hi = self_costs(os.path.join(out, f"callgrind.{name}.high.out"))
    rows = sorted(
        ((hi.get(f, 0) - lo.get(f, 0)) / calls, f) for f in set(lo) | set(hi)
    )[::-1]
    lo_i = self_costs(os.path.join(out, f"callgrind.{name}.low.out"), True)
    hi_i = self_costs(os.path.join(out, f"callgrind.{name}.high.out"), True)
    incl = sorted(
        ((hi_i.get(f, 0) - lo_i.get(f, 0)) / calls, f)
        for f in set(lo_i) | set(hi_i)
        if "gavel::" in f or "rmcp::" in f
    )[::-1]
    with open(os.path.join(out, f"profile.{name}.txt"), "w") as f:
        f.write(f"# {name}: own instructions per call (HIGH - LOW runs)\n")
        for per, fn in rows[:top]:
            f.write(f"{per:12.0f}  {fn}\n")
        f.write(f"\n# {name}: inclusive instructions per call, gavel and rmcp functions\n")
        for per, fn in incl[:top * 2]:
            f.write(f"{per:12.0f}  {fn}\n")
    # The budget ledger's writer runs every 100 ms of wall time, not per
    # call; under valgrind a call takes milliseconds, so its passes land
    # on far fewer calls than in a real run. Reported apart.
    ledger = sum(
        per for per, fn in incl if fn.startswith("gavel::state::ledger::write_pass")
    )
    return ledger


def main():
    gavel = os.path.abspath(
        os.environ.get("GAVEL", os.path.join(ROOT, "target/release/gavel"))
    )
    fixture = os.path.abspath(
        os.environ.get("GAVEL_FIXTURE", os.path.join(ROOT, "target/release/gavel-fixture"))
    )
    out = os.path.abspath(
        os.environ.get("INSTR_OUT", os.path.join(ROOT, "target/instructions"))
    )
    low = env_num("INSTR_LOW", 50)
    high = env_num("INSTR_HIGH", 250)
    warmup = env_num("INSTR_WARMUP", 20)
    if high <= low:
        sys.exit("INSTR_HIGH must be above INSTR_LOW")
    for b in [gavel, fixture]:
        if not os.access(b, os.X_OK):
            sys.exit(f"{b}: not built (cargo build --release --bin gavel --bin gavel-fixture)")
    os.makedirs(out, exist_ok=True)
    # A set RUST_BACKTRACE makes every `anyhow` error (regorus makes some
    # on a normal evaluation) capture a backtrace: a cost of the
    # environment, not of gavel, unless INSTR_KEEP_BACKTRACE=1 keeps it.
    if os.environ.get("INSTR_KEEP_BACKTRACE") != "1":
        for v in ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"]:
            os.environ.pop(v, None)
    deployed_bundles(out)
    paths = {
        "wrap": lambda n: [gavel, "wrap", "--name", "bench", "--", fixture],
        "deployed": lambda n: [
            gavel, "run", "--config", deployed_config(out, f"deployed-{n}", fixture)
        ],
    }
    result = {"bench": "instructions", "calls": high - low, "warmup": warmup}
    t0 = time.time()
    for name, argv in paths.items():
        a = run(out, name, argv(low), warmup, low, False)
        b = run(out, name, argv(high), warmup, high, True)
        per = (b - a) / (high - low)
        print(
            json.dumps({"path": name, "low_calls": low, "total_low": a,
                        "high_calls": high, "total_high": b,
                        "instructions_per_call": round(per)}),
            flush=True,
        )
        result[f"{name}_instructions_per_call"] = round(per)
        ledger = per_call_profile(out, name, high - low, env_num("INSTR_TOP", 60))
        if name == "deployed":
            result["deployed_ledger_pass_per_call"] = round(ledger)
            result["deployed_without_ledger_per_call"] = round(per - ledger)
    result["deployed_to_wrap"] = round(
        result["deployed_instructions_per_call"] / result["wrap_instructions_per_call"], 2
    )
    result["deployed_without_ledger_to_wrap"] = round(
        result["deployed_without_ledger_per_call"] / result["wrap_instructions_per_call"], 2
    )
    result["target_deployed_to_wrap"] = 2.0
    result["gavel"] = gavel
    result["seconds"] = round(time.time() - t0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
