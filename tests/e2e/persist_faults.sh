#!/bin/bash
# e2e: state writes that fail (the enospc/eio fault actions, docs/faults.md)
# through the husk CLI with the local backend.  A transient failure is
# absorbed by the runtime's retries; a lasting one fails the operation,
# which is undone so that the state on disk never claims what is not
# (start: the container is killed; pause: it is resumed); the file catches
# up once the disk takes writes again.
# Prints "ok - name" / "not ok - name"; exits 77 when it cannot run.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK_BIN=$ROOT/$B/bin/husk

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (namespaces, mounts)"
    exit 77
fi
[ -x /bin/busybox ] || { echo "skip: busybox-static is not installed"; exit 77; }
for t in "$B/bin/husk" "$B/bin/husk-agent"; do
    [ -x "$ROOT/$t" ] || make -s -C "$ROOT" B="$B" "$t" >/dev/null 2>&1
    [ -x "$ROOT/$t" ] || { echo "not ok - build $t"; exit 1; }
done

T=$(mktemp -d /tmp/husk-e2e-pf.XXXXXX)
R=$T/root
ID=pf$$
export HUSK_HYPERVISOR=local
cleanup() {
    # delete -f first: it also takes down what a VM sandbox mounted
    for id in $(timeout 20 "$HUSK_BIN" --root "$R" list -q 2>/dev/null); do
        timeout 30 "$HUSK_BIN" --root "$R" delete -f "$id" >/dev/null 2>&1
    done
    for d in "$R"/*/; do
        [ -f "$d/sandbox.json" ] || continue
        p=$(sed -n 's/.*"daemon_pid": *\([0-9]*\).*/\1/p' "$d/sandbox.json")
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    for p in $(pgrep -f "$T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

BUN=$T/bundle
mkdir -p "$BUN/rootfs"/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$BUN/rootfs/bin/busybox"
chroot "$BUN/rootfs" /bin/busybox --install -s /bin
(cd "$BUN" && "$HUSK_BIN" spec)
python3 - "$BUN/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["sleep", "1000"]
c["process"]["terminal"] = False
del c["process"]["capabilities"]["ambient"]
del c["linux"]["resources"]
c["root"]["readonly"] = False
json.dump(c, open(p, "w"), indent="\t")
EOF

fail=0
ok() { echo "ok - $1"; }
notok() {
    echo "not ok - $1"
    fail=1
    sed 's/^/#   out: /' "$T/out" | head -10
    sed 's/^/#   err: /' "$T/err" | head -10
    for l in "$R"/*/daemon.log; do
        [ -f "$l" ] && grep -v 'level=debug' "$l" | tail -12 | sed "s|^|#   daemon: |"
    done
}
check() { # name, command...
    local name=$1
    shift
    if "$@"; then ok "$name"; else notok "$name"; fi
}
has() { grep -qE -- "$1" "$T/out"; }
err_has() { grep -qE -- "$1" "$T/err"; }
run() { # husk args...: stdout in $T/out, stderr in $T/err, status in RC
    (cd "$BUN" && timeout 60 "$HUSK_BIN" --root "$R" "$@") >"$T/out" 2>"$T/err" </dev/null
    RC=$?
}
status() { "$HUSK_BIN" --root "$R" state "$1" 2>/dev/null | sed -n 's/.*"status": "\([a-z]*\)".*/\1/p'; }
on_disk() { sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' "$R/$1/$1/container.json" 2>/dev/null; }
# until SECONDS CMD...: polls CMD every 0.1 s
until_ok() {
    local n=$(($1 * 10))
    shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}

# ---- a transient failure is absorbed ------------------------------------------------------
C=$ID-a
HUSK_FAULTS='enospc:2 type=rt.start' run create "$C"
run start "$C"
check "2 failed writes at start: start succeeds (retried)" eval '[ $RC = 0 ]'
check "... and the state on disk says running" eval '[ "$(on_disk $C)" = running ] && [ "$(status $C)" = running ]'
run delete -f "$C"

# ---- a lasting failure at start: the start fails and is undone ------------------------------
C=$ID-b
HUSK_FAULTS='enospc:8 type=rt.start' run create "$C"
run start "$C"
check "lasting ENOSPC at start: start fails, saying why and what was done" \
    eval '[ $RC != 0 ] && err_has "state could not be saved.*No space left on device.*the container was killed"'
check "the disk never says running" eval '[ "$(on_disk $C)" != running ]'
check "state reports stopped" until_ok 10 eval '[ "$(status $C)" = stopped ]'
check "the file catches up once writes pass (stopped)" until_ok 15 eval '[ "$(on_disk $C)" = stopped ]'
run delete "$C"
check "delete works" eval '[ $RC = 0 ] && [ ! -e $R/$C ]'

# ---- a lasting failure at pause: the pause fails, the container runs on -------------------
C=$ID-c
HUSK_FAULTS='eio:6 type=rt.pause' run create "$C"
run start "$C"
run pause "$C"
check "lasting EIO at pause: pause fails, the container was resumed" \
    eval '[ $RC != 0 ] && err_has "state could not be saved.*Input/output error.*the container was resumed"'
check "state and disk say running" eval '[ "$(status $C)" = running ] && [ "$(on_disk $C)" = running ]'
run exec "$C" echo alive
check "the container is not frozen (exec answers)" eval '[ $RC = 0 ] && has "^alive$"'
run delete -f "$C"

# ---- a lasting failure at create: nothing is left ---------------------------------------------
C=$ID-d
HUSK_FAULTS='eio:20 type=agent.create_container' run create "$C"
check "lasting EIO at create: create fails, naming the write" eval '[ $RC != 0 ] && err_has "save state"'
check "no container is known afterwards" eval '! "$HUSK_BIN" --root "$R" state $C >/dev/null 2>&1'

until_ok 10 eval '[ -z "$(ls -A "$R" 2>/dev/null)" ]'
check "no state directory left" eval '[ -z "$(ls -A $R 2>/dev/null)" ]'
check "no process left" eval '[ -z "$(pgrep -f "$T/" 2>/dev/null)" ]'
exit $fail
