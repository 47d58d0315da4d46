#!/bin/bash
# e2e: husk-agent as PID 1 of the real guest under QEMU TCG.
# Builds the guest image with our agent (tools/mkguest.sh --agent), boots it
# (microvm, PVH vmlinux, docs/guest-boot.md) with the virtio-serial port
# agent.0 on a unix socket and a 9p share holding a busybox rootfs, then
# tests/helpers/agent_drive connects the agent actor to the socket and runs
# `echo` in a container through the agent.  Prints boot-to-agent-ready
# (wall, from QEMU start) and the guest's uptime.  Prints "ok - name" /
# "not ok - name"; exit 77 = skipped.  No QEMU survives, whatever happens.
#
# Env: B (build dir), QEMU (default qemu-system-x86_64), AGENT_QEMU_TIMEOUT
#      (s, default 120), AGENT_LOG (guest agent log level, default info).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
B=${B:-build}
QEMU=${QEMU:-qemu-system-x86_64}
TIMEOUT=${AGENT_QEMU_TIMEOUT:-120}
AGENT=$B/bin/husk-agent
DRIVE=$B/tests/helpers/agent_drive

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (9p passthrough share)"
    exit 77
fi
if ! command -v "$QEMU" >/dev/null 2>&1; then
    echo "skip: $QEMU not installed (Debian package qemu-system-x86)"
    exit 77
fi
BUSYBOX=/bin/busybox
if [ ! -x "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    echo "skip: busybox-static is not installed"
    exit 77
fi
if [ ! -x tools/mkguest.sh ]; then
    echo "skip: tools/mkguest.sh is missing"
    exit 77
fi
for t in "$AGENT" "$DRIVE"; do
    [ -x "$t" ] || make -s B="$B" "$t" >/dev/null 2>&1
    if [ ! -x "$t" ]; then
        echo "not ok - build $t"
        exit 1
    fi
done

W=$(mktemp -d /tmp/husk-agent-qemu.XXXXXX)
QPID= DPID=
cleanup() {
    for p in $DPID $QPID; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            sleep 0.2
            kill -KILL "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail=0
ok() { echo "ok - $1"; }
nok() {
    echo "not ok - $1"
    fail=1
}

# --- image ---------------------------------------------------------------------
OUT=$B/guest
if tools/mkguest.sh --out "$OUT" --agent "$AGENT" >"$W/mkguest.log" 2>&1; then
    ok "mkguest builds the guest with husk-agent as /init"
else
    nok "mkguest builds the guest with husk-agent as /init"
    sed 's/^/#   /' "$W/mkguest.log" | tail -20
    exit 1
fi
SZ=$(stat -c %s "$OUT/initrd.img")
echo "# figure: initramfs size: $SZ bytes ($(awk -v s="$SZ" 'BEGIN {printf "%.1f", s / 1048576}') MiB, $(file -b "$OUT/initrd.img" | cut -d, -f1))"

# --- share: a busybox rootfs, and the spec template -------------------------------
SHARE=$W/share
RFS=$SHARE/rootfs
mkdir -p "$RFS"/{bin,proc,sys,dev,etc,tmp}
cp "$BUSYBOX" "$RFS/bin/busybox"
chroot "$RFS" /bin/busybox --install -s /bin
chmod 1777 "$RFS/tmp"
mkdir -p "$W/bundle"
cat >"$W/bundle/config.json" <<'EOF'
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
              "env": ["PATH=/bin:/usr/bin"], "cwd": "/"},
  "root": {"path": "rootfs"},
  "hostname": "vm-ctr",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
}
EOF

# --- boot ------------------------------------------------------------------------
host_tsc_khz() {
    local mhz
    mhz=$(dmesg 2>/dev/null | sed -n 's/.*Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -n1)
    [ -n "$mhz" ] || mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n1)
    [ -n "$mhz" ] || mhz=$(awk -F': *' '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)
    [ -n "$mhz" ] || mhz=2000
    awk -v m="$mhz" 'BEGIN {printf "%d", m * 1000}'
}
KCMD="console=ttyS0 tsc=reliable tsc_early_khz=$(host_tsc_khz) no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests panic=1 quiet initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,init_trace_printk_function_export agent.log=${AGENT_LOG:-info}"
SOCK=$W/agent.sock
T0=$(date +%s%N)
"$QEMU" -M microvm -accel tcg -m 512 -smp 1 -nodefaults -no-user-config -no-reboot -display none \
    -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny \
    -kernel "$OUT/vmlinux" -initrd "$OUT/initrd.img" -append "$KCMD" \
    -serial "file:$W/console.log" \
    -device virtio-serial-device \
    -chardev "socket,id=agent,path=$SOCK,server=on,wait=off" \
    -device virtserialport,chardev=agent,name=agent.0 \
    -fsdev "local,id=fs0,path=$SHARE,security_model=passthrough" \
    -device virtio-9p-device,fsdev=fs0,mount_tag=share \
    </dev/null >"$W/qemu.log" 2>&1 &
QPID=$!

timeout --kill-after=5 "$((TIMEOUT + 30))" "$DRIVE" --connect "$SOCK" --rootfs /run/husk/shared/rootfs \
    --share-tag share --bundle "$W/bundle" --timeout-ms "$((TIMEOUT * 1000))" --t0-ns "$T0" \
    >"$W/drive.out" 2>"$W/drive.err" &
DPID=$!
wait "$DPID"
rc=$?
DPID=
cat "$W/drive.out"
if [ $rc -ne 0 ]; then
    grep -q '^not ok' "$W/drive.out" || nok "agent_drive exited with $rc"
    fail=1
    sed 's/^/#   drive: /' "$W/drive.err" | tail -n 20
    sed 's/^/#   console: /' "$W/console.log" | tail -n 30
    sed 's/^/#   qemu: /' "$W/qemu.log" | tail -n 10
fi
grep -h 'ready: port' "$W/console.log" 2>/dev/null | sed 's/^/# guest: /' | head -n 1

# --- shutdown: QEMU must go, by itself or by us ------------------------------------
kill -TERM "$QPID" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.05; done
kill -KILL "$QPID" 2>/dev/null
wait "$QPID" 2>/dev/null
QPID=
if pgrep -f "$W/" >/dev/null 2>&1; then nok "no qemu left behind"; else ok "no qemu left behind"; fi
[ $fail -eq 0 ]
