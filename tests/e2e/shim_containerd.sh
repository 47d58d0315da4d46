#!/bin/bash
# e2e: containerd-shim-husk-v2 under a real containerd 1.6 (issue 7).
#
# A private containerd (tests/helpers/containerd_private.sh: own root,
# state, sockets, opt dir and config, in a mount namespace of the test's own
# that outlives containerd, so that a restarted containerd finds the shims'
# sockets).  The busybox image is built here (umoci + skopeo, no registry).
#
# Two runtimes: io.containerd.husk.v2 (the shim, local backend through the
# husk.conf in containerd's environment) and io.containerd.huskqemu.v2 (a
# wrapper in the opt dir that gives the same shim a qemu TCG husk.conf).
# The local pass covers the whole TaskService; the qemu pass is lean: run
# --rm, run -d + exec + containerd restart + kill + delete, a pod of two in
# one shim and one VM, OOM.  Leaves nothing behind, whatever fails (trap).
#
#   B=build tests/e2e/shim_containerd.sh      (HUSK_SHIM_QEMU=0: no qemu pass)
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
[ -x /bin/busybox ] || skip "busybox-static is not installed"
[ -x "$SHIM" ] && [ -x "$AGENT" ] || skip "build $SHIM and $AGENT first (make B=$B)"

T=$(mktemp -d /tmp/husk-shim-e2e.XXXXXX)
NSP=husk-e2e-$$
# container ids carry the test's pid: the local backend names host cgroups
# (husk-agent.<sandbox id>) after them, and other suites may run meanwhile
X=$$
FAILS=0
N=0
. "$ROOT/tests/helpers/containerd_private.sh"
our_pids() { ctrd_pids; }

