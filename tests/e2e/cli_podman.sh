#!/bin/bash
# e2e: podman 4.3 + conmon driving `husk` as their OCI runtime
# (`podman --runtime <abs path to husk>`), unchanged.
#
# podman gets its own config, storage, tmp dir and a private mount namespace
# (a "jail", kept alive by a bind-mounted nsfs file) with a tmpfs on /run:
# podman passes no --root to the runtime (and its cleanup process passes no
# environment at all), so husk's default root /run/husk, podman's run dirs
# and every overlay mount stay inside the jail.  HUSK_HYPERVISOR reaches the
# runtime through containers.conf's conmon_env_vars (create/exec start the
# sandbox daemon, which keeps it).  Leaves nothing behind (trap).
#
#   B=build tests/e2e/cli_podman.sh          (HUSK_PODMAN_QEMU=0: skip the TCG part)
#
# Prints "ok - name" / "not ok - name"; exit 77 with a reason when podman
# cannot run here.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK=$ROOT/$B/bin/husk
AGENT=$ROOT/$B/bin/husk-agent

skip() { echo "# skip: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
for t in podman conmon umoci skopeo unshare nsenter script tmux timeout; do
    command -v $t >/dev/null || skip "$t not installed (tools/deps.sh)"
done
[ -x /bin/busybox ] || skip "busybox-static is not installed"
for t in "$B/bin/husk" "$B/bin/husk-agent"; do
    [ -x "$ROOT/$t" ] || make -s -C "$ROOT" B="$B" "$t" >/dev/null 2>&1
    [ -x "$ROOT/$t" ] || skip "cannot build $t"
done

T=$(mktemp -d /tmp/husk-podman-e2e.XXXXXX)
FAILS=0
. "$ROOT/tests/helpers/podman_jail.sh"

cleanup() {
    set +e
    [ -S "$T/tmux.sock" ] && tmux -S "$T/tmux.sock" kill-server 2>/dev/null
    jail_cleanup
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

N=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
notok() {
    N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /' | head -25
}

# ---- image, config, jail --------------------------------------------------------
. "$ROOT/tests/helpers/busybox_image.sh"
build_busybox_image "$T/image" || skip "cannot build the busybox image: $(tail -2 "$T/image/image.log")"

jail_make >"$T/jail.log" || skip "$(cat "$T/jail.log")"
IMG=localhost/busybox:latest
pm load -i "$T/image/busybox-docker.tar" >"$T/load.log" 2>&1 || skip "podman load failed: $(tail -2 "$T/load.log")"
R=(run --network none)
echo "# podman $(podman --version | awk '{print $3}'), conmon $(conmon --version | awk 'NR==1{print $3}'), jail $T"

# ---- run --rm: output, exit codes ---------------------------------------------------------
out=$(pm "${R[@]}" --rm $IMG echo hi 2>"$T/err")
rc=$?
[ $rc = 0 ] && [ "$out" = hi ] && ok "run --rm echo hi" || notok "run --rm echo hi" "rc=$rc out=$out $(cat "$T/err")"

out=$(pm "${R[@]}" --rm $IMG sh -c 'echo to-out; echo to-err >&2; exit 3' 2>"$T/err")
rc=$?
[ $rc = 3 ] && [ "$out" = to-out ] && grep -q to-err "$T/err" && ok "run --rm: exit 3 gives podman exit 3, stdout and stderr" ||
    notok "run --rm: exit 3 gives podman exit 3, stdout and stderr" "rc=$rc out=$out $(cat "$T/err")"

out=$(echo piped-in | pm "${R[@]}" --rm -i $IMG tr a-z A-Z 2>"$T/err")
rc=$?
[ $rc = 0 ] && [ "$out" = PIPED-IN ] && ok "run --rm -i: stdin relayed" || notok "run --rm -i: stdin relayed" "rc=$rc out=$out $(cat "$T/err")"

out=$(pm "${R[@]}" --rm $IMG ls /proc/self/fd 2>&1)
[ "$(echo $out)" = "0 1 2 3" ] && ok "no stray fds in the container (0-2 and ls's own)" || notok "no stray fds" "$out"

out=$(pm "${R[@]}" --rm $IMG /nonexistent 2>&1)
rc=$?
[ $rc = 127 ] || [ $rc = 126 ] && ok "run of a missing binary fails (rc $rc)" ||
    notok "run of a missing binary fails" "rc=$rc $out"

# ---- run -d, exec, exec -it, top-level lifecycle -----------------------------------------------
id=$(pm "${R[@]}" -d --name life $IMG sh -c 'trap "exit 42" TERM; echo started; while :; do sleep 0.2; done' 2>"$T/err")
rc=$?
[ $rc = 0 ] && ok "run -d" || notok "run -d" "rc=$rc $(cat "$T/err")"
st=$(pm inspect -f '{{.State.Status}} {{.State.Pid}}' life 2>&1)
case $st in running\ [1-9]*) ok "inspect: running with a pid ($st)" ;; *) notok "inspect: running" "$st" ;; esac
out=$(pm exec life sh -c 'echo exec-ok; exit 5' 2>"$T/err")
rc=$?
[ $rc = 5 ] && [ "$out" = exec-ok ] && ok "exec: output and exit code 5" || notok "exec: output and exit code 5" "rc=$rc out=$out $(cat "$T/err")"
out=$(echo via-stdin | pm exec -i life cat 2>"$T/err")
[ "$out" = via-stdin ] && ok "exec -i: stdin" || notok "exec -i: stdin" "out=$out $(cat "$T/err")"
out=$(SHELL=/bin/bash script -qec "$(declare -f pm); $(declare -p JAIL_NSENTER); T=$T CONF=$CONF HUSK=$HUSK; pm exec -it life sh -c 'tty; test -t 0 && echo is-a-tty'" /dev/null 2>&1 </dev/null)
echo "$out" | grep -q is-a-tty && echo "$out" | grep -q '/dev/pts/' &&
    ok "exec -it through a pty (console socket)" || notok "exec -it through a pty" "$out"
