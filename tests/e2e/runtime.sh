#!/bin/bash
# The runtime through the bus (no CLI): a sandbox daemon, two busybox
# containers, create/start/exec/pause/resume/ps/kill/delete, with the local
# backend and, when the guest image exists, with qemu TCG.  Nothing may be
# left behind: no agent or qemu process, mount or state directory.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DRIVE=$ROOT/$B/tests/helpers/rt_drive
[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 77; }
[ -x "$DRIVE" ] && [ -x "$ROOT/$B/bin/husk-agent" ] || { echo "skip: rt_drive or husk-agent not built"; exit 77; }
[ -x /bin/busybox ] || { echo "skip: busybox-static missing"; exit 77; }

T=$(mktemp -d /tmp/husk-e2e-rt.XXXXXX)
chmod 755 "$T"
cleanup() {
    for p in $(pgrep -f "$T" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    grep -q " $T" /proc/self/mountinfo && awk -v t="$T" '$5 ~ "^"t {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

mkbundle() { # dir args-json [hooks-json]
    local d=$1 hooks=""
    [ -n "${3:-}" ] && hooks="\"hooks\": $3,"
    mkdir -p "$d/rootfs"/{bin,proc,sys,dev,etc,tmp}
    cp /bin/busybox "$d/rootfs/bin/busybox"
    chroot "$d/rootfs" /bin/busybox --install -s /bin
    cat > "$d/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": $2,
              "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
              "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
              "noNewPrivileges": true},
  "root": {"path": "rootfs", "readonly": false},
  "hostname": "husk", $hooks
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}
}
JSON
}
hook() { # script-path kind: a hook that records its stdin and argv
    printf '#!/bin/sh\necho "$@" > %s/hook-%s.args\ncat > %s/hook-%s.state\n' "$T" "$2" "$T" "$2" > "$1"
    chmod +x "$1"
}
hook "$T/h-prestart" prestart; hook "$T/h-poststart" poststart; hook "$T/h-poststop" poststop
mkbundle "$T/b1" '["/bin/sh", "-c", "echo hello; exec sleep 60"]' \
    '{"prestart": [{"path": "'"$T"'/h-prestart", "args": ["h-prestart", "one"]}],
      "poststart": [{"path": "'"$T"'/h-poststart"}],
      "poststop": [{"path": "'"$T"'/h-poststop", "timeout": 5}]}'
mkbundle "$T/b3" '["/bin/true"]' '{"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo bad hook >&2; exit 4"]}]}'
mkbundle "$T/b2" '["/bin/sh", "-c", "echo second; exit 7"]'

run_backend() { # backend
    local be=$1
    local root=$T/root-$be
    mkdir -p "$root"
    echo "# backend $be"
    printf '[hypervisor]\nkernel = %s\ninitrd = %s\n' "$ROOT/$B/guest/vmlinux" "$ROOT/$B/guest/initrd.img" > "$T/husk.conf"
    HUSK_CONFIG=$T/husk.conf HUSK_HYPERVISOR=$be HUSK_BIN_DIR=$ROOT/$B/bin timeout 240 "$DRIVE" "$root" "sb-$be" "$T/b1" "$T/b2" "$T/b3" \
        > "$T/$be.out" 2>&1
    sed "s/^\(not \)\{0,1\}ok - /&$be: /" "$T/$be.out"
    if grep -q '^not ok' "$T/$be.out" || ! grep -q 'sandbox directory removed' "$T/$be.out"; then
        echo "# daemon log:"
        grep -v 'level=debug' "$root/sb-$be.daemon.log" 2>/dev/null | tail -25 | sed 's/^/#   /'
        [ -f "$root/sb-$be/console.log" ] && tail -20 "$root/sb-$be/console.log" | sed 's/^/#   console: /'
    fi
    for k in prestart poststart poststop; do
        if grep -q '"id":"c1"' "$T/hook-$k.state" 2>/dev/null; then echo "ok - $be: $k hook ran with the state on stdin"
        else echo "not ok - $be: $k hook ran with the state on stdin"; fi
    done
    grep -q '^one$' "$T/hook-prestart.args" 2>/dev/null && echo "ok - $be: hook args as the spec gives" \
        || echo "not ok - $be: hook args as the spec gives"
    rm -f "$T"/hook-*
    if [ -n "$(pgrep -f "husk-agent.*$root" 2>/dev/null)" ] || pgrep -f "qemu-system.*$root" >/dev/null; then
        echo "not ok - $be: processes left behind"
    else
        echo "ok - $be: no process left behind"
    fi
    if awk -v t="$root" 'index($5, t) == 1' /proc/self/mountinfo | grep -q .; then
        echo "not ok - $be: mounts left behind"
    else
        echo "ok - $be: no mount left behind"
    fi
    [ "$(ls -A "$root" 2>/dev/null | grep -v daemon.log)" = "" ] && echo "ok - $be: no state left behind" \
        || { echo "not ok - $be: state left behind: $(ls -A "$root")"; sed 's/^/#   /' "$root"/*.daemon.log | tail -30; }
}

BACKENDS=${BACKENDS:-local qemu}
case " $BACKENDS " in *" local "*) run_backend local ;; esac
case " $BACKENDS " in *" qemu "*) ;; *) exit 0 ;; esac
if [ -f "$ROOT/$B/guest/vmlinux" ] && command -v qemu-system-x86_64 >/dev/null; then
    run_backend qemu
else
    echo "# qemu: no guest image in $B/guest, skipped"
fi
