#!/bin/bash
# e2e: agent/guest/container on this host through tests/helpers/oci_run.
# Builds a busybox rootfs, writes config.json variants, runs them and checks
# from inside the container.  Prints "ok - name" / "not ok - name".
# Needs root; exits 77 otherwise.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OCI_RUN=$ROOT/$B/tests/helpers/oci_run

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (namespaces, mounts, pivot_root)"
    exit 77
fi
BUSYBOX=$(command -v busybox || true)
[ -x /bin/busybox ] && BUSYBOX=/bin/busybox
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    [ -x /bin/busybox ] || { echo "skip: busybox-static is not installed"; exit 77; }
fi
if [ ! -x "$OCI_RUN" ]; then
    make -s -C "$ROOT" B="$B" "$B/tests/helpers/oci_run" >/dev/null 2>&1
fi
if [ ! -x "$OCI_RUN" ]; then
    echo "not ok - build $B/tests/helpers/oci_run"
    exit 1
fi

T=$(mktemp -d /tmp/husk-e2e-container.XXXXXX)
chmod 755 "$T" # the user-namespace test's root (host uid 100000) must reach the rootfs
cleanup() {
    # Containers live in their own mount namespaces: nothing is mounted on
    # the host.  Kill leftovers of ours, then remove the tree.
    for p in $(pgrep -f "$T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    [ -n "${CG_REAL:-}" ] && rmdir "$CG_REAL" 2>/dev/null
    [ -n "${CG_BIND:-}" ] && rmdir "$CG_BIND" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

BUN=$T/bundle
RFS=$BUN/rootfs
mkdir -p "$RFS"/{bin,proc,sys,dev,etc,tmp,work,mnt}
cp "$BUSYBOX" "$RFS/bin/busybox"
chroot "$RFS" /bin/busybox --install -s /bin
chmod 1777 "$RFS/tmp"
echo "read only" >"$RFS/etc/ro.txt"
echo "from the host" >"$T/shared.txt"

fail=0
ok() { echo "ok - $1"; }
notok() {
    echo "not ok - $1"
    fail=1
    sed 's/^/#   /' "$T/out" | head -20
}
check() { # name, command...: ok when the command succeeds
    local name=$1
    shift
    if "$@"; then ok "$name"; else notok "$name"; fi
}
has() { grep -qE -- "$1" "$T/out"; }

DEFAULT_NS='[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"network"}]'
MOUNTS='
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/mnt/shared", "type": "bind", "source": "'"$T"'/shared.txt",
     "options": ["rbind", "ro", "nosuid", "nodev"]}'

# config ARGS_JSON: writes $BUN/config.json; knobs through variables:
#   USER_JSON CAPS EXTRA_PROC NS EXTRA_LINUX EXTRA_TOP TERMINAL ROOT_RO CWD ENV
config() {
    local user=${USER_JSON:-} env=${ENV:-} ns=${NS:-}
    [ -n "$user" ] || user='{"uid": 0, "gid": 0}'
    [ -n "$env" ] || env='["PATH=/bin:/usr/bin", "TERM=xterm"]'
    [ -n "$ns" ] || ns=$DEFAULT_NS
    local caps=
    [ -z "${CAPS:-}" ] || caps="\"capabilities\": $CAPS,"
    cat >"$BUN/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": ${TERMINAL:-false},
    "user": $user,
    "args": $1,
    "env": $env,
    "cwd": "${CWD:-/}",
    $caps
    ${EXTRA_PROC:-}
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": ${ROOT_RO:-false}},
  "hostname": "husky",
  ${EXTRA_TOP:-}
  "mounts": [ ${MOUNTS} ],
  "linux": {
    ${EXTRA_LINUX:-}
    "namespaces": $ns,
    "maskedPaths": ["/proc/timer_list", "/sys/firmware", "/proc/does-not-exist"],
    "readonlyPaths": ["/proc/sys", "/etc/ro.txt", "/proc/does-not-exist"]
  }
}
EOF
}

run() { # oci_run with extra args; output in $T/out, status in RC
    timeout 60 "$OCI_RUN" "$@" "$BUN" >"$T/out" 2>&1
    RC=$?
}

# ---- basics ---------------------------------------------------------------
config '["sh", "-c", "echo hello from busybox"]'
run
check "run a busybox container" eval '[ $RC = 0 ] && has "^hello from busybox$"'

config '["sh", "-c", "for n in pid mnt uts ipc net; do echo $n=$(readlink /proc/self/ns/$n); done"]'
run
same=0
for n in pid mnt uts ipc net; do
    grep -qx "$n=$(readlink /proc/self/ns/$n)" "$T/out" && same=1