out=$(pm logs life 2>&1)
echo "$out" | grep -q started && ok "logs: conmon's k8s-file log has the output" || notok "logs" "$out"
pm pause life >"$T/err" 2>&1 && [ "$(pm inspect -f '{{.State.Status}}' life)" = paused ] &&
    pm unpause life >>"$T/err" 2>&1 && [ "$(pm inspect -f '{{.State.Status}}' life)" = running ] &&
    ok "pause / unpause" || notok "pause / unpause" "$(cat "$T/err")"

# stop: SIGTERM is trapped -> exit 42
t0=$(date +%s)
pm stop -t 10 life >"$T/err" 2>&1
rc=$?
t1=$(date +%s)
code=$(pm inspect -f '{{.State.ExitCode}}' life 2>&1)
[ $rc = 0 ] && [ "$code" = 42 ] && [ $((t1 - t0)) -lt 8 ] && ok "stop: SIGTERM reaches the process, conmon records exit 42" ||
    notok "stop: SIGTERM, exit 42" "rc=$rc code=$code $((t1 - t0)) s $(cat "$T/err")"
pm "${R[@]}" -d --name waiter $IMG sh -c 'sleep 0.5; exit 7' >/dev/null 2>"$T/err"
code=$(pm wait waiter 2>&1)
[ "$code" = 7 ] && ok "wait: conmon reaped the proxy and recorded exit 7" || notok "wait: exit 7" "$code $(cat "$T/err")"
pm rm waiter >/dev/null 2>&1

# start again, then stop on SIGTERM ignored -> SIGKILL after the timeout
pm start life >"$T/err" 2>&1 && ok "start a stopped container again" || notok "start again" "$(cat "$T/err")"
pm exec life sh -c 'kill -0 1' >/dev/null 2>&1
id2=$(pm "${R[@]}" -d --name stubborn $IMG sh -c 'trap "" TERM; while :; do sleep 0.2; done' 2>"$T/err")
t0=$(date +%s)
pm stop -t 2 stubborn >"$T/err" 2>&1
rc=$?
t1=$(date +%s)
code=$(pm inspect -f '{{.State.ExitCode}}' stubborn 2>&1)
[ $rc = 0 ] && [ "$code" = 137 ] && [ $((t1 - t0)) -ge 2 ] && ok "stop -t 2: SIGTERM ignored, SIGKILL after 2 s gives 137" ||
    notok "stop -t 2: SIGKILL path" "rc=$rc code=$code $((t1 - t0)) s $(cat "$T/err")"