cleanup() {
    set +e
    ctrd_teardown
    for d in /sys/fs/cgroup/*/husk-agent.*-$X /sys/fs/cgroup/unified/husk-agent.*-$X; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
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
ctr_() { timeout -k 5 "${TMO:-60}" ctr "${A[@]}" "$@"; }
wait_stopped() { # id: until `task ls` says STOPPED (20 s at most)
    for _ in $(seq 200); do ctr_ task ls 2>/dev/null | grep -qE "^$1 .* STOPPED" && return 0; sleep 0.1; done
    return 1
}
task_pid() { ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }
# `ctr events` in the background, into $T/$1.events (EVF); events_stop ends it
events_start() {
    EVF=$T/$1.events
    ctr "${A[@]}" events >"$T/$1.events" 2>&1 &
    EV=$!
    # subscribed once an event of our own shows up (a namespace label)
    local i
    for i in $(seq 100); do
        ctr_ namespaces label $NSP husk-e2e-ping=$i >/dev/null 2>&1
        grep -q '/namespaces/update' "$T/$1.events" 2>/dev/null && return 0
        sleep 0.1
    done
}
events_stop() { # id: once its /tasks/delete arrived (10 s at most)
    for _ in $(seq 100); do grep -qE "/tasks/delete .*\"$1\"" "$EVF" && break; sleep 0.1; done
    kill "$EV" 2>/dev/null
    wait "$EV" 2>/dev/null
}

# ---- image, configs, mount namespace, containerd --------------------------------------
. "$ROOT/tests/helpers/busybox_image.sh"
build_busybox_image "$T/image" || skip "cannot build the busybox image: $(tail -2 "$T/image/image.log")"
IMG=localhost/busybox:latest
ctrd_setup || skip "cannot make a mount namespace: $(cat "$T/ns.log")"
mkdir -p "$T/husk"
# a plain rootfs directory for `ctr run --rootfs`
mkdir -p "$T/rootfs/bin" "$T/rootfs/proc" "$T/rootfs/dev" "$T/rootfs/sys" "$T/rootfs/tmp"
cp /bin/busybox "$T/rootfs/bin/busybox"
for a in sh sleep echo cat ls; do ln -sf busybox "$T/rootfs/bin/$a"; done
printf '[runtime]\nroot = %s/husk\nhypervisor = local\n' "$T" >"$T/husk.conf"
printf '[runtime]\nroot = %s/husk\nhypervisor = qemu\n[hypervisor]\nkernel = %s\ninitrd = %s\n' \
    "$T" "$ROOT/$B/guest/vmlinux" "$ROOT/$B/guest/initrd.img" >"$T/husk-qemu.conf"
ln -s "$SHIM" "$T/opt/bin/containerd-shim-husk-v2"
printf '#!/bin/sh\nHUSK_CONFIG=%s exec %s "$@"\n' "$T/husk-qemu.conf" "$SHIM" >"$T/opt/bin/containerd-shim-huskqemu-v2"
chmod +x "$T/opt/bin/containerd-shim-huskqemu-v2"
ctrd_start || skip "containerd did not start: $(tail -3 "$T/containerd.log")"
ctr_ images import "$T/image/busybox-docker.tar" >/dev/null 2>&1 || skip "ctr images import failed"
echo "# containerd $(containerd --version | awk '{print $3}') pid $CTRD_PID in $T"

# ---- the flows ---------------------------------------------------------------------------
# BE: local|qemu; RT: ctr run's runtime flags
run_rm() {
    local id=r1-$BE-$X out rc
    out=$(TMO=150 ctr_ run --rm "${RT[@]}" $IMG $id sh -c 'echo hello-out $(uname -r); echo hello-err >&2; exit 3' </dev/null 2>"$T/$id.err")
    rc=$?
    if [ "${out% *}" = hello-out ] && [ $rc -eq 3 ] && grep -q hello-err "$T/$id.err"; then
        ok "$BE: run --rm: stdout, stderr and exit status 3 (kernel ${out#* })"
    else
        notok "$BE: run --rm: stdout, stderr and exit status 3" "rc=$rc out=$out err=$(cat "$T/$id.err")"
    fi
    KERNEL=${out#* }
}

# run -d, exec, [local: ps, pause/resume, metrics, refused delete],
# containerd killed and started again, then exec, kill, delete through the
# shim it finds again (and the events it forwards to the new containerd)
run_d_restart() {
    local id=d1-$BE-$X out rc pid1 pid2
    TMO=150 check "$BE: run -d" ctr_ run -d "${RT[@]}" $IMG $id sleep 1000
    out=$(ctr_ task ls 2>&1)
    echo "$out" | grep -qE "^$id +[0-9]+ +RUNNING" && ok "$BE: task ls: RUNNING" || notok "$BE: task ls: RUNNING" "$out"
    out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id e1 $id sh -c 'echo exec-ok; exit 5' </dev/null 2>&1)
    rc=$?
    [ "$out" = exec-ok ] && [ $rc -eq 5 ] && ok "$BE: task exec: output and exit status 5" ||
        notok "$BE: task exec: output and exit status 5" "rc=$rc $out"
    # containerd's spec denies every device but runc's defaults
    # (linux.resources.devices): the guest applies it to the container
    out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id e0 $id sh -c \
        'mknod /dev/kmsg-$$ c 1 11 && echo husk-e2e >/dev/kmsg-$$; rm -f /dev/kmsg-$$; echo x >/dev/null && echo null-ok' </dev/null 2>&1)
    echo "$out" | grep -q "Operation not permitted" && echo "$out" | grep -q "^null-ok$" &&
        ok "$BE: device rules: c 1:11 refused, /dev/null allowed" ||
        notok "$BE: device rules: c 1:11 refused, /dev/null allowed" "$out"
    if [ "$BE" = local ]; then
        out=$(ctr_ task ps $id 2>&1)
        [ "$(echo "$out" | tail -n +2 | grep -cE '^[0-9]+')" -ge 1 ] && ok "$BE: task ps" || notok "$BE: task ps" "$out"
        check "$BE: task pause" ctr_ task pause $id
        out=$(ctr_ task ls 2>&1)
        echo "$out" | grep -qE "^$id .* PAUSED" && ok "$BE: paused state" || notok "$BE: paused state" "$out"
        check "$BE: task resume" ctr_ task resume $id
        out=$(ctr_ task ls 2>&1)
        echo "$out" | grep -qE "^$id .* RUNNING" && ok "$BE: running again" || notok "$BE: running again" "$out"
        out=$(ctr_ task metrics $id 2>&1)
        echo "$out" | grep -q 'pids.current' && ok "$BE: task metrics (cgroups v2 Metrics)" || notok "$BE: task metrics" "$out"
        out=$(ctr_ task delete $id 2>&1)
        [ $? -ne 0 ] && ok "$BE: task delete of a running task refused" ||
            notok "$BE: task delete of a running task refused" "$out"
    fi

    # containerd dies (SIGKILL) and comes back on the same root, state and socket
    pid1=$(task_pid $id) # the task pid is the shim's (docs/shim.md)
    kill -KILL $CTRD_PID
    wait $CTRD_PID 2>/dev/null
    if ctrd_start; then
        ok "$BE: containerd killed and started again (pid $CTRD_PID)"
    else
        notok "$BE: containerd killed and started again" "$(tail -5 "$T/containerd.log")"
        return
    fi
    pid2=$(task_pid $id)
    out=$(ctr_ task ls 2>&1)
    echo "$out" | grep -qE "^$id +$pid1 +RUNNING" && [ "$pid1" = "$pid2" ] &&
        ok "$BE: after the restart: still RUNNING, same shim (pid $pid1)" ||
        notok "$BE: after the restart: still RUNNING, same shim" "pid before=$pid1 $out"
    events_start restart-$BE
    out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id e2 $id sh -c 'echo exec-after-restart; exit 6' </dev/null 2>&1)
    rc=$?
    [ "$out" = exec-after-restart ] && [ $rc -eq 6 ] && ok "$BE: after the restart: task exec (exit 6)" ||
        notok "$BE: after the restart: task exec (exit 6)" "rc=$rc $out"
    check "$BE: after the restart: task kill -s SIGKILL" ctr_ task kill -s SIGKILL $id
    wait_stopped $id && ok "$BE: after the restart: STOPPED after kill" ||
        notok "$BE: after the restart: STOPPED after kill" "$(ctr_ task ls 2>&1)"
    out=$(ctr_ task delete $id 2>&1)
    [ $? -eq 0 ] && ok "$BE: after the restart: task delete (status 137)" || notok "$BE: after the restart: task delete" "$out"
    check "$BE: after the restart: container rm" ctr_ containers rm $id
    events_stop $id
    # the shim forwards to the new containerd: its exec and exit events arrive
    out=$(grep -E "/tasks/(exec-started|exit|delete) " "$T/restart-$BE.events" | grep -F "\"$id\"")
    echo "$out" | grep -q '/tasks/exec-started' && echo "$out" | grep -q '"exit_status":137' &&
        echo "$out" | grep -q '/tasks/delete' &&
        ok "$BE: after the restart: exec-started, exit (137), delete events reach the new containerd" ||
        notok "$BE: after the restart: events reach the new containerd" "$(cat "$T/restart-$BE.events")"
    for _ in $(seq 100); do kill -0 "$pid1" 2>/dev/null || break; sleep 0.1; done
    [ -n "$pid1" ] && ! kill -0 "$pid1" 2>/dev/null && ok "$BE: the shim (pid $pid1) exited after the delete" ||
        notok "$BE: the shim exited after the delete" "pid [$pid1] alive: $(tr '\0' ' ' <"/proc/$pid1/cmdline" 2>/dev/null)"
}

# a pod: two containers in one shim (and, with qemu, one VM)
pod() {
    local p=pod1-$BE-$X a1 a2 p1 p2 out nvm
    local POD=(--annotation io.kubernetes.cri.sandbox-id=$p)
    TMO=150 check "$BE: pod: sandbox container" ctr_ run -d "${RT[@]}" "${POD[@]}" \
        --annotation io.kubernetes.cri.container-type=sandbox $IMG $p sleep 1000
    if [ "$BE" = local ]; then
        # with the local backend the agent does not see mounts made after
        # it started (docs/shim.md), and an image rootfs is an overlay mount
        check "$BE: pod: second container" ctr_ run -d --rootfs "${RT[@]}" "${POD[@]}" \
            --annotation io.kubernetes.cri.container-type=container "$T/rootfs" $p-c1 /bin/sleep 1000
    else
        check "$BE: pod: second container (image rootfs, shared into the running VM)" ctr_ run -d "${RT[@]}" "${POD[@]}" \
            --annotation io.kubernetes.cri.container-type=container $IMG $p-c1 /bin/sleep 1000
    fi
    a1=$(cat "$T/state/io.containerd.runtime.v2.task/$NSP/$p/address" 2>/dev/null)
    a2=$(cat "$T/state/io.containerd.runtime.v2.task/$NSP/$p-c1/address" 2>/dev/null)
    p1=$(task_pid $p)
    p2=$(task_pid $p-c1)
    [ -n "$a1" ] && [ "$a1" = "$a2" ] && [ -n "$p1" ] && [ "$p1" = "$p2" ] &&
        ok "$BE: pod: both containers share one shim (pid $p1)" || notok "$BE: pod: one shim" "a1=$a1 a2=$a2 p1=$p1 p2=$p2"
    if [ "$BE" = qemu ]; then
        nvm=$(for q in $(our_pids); do case $(readlink "/proc/$q/exe") in */qemu-system-*) echo $q ;; esac; done | wc -l)
        [ "$nvm" = 1 ] && ok "$BE: pod: one qemu process for the pod" || notok "$BE: pod: one qemu process" "$nvm qemu processes"
    fi
    out=$(ctr_ task exec --fifo-dir "$T/fifo" --exec-id x $p-c1 /bin/echo in-c1 </dev/null 2>&1)
    [ "$out" = in-c1 ] && ok "$BE: pod: exec in the second container" || notok "$BE: pod: exec in the second container" "$out"
    for c in $p-c1 $p; do ctr_ task kill -s SIGKILL $c >/dev/null 2>&1; done
    for c in $p-c1 $p; do
        wait_stopped $c
        ctr_ task delete $c >/dev/null 2>&1 && ctr_ containers rm $c >/dev/null 2>&1
    done
    out=$(ctr_ task ls -q 2>&1; ctr_ containers ls -q 2>&1)
    [ -z "$out" ] && ok "$BE: pod: deleted" || notok "$BE: pod: deleted" "$out"
}

