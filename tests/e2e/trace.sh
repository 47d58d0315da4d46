#!/bin/bash
# husk-trace against a live bus: watch, json, filters, record/show, stats,
# inject (set, list, clear, bad rule), container id resolution, cleanup.
set -u
B=${B:-build}
TRACE=$B/bin/husk-trace
SB=$B/tests/helpers/bus_sandbox
[ -x "$TRACE" ] && [ -x "$SB" ] || { echo "husk-trace or bus_sandbox not built"; exit 77; }
T=$(mktemp -d /tmp/husk-trace-test.XXXXXX)
ROOT=$T/root
mkdir -p "$ROOT"
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; }
check() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }

"$SB" "$ROOT/sb" > "$T/sb.out" 2> "$T/sb.err" &
pid=$!
for _ in $(seq 100); do grep -q ready "$T/sb.out" 2>/dev/null && break; sleep 0.05; done
check "sandbox started" 'grep -q ready "$T/sb.out"'
check "ipc dir is 0700" '[ "$(stat -c %a "$ROOT/sb")" = 700 ]'

timeout 10 "$TRACE" --root "$ROOT" watch sb --count 6 > "$T/watch.out" 2>&1
check "watch prints requests" 'grep -qE "ticker -> echo bus.echo id=[0-9]+" "$T/watch.out"'
check "watch prints replies with latency" 'grep -qE "echo -> ticker bus.echo id=[0-9]+ re=[0-9]+ \+[0-9.]+us" "$T/watch.out"'
check "watch stops after --count" '[ "$(wc -l < "$T/watch.out")" -eq 6 ]'

timeout 10 "$TRACE" --root "$ROOT" watch sb --json --count 2 > "$T/json.out" 2>&1
check "json lines" '[ "$(grep -c "^{\"ts\":" "$T/json.out")" -eq 2 ] && grep -q "\"type\":\"bus.echo\"" "$T/json.out"'

timeout 10 "$TRACE" --root "$ROOT" watch sb --type 'bus.echo' --actor nobody --seconds 0.5 > "$T/filter.out" 2>&1
check "actor filter" '[ ! -s "$T/filter.out" ]'

timeout 10 "$TRACE" --root "$ROOT" record sb "$T/rec.bin" --count 20 2> "$T/rec.err"
check "record" 'grep -q "recorded 20 messages" "$T/rec.err"'
"$TRACE" show "$T/rec.bin" > "$T/show.out" 2>&1
check "show replays the recording line by line" '[ "$(wc -l < "$T/show.out")" -eq 20 ] && grep -q "re=" "$T/show.out"'
"$TRACE" stats "$T/rec.bin" > "$T/stats.out" 2>&1
check "stats per type with percentiles" 'grep -qE "^bus.echo +[0-9]+ +[0-9]+ +0 +[0-9.]+" "$T/stats.out"'

"$TRACE" --root "$ROOT" inject sb 'drop type=bus.echo to=echo' > "$T/inj.out" 2>&1
check "inject sets a rule" 'grep -q "drop type=bus.echo from=\* to=echo" "$T/inj.out"'
timeout 10 "$TRACE" --root "$ROOT" watch sb --count 2 > "$T/drop.out" 2>&1
check "dropped messages are marked on the tap" 'grep -q "\[fault:drop\]" "$T/drop.out"'
"$TRACE" --root "$ROOT" inject sb --list > "$T/list.out" 2>&1
check "inject --list shows hits" 'grep -qE "hits=[1-9]" "$T/list.out"'
"$TRACE" --root "$ROOT" inject sb --clear > "$T/clear.out" 2>&1
check "inject --clear" '[ ! -s "$T/clear.out" ]'
"$TRACE" --root "$ROOT" inject sb 'explode' > "$T/bad.out" 2>&1
rc=$?
check "bad rule refused with reason" '[ $rc -ne 0 ] && grep -q "unknown action" "$T/bad.out"'

mkdir -p "$ROOT/sb/c1"
timeout 10 "$TRACE" --root "$ROOT" watch c1 --count 1 > "$T/c1.out" 2>&1
check "container id resolves to its sandbox" '[ "$(wc -l < "$T/c1.out")" -eq 1 ]'
"$TRACE" --root "$ROOT" watch nosuch --count 1 > "$T/none.out" 2>&1
check "unknown id is a clear error" 'grep -q "no sandbox or container .nosuch." "$T/none.out"'

kill "$pid"; wait "$pid"; rc=$?; pid=
check "sandbox stops cleanly" '[ $rc -eq 0 ]'
check "sockets removed" '[ ! -e "$ROOT/sb/bus.sock" ] && [ ! -e "$ROOT/sb/tap.sock" ]'
