#!/bin/bash
# Runs every test suite and ends with one summary line "N passed, N failed".
#  - cmocka binaries $B/tests/test_*: their PASSED/FAILED counts are summed
#  - scripts tests/e2e/*.sh and tests/fault/*.sh: lines "ok - name" and
#    "not ok - name" are counted; exit 77 means skipped (reason on stdout)
# Env: B (build dir), TEST_TIMEOUT (s per suite), ONLY=unit|e2e|fault, FILTER=regex
set -u
# a CI shell may come without the sbin directories (chroot, ip, tc, mkfs and
# mknod live there) and without SHELL or TERM: the suites must not depend on them
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
B=${B:-build}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
ONLY=${ONLY:-}
FILTER=${FILTER:-.}
pass=0 fail=0 skip=0
failed_suites=()
log_dir=$B/test-logs
mkdir -p "$log_dir"

run_suite() { # name, kind, cmd...
    local name=$1 kind=$2; shift 2
    local log=$log_dir/$name.log
    local t0=$(date +%s.%N)
    timeout --kill-after=10 "$TEST_TIMEOUT" "$@" >"$log" 2>&1
    local rc=$?
    local t1=$(date +%s.%N)
    local p=0 f=0
    # a suite must never damage the host: /dev/null was once found replaced
    # by a regular file during parallel runs; name the suite and repair it
    local hostbad=0
    if [ ! -c /dev/null ]; then
        echo "host /dev/null is no longer a character device after this suite" >>"$log"
        rm -f /dev/null && mknod -m 666 /dev/null c 1 3
        hostbad=1
    fi
    if [ "$kind" = cmocka ]; then
        p=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$log" | awk '{s+=$4} END{print s+0}')
        f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$4} END{print s+0}')
    else
        p=$(grep -cE '^ok( |$)' "$log")
        f=$(grep -cE '^not ok( |$)' "$log")
    fi
    f=$((f + hostbad))
    if [ $rc -eq 77 ]; then
        skip=$((skip + 1))
        printf '%-40s SKIP  %s\n' "$name" "$(tail -n1 "$log")"
        return
    fi
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed, timed out or failed without saying which
        [ $rc -eq 124 ] && echo "timeout after ${TEST_TIMEOUT}s" >>"$log"
    fi
    pass=$((pass + p)); fail=$((fail + f))
    local status=PASS
    [ "$f" -gt 0 ] && { status=FAIL; failed_suites+=("$name"); }
    printf '%-40s %s  %3d passed %3d failed  %5.1fs\n' "$name" "$status" "$p" "$f" \
        "$(echo "$t1 - $t0" | bc)"
    if [ "$status" = FAIL ]; then sed 's/^/    | /' "$log" | tail -n 40; fi
}

if [ -z "$ONLY" ] || [ "$ONLY" = unit ]; then
    for t in "$B"/tests/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t")
        [[ $n =~ $FILTER ]] || continue
        run_suite "$n" cmocka "$t"
    done
fi
suites=()
case "$ONLY" in
"") suites=(tests/e2e/*.sh tests/fault/*.sh) ;;
e2e) suites=(tests/e2e/*.sh) ;;
fault) suites=(tests/fault/*.sh) ;;
esac
if [ ${#suites[@]} -gt 0 ]; then
    for t in "${suites[@]}"; do
        [ -f "$t" ] || continue
        n=$(basename "$(dirname "$t")")-$(basename "$t" .sh)
        [[ $n =~ $FILTER ]] || continue
        run_suite "$n" tap env B="$B" bash "$t"
    done
fi
echo
# CI keeps only the tail of the output: repeat what failed right here,
# the failing checks last so that they survive the shortest tail
for n in ${failed_suites[@]+"${failed_suites[@]}"}; do
    echo "--- $n: last lines of $log_dir/$n.log"
    grep -vE '^ok |^\[ +(OK|RUN) +\]' "$log_dir/$n.log" | tail -n 8 | sed 's/^/  | /'
done
for n in ${failed_suites[@]+"${failed_suites[@]}"}; do
    grep -E '^not ok|^\[  FAILED  \] [a-z_]|^timeout after|no longer a character' "$log_dir/$n.log" |
        head -n 6 | cut -c1-160 | sed "s/^/$n: /"
done
[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "$pass passed, $fail failed, $skip skipped" | tee "$log_dir/summary"
[ "$fail" -eq 0 ]