# OOM: a container over its memory limit -> /tasks/oom, then exit 137
oom() {
    local id=oom-$BE-$X rc out
    events_start oom-$BE
    TMO=150 ctr_ run --rm "${RT[@]}" --memory-limit $((32 << 20)) $IMG $id \
        sh -c 'echo start; exec dd if=/dev/zero of=/dev/null bs=96M count=1' </dev/null >"$T/$id.out" 2>&1
    rc=$?
    events_stop $id
    [ $rc -eq 137 ] && grep -q start "$T/$id.out" && ok "$BE: oom: the container over its 32 MiB limit is killed (exit 137)" ||
        notok "$BE: oom: killed (exit 137)" "rc=$rc $(cat "$T/$id.out")"
    out=$(grep -oE "/tasks/[a-z-]+ .*\"$id\"" "$T/oom-$BE.events" | awk '{print $1}' | tr '\n' ' ')
    [ "$out" = "/tasks/create /tasks/start /tasks/oom /tasks/exit /tasks/delete " ] &&
        ok "$BE: oom: events create start oom exit delete" || notok "$BE: oom: events create start oom exit delete" "$out
$(cat "$T/oom-$BE.events")"
}

# the shim SIGKILLed with a running qemu task: the VMM outlives its daemon
# (a CLI daemon's sandbox may be restored), so containerd's clean-up of the
# dead shim (`shim delete`) must kill the orphaned VM
shim_killed() {
    local id=k1-$BE-$X spid nvm out
    TMO=150 check "$BE: shim killed: run -d" ctr_ run -d "${RT[@]}" $IMG $id sleep 1000
    spid=$(task_pid $id)
    [ -n "$spid" ] && kill -9 "$spid"
    for _ in $(seq 300); do
        nvm=$(for q in $(our_pids); do case $(readlink "/proc/$q/exe") in */qemu-system-*) echo $q ;; esac; done | wc -l)
        [ "$nvm" = 0 ] && break
        sleep 0.1
    done
    [ "$nvm" = 0 ] && ok "$BE: shim killed: containerd's clean-up kills the orphaned VM" ||
        notok "$BE: shim killed: the orphaned VM is killed" "$nvm qemu processes left 30 s after the shim (pid $spid) was killed"
    ctr_ task delete $id >/dev/null 2>&1
    ctr_ containers rm $id >/dev/null 2>&1
    out=$(ctr_ task ls -q 2>&1; ctr_ containers ls -q 2>&1)
    [ -z "$out" ] && ok "$BE: shim killed: task and container removed" || notok "$BE: shim killed: removed" "$out"
}

