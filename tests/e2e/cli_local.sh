#!/bin/bash
# e2e: the husk CLI against a busybox bundle with the local backend
# (HUSK_HYPERVISOR=local: husk-agent on the host in new namespaces, the same
# actor pipeline as with a VM).  Every command, exit codes, signals, stdin,
# the console socket with a real pty, the pid file, runc's error texts, and
# state/list after the sandbox daemon was killed.
# Prints "ok - name" / "not ok - name"; exits 77 when it cannot run.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RECV=$ROOT/$B/tests/helpers/console_recv
. "$ROOT/tests/helpers/cli_e2e.sh"
cli_e2e_need cli "$B/bin/husk" "$B/bin/husk-agent" "$B/tests/helpers/console_recv"
export HUSK_HYPERVISOR=local

# ---- version, spec, features ---------------------------------------------------
run --version
check "--version: husk version, commit, spec lines" eval '[ $RC = 0 ] && head -1 $T/out | grep -q "^husk version " &&
    sed -n 2p $T/out | grep -q "^commit: " && sed -n 3p $T/out | grep -qx "spec: 1.0.2-dev"'
mkdir -p "$T/s1" "$T/s2"
(cd "$T/s1" && "$HUSK_BIN" spec)
if command -v runc >/dev/null; then
    (cd "$T/s2" && runc spec)
    check "spec is byte-identical to runc's" cmp -s "$T/s1/config.json" "$T/s2/config.json"
fi
(cd "$T/s1" && "$HUSK_BIN" spec 2>"$T/err")
RC=$?
check "spec refuses an existing config.json" eval '[ $RC = 1 ] && err_has "File config.json exists. Remove it first"'
run features
check "features is JSON" eval '[ $RC = 0 ] && python3 -c "import json,sys; json.load(open(\"$T/out\"))"'

# ---- run: output, exit codes, stdin -------------------------------------------------
config '["sh", "-c", "echo out; echo err >&2; exit 3"]'
run run r1
check "run: stdout, stderr and exit code 3" eval '[ $RC = 3 ] && has "^out$" && err_has "^err$"'
check "run: the container is deleted afterwards" eval '! husk state r1 >/dev/null 2>&1'
# back to back: every request of a run reaches the daemon (a new bus
# connection per request once reused the CLI's routing id while the broker
# still held the old one: the request was dropped, ~1 run in 40 hung 30 s)
config '["true"]'
lost=0
for i in $(seq 30); do
    (cd "$BUN" && timeout 20 "$HUSK_BIN" --root "$R" run "b2b$i") >/dev/null 2>"$T/err" </dev/null ||
        { lost=$((lost + 1)); cat "$T/err" >&2; }
done
check "run: 30 back-to-back runs, no request lost" [ "$lost" = 0 ]

config '["sh", "-c", "echo up; sleep 1000"]'
(cd "$BUN" && timeout 30 "$HUSK_BIN" --root "$R" run r2 >"$T/out" 2>"$T/err" </dev/null) &
RP=$!
for i in $(seq 50); do grep -q up "$T/out" 2>/dev/null && break; sleep 0.1; done
husk kill r2 KILL
wait $RP
RC=$?
check "run: killed by SIGKILL (husk kill) gives 137" [ "$RC" = 137 ]

config '["sh", "-c", "tr a-z A-Z"]'
(cd "$BUN" && echo "from stdin" | timeout 30 "$HUSK_BIN" --root "$R" run r3) >"$T/out" 2>"$T/err"
RC=$?
check "run: stdin is relayed, EOF closes it" eval '[ $RC = 0 ] && has "^FROM STDIN$"'

config '["sh", "-c", "trap \"echo got TERM; exit 42\" TERM; echo ready; while :; do sleep 0.1; done"]'
(cd "$BUN" && timeout 30 "$HUSK_BIN" --root "$R" run r4 >"$T/out" 2>"$T/err" </dev/null) &
RP=$!
for i in $(seq 50); do grep -q ready "$T/out" 2>/dev/null && break; sleep 0.1; done
pkill -TERM -f -- "--root $R run r4" 2>/dev/null || kill -TERM $RP
wait $RP
RC=$?
check "run: SIGTERM is forwarded, the status comes back (42)" eval '[ $RC = 42 ] && has "got TERM"'

# ---- create / start / state / list / exec / pause / kill / delete -------------------
config '["sleep", "1000"]'
run create --pid-file "$T/c1.pid" c1
PID=$(cat "$T/c1.pid" 2>/dev/null)
check "create: exit 0, pid file without a newline" eval '[ $RC = 0 ] && [ -n "$PID" ] && [ "$(tail -c1 $T/c1.pid | od -An -c | tr -d " ")" != "\n" ]'
check "create: the pid is a live host process (the proxy)" kill -0 "$PID"
run state c1
check "state: created, pid, no trailing newline" eval '[ $RC = 0 ] && has "\"status\": \"created\"" &&
    has "\"pid\": $PID," && has "\"bundle\": \"$BUN\"" && [ "$(tail -c1 $T/out)" = "}" ]'
