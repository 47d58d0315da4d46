#!/bin/bash
# Fault suite: real scenarios through the husk CLI under each fault
# (docs/faults.md), asserting what users care about:
#  - every command ends before its deadline (timeout; expiry fails the case)
#    with exit 0 or a clear error on stderr;
#  - husk state / husk list agree with reality (a "running" container has a
#    live process; list shows what state shows);
#  - after delete -f nothing is left: no daemon, proxy or agent process, no
#    mount, socket or state directory under the runtime root;
#  - a later create of the same id, without faults, works.
# Scenarios: "life" = create, start, exec, delete of one container; "pod" =
# a sandbox container and a second container joined by the CRI annotations
# (io.kubernetes.cri.container-type / sandbox-id), exec in the second,
# delete both.  Ends with a table faults x scenarios: held / failed.
# Backend: local (HUSK_HYPERVISOR=local); FAULT_QEMU=1 runs the qemu (TCG)
# subset instead (QFAULTS below; tests/fault/faults_qemu.sh does, skipped
# without a built guest image or qemu-system-x86_64).
# Env: B (build dir), FAULT_ONLY=regex on fault names, FAULT_QEMU=1,
#      FAULT_VERBOSE=1 (every case's commands, not only the failed ones').
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK_BIN=$ROOT/$B/bin/husk
FONLY=${FAULT_ONLY:-.}

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (namespaces, mounts, pivot_root)"
    exit 77
fi
[ -x /bin/busybox ] || { echo "skip: busybox-static is not installed"; exit 77; }
for t in "$B/bin/husk" "$B/bin/husk-agent"; do
    [ -x "$ROOT/$t" ] || make -s -C "$ROOT" B="$B" "$t" >/dev/null 2>&1
    [ -x "$ROOT/$t" ] || { echo "not ok - build $t"; exit 1; }
done

BACKEND=local
if [ "${FAULT_QEMU:-0}" = 1 ]; then
    for f in vmlinux initrd.img; do
        [ -f "$ROOT/$B/guest/$f" ] || { echo "skip: no guest image ($B/guest/$f; make guest)"; exit 77; }
    done
    command -v qemu-system-x86_64 >/dev/null 2>&1 ||
        { echo "skip: qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"; exit 77; }
    BACKEND=qemu
fi
export HUSK_HYPERVISOR=$BACKEND

T=$(mktemp -d /tmp/husk-fault.XXXXXX)
R=$T/root
cleanup() {
    for p in $(pgrep -f "$R/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    grep " $R/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

# bundle DIR ARGS_JSON [ANNOTATIONS_JSON] [HOOKS_JSON]
bundle() {
    mkdir -p "$1/rootfs"/{bin,proc,sys,dev,etc,tmp}
    [ -x "$1/rootfs/bin/busybox" ] || {
        cp /bin/busybox "$1/rootfs/bin/busybox"
        chroot "$1/rootfs" /bin/busybox --install -s /bin
    }
    rm -f "$1/config.json"
    (cd "$1" && "$HUSK_BIN" spec)
    python3 - "$1/config.json" "$2" "${3:-{\}}" "${4:-{\}}" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = json.loads(sys.argv[2])
c["process"]["terminal"] = False
del c["process"]["capabilities"]["ambient"]
del c["linux"]["resources"]
c["root"]["readonly"] = False
ann = json.loads(sys.argv[3])
if ann:
    c["annotations"] = ann
hooks = json.loads(sys.argv[4])
if hooks:
    c["hooks"] = hooks
json.dump(c, open(p, "w"), indent="\t")
EOF
}

BUN=$T/b-life
bundle "$BUN" '["sleep", "1000"]'
bundle "$T/b-sb" '["sleep", "1000"]' \
    '{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "pod"}'
bundle "$T/b-ctr" '["sleep", "1000"]' \
    '{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "pod"}'
bundle "$T/b-hook" '["sleep", "1000"]' '{}' \
    '{"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}'

DEADLINE=${FAULT_DEADLINE:-50} # s per command: the CLI's own deadlines are 30 s
[ "$BACKEND" = qemu ] && DEADLINE=90 # agent.connect waits up to 60 s for a boot

CASE_FAIL=0
CASE_LOG=
note() { CASE_FAIL=1; echo "#   $*" >>"$CASE_LOG"; }

# hk BUNDLE ARGS...: one bounded husk command; a hang fails the case, a
# failure must say why
hk() {
    local bun=$1
    shift
    local t0=$(date +%s%N)
    (cd "$bun" && timeout -k 5 "$DEADLINE" "$HUSK_BIN" --root "$R" "$@") \
        >"$T/out" 2>"$T/err" </dev/null
    RC=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    echo "#   husk $* -> $RC (${ms} ms) $(head -c 300 "$T/err" | tr '\n' ' ')" >>"$CASE_LOG"
    if [ $RC = 124 ] || [ $RC = 137 ]; then
        note "husk $*: no answer within ${DEADLINE}s (hang)"
    elif [ $RC != 0 ] && [ "$1" != exec ] && ! grep -q . "$T/err"; then
        note "husk $*: failed ($RC) without an error message"
    elif [ "$1" = exec ] && [ $RC -ge 126 ] && ! grep -q . "$T/err"; then
        note "husk $*: exec failed ($RC) without an error message"
    fi
    return $RC
}

# consistent IDS...: state and list agree with each other and with reality
consistent() {
    timeout 20 "$HUSK_BIN" --root "$R" list -q >"$T/list" 2>"$T/list.err" ||
        note "husk list failed or hung: $(cat "$T/list.err")"
    for id in "$@"; do
        if timeout 20 "$HUSK_BIN" --root "$R" state "$id" >"$T/state" 2>/dev/null; then
            grep -qx "$id" "$T/list" || note "state knows $id, list does not"
            st=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["status"], s["pid"])' "$T/state")
            set -- $st
            case $1 in
            running | paused)
                kill -0 "$2" 2>/dev/null || note "$id is $1 with pid $2, which is gone" ;;
            created | stopped) ;;
            *) note "$id: unexpected status $1" ;;
            esac
            set -- "${@:3}"
        else
            grep -qx "$id" "$T/list" && note "list shows $id, state does not know it"
        fi
    done
}

