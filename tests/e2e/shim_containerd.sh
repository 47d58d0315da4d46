#!/bin/bash
# e2e: containerd-shim-husk-v2 under a real containerd 1.6 (issue 7).
#
# Starts a private containerd (own root, state, sockets, opt dir, config)
# in its own mount namespace with a tmpfs on /run/containerd (1.6 keeps
# shim sockets there whatever --state says), imports a busybox image built
# here (umoci + skopeo, no registry) and drives the shim with ctr under
# HUSK_HYPERVISOR=local.  Leaves nothing behind, whatever fails (trap).
#
#   B=build-shim tests/e2e/shim_containerd.sh
#
# Exit 77 (skip) with a reason when containerd cannot run here.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHIM=$ROOT/$B/bin/containerd-shim-husk-v2
AGENT=$ROOT/$B/bin/husk-agent

skip() { echo "# skip: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
for t in containerd ctr umoci skopeo unshare nsenter script timeout; do
    command -v $t >/dev/null || skip "$t not installed (tools/deps.sh)"
done
[ -x "$SHIM" ] && [ -x "$AGENT" ] || skip "build $SHIM and $AGENT first (make B=$B)"

T=$(mktemp -d /tmp/husk-shim-e2e.XXXXXX)
S=$T/containerd.sock
A=(-a "$S" -n husk-e2e)
RUN_CREATED=0
CTRD_PID=
FAILS=0
N=0

# Every process started under $T (containerd, shims, agents), by pid.
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$T/" && echo "${p#/proc/}"
    done
}

cleanup() {
    set +e
    if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
        kill -TERM "$CTRD_PID"
        for _ in $(seq 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    # shims outlive containerd by design: stop them (and their agents) by pid
    for pid in $(our_pids); do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 30); do [ -z "$(our_pids)" ] && break; sleep 0.1; done
    for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.2
    # the mount namespace (tmpfs /run/containerd, overlays) died with them
    grep -F " $T/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    [ "$RUN_CREATED" = 1 ] && rmdir /run/containerd 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { N=$((N + 1)); echo "ok $N - $1"; }
notok() {
    N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /' | head -20
}
check() { # name, command...: ok when the command succeeds
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$name"; else notok "$name" "$out"; fi
}
ctr_() { timeout 60 ctr "${A[@]}" "$@"; }
RT=(--runtime io.containerd.husk.v2 --fifo-dir "$T/fifo")
# ctr adds cpu.shares=1024; on a hybrid-cgroup host the local backend's
# agent has no cpu controller on the unified hierarchy, so ask for none.
LIM=(--cpu-shares 0)

# ---- image, config, containerd ------------------------------------------------
mkdir -p "$T/opt/bin" "$T/fifo" "$T/husk" "$T/image"
(
    cd "$T/image" || exit 1
    umoci init --layout oci && umoci new --image oci:busybox &&
        umoci unpack --image oci:busybox bundle || exit 1
    R=bundle/rootfs
    mkdir -p $R/bin $R/etc $R/tmp $R/proc $R/sys $R/dev $R/root $R/var $R/usr && chmod 1777 $R/tmp
    cp "$(command -v busybox || echo /bin/busybox)" $R/bin/busybox || exit 1
    for a in $($R/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
    ln -s ../bin $R/usr/bin && ln -s bin $R/sbin
    printf 'root:x:0:0:root:/root:/bin/sh\n' >$R/etc/passwd && printf 'root:x:0:\n' >$R/etc/group
    umoci repack --image oci:busybox bundle &&
        umoci config --image oci:busybox --config.cmd /bin/sh \
            --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --config.workingdir / --architecture amd64 --os linux &&
        umoci gc --layout oci && rm -rf bundle &&
        skopeo copy oci:oci:busybox docker-archive:busybox.tar:localhost/busybox:latest
) >"$T/image.log" 2>&1 || skip "cannot build the busybox image: $(tail -2 "$T/image.log")"
# a plain rootfs directory for `ctr run --rootfs`
mkdir -p "$T/rootfs/bin" "$T/rootfs/proc" "$T/rootfs/dev" "$T/rootfs/sys" "$T/rootfs/tmp"
cp "$(command -v busybox || echo /bin/busybox)" "$T/rootfs/bin/busybox"
for a in sh sleep echo cat ls; do ln -sf busybox "$T/rootfs/bin/$a"; done

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
printf '[runtime]\nroot = %s/husk\nhypervisor = local\n' "$T" >"$T/husk.conf"
ln -s "$SHIM" "$T/opt/bin/containerd-shim-husk-v2"

[ -d /run/containerd ] || { mkdir -p /run/containerd && RUN_CREATED=1; }
(
    for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null
    exec env HUSK_CONFIG="$T/husk.conf" HUSK_HYPERVISOR=local setsid unshare -m --propagation private \
        sh -c "mount -t tmpfs -o mode=0711 husk-e2e-run /run/containerd && exec containerd --config '$T/config.toml'" \
        </dev/null >"$T/containerd.log" 2>&1
) &
CTRD_PID=$!
for _ in $(seq 100); do [ -S "$S" ] && break; kill -0 $CTRD_PID 2>/dev/null || break; sleep 0.1; done
[ -S "$S" ] || skip "containerd did not start: $(tail -3 "$T/containerd.log")"
ctr_ images import "$T/image/busybox.tar" >/dev/null 2>&1 || skip "ctr images import failed"
IMG=localhost/busybox:latest
in_ns() { nsenter --mount=/proc/$CTRD_PID/ns/mnt "$@"; }
echo "# containerd $(containerd --version | awk '{print $3}') pid $CTRD_PID in $T"

# ---- run --rm: output, stderr, exit status --------------------------------------------
out=$(ctr_ run --rm "${RT[@]}" "${LIM[@]}" $IMG r1 sh -c 'echo hello-out; echo hello-err >&2; exit 3' </dev/null 2>"$T/r1.err")
rc=$?
if [ "$out" = hello-out ] && [ $rc -eq 3 ] && grep -q hello-err "$T/r1.err"; then
    ok "run --rm: stdout, stderr and exit status 3"
else
    notok "run --rm: stdout, stderr and exit status 3" "rc=$rc out=$out err=$(cat "$T/r1.err")"
fi
out=$(printf 'piped-in\n' | ctr_ run --rm "${RT[@]}" "${LIM[@]}" $IMG r2 cat 2>&1)
[ "$out" = piped-in ] && ok "run --rm: stdin through the fifo" || notok "run --rm: stdin through the fifo" "$out"

# ---- run -d, exec, ps, pause/resume, metrics, kill, delete ---------------------------------
check "run -d" ctr_ run -d "${RT[@]}" "${LIM[@]}" $IMG d1 sleep 1000
out=$(ctr_ task ls 2>&1)
echo "$out" | grep -qE '^d1 +[0-9]+ +RUNNING' && ok "task ls: RUNNING" || notok "task ls: RUNNING" "$out"
out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id e1 d1 sh -c 'echo exec-ok; exit 5' </dev/null 2>&1)
rc=$?
[ "$out" = exec-ok ] && [ $rc -eq 5 ] && ok "task exec: output and exit status 5" ||
    notok "task exec: output and exit status 5" "rc=$rc $out"
out=$(ctr_ task ps d1 2>&1)
[ "$(echo "$out" | tail -n +2 | grep -cE '^[0-9]+')" -ge 1 ] && ok "task ps" || notok "task ps" "$out"
check "task pause" ctr_ task pause d1
out=$(ctr_ task ls 2>&1)
echo "$out" | grep -qE '^d1 .* PAUSED' && ok "paused state" || notok "paused state" "$out"
check "task resume" ctr_ task resume d1
out=$(ctr_ task ls 2>&1)
echo "$out" | grep -qE '^d1 .* RUNNING' && ok "running again" || notok "running again" "$out"
out=$(ctr_ task metrics d1 2>&1)
echo "$out" | grep -q 'pids.current' && ok "task metrics (cgroups v2 Metrics)" || notok "task metrics" "$out"
out=$(ctr_ task delete d1 2>&1)
[ $? -ne 0 ] && ok "task delete of a running task refused" || notok "task delete of a running task refused" "$out"
check "task kill -s SIGKILL" ctr_ task kill -s SIGKILL d1
for _ in $(seq 50); do ctr_ task ls 2>/dev/null | grep -qE '^d1 .* STOPPED' && break; sleep 0.1; done
out=$(ctr_ task ls 2>&1)
echo "$out" | grep -qE '^d1 .* STOPPED' && ok "stopped after kill" || notok "stopped after kill" "$out"
out=$(ctr_ task delete d1 2>&1)
[ $? -eq 0 ] && ok "task delete (status 137)" || notok "task delete" "$out"
check "container rm" ctr_ containers rm d1

# ---- tty --------------------------------------------------------------------------------
out=$(script -qec "timeout --foreground -k 5 60 ctr -a $S -n husk-e2e run --rm -t ${RT[*]} ${LIM[*]} $IMG t1 sh -c 'tty; echo tty-done'" /dev/null 2>&1 </dev/null)
echo "$out" | grep -q '/dev/pts/' && echo "$out" | grep -q tty-done && ok "run -t through a pty" ||
    notok "run -t through a pty" "$out"

# ---- events order ----------------------------------------------------------------------
ctr "${A[@]}" events >"$T/events" 2>&1 &
EV=$!
sleep 0.3
ctr_ run --rm "${RT[@]}" "${LIM[@]}" $IMG ev1 true </dev/null >/dev/null 2>&1
sleep 0.5
kill $EV 2>/dev/null; wait $EV 2>/dev/null
order=$(grep -o '/tasks/[a-z-]*' "$T/events" | tr '\n' ' ')
[ "$order" = "/tasks/create /tasks/start /tasks/exit /tasks/delete " ] && ok "events: create start exit delete" ||
    notok "events: create start exit delete" "$order"

# ---- network rescan through Update (annotation io.husk.network.rescan) ------------------
# The pod's network namespace is bound under $T inside containerd's mount
# namespace only (it goes with it).  With the local backend the rescan is
# a no-op that succeeds; a container without a namespace path gets the
# runtime's refusal back, which shows that the request reached it.
if in_ns sh -c ": >'$T/pod-net' && unshare --net='$T/pod-net' true"; then
    check "network: run -d in a given network namespace" \
        ctr_ run -d "${RT[@]}" "${LIM[@]}" --with-ns "network:$T/pod-net" $IMG n1 sleep 1000
    check "network: run -d with a new network namespace (no path)" \
        ctr_ run -d "${RT[@]}" "${LIM[@]}" $IMG n2 sleep 1000
    an1=$(cat "$T/state/io.containerd.runtime.v2.task/husk-e2e/n1/address" 2>/dev/null)
    an2=$(cat "$T/state/io.containerd.runtime.v2.task/husk-e2e/n2/address" 2>/dev/null)
    UPD=$ROOT/$B/tests/helpers/shim_update
    out=$(in_ns "$UPD" "$an1" n1 io.husk.network.rescan=true 2>&1)
    [ "$out" = ok ] && ok "network: Update with io.husk.network.rescan=true" || notok "network: Update rescan" "$out"
    out=$(in_ns "$UPD" "$an2" n2 io.husk.network.rescan=true 2>&1)
    echo "$out" | grep -q "no network namespace path" &&
        ok "network: rescan of a container without a namespace path refused: ${out#error }" ||
        notok "network: rescan without a namespace path refused" "$out"
    out=$(in_ns "$UPD" "$an1" n1 io.husk.network.rescan=maybe 2>&1)
    echo "$out" | grep -q "^error 3: .*io.husk.network.rescan.*not true or false" &&
        ok "network: a bad annotation value is InvalidArgument" || notok "network: bad annotation value" "$out"
    out=$(in_ns "$UPD" "$an1" n1 2>&1)
    [ "$out" = ok ] && ok "network: Update with neither resources nor annotation is a no-op" ||
        notok "network: empty Update" "$out"
    for c in n1 n2; do
        ctr_ task kill -s SIGKILL $c >/dev/null 2>&1
        for _ in $(seq 50); do ctr_ task ls 2>/dev/null | grep -qE "^$c .* STOPPED" && break; sleep 0.1; done
        ctr_ task delete $c >/dev/null 2>&1 && ctr_ containers rm $c >/dev/null 2>&1
    done
else
    notok "network: a network namespace in containerd's mount namespace"
fi

# ---- one pod, one shim ------------------------------------------------------------------
POD=(--annotation io.kubernetes.cri.sandbox-id=pod1)
check "pod: sandbox container" ctr_ run -d "${RT[@]}" "${LIM[@]}" "${POD[@]}" \
    --annotation io.kubernetes.cri.container-type=sandbox $IMG pod1 sleep 1000
# The second container uses a plain --rootfs directory: with the local
# backend the agent's mount namespace does not see mounts made after it
# started (docs/shim.md), and an image rootfs is an overlay mount.
check "pod: second container" ctr_ run -d --rootfs "${RT[@]}" "${LIM[@]}" "${POD[@]}" \
    --annotation io.kubernetes.cri.container-type=container "$T/rootfs" pod1-c1 /bin/sleep 1000
a1=$(cat "$T/state/io.containerd.runtime.v2.task/husk-e2e/pod1/address" 2>/dev/null)
a2=$(cat "$T/state/io.containerd.runtime.v2.task/husk-e2e/pod1-c1/address" 2>/dev/null)
p1=$(ctr_ task ls | awk '$1=="pod1"{print $2}')
p2=$(ctr_ task ls | awk '$1=="pod1-c1"{print $2}')
[ -n "$a1" ] && [ "$a1" = "$a2" ] && [ -n "$p1" ] && [ "$p1" = "$p2" ] &&
    ok "pod: both containers share one shim ($a1)" || notok "pod: one shim" "a1=$a1 a2=$a2 p1=$p1 p2=$p2"
out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id x pod1-c1 /bin/echo in-c1 </dev/null 2>&1)
[ "$out" = in-c1 ] && ok "pod: exec in the second container" || notok "pod: exec in the second container" "$out"
for c in pod1-c1 pod1; do ctr_ task kill -s SIGKILL $c >/dev/null 2>&1; done
for c in pod1-c1 pod1; do
    for _ in $(seq 50); do ctr_ task ls 2>/dev/null | grep -qE "^$c .* STOPPED" && break; sleep 0.1; done
    ctr_ task delete $c >/dev/null 2>&1 && ctr_ containers rm $c >/dev/null 2>&1
done
sleep 0.5
[ -z "$(ctr_ task ls -q 2>/dev/null)" ] && ok "pod: deleted" || notok "pod: deleted" "$(ctr_ task ls)"

# ---- nothing left ------------------------------------------------------------------------
for _ in $(seq 30); do
    left=$(for p in $(our_pids); do [ "$p" != "$CTRD_PID" ] && tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-80; done | grep -v '^containerd ')
    [ -z "$left" ] && break
    sleep 0.1
done
[ -z "$left" ] && ok "no shim or agent process left" || notok "no shim or agent process left" "$left"
socks=$(in_ns ls /run/containerd/s 2>/dev/null)
[ -z "$socks" ] && ok "no shim socket left" || notok "no shim socket left" "$socks"
state=$(ls "$T/husk")
[ -z "$state" ] && ok "no sandbox state left" || notok "no sandbox state left" "$state"

echo "1..$N"
[ $FAILS -eq 0 ] || { echo "# containerd log: $T/containerd.log (removed at exit); last lines:"; grep -i 'husk\|shim' "$T/containerd.log" | tail -15 | sed 's/^/#   /'; }
exit $((FAILS > 0))
