#!/bin/bash
# e2e: linux.devices and linux.resources.devices through the husk CLI with
# the local backend (husk-agent on the host in new namespaces): a device
# node made with the spec's type, numbers, mode and owner; the device cgroup
# rules applied as an eBPF filter on the container's cgroup; a hostile
# device path refused before anything is made.
#
# The rules are checked on a node of /dev/kmsg's numbers (1:11, not among
# the default allowed devices): the container opens it write-only, which
# the driver grants to anyone, and writes nothing; only the device filter
# can refuse that open (EPERM).  The node with a given owner and mode uses
# 240:78 (a "local/experimental" major) and is never opened.
# Prints "ok - name" / "not ok - name"; exits 77 when it cannot run.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/helpers/cli_e2e.sh"
cli_e2e_need dev "$B/bin/husk" "$B/bin/husk-agent"
ID=dev$$
export HUSK_HYPERVISOR=local

# config SCRIPT DEVICES_JSON RULES_JSON: runc's default spec running sh -c
# SCRIPT, with linux.devices and linux.resources.devices replaced (RULES
# "null": no resources at all)
config() {
    rm -f "$BUN/config.json"
    (cd "$BUN" && "$HUSK_BIN" spec)
    python3 - "$BUN/config.json" "$1" "$2" "$3" <<'EOF'
import json, sys
p, script, devs, rules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
c = json.load(open(p))
c["process"]["args"] = ["sh", "-c", script]
c["process"]["terminal"] = False
del c["process"]["capabilities"]["ambient"]
c["root"]["readonly"] = False
c["linux"]["devices"] = devs
if rules is None:
    del c["linux"]["resources"]
else:
    c["linux"]["resources"] = {"devices": rules}
json.dump(c, open(p, "w"), indent="\t")
EOF
}

NODE='[{"path": "/dev/husk-k", "type": "c", "major": 1, "minor": 11, "fileMode": 438},
       {"path": "/dev/sub/husk-o", "type": "c", "major": 240, "minor": 78, "fileMode": 416, "uid": 1, "gid": 2}]'
OPEN_W='(exec 3>/dev/husk-k) && echo opened-w'

# ---- the node ------------------------------------------------------------------------
config "stat -c '%F %t:%T %a %u:%g' /dev/sub/husk-o; $OPEN_W; true" "$NODE" null
run run "$ID-a"
check "linux.devices: the node has its type, numbers, mode and owner" \
    eval '[ $RC = 0 ] && has "^character special file f0:4e 640 1:2$"'
check "no rules: the node opens" eval 'has "^opened-w$"'

# ---- the rules ----------------------------------------------------------------------------
config "$OPEN_W; echo x >/dev/null && echo null-ok" "$NODE" '[{"allow": false, "access": "rwm"}]'
run run "$ID-b"
if [ $RC = 0 ] && grep -q "device rules are not applied" "$T/err"; then
    echo "ok - # SKIP this host cannot attach a cgroup eBPF device filter"
else
    check "deny all: the node cannot be opened (EPERM)" \
        eval '[ $RC = 0 ] && err_has "husk-k.*Operation not permitted" && ! has opened-w'
    check "deny all: the default devices stay allowed (/dev/null)" eval 'has "^null-ok$"'

    config "$OPEN_W; true" "$NODE" \
        '[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}]'
    run run "$ID-c"
    check "deny all, then allow c 1:11 w: the node opens for writing" eval '[ $RC = 0 ] && has "^opened-w$"'
    config "$OPEN_W; true" "$NODE" \
        '[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]'
    run run "$ID-g"
    check "allow c 1:11 r only: opening for writing is refused" \
        eval '[ $RC = 0 ] && err_has "husk-k.*Operation not permitted" && ! has opened-w'
fi

# ---- hostile paths ------------------------------------------------------------------------
config "true" '[{"path": "/etc/husk-evil", "type": "c", "major": 1, "minor": 1}]' null
run run "$ID-d"
check "a device path outside /dev is refused, naming the field" \
    eval '[ $RC != 0 ] && err_has "linux.devices\[0\].path: \`/etc/husk-evil\` is not below /dev"'
check "nothing was made, nothing is left" \
    eval '[ ! -e $BUN/rootfs/etc/husk-evil ] && [ -z "$(husk list -q 2>/dev/null)" ]'

config "true" '[{"path": "/dev/husk-s", "type": "c", "major": 1, "minor": 1, "fileMode": 2541}]' null
run run "$ID-e"
check "a setuid device mode is refused" eval '[ $RC != 0 ] && err_has "fileMode: 04755 has bits beyond 0777"'

config "true" '[{"path": "/dev/../etc/x", "type": "p"}]' null
run run "$ID-f"
check "a .. path is refused" eval '[ $RC != 0 ] && err_has "linux.devices\[0\].path: must not contain"'

# ---- in a VM (qemu TCG), when the guest image exists ------------------------------------
if [ -f "$ROOT/$B/guest/vmlinux" ] && command -v qemu-system-x86_64 >/dev/null; then
    printf '[hypervisor]\nkernel = %s\ninitrd = %s\n' "$ROOT/$B/guest/vmlinux" "$ROOT/$B/guest/initrd.img" >"$T/husk.conf"
    config "stat -c '%F %t:%T %a %u:%g' /dev/sub/husk-o; $OPEN_W; echo x >/dev/null && echo null-ok" \
        "$NODE" '[{"allow": false, "access": "rwm"}]'
    (cd "$BUN" && HUSK_CONFIG=$T/husk.conf HUSK_HYPERVISOR=qemu timeout 120 "$HUSK_BIN" --root "$R" run "$ID-q") \
        >"$T/out" 2>"$T/err" </dev/null
    RC=$?
    check "qemu: the node is made in the guest with its mode and owner" \
        eval '[ $RC = 0 ] && has "^character special file f0:4e 640 1:2$"'
    check "qemu: the guest applies the rules (the node refused, /dev/null allowed)" \
        eval 'err_has "husk-k.*Operation not permitted" && ! has opened-w && has "^null-ok$"'
    check "qemu: no VM left" eval '! pgrep -f "qemu-system.*$R/" >/dev/null'
else
    echo "# qemu: no guest image in $B/guest, skipped"
fi

for i in $(seq 50); do [ -z "$(ls -A "$R" 2>/dev/null)" ] && break; sleep 0.1; done
check "no state directory left" eval '[ -z "$(ls -A $R 2>/dev/null)" ]'
exit $fail
