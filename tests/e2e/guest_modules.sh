#!/bin/bash
# e2e: the guest's late modules (virtio_net, virtio_blk, overlay, ext4...)
# load at SCHED_IDLE so that they keep off the first container's path
# (docs/performance.md, qemu section); they must still all load, also with
# a container that keeps the one vCPU busy (the agent also raises the
# loader to the normal policy after LOADER_IDLE_MS, agent/guest/agent.c:
# here the loader usually ends in the idle gaps of create and start, so
# that safety net is not what this checks).  ext4, the last of the late
# modules, must show in /proc/modules within a generous deadline.  Nothing
# may be left behind.  Prints "ok - name" / "not ok - name"; exits 77 when
# it cannot run.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/helpers/cli_e2e.sh"
if [ ! -f "$ROOT/$B/guest/initrd.img" ] || ! command -v qemu-system-x86_64 >/dev/null; then
    echo "skip: no guest image in $B/guest or no qemu-system-x86_64"
    exit 77
fi
cli_e2e_need guest-modules "$B/bin/husk" "$B/bin/husk-agent"
export HUSK_HYPERVISOR=qemu
RUN_TMO=120
ID=gm$$ # unique: other runs share this host

config '["sh", "-c", "while :; do :; done"]'
run run -d "$ID"
check "a container that spins on the vCPU runs" [ "$RC" = 0 ]

loaded=0
for _ in $(seq 60); do
    if timeout 30 "$HUSK_BIN" --root "$R" exec "$ID" cat /proc/modules >"$T/modules" 2>"$T/err" &&
        grep -q '^ext4 ' "$T/modules"; then
        loaded=1
        break
    fi
    sleep 1
done
check "the late modules load while a container keeps the vCPU busy" [ $loaded = 1 ]
husk state "$ID" >"$T/out" 2>"$T/err"
check "the spinning container still runs" has '"status": "running"'

run delete -f "$ID"
check "delete -f" [ "$RC" = 0 ]
gone=0
for _ in $(seq 100); do
    pgrep -f "$T/" >/dev/null || { gone=1; break; }
    sleep 0.1
done
check "no qemu, daemon or proxy left" [ $gone = 1 ]
check "no state left" [ ! -e "$R/$ID" ]
[ $fail = 0 ]
