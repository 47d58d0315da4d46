#!/bin/bash
# Builds the libFuzzer target tests/fuzz/fuzz_agent_frame.c (the agent
# channel framing + envelope decoding) with clang and runs it for
# FUZZ_SECONDS (default 20).  Prints "ok - name" / "not ok - name";
# exit 77 when clang or its fuzzer runtime is missing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${B:-build}
SECS=${FUZZ_SECONDS:-20}
CLANG=${CLANG:-clang}
cd "$ROOT"
if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "skip: clang is not installed"
    exit 77
fi
W=$(mktemp -d /tmp/husk-fuzz-agent.XXXXXX)
FPID=
cleanup() {
    [ -n "$FPID" ] && kill -KILL "$FPID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# is the fuzzer runtime there?
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' >"$W/probe.c"
if ! "$CLANG" -fsanitize=fuzzer "$W/probe.c" -o "$W/probe" >/dev/null 2>&1; then
    echo "skip: clang's libFuzzer runtime (libclang_rt.fuzzer) is missing"
    exit 77
fi
BIN=$W/fuzz_agent_frame
if "$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -std=gnu11 -D_GNU_SOURCE -DHUSK_VERSION='"fuzz"' -DHUSK_COMMIT='"fuzz"' -I. -Iinclude \
    $(pkg-config --cflags msgpack jansson) \
    tests/fuzz/fuzz_agent_frame.c agent/frame.c messages/msg.c messages/mpread.c common/err.c \
    $(pkg-config --libs msgpack jansson) -o "$BIN" >"$W/build.log" 2>&1; then
    echo "ok - build the agent frame fuzzer"
else
    echo "not ok - build the agent frame fuzzer"
    sed 's/^/#   /' "$W/build.log" | head -30
    exit 1
fi
# seeds: a few valid frames
mkdir -p "$W/corpus"
printf '\x05\x00\x00\x00\x01\x80' >"$W/corpus/empty-map"
printf '\x01\xff\xff\xff\xff' >"$W/corpus/huge"
"$BIN" -max_total_time="$SECS" -max_len=8192 -timeout=10 -rss_limit_mb=1024 -artifact_prefix="$W/" \
    -print_final_stats=1 "$W/corpus" >"$W/run.log" 2>&1 &
FPID=$!
wait "$FPID"
rc=$?
FPID=
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$W/run.log")
if [ $rc -eq 0 ]; then
    echo "ok - fuzz the agent frame reader and envelope decoder for ${SECS}s"
    echo "# ${runs:-?} inputs executed"
else
    echo "not ok - fuzz the agent frame reader and envelope decoder for ${SECS}s"
    # the fuzzer's own words, not its progress lines (#N NEW/REDUCE ...)
    echo "# fuzzer exit status $rc; its last words:"
    grep -vE '^#[0-9]+[[:space:]]' "$W/run.log" | tail -30 | sed 's/^/#   /'
    mkdir -p "$ROOT/$B/fuzz"
    cp "$W"/crash-* "$W"/timeout-* "$W"/oom-* "$W"/slow-unit-* "$ROOT/$B/fuzz/" 2>/dev/null &&
        echo "# failing inputs saved in $B/fuzz/"
    exit 1
fi