run list
check "list: table with the container" eval '[ $RC = 0 ] && head -1 $T/out | grep -q "^ID  *PID  *STATUS  *BUNDLE  *CREATED  *OWNER$" &&
    grep -qE "^c1 +$PID +created +$BUN +[0-9T:.-]+Z +root$" $T/out'
run list --format json
check "list --format json: one line" eval '[ $RC = 0 ] && [ $(wc -l < $T/out) = 1 ] && has "^\[\{\"ociVersion\":\"1.0.2-dev\",\"id\":\"c1\""'
run list -q
check "list -q" eval '[ $RC = 0 ] && [ "$(cat $T/out)" = c1 ]'
run create c1
check "create: duplicate id" eval '[ $RC = 1 ] && err_has "husk create failed: container with given ID already exists"'
run start c1
check "start" eval '[ $RC = 0 ] && husk state c1 | grep -q "\"status\": \"running\""'
run start c1
check "start twice: runc's error" eval '[ $RC = 1 ] && err_has "cannot start an already running container"'
run ps --format json c1
check "ps --format json: a pid array" eval '[ $RC = 0 ] && has "^\[[0-9]+(,[0-9]+)*\]$"'
run ps c1
check "ps: table with a PID column" eval '[ $RC = 0 ] && head -1 $T/out | grep -q PID'
run exec c1 sh -c 'echo in exec; exit 5'
check "exec: output and exit code 5" eval '[ $RC = 5 ] && has "^in exec$"'
cat >"$T/proc.json" <<'EOF'
{"args": ["sh", "-c", "echo $FOO from process.json; id -u"], "env": ["PATH=/bin", "FOO=bar"], "cwd": "/tmp",
 "user": {"uid": 1000, "gid": 1000}}
EOF
run exec --process "$T/proc.json" c1
check "exec --process" eval '[ $RC = 0 ] && has "^bar from process.json$" && has "^1000$"'
run exec -d --pid-file "$T/e1.pid" c1 sleep 1000
check "exec -d --pid-file" eval '[ $RC = 0 ] && kill -0 $(cat $T/e1.pid)'
run exec --preserve-fds 1 c1 true
check "exec --preserve-fds N>0 is refused clearly (exit 255)" eval '[ $RC = 255 ] && err_has "cannot pass file descriptors into the container"'
run events --stats c1
check "events --stats: one stats line" eval '[ $RC = 0 ] && has "^\{\"type\":\"stats\",\"id\":\"c1\",\"data\":"'
run pause c1
check "pause" eval '[ $RC = 0 ] && husk state c1 | grep -q "\"status\": \"paused\""'
run exec c1 true
check "exec in a paused container: 255 and runc's text" eval '[ $RC = 255 ] &&
    err_has "exec failed: cannot exec in a paused container \(use --ignore-paused to override\)"'
run resume c1
check "resume" eval '[ $RC = 0 ] && husk state c1 | grep -q "\"status\": \"running\""'
run resume c1
check "resume when running: container not paused" eval '[ $RC = 1 ] && err_has "container not paused"'
run kill c1 BOGUS
check "kill: unknown signal" eval '[ $RC = 1 ] && err_has "unknown signal \\\\\"BOGUS\\\\\""'
run delete c1
check "delete of a running container without -f" eval '[ $RC = 1 ] && err_has "cannot delete container c1 that is not stopped: running"'
run kill c1 sigkill
for i in $(seq 50); do husk state c1 | grep -q '"status": "stopped"' && break; sleep 0.1; done
run state c1
check "kill sigkill: stopped, pid 0" eval 'has "\"status\": \"stopped\"" && has "\"pid\": 0,"'
for i in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; [ "$(awk "{print \$3}" /proc/$PID/stat 2>/dev/null)" = Z ] && break; sleep 0.1; done
check "the proxy exits with the container" eval '! kill -0 $PID 2>/dev/null || [ "$(awk "{print \$3}" /proc/$PID/stat)" = Z ]'
run exec c1 true
check "exec in a stopped container: 255" eval '[ $RC = 255 ] && err_has "exec failed: cannot exec in a stopped container"'
run delete c1
check "delete" eval '[ $RC = 0 ] && ! husk state c1 2>/dev/null'

