#!/bin/bash
# make bench: runs every benchmark binary (figures printed, not asserted) and
# the benchmark scripts in tests/bench/*.sh.
set -u
B=${B:-build}
for b in "$B"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || echo "   (exit $?)"
    echo
done
for s in tests/bench/*.sh; do
    [ -f "$s" ] || continue
    echo "== $(basename "$s")"
    B=$B bash "$s" || echo "   (exit $?)"
    echo
done