done
check "namespaces differ from the host's" [ "$RC" = 0 -a "$same" = 0 -a -s "$T/out" ]

config '["cat", "/proc/mounts"]'
run
check "spec mounts are mounted" eval '[ $RC = 0 ] && has "^proc /proc proc " && has "^tmpfs /dev tmpfs .*nosuid" &&
    has "^devpts /dev/pts devpts .*ptmxmode=666" && has "^shm /dev/shm tmpfs .*nodev" &&
    has "^sysfs /sys sysfs ro," && has " /mnt/shared .*ro,nosuid,nodev"'

config '["sh", "-c", "cat /mnt/shared/shared.txt 2>/dev/null || cat /mnt/shared; test ! -e /etc/debian_version && echo no-host-files; ls /; echo > /mnt/shared 2>&1 || echo bind-ro"]'
run
check "pivot_root: only the rootfs is visible" eval '[ $RC = 0 ] && has "^no-host-files$" && ! has "^(home|root|usr)$"'
check "bind mount with ro from the host" eval 'has "^from the host$" && has "bind-ro"'

config '["sh", "-c", "ls -l /dev; ls -la /dev/pts/ptmx; echo x > /dev/null && head -c 4 /dev/zero | od -An -tx1"]'
run
check "default /dev nodes and symlinks" eval '[ $RC = 0 ] && has "^crw-rw-rw- .* 1, +3 .* null$" &&
    has "^crw-rw-rw- .* 1, +9 .* urandom$" && has "^crw-rw-rw- .* 5, +0 .* tty$" &&
    has "fd -> /proc/self/fd$" && has "stdin -> /proc/self/fd/0$" && has "ptmx -> pts/ptmx$" &&
    has "00 00 00 00"'

config '["hostname"]'
run
check "hostname" eval '[ $RC = 0 ] && has "^husky$"'

# ---- process settings -------------------------------------------------------
CWD=/work ENV='["PATH=/bin", "FOO=bar baz"]' config '["sh", "-c", "pwd; echo FOO=$FOO; echo HOME=$HOME"]'
run
check "cwd, env and default HOME" eval '[ $RC = 0 ] && has "^/work$" && has "^FOO=bar baz$" && has "^HOME=/$"'

USER_JSON='{"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 63}' \
    config '["sh", "-c", "id; umask; touch /tmp/f; ls -ln /tmp/f"]'
run
check "uid, gid, additional groups, umask" eval '[ $RC = 0 ] && has "^uid=1000 gid=1001 groups=10,20$" && has "^0077$" &&
    has "^-rw------- +1 1000 +1001 "'

EXTRA_PROC='"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256},
                        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}],' \
    config '["sh", "-c", "echo n=$(ulimit -n) H=$(ulimit -Hn) c=$(ulimit -c)"]'
run
check "rlimits" eval '[ $RC = 0 ] && has "^n=256 H=512 c=0$"'

EXTRA_PROC='"oomScoreAdj": 345,' config '["cat", "/proc/self/oom_score_adj"]'
run
check "oom_score_adj" eval '[ $RC = 0 ] && has "^345$"'

# root: bounding = effective = permitted; no ambient
CAPS='{"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL", "CAP_CHOWN"],
       "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": [], "ambient": []}' \
    config '["grep", "^Cap", "/proc/self/status"]'
run
check "capabilities as root (CapEff/CapBnd/CapAmb)" eval '[ $RC = 0 ] && has "^CapEff:\s+0000000000000021$" &&
    has "^CapBnd:\s+0000000000000021$" && has "^CapAmb:\s+0000000000000000$" && has "^CapInh:\s+0000000000000000$"'

# non-root keeps exactly its ambient set across exec
USER_JSON='{"uid": 1000, "gid": 1000}' \
    CAPS='{"bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
           "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"], "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
           "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"], "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]}' \
    config '["grep", "^Cap", "/proc/self/status"]'
run
check "ambient capabilities as uid 1000" eval '[ $RC = 0 ] && has "^CapEff:\s+0000000000000420$" &&
    has "^CapPrm:\s+0000000000000420$" && has "^CapBnd:\s+0000000000000421$" && has "^CapAmb:\s+0000000000000420$"'

config '["grep", "NoNewPrivs", "/proc/self/status"]'
run
check "no_new_privs" eval '[ $RC = 0 ] && has "NoNewPrivs:\s+1"'

# ---- seccomp ------------------------------------------------------------------
EXTRA_LINUX='"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
      {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
      {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
       "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
      {"names": ["no_such_syscall_xyz"], "action": "SCMP_ACT_KILL"}]},' \
    config '["sh", "-c", "mkdir /tmp/d; kill -0 1 && echo kill0-allowed; kill -CONT 1 && echo cont-allowed; grep Seccomp: /proc/self/status"]'
