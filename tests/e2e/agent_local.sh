#!/bin/bash
# e2e: the agent protocol end to end on this host (the `local` shape):
# tests/helpers/agent_drive starts a bus, the agent actor and husk-agent as
# PID 1 of fresh mount/pid/ipc/uts/net namespaces over a socketpair, and
# drives it through the bus with a busybox bundle: check, create, start,
# output, wait, exec, signals, stdin, tty, flow control, pause/resume,
# stats, processes, errors, remove, destroy.  Prints "ok - name" /
# "not ok - name" and "# figure:" lines; exit 77 = skipped.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DRIVE=$ROOT/$B/tests/helpers/agent_drive
AGENT=$ROOT/$B/bin/husk-agent

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (namespaces, mounts, pivot_root)"
    exit 77
fi
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    echo "skip: busybox-static is not installed"
    exit 77
fi
for t in "$DRIVE" "$AGENT"; do
    if [ ! -x "$t" ]; then
        make -s -C "$ROOT" B="$B" "${t#$ROOT/}" >/dev/null 2>&1
    fi
    if [ ! -x "$t" ]; then
        echo "not ok - build ${t#$ROOT/}"
        exit 1
    fi
done

T=$(mktemp -d /tmp/husk-e2e-agent.XXXXXX)
DPID=
cleanup() {
    if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
        kill -KILL "$DPID" 2>/dev/null # husk-agent has PDEATHSIG: it follows
        wait "$DPID" 2>/dev/null
    fi
    for p in $(pgrep -f "$T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    rmdir /sys/fs/cgroup/unified/husk-agent.*/* /sys/fs/cgroup/unified/husk-agent.* 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the bundle, as tests/e2e/container_setup.sh builds it
BUN=$T/bundle
RFS=$BUN/rootfs
mkdir -p "$RFS"/{bin,proc,sys,dev,etc,tmp}
cp "$BUSYBOX" "$RFS/bin/busybox"
chroot "$RFS" /bin/busybox --install -s /bin
chmod 1777 "$RFS/tmp"
cat >"$BUN/config.json" <<'EOF'
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh"],
    "env": ["PATH=/bin:/usr/bin", "TERM=xterm"],
    "cwd": "/",
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": false},
  "hostname": "husky",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}],
    "maskedPaths": ["/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/sys"]
  }
}
EOF

timeout --kill-after=5 240 "$DRIVE" --agent "$AGENT" --bundle "$BUN" \
    --log-level "${AGENT_LOG:-warn}" >"$T/out" 2>"$T/err" &
DPID=$!
wait "$DPID"
rc=$?
DPID=
cat "$T/out"
if [ $rc -ne 0 ]; then
    grep -q '^not ok' "$T/out" || echo "not ok - agent_drive exited with $rc"
    sed 's/^/#   stderr: /' "$T/err" | tail -n 30
fi
# nothing of ours may survive
if pgrep -f "$T/" >/dev/null 2>&1; then
    echo "not ok - no process left behind"
    rc=1
else
    echo "ok - no process left behind"
fi
exit $rc
