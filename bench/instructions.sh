#!/bin/sh
# CPU work per forwarded call, in instructions: the release gavel under
# callgrind serving a fixed number of calls, `wrap` and the deployed config
# (bench/deployed.rs's), the per-call figure being the difference between a
# LOW and a HIGH run over HIGH - LOW (start-up cancels out). Repeatable under
# load, unlike the wall-clock benches (issue 17). Details: bench/README.md,
# `instructions`, and the header of bench/instructions.py (the driver).
#
#   cargo build --release --bin gavel --bin gavel-fixture
#   bench/instructions.sh            # last line: the JSON summary
#
# Env: GAVEL, GAVEL_FIXTURE (default target/release/…), INSTR_LOW (50),
# INSTR_HIGH (250), INSTR_WARMUP (20), INSTR_OUT (target/instructions: the
# configs, logs and each path's callgrind.<path>.out for callgrind_annotate).
set -eu
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
exec python3 "$(dirname "$0")/instructions.py" "$@"
