#!/bin/bash
# husk-trace replay: record a real create -> start -> exec -> delete session
# (local backend) with husk-trace record, replay it against the runtime
# handler (same sequence, exit 0), then replay a recording whose reply to
# agent.start_container was edited into a failure: the runtime's later
# messages differ and the divergence is reported with both messages.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK_BIN=$ROOT/$B/bin/husk
TRACE=$ROOT/$B/bin/husk-trace
if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (namespaces, mounts, pivot_root)"
    exit 77
fi
[ -x /bin/busybox ] || { echo "skip: busybox-static is not installed"; exit 77; }
for t in "$B/bin/husk" "$B/bin/husk-agent" "$B/bin/husk-trace"; do
    [ -x "$ROOT/$t" ] || make -s -C "$ROOT" B="$B" "$t" >/dev/null 2>&1
    [ -x "$ROOT/$t" ] || { echo "not ok - build $t"; exit 1; }
done
export HUSK_HYPERVISOR=local
T=$(mktemp -d /tmp/husk-replay-test.XXXXXX)
R=$T/root
RP=
cleanup() {
    [ -n "$RP" ] && kill "$RP" 2>/dev/null
    for p in $(pgrep -f "$R/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; }
check() { if eval "$2"; then ok "$1"; else nok "$1"; sed 's/^/#   /' "$T/out" 2>/dev/null | head -20; fi; }

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
# a container of the pod "pod", whose daemon runs before the recorder attaches
c["annotations"] = {"io.kubernetes.cri.container-type": "container",
                    "io.kubernetes.cri.sandbox-id": "pod"}
json.dump(c, open(p, "w"), indent="\t")
EOF
husk() { (cd "$BUN" && timeout 60 "$HUSK_BIN" --root "$R" "$@") </dev/null; }

# the sandbox daemon first, so that the recording sees the first create
mkdir -p "$R"
setsid "$HUSK_BIN" --root "$R" __daemon pod </dev/null >/dev/null 2>&1 &
for _ in $(seq 100); do [ -S "$R/pod/tap.sock" ] && break; sleep 0.05; done
"$TRACE" --root "$R" record pod "$T/rec.bin" 2>"$T/rec.err" &
RP=$!
sleep 0.5
husk create c1 && husk start c1 && husk exec c1 true && husk delete -f c1
RC=$?
sleep 0.3
kill -INT $RP
wait $RP
RP=
check "session recorded (create, start, exec, delete)" '[ $RC = 0 ] && grep -q "recorded [0-9]* messages" "$T/rec.err"'
"$TRACE" show "$T/rec.bin" >"$T/show.out"
check "the recording has the whole session" 'grep -q "rt.create" "$T/show.out" && grep -q "hv.start" "$T/show.out" &&
    grep -q "agent.start_container" "$T/show.out" && grep -q "agent.destroy_sandbox" "$T/show.out"'

timeout 60 "$TRACE" replay "$T/rec.bin" >"$T/out" 2>&1
RC=$?
check "replay reproduces the same message sequence (exit 0)" '[ $RC = 0 ] && grep -q "the same sequence" "$T/out"'
pgrep -f husk-replay >/dev/null
check "replay leaves no process behind" '! pgrep -f "/tmp/husk-replay\." >/dev/null'

# the agent's answer to start_container becomes a failure (code 5, EIO):
# same length, so the record stays well-formed
python3 - "$T/rec.bin" "$T/bad.bin" <<'EOF'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
start = d.find(b"\xb5agent.start_container\xa7runtime\xa5agent")
assert start > 0, "no start_container in the recording"
i = d.find(b"\xa8agent.ok\xa5agent\xa7runtime", start)
j = d.find(b"\xa4code\x00", i)
assert i > 0 and j > 0
d[j + 5] = 5
open(sys.argv[2], "wb").write(d)
EOF
timeout 60 "$TRACE" replay "$T/bad.bin" >"$T/out" 2>&1
RC=$?
check "an edited reply makes the runtime diverge (exit 1)" '[ $RC = 1 ] && grep -q "^DIVERGENCE" "$T/out"'
check "the divergence shows both messages" 'grep -q "recorded: rt.state_changed" "$T/out" && grep -q "replayed: bus.error" "$T/out"'
echo "# replay of the edited recording:"
sed 's/^/#   /' "$T/out" | head -8

"$TRACE" replay "$T/nosuch.bin" >"$T/out" 2>&1
RC=$?
check "replay of a missing file is a clear error" '[ $RC != 0 ] && grep -q "nosuch.bin" "$T/out"'