# The host cgroup of sandbox $1 under this root (resources/resource_actor.h:
# <id>-<FNV-1a 64 of the root's real path, top 48 bits in hex>)
cgroup_name() {
    python3 - "$R" "$1" <<'EOF2'
import os, sys
h = 0xcbf29ce484222325
for b in os.path.realpath(sys.argv[1]).encode():
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
print("%s-%012x" % (sys.argv[2], h >> 16))
EOF2
}

# leaks: nothing of the sandbox may be left after delete -f
leaks() {
    sleep 0.3
    local id cg
    for id in life pod; do
        cg=$(find /sys/fs/cgroup -maxdepth 4 -type d -path '*/husk/*' -name "$(cgroup_name $id)" 2>/dev/null)
        [ -n "$cg" ] && { note "cgroup left: $cg"; echo "$cg" | xargs -r rmdir 2>/dev/null; }
    done
    local procs
    procs=$(pgrep -af "$R/" 2>/dev/null | grep -v pgrep)
    [ -n "$procs" ] && note "processes left: $(echo "$procs" | cut -c1-200 | tr '\n' ';')"
    grep -q " $R/" /proc/mounts && note "mounts left: $(grep " $R/" /proc/mounts | awk '{print $2}' | tr '\n' ' ')"
    local left
    left=$(find "$R" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null)
    [ -n "$left" ] && note "state left: $left $(find "$R" -name '*.sock' | tr '\n' ' ')"
    [ -z "$procs$left" ] || {
        # leave a clean slate for the next case
        for p in $(pgrep -f "$R/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        rm -rf "${R:?}"/*
    }
}

# ---- scenarios ------------------------------------------------------------------
# Each runs its steps with HUSK_FAULTS in the environment of the first
# create (the daemon it starts keeps it), then cleans up and checks.

scen_life() { # fault
    HUSK_FAULTS=$1 hk "$BUN" create life && hk "$BUN" start life && hk "$BUN" exec life true
    consistent life
    hk "$BUN" delete -f life || hk "$BUN" delete -f life
    consistent life
    leaks
    # the same id again, no fault
    if hk "$BUN" create life && hk "$BUN" start life && hk "$BUN" exec life true &&
        hk "$BUN" delete -f life; then :; else note "the same id does not work again"; fi
    hk "$BUN" delete -f life
    leaks
}

scen_pod() { # fault
    HUSK_FAULTS=$1 hk "$T/b-sb" create pod && hk "$T/b-ctr" create pod-c1 &&
        hk "$T/b-sb" start pod && hk "$T/b-ctr" start pod-c1 && hk "$T/b-ctr" exec pod-c1 true
    consistent pod pod-c1
    hk "$T/b-ctr" delete -f pod-c1
    hk "$T/b-sb" delete -f pod || hk "$T/b-sb" delete -f pod
    consistent pod pod-c1
    leaks
    if hk "$T/b-sb" create pod && hk "$T/b-ctr" create pod-c1 && hk "$T/b-sb" start pod &&
        hk "$T/b-ctr" start pod-c1 && hk "$T/b-ctr" exec pod-c1 true &&
        hk "$T/b-ctr" delete -f pod-c1 && hk "$T/b-sb" delete -f pod; then :; else
        note "the same pod does not work again"
    fi
    hk "$T/b-ctr" delete -f pod-c1
    hk "$T/b-sb" delete -f pod
    leaks
}

# hook timeout: a createRuntime hook that outlasts its 1 s timeout; the
# create must fail with the hook named, and the same id work with a good
# bundle.  Not a rule: the fault is in the bundle.
scen_hook() {
    hk "$T/b-hook" create life && note "create succeeded although its hook timed out"
    grep -q "hook" "$T/err" || note "the error does not name the hook"
    consistent life
    hk "$T/b-hook" delete -f life
    leaks
    if hk "$BUN" create life && hk "$BUN" start life && hk "$BUN" delete -f life; then :; else
        note "the same id does not work again"
    fi
    hk "$BUN" delete -f life
    leaks
}

# ---- faults: name|rules (HUSK_FAULTS)[|scenarios[|expect]] --------------------------
# expect: an extended regex that what the commands said must match (the
# error the caller gets), checked after the scenario.
# A fault that costs a deadline (a dropped message: 10 s for a quick agent
# request, 20 s for hv.start; a hung agent: ~7 s until the health probe
# gives up) runs in one scenario only.
FAULTS=(
    "none|"
    "drop start|drop type=agent.start_container count=1|life|did not answer agent.start_container within 10000 ms"
    "drop exec reply|drop type=agent.pid from=agent to=runtime skip=1 count=1|life|did not answer agent.exec_process within 10000 ms"
    "drop hv reply|drop type=hv.started from=hypervisor count=1|life|did not answer hv.start within 20000 ms"
    "drop res reply|drop type=res.sandbox_ready from=resources count=1|life|did not answer res.prepare_sandbox within 10000 ms"
    "delay agent|delay:300 type=agent.* count=6"
    "delay rt|delay:500 type=rt.* count=4"
    "duplicate start|duplicate type=agent.start_container count=1"
    "duplicate rt.create|duplicate type=rt.create count=1"
    "corrupt create|corrupt:8 type=agent.create_container count=1 seed=7"
    "corrupt reply|corrupt:4 type=agent.ok to=runtime count=1 seed=3"
    "kill agent actor|kill to=agent type=agent.start_container"
    "kill hv actor|kill to=hypervisor type=hv.start"
    "kill res actor|kill to=resources type=res.add_pid"
    "kill runtime|kill to=runtime type=rt.start|life"
    "kill vmm at create|kill-vmm type=agent.create_container|life"
    "kill vmm|kill-vmm type=agent.start_container"
    "kill vmm at exec|kill-vmm type=agent.exec_process|pod"
    "agent exit|agent-exit type=agent.start_container"
    "agent hang|agent-hang type=agent.exec_process|life|agent is not responding: no answer to a health check"
    "persist enospc|enospc type=rt.start"
    "persist eio|eio:2 type=rt.create"
    "hook timeout||life"
)
# The qemu (TCG) subset, ~75 s: each case boots two VMs (~3 s each: the
# fault's and the same id again).  What differs from the local backend is
# the VMM and the guest: qemu killed while the guest creates a container
# and while containers run, the guest's agent (PID 1) exiting or hanging,
# a lost answer of the guest, a failed state write with a real VM.
QFAULTS=(
    "none||life"
    "kill vmm at create|kill-vmm type=agent.create_container|life"
    "kill vmm at exec|kill-vmm type=agent.exec_process|pod"
    "agent exit|agent-exit type=agent.start_container|life"
    "agent hang|agent-hang type=agent.exec_process|life|agent is not responding: no answer to a health check"
    "drop exec reply|drop type=agent.pid from=agent to=runtime skip=1 count=1|life|did not answer agent.exec_process within 10000 ms"
    "persist enospc|enospc type=rt.start|life"
)
[ "$BACKEND" = qemu ] && FAULTS=("${QFAULTS[@]}")

declare -A RESULT
t_start=$(date +%s)
for entry in "${FAULTS[@]}"; do
    IFS='|' read -r name rules scens expect <<<"$entry"
    scens=${scens:-life,pod}
    [[ $name =~ $FONLY ]] || continue
    for scen in life pod; do
        [[ ,$scens, == *,$scen,* ]] || continue
        CASE_FAIL=0
        CASE_LOG=$T/case.log
        : >"$CASE_LOG"
        t0=$(date +%s.%N)
        if [ "$name" = "hook timeout" ]; then scen_hook; else "scen_$scen" "$rules"; fi
        if [ -n "$expect" ] && ! grep -qE "$expect" "$CASE_LOG"; then
            note "no command said what the fault should cause: /$expect/"
        fi
        dt=$(echo "$(date +%s.%N) - $t0" | bc)
        if [ $CASE_FAIL = 0 ]; then
            RESULT["$name/$scen"]=held
            printf 'ok - %s under "%s" (%.1fs)\n' "$scen" "$name" "$dt"
        else
            RESULT["$name/$scen"]=FAILED
            printf 'not ok - %s under "%s" (%.1fs)\n' "$scen" "$name" "$dt"
            cat "$CASE_LOG"
            for d in "$R"/*/; do [ -f "$d/daemon.log" ] && tail -n 15 "$d/daemon.log" | sed 's/^/#   log: /'; done
        fi
        [ -n "${FAULT_VERBOSE:-}" ] && cat "$CASE_LOG"
    done
done

echo "# faults x scenarios ($BACKEND backend, $(($(date +%s) - t_start)) s)"
printf '# %-22s %-8s %-8s\n' FAULT life pod
for entry in "${FAULTS[@]}"; do
    name=${entry%%|*}
    [ -n "${RESULT["$name/life"]:-}${RESULT["$name/pod"]:-}" ] || continue
    printf '# %-22s %-8s %-8s\n' "$name" "${RESULT["$name/life"]:--}" "${RESULT["$name/pod"]:--}"
done