# ---- errors as runc words them ---------------------------------------------------
run state nope
check "state of an unknown id" eval '[ $RC = 1 ] && err_has "level=error msg=\"container does not exist\""'
run delete -f nope
check "delete -f of an unknown id is silent" eval '[ $RC = 0 ] && [ ! -s $T/err ]'
run bogus
check "unknown command: exit 3" eval '[ $RC = 3 ] && err_has "No help topic for .bogus."'
run state
check "wrong argument count: Incorrect Usage, exit 1" eval '[ $RC = 1 ] && has "^Incorrect Usage." && err_has "requires exactly 1 argument"'
run create 'bad/id'
check "invalid id" eval '[ $RC = 1 ] && err_has "invalid container ID format"'
run --log-format xml list
check "invalid log-format" eval '[ $RC = 1 ] && err_has "invalid log-format: xml"'
run --log "$T/log.json" --log-format json state nope
check "--log-format json: JSON to the log, plain text on stderr" eval '[ $RC = 1 ] &&
    grep -q "^{\"level\":\"error\",\"msg\":\"container does not exist\",\"time\":" $T/log.json &&
    [ "$(cat $T/err)" = "container does not exist" ]'
config '["true"]' true
run create c9
check "terminal without --console-socket" eval '[ $RC = 1 ] && err_has "cannot allocate tty if runc will detach without setting console socket"'
config '["true"]'
run create --console-socket "$T/x.sock" c9
check "--console-socket without a terminal" eval '[ $RC = 1 ] && err_has "cannot use console socket if runc will not detach or allocate tty"'
run checkpoint c9
check "checkpoint: not supported" eval '[ $RC = 1 ] && err_has "checkpoint is not supported"'

# ---- the console socket with a real pty -------------------------------------------------
config '["sh", "-c", "tty; read x; echo got $x; sleep 0.5; stty size; exit 4"]' true
"$RECV" "$T/console.sock" $'typed\n' 40x100 >"$T/cons" 2>&1 &
RECVP=$!
for i in $(seq 50); do [ -S "$T/console.sock" ] && break; sleep 0.05; done
run create --console-socket "$T/console.sock" --pid-file "$T/t1.pid" t1
C_RC=$RC
run start t1
wait $RECVP
tr -d '\r' <"$T/cons" >"$T/out"
check "console socket: one SCM_RIGHTS pty master named /dev/ptmx" eval '[ $C_RC = 0 ] && has "^name=/dev/ptmx fd=pty$"'
check "console: the container has a tty, input and resizes arrive" eval 'has "^/dev/pts/[0-9]+$" && has "^got typed$" && has "^40 100$"'
husk delete -f t1 >/dev/null 2>&1

# ---- state and list after the daemon and its VMM were killed ------------------------------------
# (a daemon killed alone is restored: tests/e2e/restore.sh)
config '["sleep", "1000"]'
run run -d --pid-file "$T/k1.pid" k1
DPID=$(sed -n 's/.*"daemon_pid": *\([0-9]*\).*/\1/p' "$R/k1/sandbox.json")
VPID=$(sed -n 's/.*"vmm_pid": *\([0-9]*\).*/\1/p' "$R/k1/sandbox.json")
check "run -d" eval '[ $RC = 0 ] && [ -n "$DPID" ] && [ -n "$VPID" ] && husk state k1 | grep -q "\"status\": \"running\""'
# the agent starts in the sandbox's host cgroup (every hierarchy made for it)
check "the local agent runs in the sandbox's host cgroup" eval 'grep -qE ":/husk/k1-[0-9a-f]+\$" /proc/$VPID/cgroup &&
    [ "$(grep -oE "/husk/k1-[0-9a-f]+\$" /proc/$VPID/cgroup | sort -u | wc -l)" = 1 ]'
kill -9 "$DPID"
kill -9 "$VPID"
for i in $(seq 50); do kill -0 "$VPID" 2>/dev/null || break; sleep 0.1; done
run state k1
check "state after the daemon was killed: stopped, pid 0" eval '[ $RC = 0 ] && has "\"status\": \"stopped\"" && has "\"pid\": 0,"'
run list
check "list after the daemon was killed" eval '[ $RC = 0 ] && grep -qE "^k1 +0 +stopped " $T/out'
run kill k1 KILL
check "kill after the daemon was killed: container not running" eval '[ $RC = 1 ] && err_has "container not running"'
run delete k1
check "delete after the daemon was killed cleans up" eval '[ $RC = 0 ] && [ ! -e $R/k1 ]'
KP=$(cat "$T/k1.pid")
for i in $(seq 60); do kill -0 "$KP" 2>/dev/null || break; [ "$(awk "{print \$3}" /proc/$KP/stat 2>/dev/null)" = Z ] && break; sleep 0.1; done
check "the proxy leaves when its daemon is gone" eval '! kill -0 $KP 2>/dev/null || [ "$(awk "{print \$3}" /proc/$KP/stat)" = Z ]'

exit $fail
