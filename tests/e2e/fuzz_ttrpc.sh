#!/bin/bash
# Builds tests/fuzz/fuzz_ttrpc.c with clang's libFuzzer + ASan + UBSan against
# the sources it needs, seeds a corpus, runs it for FUZZ_TIME seconds (20 by
# default) and prints "ok - fuzz_ttrpc" or "not ok - fuzz_ttrpc ...".
# Exit 77 (skip) when clang or its libFuzzer runtime is missing.
# Env: B (build dir, default build), FUZZ_TIME (s).
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
FUZZ_TIME=${FUZZ_TIME:-20}
out=$B/fuzz
bin=$out/fuzz_ttrpc
corpus=$out/corpus_ttrpc
mkdir -p "$out" "$corpus"

command -v clang >/dev/null || { echo "skip: clang not installed"; exit 77; }
probe=$out/.probe_fuzzer
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' >"$probe.c"
if ! clang -fsanitize=fuzzer "$probe.c" -o "$probe" >/dev/null 2>&1; then
    echo "skip: clang's libFuzzer runtime is missing (apt-get install libclang-rt-14-dev)"
    exit 77
fi

srcs=(tests/fuzz/fuzz_ttrpc.c common/err.c common/log.c common/xalloc.c services/ttrpc.c services/ttrpc_task.c
      services/ttrpc_event.c $(find services/proto -name '*.pb-c.c' | LC_ALL=C sort))
if ! clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -fno-omit-frame-pointer -D_GNU_SOURCE -I. -Iinclude \
        -DHUSK_VERSION='"fuzz"' -DHUSK_COMMIT='"fuzz"' \
        "${srcs[@]}" -o "$bin" $(pkg-config --cflags --libs libevent libprotobuf-c) \
        >"$out/build.log" 2>&1; then
    sed 's/^/# /' "$out/build.log" | tail -n 20
    echo "not ok - fuzz_ttrpc (build failed)"
    exit 1
fi

# Seeds: one input per path (first byte: 0 server, 1 client, 2 decoders, 3 parser).
req() { # stream id byte, service, method, payload-hex -> frame hex
    local svc=$1 m=$2 p=$3 sid=$4 body
    body=$(printf '0a%02x%s12%02x%s1a%02x%s' ${#svc} "$(printf %s "$svc" | xxd -p | tr -d '\n')" \
        ${#m} "$(printf %s "$m" | xxd -p | tr -d '\n')" $((${#p} / 2)) "$p")
    printf '%08x%08x0100%s' $((${#body} / 2)) "$sid" "$body"
}
if command -v xxd >/dev/null; then
    T=containerd.task.v2.Task
    { printf 00; req $T Connect 0a027431 3; req $T Wait 0a027431 5; req $T State 0a027431 7; \
      req $T Bogus "" 9; printf '00000005000000020100'; printf 0011223344; } |
        xxd -r -p >"$corpus/seed-server"
    { printf 00; req $T Create 0a0263311a0a0a076f7665726c6179 1; req $T Kill 0a02633118091801 3; \
      printf '00400001000000050100'; } | xxd -r -p >"$corpus/seed-server-oversize"
    { printf 01; printf '000000080000000102001206 08a10d10e70d'; printf '000000000000000302 00'; \
      printf '00000010000000050200 0a0e080c120a6d6574686f642042'; } | tr -d ' ' |
        xxd -r -p >"$corpus/seed-client"
    printf '02010a02633112027431' | xxd -r -p >"$corpus/seed-decoders"
    { printf 03; printf '00000002000000010100abcd'; printf '0000ffff000000030100'; } |
        xxd -r -p >"$corpus/seed-parser"
fi

log=$out/fuzz_ttrpc.log
"$bin" -max_total_time="$FUZZ_TIME" -timeout=10 -artifact_prefix="$out/" -rss_limit_mb=2048 -max_len=8192 \
    -dict=tests/fuzz/fuzz_ttrpc.dict -print_final_stats=1 "$corpus" >"$log" 2>&1
rc=$?
grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)' "$log" |
    sed 's/^/# /'
if [ $rc -eq 0 ]; then
    echo "ok - fuzz_ttrpc"
    exit 0
fi
grep -E 'ERROR|SUMMARY|assert|crash-|leak-|timeout-' "$log" | head -n 20 | sed 's/^/# /'
echo "not ok - fuzz_ttrpc (rc=$rc, artifacts and log in $out)"
exit 1