no_leftovers() {
    local left socks state cg
    for _ in $(seq 100); do
        left=$(for p in $(our_pids); do [ "$p" != "$CTRD_PID" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100 && echo; done | grep -v '^containerd \|^$')
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] && ok "$BE: no shim, agent or qemu process left" || notok "$BE: no shim, agent or qemu process left" "$left"
    socks=$(in_ns ls /run/containerd/s 2>/dev/null)
    [ -z "$socks" ] && ok "$BE: no shim socket left" || notok "$BE: no shim socket left" "$socks"
    state=$(ls "$T/husk")
    [ -z "$state" ] && ok "$BE: no sandbox state left" || notok "$BE: no sandbox state left" "$state"
    cg=$(ls -d /sys/fs/cgroup/*/husk-agent.*-$X /sys/fs/cgroup/unified/husk-agent.*-$X 2>/dev/null)
    [ -z "$cg" ] && ok "$BE: no agent cgroup left on the host" || notok "$BE: no agent cgroup left on the host" "$cg"
    # the sandboxes' host cgroups: husk/<id>-<hash of the root>
    cg=$(ls -d /sys/fs/cgroup/*/husk/*-$X-* 2>/dev/null)
    [ -z "$cg" ] && ok "$BE: no sandbox cgroup left on the host" || notok "$BE: no sandbox cgroup left on the host" "$cg"
}

# network rescan through Update (annotation io.husk.network.rescan).  The
# pod's network namespace is bound under $T inside containerd's mount
# namespace only (it goes with it).  With the local backend the rescan is a
# no-op that succeeds; a container without a namespace path gets the
# runtime's refusal back, which shows that the request reached it.
netupd() {
    local an1 an2 out c UPD=$ROOT/$B/tests/helpers/shim_update
    if ! in_ns sh -c ": >'$T/pod-net' && unshare --net='$T/pod-net' true"; then
        notok "network: a network namespace in containerd's mount namespace"
        return
    fi
    check "network: run -d in a given network namespace" \
        ctr_ run -d "${RT[@]}" --with-ns "network:$T/pod-net" $IMG n1-$X sleep 1000
    check "network: run -d with a new network namespace (no path)" ctr_ run -d "${RT[@]}" $IMG n2-$X sleep 1000
    an1=$(cat "$T/state/io.containerd.runtime.v2.task/$NSP/n1-$X/address" 2>/dev/null)
    an2=$(cat "$T/state/io.containerd.runtime.v2.task/$NSP/n2-$X/address" 2>/dev/null)
    out=$(in_ns "$UPD" "$an1" n1-$X io.husk.network.rescan=true 2>&1)
    [ "$out" = ok ] && ok "network: Update with io.husk.network.rescan=true" || notok "network: Update rescan" "$out"
    out=$(in_ns "$UPD" "$an2" n2-$X io.husk.network.rescan=true 2>&1)
    echo "$out" | grep -q "no network namespace path" &&
        ok "network: rescan of a container without a namespace path refused: ${out#error }" ||
        notok "network: rescan without a namespace path refused" "$out"
    out=$(in_ns "$UPD" "$an1" n1-$X io.husk.network.rescan=maybe 2>&1)
    echo "$out" | grep -q "^error 3: .*io.husk.network.rescan.*not true or false" &&
        ok "network: a bad annotation value is InvalidArgument" || notok "network: bad annotation value" "$out"
    out=$(in_ns "$UPD" "$an1" n1-$X 2>&1)
    [ "$out" = ok ] && ok "network: Update with neither resources nor annotation is a no-op" ||
        notok "network: empty Update" "$out"
    for c in n1-$X n2-$X; do
        ctr_ task kill -s SIGKILL $c >/dev/null 2>&1
        wait_stopped $c
        ctr_ task delete $c >/dev/null 2>&1 && ctr_ containers rm $c >/dev/null 2>&1
    done
}

# ---- local backend: everything ----------------------------------------------------------
BE=local
RT=(--runtime io.containerd.husk.v2 --fifo-dir "$T/fifo")
run_rm
out=$(printf 'piped-in\n' | ctr_ run --rm "${RT[@]}" $IMG r2-$X cat 2>&1)
[ "$out" = piped-in ] && ok "local: run --rm: stdin through the fifo" || notok "local: run --rm: stdin through the fifo" "$out"
run_d_restart
out=$(script -qec "timeout --foreground -k 5 60 ctr -a $S -n $NSP run --rm -t ${RT[*]} $IMG t1-$X sh -c 'tty; echo tty-done'" /dev/null 2>&1 </dev/null)
echo "$out" | grep -q '/dev/pts/' && echo "$out" | grep -q tty-done && ok "local: run -t through a pty" ||
    notok "local: run -t through a pty" "$out"
events_start order
ctr_ run --rm "${RT[@]}" $IMG ev1-$X true </dev/null >/dev/null 2>&1
events_stop ev1-$X
out=$(grep -oE "/tasks/[a-z-]+ .*\"ev1-$X\"" "$T/order.events" | awk '{print $1}' | tr '\n' ' ')
[ "$out" = "/tasks/create /tasks/start /tasks/exit /tasks/delete " ] && ok "local: events: create start exit delete" ||
    notok "local: events: create start exit delete" "$out"
netupd
pod
# No OOM with the local backend here: the agent applies limits on cgroup v2
# only, and this hybrid host keeps the memory controller on v1 (the unified
# hierarchy has none), so the limit is skipped with a warning.
if grep -qw memory /sys/fs/cgroup/cgroup.controllers /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
    oom
else
    echo "# local: no OOM check: the host's cgroup v2 hierarchy has no memory controller"
fi
no_leftovers

# ---- qemu TCG: the essential flow ----------------------------------------------------------
if [ "${HUSK_SHIM_QEMU:-1}" != 1 ]; then
    echo "# qemu pass skipped (HUSK_SHIM_QEMU=${HUSK_SHIM_QEMU})"
elif ! [ -f "$ROOT/$B/guest/vmlinux" ] || ! [ -f "$ROOT/$B/guest/initrd.img" ]; then
    echo "# qemu pass skipped: no guest image in $B/guest (make guest)"
elif ! command -v qemu-system-x86_64 >/dev/null; then
    echo "# qemu pass skipped: qemu-system-x86_64 not installed"
else
    BE=qemu
    RT=(--runtime io.containerd.huskqemu.v2 --fifo-dir "$T/fifo")
    t0=$(date +%s.%N)
    run_rm
    [ -n "$KERNEL" ] && [ "$KERNEL" != "$(uname -r)" ] && ok "qemu: the container ran in the guest kernel ($KERNEL)" ||
        notok "qemu: the container ran in the guest kernel" "guest=$KERNEL host=$(uname -r)"
    run_d_restart
    pod
    oom
    shim_killed
    no_leftovers
    echo "# qemu pass: $(echo "$(date +%s.%N) - $t0" | bc) s"
fi

echo "1..$N"
[ $FAILS -eq 0 ] || { echo "# containerd log: $T/containerd.log (removed at exit); last lines:"; grep -i 'husk\|shim' "$T/containerd.log" | tail -15 | sed 's/^/#   /'; }
exit $((FAILS > 0))
