#!/bin/bash
# hv_qemu: the qemu backend against a real qemu (TCG here).
# Drives tests/helpers/hv_probe for each x86 machine type: start with -S,
# QMP negotiation, pause/resume, 9p hotplug, stop, kill -9 detection,
# cleanup.  When build/guest/vmlinux and initrd.img exist, also boots the
# guest (q35 and microvm) and waits for GUEST-READY on the agent port.
# Prints "ok - name" / "not ok - name"; exit 77 when qemu is missing.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
QEMU=${QEMU:-$(command -v qemu-system-x86_64 || true)}
if [ -z "$QEMU" ]; then
    echo "skip: qemu-system-x86_64 not installed"
    exit 77
fi
PROBE=$B/tests/helpers/hv_probe
if [ ! -x "$PROBE" ]; then
    echo "not ok - hv_probe helper built ($PROBE missing)"
    exit 1
fi
# The probe image (its /init writes GUEST-READY on agent.0 and into the
# share), as tests/e2e/guest_boot.sh builds it: this test is about the
# hypervisor layer, not the agent.
case $B in /*) BDIR=$B ;; *) BDIR=$ROOT/$B ;; esac
KERNEL=${GUEST_KERNEL:-$BDIR/guest-probe/vmlinux}
INITRD=${GUEST_INITRD:-$BDIR/guest-probe/initrd.img}
boot_args=()
if [ -r "$KERNEL" ] && [ -r "$INITRD" ]; then
    boot_args=(--kernel "$KERNEL" --initrd "$INITRD")
else
    echo "# guest images not found ($KERNEL, $INITRD): -S runs only, guest boot skipped"
fi
rc=0
for m in q35 pc microvm; do
    dir=$(mktemp -d /tmp/hv_qemu.XXXXXX)
    args=(--qemu "$QEMU" --machine "$m" --dir "$dir/sb")
    [ "$m" != pc ] && args+=("${boot_args[@]}")
    "$PROBE" "${args[@]}" 2>"$dir/stderr" || rc=1
    # Nothing of ours may survive: no qemu started for this sandbox dir.
    left=$(pgrep -f -- "$dir/sb" || true)
    if [ -n "$left" ]; then
        echo "not ok - $m: no qemu process left for the sandbox (pids $left)"
        for p in $left; do kill -KILL "$p" 2>/dev/null; done
        rc=1
    else
        echo "ok - $m: no qemu process left for the sandbox"
    fi
    [ $rc -ne 0 ] && sed 's/^/# /' "$dir/stderr" | tail -n 20
    rm -rf "$dir"
done
exit $rc