pm kill -s KILL life >"$T/err" 2>&1
rc=$?
for _ in $(seq 50); do [ "$(pm inspect -f '{{.State.Status}}' life 2>&1)" = exited ] && break; sleep 0.1; done
code=$(pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' life 2>&1)
[ $rc = 0 ] && [ "$code" = "exited 137" ] && ok "kill -s KILL: exited 137" || notok "kill -s KILL" "rc=$rc $code $(cat "$T/err")"

pm rm life stubborn >"$T/err" 2>&1 && ! pm inspect life >/dev/null 2>&1 && ok "rm" || notok "rm" "$(cat "$T/err")"
left=$(jx "$HUSK" list -q 2>&1)
[ -z "$left" ] && ok "husk list is empty after rm (cleanup ran delete)" || notok "husk list is empty after rm" "$left"

pm "${R[@]}" -d --name gone $IMG sleep 1000 >/dev/null 2>&1
pm rm -f -t 0 gone >"$T/err" 2>&1 && ok "rm -f of a running container" || notok "rm -f of a running container" "$(cat "$T/err")"

# ---- run --rm -it: interactive shell in tmux, resize, exit code --------------------------------
TM=(tmux -S "$T/tmux.sock" -f /dev/null)
cat >"$T/it.sh" <<EOF
#!/bin/bash
$(declare -f pm)
$(declare -p JAIL_NSENTER)
T=$T CONF=$CONF HUSK=$HUSK TMO=120
pm run --network none --rm -it $IMG sh
echo "podman-exit=\$?" >$T/it.rc
sleep 30
EOF
chmod +x "$T/it.sh"
tmux_err=$("${TM[@]}" new-session -d -s it -x 120 -y 30 "bash $T/it.sh 2>$T/it.err" 2>&1) ||
    echo "# tmux new-session failed: $tmux_err"
wait_pane() { # regex [tries]
    local i
    for i in $(seq "${2:-100}"); do
        "${TM[@]}" capture-pane -t it -p 2>/dev/null | grep -qE -- "$1" && return 0
        sleep 0.1
    done
    return 1
}
wait_pane '# $' 150
"${TM[@]}" send-keys -t it 'echo typed $((6*7)); stty size' Enter
wait_pane '^typed 42' && wait_pane '^30 120' && ok "run -it: typed input, stty size 30 120" ||
    notok "run -it: typed input and size" "$("${TM[@]}" capture-pane -t it -p; cat "$T/it.err")"
"${TM[@]}" resize-window -t it -x 100 -y 20
sleep 0.5
"${TM[@]}" send-keys -t it 'stty size' Enter
wait_pane '^20 100' && ok "run -it: resize reaches the container (20 100)" ||
    notok "run -it: resize" "$("${TM[@]}" capture-pane -t it -p)"
"${TM[@]}" send-keys -t it 'exit 3' Enter
for _ in $(seq 100); do [ -s "$T/it.rc" ] && break; sleep 0.1; done
[ "$(cat "$T/it.rc" 2>/dev/null)" = podman-exit=3 ] && ok "run -it: exit 3 gives podman exit 3" ||
    notok "run -it: exit 3" "$(cat "$T/it.rc" 2>/dev/null) $("${TM[@]}" capture-pane -t it -p)"
"${TM[@]}" kill-server 2>/dev/null

# ---- a failing create: podman reports the runtime's JSON msg ----------------------------------
out=$(pm "${R[@]}" --rm --ulimit nofile=9999999:9999999 $IMG true 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "husk create failed" && ok "a refused create: podman shows husk's JSON msg (rc $rc)" ||
    notok "a refused create is reported" "rc=$rc $out"
echo "$out" | head -2 | sed "s/^/#   podman said: /"

# ---- nothing left ---------------------------------------------------------------------------
left=$(pm ps -aq 2>&1; jx "$HUSK" list -q 2>&1)
for _ in $(seq 50); do
    procs=$(for p in $(jail_pids); do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done 2>/dev/null | grep -E "husk|conmon")
    [ -z "$procs" ] && break
    sleep 0.1
done
[ -z "$left$procs" ] && ok "nothing left: podman ps -a, husk list, no husk daemon/proxy/conmon process" ||
    notok "nothing left" "$left $procs"

# ---- qemu TCG subset ----------------------------------------------------------------------------
if [ "${HUSK_PODMAN_QEMU:-1}" = 1 ]; then
    if [ -f "$ROOT/$B/guest/vmlinux" ] || [ -f "$ROOT/$B/guest/vmlinuz" ]; then
        CONF=$T/containers-qemu.conf
        t0=$(date +%s.%N)
        out=$(TMO=150 pm "${R[@]}" --rm $IMG sh -c 'echo hi from $(uname -r); exit 4' 2>"$T/err")
        rc=$?
        t1=$(date +%s.%N)
        if [ $rc = 4 ] && [ "$out" != "${out#hi from }" ] && [ "${out#hi from }" != "$(uname -r)" ]; then
            ok "qemu: run --rm in a VM ($out, exit 4, $(echo "$t1 - $t0" | bc) s)"
        else
            notok "qemu: run --rm in a VM" "rc=$rc out=$out $(cat "$T/err")"
        fi
        CONF=$T/containers.conf
    else
        echo "# qemu part skipped: no guest image in $B/guest (make guest)"
    fi
fi

[ $FAILS = 0 ]