run
check "seccomp: denied syscall returns the profile errno" has "mkdir: can't create directory '/tmp/d': Permission denied"
check "seccomp: argument comparison" eval 'has "Operation not permitted" && ! has "kill0-allowed" && has "^cont-allowed$"'
check "seccomp: filter mode" has 'Seccomp:\s+2'

# ---- masked and read-only paths -----------------------------------------------
config '["sh", "-c", "echo timer=$(wc -c < /proc/timer_list); ls -A /sys/firmware | wc -l; touch /sys/firmware/x 2>&1; echo 1 > /proc/sys/kernel/ns_last_pid 2>&1; echo 1 > /etc/ro.txt 2>&1; echo end"]'
run
check "masked file reads empty" has '^timer=0$'
check "masked directory is an empty read-only tmpfs" eval 'has "^0$" && has "touch: /sys/firmware/x: Read-only file system"'
check "readonly paths are read-only" eval 'has "/proc/sys/kernel/ns_last_pid: Read-only file system" &&
    has "/etc/ro.txt: Read-only file system"'

ROOT_RO=true config '["sh", "-c", "touch /newfile 2>&1; touch /tmp/x 2>&1; echo end"]'
run
check "root.readonly" eval 'has "touch: /newfile: Read-only file system" && has "^end$"'

# ---- terminal -------------------------------------------------------------------
if command -v script >/dev/null; then
    TERMINAL=true config '["sh", "-c", "tty; stty size"]'
    timeout 60 script -qec "$OCI_RUN $BUN" /dev/null </dev/null >"$T/out" 2>&1
    RC=$?
    tr -d '\r' <"$T/out" >"$T/out2" && mv "$T/out2" "$T/out"
    check "terminal: tty is the container's devpts" eval '[ $RC = 0 ] && has "^/dev/pts/[0-9]+$"'
    TERMINAL=true EXTRA_PROC='"consoleSize": {"height": 33, "width": 111},' config '["stty", "size"]'
    timeout 60 script -qec "$OCI_RUN $BUN" /dev/null </dev/null >"$T/out" 2>&1
    check "terminal: consoleSize" grep -q '^33 111' "$T/out"
else
    echo "# skip - terminal tests: script(1) is missing"
fi

# ---- exit status ------------------------------------------------------------------
config '["sh", "-c", "exit 7"]'
run
check "exit code 7" [ "$RC" = 7 ]

NS='[{"type":"mount"},{"type":"uts"}]' config '["sh", "-c", "kill -9 $$"]'
run
check "killed by SIGKILL gives 137" [ "$RC" = 137 ]

config '["sh", "-c", "kill -TERM $$; sleep 5"]'
run
check "pid-ns init ignores its own SIGTERM (no handler)" [ "$RC" = 0 ]

# ---- user namespace -------------------------------------------------------------------
NS='[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"network"},{"type":"user"}]' \
    EXTRA_LINUX='"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                 "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],' \
    config '["sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo devnull-ok; hostname"]'
run
check "user namespace with id mappings" eval '[ $RC = 0 ] && has "^0$" && has "^ +0 +100000 +65536$" &&
    has "^devnull-ok$" && has "^husky$"'

# ---- exec into a running container ------------------------------------------------------
config '["sleep", "30"]'
cat >"$T/process.json" <<'EOF'
{ "user": {"uid": 1000, "gid": 1000}, "args": ["sh", "-c", "hostname; id -u; pwd; tr '\\0' ' ' < /proc/1/cmdline; echo; test -e /etc/debian_version || echo in-rootfs; exit 3"],
  "env": ["PATH=/bin"], "cwd": "/tmp" }
EOF
run --exec "$T/process.json"
check "exec: joins the container (uts, pid, root, user, cwd)" eval '[ $RC = 3 ] && has "^husky$" && has "^1000$" &&
    has "^/tmp$" && has "^sleep 30 $" && has "^in-rootfs$"'

# ---- errors reported from inside ----------------------------------------------------------
MOUNTS_SAVED=$MOUNTS
MOUNTS="$MOUNTS, {\"destination\": \"/mnt/x\", \"type\": \"bogusfs\", \"source\": \"none\"}"
config '["true"]'
run
MOUNTS=$MOUNTS_SAVED
check "a failing mount fails create with its reason" eval '[ $RC = 125 ] && has "mount bogusfs on /mnt/x: No such device"'

config '["no-such-program"]'
run
check "missing executable is reported at create" eval '[ $RC = 125 ] &&
    has "exec: \"no-such-program\": executable file not found in \\\$PATH"'

