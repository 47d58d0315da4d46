#!/bin/bash
# e2e: a sandbox outlives its daemon (docs/state.md "Restore"), with the
# local backend and, when the guest image exists, qemu TCG.  A container
# sleeps, a second one exits while no daemon runs; the daemon is SIGKILLed;
# then `husk state` restores the sandbox (running, same pid), exec works,
# the exited one reads stopped with its status, kill + delete leave nothing
# behind (no qemu/agent/proxy/daemon process, mount, cgroup, state dir).
# Failure paths: daemon and VMM killed -> stopped and cleaned up; a hung
# agent -> the restore gives up within a bounded time, VMM killed.
# Prints "ok - name" / "not ok - name"; exits 77 when it cannot run.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/helpers/cli_e2e.sh"
cli_e2e_need restore "$B/bin/husk" "$B/bin/husk-agent"
U=r$$ # unique names: other runs share this host
RUN_TMO=120
cli_e2e_cleanup_more() {
    local d
    for d in /sys/fs/cgroup/unified/husk-agent.$U* /sys/fs/cgroup/husk-agent.$U*; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
}

field() { # sandbox key
    sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$R/$1/sandbox.json" 2>/dev/null
}
alive() { # pid: running and not a zombie
    [ -n "$1" ] && [ "$1" != 0 ] && kill -0 "$1" 2>/dev/null &&
        [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
wait_gone() { # pid seconds
    local i
    for i in $(seq $(($2 * 10))); do alive "$1" || return 0; sleep 0.1; done
    ! alive "$1"
}
pid_in_state() { sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$T/out"; }
nothing_left() { # sandbox: no state dir, mount, cgroup or process of it
    local sb=$1
    [ ! -e "$R/$sb" ] || { echo "# state dir $R/$sb is left"; return 1; }
    ! awk -v t="$R/$sb/" 'index($2, t) == 1 {f=1} END {exit !f}' /proc/self/mounts ||
        { echo "# a mount under $R/$sb is left"; return 1; }
    [ ! -e "/sys/fs/cgroup/unified/husk-agent.$sb" ] && [ ! -e "/sys/fs/cgroup/husk-agent.$sb" ] ||
        { echo "# the agent cgroup of $sb is left"; return 1; }
    # the host cgroup: <id>-<hash of the root> (resources/resource_actor.h)
    ! find /sys/fs/cgroup -maxdepth 3 -type d -regextype posix-extended \
        -regex ".*/$sb(-[0-9a-f]{12})?" 2>/dev/null | grep -q . ||
        { echo "# a host cgroup of $sb is left"; return 1; }
    ! pgrep -f "$R/$sb" >/dev/null || { echo "# a process of $sb is left: $(pgrep -af "$R/$sb")"; return 1; }
}

scenario() { # backend
    local be=$1 sb=$U-$1 t0 t1
    export HUSK_HYPERVISOR=$be
    echo "# backend $be"

    # ---- restore: the sandbox outlives its daemon ------------------------------------
    config '["sleep", "1000"]'
    run run -d --pid-file "$T/$sb.pid" "$sb"
    check "$be: run -d" [ $RC = 0 ]
    # the second one exits with 7 once a file appears in its rootfs: that
    # happens while no daemon runs
    rm -f "$BUN/rootfs/tmp/go-$be"
    config "[\"sh\", \"-c\", \"while [ ! -e /tmp/go-$be ]; do sleep 0.1; done; exit 7\"]"
    run run -d --pid-file "$T/$sb-x.pid" "$sb-x"
    check "$be: a second container" [ $RC = 0 ]
    local xsb=$sb
    [ -f "$R/$sb/$sb-x/container.json" ] || xsb=$sb-x
    run state "$sb"
    local pid0
    pid0=$(pid_in_state)
    local dpid vpid
    dpid=$(field "$sb" daemon_pid)
    vpid=$(field "$sb" vmm_pid)
    check "$be: running, daemon $dpid, VMM $vpid" eval 'has "\"status\": \"running\"" && alive "$dpid" && alive "$vpid"'
    kill -9 "$dpid"
    [ "$xsb" != "$sb" ] && kill -9 "$(field "$xsb" daemon_pid)"
    wait_gone "$dpid" 10
    touch "$BUN/rootfs/tmp/go-$be"
    sleep 1 # let it exit while no daemon runs
    check "$be: the VMM outlives its daemon" alive "$vpid"
    t0=$(date +%s%N)
    run state "$sb"
    t1=$(date +%s%N)
    echo "# $be: state with a restore took $(((t1 - t0) / 1000000)) ms"
    check "$be: state after the daemon was killed: running, same pid" \
        eval '[ $RC = 0 ] && has "\"status\": \"running\"" && [ "$(pid_in_state)" = "$pid0" ]'
    local dpid2
    dpid2=$(field "$sb" daemon_pid)
    check "$be: a new daemon serves the sandbox" eval 'alive "$dpid2" && [ "$dpid2" != "$dpid" ]'
    check "$be: the same VMM" [ "$(field "$sb" vmm_pid)" = "$vpid" ]
    run exec "$sb" sh -c 'echo restored-exec; exit 3'
    check "$be: exec after the restore" eval '[ $RC = 3 ] && has "^restored-exec$"'
    run state "$sb-x"
    check "$be: the container that exited meanwhile reads stopped" eval '[ $RC = 0 ] && has "\"status\": \"stopped\""'
    check "$be: ... with its exit status 7" grep -q '"exit_status": 7' "$R/$xsb/$sb-x/container.json"
    run list
    check "$be: list after the restore" eval '[ $RC = 0 ] && grep -qE "^$sb +$pid0 +running " $T/out'
    run kill "$sb" KILL
    check "$be: kill after the restore" [ $RC = 0 ]
    local ppid
    ppid=$(cat "$T/$sb.pid")
    check "$be: the proxy ends with the container" wait_gone "$ppid" 30
    run delete "$sb-x"
    check "$be: delete of the exited one" [ $RC = 0 ]
    run delete "$sb"
    check "$be: delete after the restore" [ $RC = 0 ]
    check "$be: the VMM is gone" wait_gone "$vpid" 30
    check "$be: the daemon is gone" wait_gone "$dpid2" 30
    check "$be: the other proxy ended too" wait_gone "$(cat "$T/$sb-x.pid")" 30
    check "$be: nothing left of the sandbox" nothing_left "$sb"
    [ "$xsb" = "$sb" ] || check "$be: nothing left of the second sandbox" nothing_left "$xsb"

    # ---- daemon and VMM dead: stopped, and cleaned up ------------------------------------
    local sb2=$U-$be-dead
    config '["sleep", "1000"]'
    run run -d --pid-file "$T/$sb2.pid" "$sb2"
    dpid=$(field "$sb2" daemon_pid)
    vpid=$(field "$sb2" vmm_pid)
    kill -9 "$dpid"
    wait_gone "$dpid" 10
    kill -9 "$vpid"
    wait_gone "$vpid" 10
    run state "$sb2"
    check "$be: daemon and VMM killed: stopped" eval '[ $RC = 0 ] && has "\"status\": \"stopped\""'
    check "$be: ... and no daemon was started" eval '! alive "$(field "$sb2" daemon_pid)"'
    check "$be: ... its proxy leaves (exit 255)" wait_gone "$(cat "$T/$sb2.pid")" 30
    run delete "$sb2"
    check "$be: ... delete cleans up" eval '[ $RC = 0 ] && nothing_left "$sb2"'

    # ---- a hung agent: the restore gives up, bounded -----------------------------------------
    local sb3=$U-$be-hung
    run run -d --pid-file "$T/$sb3.pid" "$sb3"
    dpid=$(field "$sb3" daemon_pid)
    vpid=$(field "$sb3" vmm_pid)
    kill -9 "$dpid"
    wait_gone "$dpid" 10
    kill -STOP "$vpid" # qemu or the local agent: nothing answers on the channel
    t0=$(date +%s)
    run state "$sb3"
    t1=$(date +%s)
    echo "# $be: a restore against a hung agent gave up after $((t1 - t0)) s"
    check "$be: hung agent: the restore gives up within 60 s, stopped" \
        eval '[ $((t1 - t0)) -le 60 ] && [ $RC = 0 ] && has "\"status\": \"stopped\""'
    check "$be: ... the VMM was killed" wait_gone "$vpid" 10
    check "$be: ... its proxy leaves" wait_gone "$(cat "$T/$sb3.pid")" 30
    run delete "$sb3"
    check "$be: ... delete cleans up" eval '[ $RC = 0 ] && nothing_left "$sb3"'
}

scenario local
if [ -f "$ROOT/$B/guest/vmlinux" ] && command -v qemu-system-x86_64 >/dev/null; then
    printf '[hypervisor]\nkernel = %s\ninitrd = %s\n' "$ROOT/$B/guest/vmlinux" \
        "$ROOT/$B/guest/initrd.img" >"$T/husk.conf"
    export HUSK_CONFIG=$T/husk.conf
    scenario qemu
else
    echo "# qemu: no guest image in $B/guest, skipped"
fi
exit $fail
