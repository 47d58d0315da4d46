#!/bin/bash
# e2e: containerd 1.6 + ctr through containerd-shim-runc-v2, with `husk` as
# the shim's runc binary (`ctr run --runc-binary <husk>`: the runc.v1
# Options' BinaryName), unchanged.
#
# A private containerd (own root, state, sockets, opt dir, config) runs in
# its own mount namespace with a tmpfs on /run/containerd (1.6 keeps shim
# sockets, ctr's fifos and the shim's `--root /run/containerd/runc/<ns>`
# there whatever --state says; reference/clients.md §0 #4), so husk's state,
# daemons' sockets and the overlay mounts stay in that namespace.  The local
# backend comes from a husk.conf given through containerd's environment
# (the shim passes it on); the qemu subset uses a one-line wrapper that sets
# HUSK_HYPERVISOR=qemu.  Leaves nothing behind (trap).
#
#   B=build tests/e2e/cli_containerd_runc.sh      (HUSK_CTR_QEMU=0: skip the TCG part)
#
# Prints "ok - name" / "not ok - name"; exit 77 with a reason when containerd
# cannot run here.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK=$ROOT/$B/bin/husk

skip() { echo "# skip: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
for t in containerd ctr containerd-shim-runc-v2 umoci skopeo unshare nsenter script timeout; do
    command -v $t >/dev/null || skip "$t not installed (tools/deps.sh)"
done
[ -x /bin/busybox ] || skip "busybox-static is not installed"
for t in "$B/bin/husk" "$B/bin/husk-agent"; do
    [ -x "$ROOT/$t" ] || make -s -C "$ROOT" B="$B" "$t" >/dev/null 2>&1
    [ -x "$ROOT/$t" ] || skip "cannot build $t"
done

T=$(mktemp -d /tmp/husk-ctr-runc-e2e.XXXXXX)
S=$T/containerd.sock
NSP=husk-runc
A=(-a "$S" -n $NSP)
RUN_CREATED=0
CTRD_PID=
FAILS=0
N=0

# Every process started under $T (containerd, shims, husk daemons, proxies, agents)
our_pids() {
    local p ino
    ino=$([ -n "$CTRD_PID" ] && stat -L -c %i /proc/$CTRD_PID/ns/mnt 2>/dev/null)
    for p in /proc/[0-9]*; do
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$T/" ||
            { [ -n "$ino" ] && [ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$ino" ]; }; then
            [ "${p#/proc/}" != $$ ] && [ "${p#/proc/}" != "$BASHPID" ] && echo "${p#/proc/}"
        fi
    done
}

cleanup() {
    set +e
    if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
        for c in $(timeout 20 ctr "${A[@]}" c ls -q 2>/dev/null); do
            timeout 20 ctr "${A[@]}" task kill -s SIGKILL "$c" >/dev/null 2>&1
            timeout 20 ctr "${A[@]}" task rm -f "$c" >/dev/null 2>&1
            timeout 20 ctr "${A[@]}" c rm "$c" >/dev/null 2>&1
        done
    fi
    local pids
    pids=$(our_pids)
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 30); do [ -z "$(our_pids)" ] && break; sleep 0.1; done
    for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.2
    grep -F " $T/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    [ "$RUN_CREATED" = 1 ] && rmdir /run/containerd 2>/dev/null
    # containerd's cgroups for this namespace (/sys/fs/cgroup/*/<ns>/<id>)
    for d in /sys/fs/cgroup/*/$NSP; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { N=$((N + 1)); echo "ok $N - $1"; }
notok() {
    N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /' | head -25
}
ctr_() { timeout -k 5 "${TMO:-60}" ctr "${A[@]}" "$@"; }

# ---- image, config, containerd ------------------------------------------------
. "$ROOT/tests/helpers/busybox_image.sh"
build_busybox_image "$T/image" || skip "cannot build the busybox image: $(tail -2 "$T/image/image.log")"
mkdir -p "$T/opt/bin" "$T/fifo"
cat >"$T/config.toml" <<EOF
version = 2
root  = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$S"
[ttrpc]
  address = "$S.ttrpc"
[debug]
  address = "$T/debug.sock"
  level = "debug"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$T/opt"
EOF
printf '[runtime]\nhypervisor = local\n' >"$T/husk.conf"
printf '#!/bin/sh\nHUSK_HYPERVISOR=qemu exec %s "$@"\n' "$HUSK" >"$T/husk-qemu"
chmod +x "$T/husk-qemu"

[ -d /run/containerd ] || { mkdir -p /run/containerd && RUN_CREATED=1; }
(
    for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null
    exec env -u HUSK_HYPERVISOR HUSK_CONFIG="$T/husk.conf" setsid unshare -m --propagation private \
        sh -c "mount -t tmpfs -o mode=0711 husk-e2e-run /run/containerd && exec containerd --config '$T/config.toml'" \
        </dev/null >"$T/containerd.log" 2>&1
) &
CTRD_PID=$!
for _ in $(seq 100); do [ -S "$S" ] && break; kill -0 $CTRD_PID 2>/dev/null || break; sleep 0.1; done
[ -S "$S" ] || skip "containerd did not start: $(tail -3 "$T/containerd.log")"
ctr_ images import "$T/image/busybox-docker.tar" >/dev/null 2>&1 || skip "ctr images import failed"
IMG=localhost/busybox:latest
in_ns() { nsenter --mount=/proc/$CTRD_PID/ns/mnt "$@"; }
hlist() { in_ns "$HUSK" --root /run/containerd/runc/$NSP list "$@"; }
RT=(--fifo-dir "$T/fifo" --runc-binary "$HUSK")
echo "# containerd $(containerd --version | awk '{print $3}') pid $CTRD_PID, runc shim with $HUSK, in $T"

# ---- run --rm: output, stderr, exit status ---------------------------------------------
out=$(ctr_ run --rm "${RT[@]}" $IMG r1 sh -c 'echo hello-out; echo hello-err >&2; exit 3' </dev/null 2>"$T/err")
rc=$?
[ "$out" = hello-out ] && [ $rc = 3 ] && grep -q hello-err "$T/err" && ok "run --rm: stdout, stderr, exit 3" ||
    notok "run --rm: stdout, stderr, exit 3" "rc=$rc out=$out $(cat "$T/err"; tail -5 "$T/containerd.log")"

out=$(ctr_ run --rm "${RT[@]}" $IMG r2 ls /proc/self/fd </dev/null 2>&1)
[ "$(echo $out)" = "0 1 2 3" ] && ok "no stray fds in the container (the shim's fd 3 stays out)" ||
    notok "no stray fds in the container" "$out"

# ---- run -d, exec, ps, pause/resume, kill, delete ---------------------------------------
ctr_ run -d "${RT[@]}" $IMG d1 sh -c 'trap "exit 42" TERM; while :; do sleep 0.2; done' >"$T/err" 2>&1 &&
    ok "run -d" || notok "run -d" "$(cat "$T/err"; tail -5 "$T/containerd.log")"
B1=$T/state/io.containerd.runtime.v2.task/$NSP/d1
pid=$(cat "$B1/init.pid" 2>/dev/null)
out=$(ctr_ task ls 2>&1)
echo "$out" | grep -qE "^d1 +$pid +RUNNING" && ok "task ls: RUNNING with init.pid $pid" || notok "task ls: RUNNING" "$out"
ppid=$(awk '{print $4}' /proc/$pid/stat 2>/dev/null)
case $(tr '\0' ' ' </proc/$ppid/cmdline 2>/dev/null) in
*containerd-shim-runc-v2*) ok "the proxy ($pid) is a child of the runc shim (subreaper)" ;;
*) notok "the proxy is a child of the runc shim" "ppid $ppid: $(tr '\0' ' ' </proc/$ppid/cmdline 2>/dev/null)" ;;
esac
# fd 3 of `create` is the shim's listening ttrpc socket: nobody of ours may keep it
shim_socks=$(awk 'NR > 1 && $NF ~ "^/run/containerd/s/" {print $7}' /proc/net/unix)
leak=
husk_pids() { # our husk processes (daemons, proxies) and agents
    local p
    for p in $(our_pids); do
        case $(readlink /proc/$p/exe 2>/dev/null) in "$HUSK" | "$HUSK-agent" | */husk-agent) echo "$p" ;; esac
    done
}
for p in $(husk_pids); do
    for f in /proc/$p/fd/*; do
        l=$(readlink "$f" 2>/dev/null) || continue
        case $l in socket:*) i=${l#socket:[}; i=${i%]}; echo "$shim_socks" | grep -qx "$i" && leak="$leak $p:$f" ;; esac
    done
done
[ -n "$shim_socks" ] && [ -z "$leak" ] && ok "the shim's ttrpc socket (create's fd 3) leaks into no husk process" ||
    notok "the shim's ttrpc socket leaks" "socks=[$shim_socks] leak=[$leak]"

out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id e1 d1 sh -c 'echo exec-ok; exit 5' </dev/null 2>&1)
rc=$?
[ "$out" = exec-ok ] && [ $rc = 5 ] && ok "task exec: output and exit 5" || notok "task exec: output and exit 5" "rc=$rc $out"
out=$(ctr_ task ps d1 2>&1)
[ "$(echo "$out" | awk 'NR > 1 && $1 ~ /^[0-9]+$/' | wc -l)" -ge 2 ] && ok "task ps: the container's processes" ||
    notok "task ps" "$out"
ctr_ task pause d1 >"$T/err" 2>&1 && ctr_ task ls | grep -qE '^d1 .* PAUSED' &&
    ctr_ task resume d1 >>"$T/err" 2>&1 && ctr_ task ls | grep -qE '^d1 .* RUNNING' &&
    ok "task pause / resume" || notok "task pause / resume" "$(cat "$T/err"; ctr_ task ls)"
out=$(script -qec "timeout --foreground -k 5 60 ctr ${A[*]} task exec -t --fifo-dir $T/fifo --exec-id e2 d1 sh -c 'tty; exit 6'" /dev/null 2>&1 </dev/null)
rc=$?
echo "$out" | grep -q '/dev/pts/' && [ $rc = 6 ] && ok "task exec -t through a pty (console socket), exit 6" ||
    notok "task exec -t" "rc=$rc $out"
ctr_ task kill d1 >"$T/err" 2>&1
for _ in $(seq 50); do ctr_ task ls | grep -qE '^d1 .* STOPPED' && break; sleep 0.1; done
ctr_ task ls | grep -qE '^d1 .* STOPPED' && ok "task kill (SIGTERM, trapped): STOPPED" ||
    notok "task kill: STOPPED" "$(cat "$T/err"; ctr_ task ls)"
ctr_ task rm d1 >"$T/err" 2>&1 && ctr_ c rm d1 >>"$T/err" 2>&1 && ok "task rm, container rm" ||
    notok "task rm, container rm" "$(cat "$T/err")"
[ -z "$(hlist -q 2>&1)" ] && ok "husk list is empty after delete" || notok "husk list is empty after delete" "$(hlist 2>&1)"

# exit statuses seen by the shim through the proxy: SIGTERM trapped -> 42, SIGKILL -> 137
for s in SIGTERM:42 SIGKILL:137; do
    sig=${s%:*} want=${s#*:}
    id=k$want
    ctr_ run --rm "${RT[@]}" $IMG $id sh -c 'trap "exit 42" TERM; echo up; while :; do sleep 0.2; done' </dev/null >"$T/$id.out" 2>&1 &
    CP=$!
    for _ in $(seq 100); do grep -q up "$T/$id.out" 2>/dev/null && break; sleep 0.1; done
    ctr_ task kill -s $sig $id >"$T/err" 2>&1
    wait $CP
    rc=$?
    [ $rc = "$want" ] && ok "task kill -s $sig: ctr run exits $want" || notok "task kill -s $sig: exit $want" "rc=$rc $(cat "$T/$id.out" "$T/err")"
done

# ---- tty ---------------------------------------------------------------------------------
out=$(script -qec "timeout --foreground -k 5 60 ctr ${A[*]} run --rm -t ${RT[*]} $IMG t1 sh -c 'tty; echo tty-done; exit 2'" /dev/null 2>&1 </dev/null)
rc=$?
echo "$out" | grep -q '/dev/pts/' && echo "$out" | grep -q tty-done && [ $rc = 2 ] &&
    ok "run -t through a pty (console socket), exit 2" || notok "run -t through a pty" "rc=$rc $out"

# ---- qemu TCG subset -----------------------------------------------------------------------
if [ "${HUSK_CTR_QEMU:-1}" = 1 ]; then
    if [ -f "$ROOT/$B/guest/vmlinux" ] || [ -f "$ROOT/$B/guest/vmlinuz" ]; then
        QRT=(--fifo-dir "$T/fifo" --runc-binary "$T/husk-qemu")
        t0=$(date +%s.%N)
        out=$(TMO=150 ctr_ run --rm "${QRT[@]}" $IMG q1 sh -c 'echo hi from $(uname -r); exit 4' </dev/null 2>"$T/err")
        rc=$?
        t1=$(date +%s.%N)
        if [ $rc = 4 ] && [ "$out" != "${out#hi from }" ] && [ "${out#hi from }" != "$(uname -r)" ]; then
            ok "qemu: run --rm in a VM ($out, exit 4, $(echo "$t1 - $t0" | bc) s)"
        else
            notok "qemu: run --rm in a VM" "rc=$rc out=$out $(cat "$T/err")"
        fi
        TMO=150 ctr_ run -d "${QRT[@]}" $IMG q2 sleep 1000 >"$T/err" 2>&1
        out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id qe q2 sh -c 'echo exec-in-vm; exit 7' </dev/null 2>&1)
        rc=$?
        [ $rc = 7 ] && [ "$out" = exec-in-vm ] && ok "qemu: run -d + task exec (exit 7)" || notok "qemu: run -d + exec" "rc=$rc $out $(cat "$T/err")"
        ctr_ task kill -s SIGKILL q2 >/dev/null 2>&1
        for _ in $(seq 100); do ctr_ task ls | grep -qE '^q2 .* STOPPED' && break; sleep 0.1; done
        ctr_ task rm q2 >"$T/err" 2>&1 && ctr_ c rm q2 >>"$T/err" 2>&1 && ok "qemu: kill, task rm, container rm" ||
            notok "qemu: kill, rm" "$(cat "$T/err"; ctr_ task ls)"
    else
        echo "# qemu part skipped: no guest image in $B/guest (make guest)"
    fi
fi

# ---- nothing left ------------------------------------------------------------------------
for _ in $(seq 50); do
    procs=$(for p in $(husk_pids); do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done 2>/dev/null)
    [ -z "$procs" ] && break
    sleep 0.1
done
left=$(ctr_ c ls -q 2>&1; hlist -q 2>&1)
[ -z "$left$procs" ] && ok "nothing left: ctr c ls, husk list, no husk daemon/proxy/agent" || notok "nothing left" "$left
$procs"

[ $FAILS = 0 ]