EXTRA_PROC='"apparmorProfile": "docker-default",' config '["true"]'
run
check "unsupported fields are refused" eval '[ $RC = 125 ] && has "process.apparmorProfile: AppArmor is not supported"'

config '["true"]'
sed -i 's/"destination": "\/proc"/"destination": "proc\/..\/..\/etc"/' "$BUN/config.json"
run
check "mount destination traversal is refused" eval '[ $RC = 125 ] && has "mounts\[0\].destination: must be an absolute path"'

# ---- cgroup v2 ------------------------------------------------------------------------------
RES='"resources": {"memory": {"limit": 67108864, "swap": 134217728}, "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
                   "pids": {"limit": 64}},'
FAKE=$T/fakecg
mkdir -p "$FAKE/c1"
for f in memory.max memory.swap.max cpu.weight cpu.max pids.max cgroup.procs; do : >"$FAKE/c1/$f"; done
EXTRA_LINUX=$RES config '["true"]'
run --cgroup "$FAKE/c1"
check "cgroup v2 values (runc conversions)" eval '[ $RC = 0 ] && [ "$(cat $FAKE/c1/memory.max)" = 67108864 ] &&
    [ "$(cat $FAKE/c1/memory.swap.max)" = 67108864 ] && [ "$(cat $FAKE/c1/cpu.weight)" = 39 ] &&
    [ "$(cat $FAKE/c1/cpu.max)" = "50000 100000" ] && [ "$(cat $FAKE/c1/pids.max)" = 64 ] &&
    [ -s $FAKE/c1/cgroup.procs ]'

UNI=/sys/fs/cgroup/unified
[ -f /sys/fs/cgroup/cgroup.controllers ] && UNI=/sys/fs/cgroup
if [ -f "$UNI/cgroup.controllers" ] && grep -qw pids "$UNI/cgroup.controllers" &&
    grep -qw memory "$UNI/cgroup.controllers"; then
    CG_REAL=$UNI/husk-e2e-$$
    EXTRA_LINUX=$RES config '["sh", "-c", "cat /proc/self/cgroup"]'
    run --cgroup "$CG_REAL"
    check "cgroup v2 limits on $UNI" eval '[ $RC = 0 ] && [ "$(cat $CG_REAL/pids.max)" = 64 ] &&
        [ "$(cat $CG_REAL/memory.max)" = 67108864 ]'
else
    echo "# skip - real cgroup v2 limits: $UNI has no pids/memory controllers" \
        "(hybrid host: they are bound to v1); checked against a fake directory above"
fi

# ---- /sys/fs/cgroup -------------------------------------------------------------------------
if [ -f "$UNI/cgroup.controllers" ]; then
    CG_BIND=$UNI/husk-e2e-bind-$$
    # /sys/fs/cgroup without a cgroup namespace is a bind of the agent's own
    # cgroup2 mount (a fresh mount there waits for an RCU grace period): the
    # same view as a fresh mount, the whole hierarchy, with the options asked
    CGM='{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}'
    SAVED_MOUNTS=$MOUNTS
    MOUNTS="$MOUNTS, $CGM"
    config '["sh", "-c", "cg=$(sed -n \"s/^0:://p\" /proc/self/cgroup); echo cg=$cg; [ -f /sys/fs/cgroup$cg/cgroup.procs ] && echo own-dir-visible; grep \" /sys/fs/cgroup \" /proc/self/mountinfo; mkdir /sys/fs/cgroup$cg/x 2>/dev/null || echo read-only"]'
    run --cgroup "$CG_BIND"
    check "in its cgroup; /sys/fs/cgroup: the whole v2 tree, ro, nosuid/nodev/noexec" eval '[ $RC = 0 ] &&
        has "^cg=/husk-e2e-bind-$$\$" && has "^own-dir-visible\$" && has "^read-only\$" &&
        has " / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime( .*)? - cgroup2 "'
    # with a cgroup namespace it is a fresh mount showing the namespace's root
    NS='[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"network"},{"type":"cgroup"}]' \
        config '["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs"]'
    run --cgroup "$CG_BIND"
    check "/sys/fs/cgroup in a cgroup namespace: its root, the container's cgroup" eval '[ $RC = 0 ] &&
        has "^0::/\$" && has "^1\$" && ! has husk-e2e-bind'
    MOUNTS=$SAVED_MOUNTS
else
    echo "# skip - /sys/fs/cgroup: this host has no cgroup v2 hierarchy"
fi

EXTRA_LINUX=$RES config '["true"]'
run
check "resources without a cgroup directory are refused" eval '[ $RC = 125 ] && has "linux.resources: set, but no cgroup directory"'

exit $fail
