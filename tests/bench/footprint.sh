#!/bin/bash
# Memory and start figures of one sandbox (printed, not asserted):
# time from `husk create` to a created container (VM boot + agent ready +
# container set-up), RSS/PSS of the VMM and of the sandbox daemon, for the
# qemu (TCG here) and local backends.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK=$ROOT/$B/bin/husk
[ -x "$HUSK" ] && [ "$(id -u)" = 0 ] && [ -x /bin/busybox ] || { echo "footprint: needs root, $HUSK and busybox-static"; exit 0; }
T=$(mktemp -d /tmp/husk-bench-fp.XXXXXX)
trap '"$HUSK" --root "$T/state" delete -f fp >/dev/null 2>&1; rm -rf "$T"' EXIT
mkdir -p "$T/b/rootfs"/{bin,proc,dev,sys,tmp,etc,run}
cp /bin/busybox "$T/b/rootfs/bin/"
chroot "$T/b/rootfs" /bin/busybox --install -s /bin
(cd "$T/b" && "$HUSK" spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sleep", "30"/' config.json)

mem() { # pid -> "RSS PSS" in MiB
    awk '/^Rss:/{r=$2} /^Pss:/{p=$2} END{printf "%.1f MiB RSS, %.1f MiB PSS", r/1024, p/1024}' "/proc/$1/smaps_rollup" 2>/dev/null
}
for be in qemu local; do
    t0=$(date +%s%N)
    if ! HUSK_HYPERVISOR=$be "$HUSK" --root "$T/state" create -b "$T/b" fp > "$T/create.log" 2>&1; then
        echo "  $be: create failed: $(tail -1 "$T/create.log")"; continue
    fi
    t1=$(date +%s%N)
    sb=$T/state/fp/sandbox.json
    vmm=$(sed -n 's/.*"vmm_pid": *\([0-9]*\).*/\1/p' "$sb")
    daemon=$(sed -n 's/.*"daemon_pid": *\([0-9]*\).*/\1/p' "$sb")
    printf '  %-6s create (boot + agent + container): %6.0f ms | VMM pid %s: %s | daemon: %s\n' \
        "$be" "$(( (t1 - t0) / 1000000 ))" "${vmm:-?}" "$(mem "${vmm:-0}")" "$(mem "${daemon:-0}")"
    "$HUSK" --root "$T/state" delete -f fp
done
