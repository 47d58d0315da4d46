# cli_e2e.sh: what the husk CLI e2e suites share (sourced).
#
# Needs ROOT (the repository) and B (the build dir).  Provides:
#   cli_e2e_need TAG BIN...   skips (exit 77) unless root with busybox-static,
#                             builds BIN... (paths under $B) when missing, then
#                             makes T (mktemp /tmp/husk-e2e-TAG.XXXXXX), R=$T/root,
#                             BUN=$T/bundle (busybox rootfs), HUSK_BIN, the EXIT
#                             trap (cli_e2e_cleanup) and fail=0
#   husk ARGS...              husk --root $R
#   run ARGS...               husk in $BUN: stdout $T/out, stderr $T/err, status RC
#                             (timeout RUN_TMO, 60 s)
#   config ARGS_JSON [TERM]   $BUN/config.json: runc's default spec running ARGS,
#                             writable root, no ambient caps (the agent refuses
#                             them without inheritable), no linux.resources
#   ok / notok / check NAME CMD... / has RE / err_has RE
#                             TAP-ish lines; notok shows out, err and the
#                             daemons' last log lines
#   cli_e2e_cleanup           delete -f every container (it also takes down
#                             what a VM sandbox mounted), kill the daemons, the
#                             VMMs and anything running from $T, unmount what
#                             is left under $T, call cli_e2e_cleanup_more when
#                             the suite defines it, remove $T

cli_e2e_need() {
    local tag=$1 t
    shift
    if [ "$(id -u)" != 0 ]; then
        echo "skip: needs root (namespaces, mounts, pivot_root)"
        exit 77
    fi
    [ -x /bin/busybox ] || { echo "skip: busybox-static is not installed"; exit 77; }
    for t in "$@"; do
        [ -x "$ROOT/$t" ] || make -s -C "$ROOT" B="$B" "$t" >/dev/null 2>&1
        [ -x "$ROOT/$t" ] || { echo "not ok - build $t"; exit 1; }
    done
    HUSK_BIN=$ROOT/$B/bin/husk
    T=$(mktemp -d "/tmp/husk-e2e-$tag.XXXXXX")
    R=$T/root
    trap cli_e2e_cleanup EXIT INT TERM
    BUN=$T/bundle
    mkdir -p "$BUN/rootfs"/{bin,proc,sys,dev,etc,tmp}
    cp /bin/busybox "$BUN/rootfs/bin/busybox"
    chroot "$BUN/rootfs" /bin/busybox --install -s /bin
    fail=0
}

cli_e2e_cleanup() {
    local id d p k m
    for id in $(timeout 20 "$HUSK_BIN" --root "$R" list -q 2>/dev/null); do
        timeout 30 "$HUSK_BIN" --root "$R" delete -f "$id" >/dev/null 2>&1
    done
    # what a failed delete left: a VMM outlives its daemon (a restore may
    # come), so both are killed
    for d in "$R"/*/; do
        [ -f "$d/sandbox.json" ] || continue
        for k in daemon_pid vmm_pid; do
            p=$(sed -n "s/.*\"$k\": *\([0-9]*\).*/\1/p" "$d/sandbox.json")
            [ -n "$p" ] && [ "$p" != 0 ] && kill -9 "$p" 2>/dev/null
        done
    done
    for p in $(pgrep -f "$T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    for m in $(awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    declare -F cli_e2e_cleanup_more >/dev/null && cli_e2e_cleanup_more
    rm -rf "$T"
}

husk() { "$HUSK_BIN" --root "$R" "$@"; }

run() {
    (cd "$BUN" && timeout "${RUN_TMO:-60}" "$HUSK_BIN" --root "$R" "$@") >"$T/out" 2>"$T/err" </dev/null
    RC=$?
}

config() {
    rm -f "$BUN/config.json"
    (cd "$BUN" && "$HUSK_BIN" spec)
    python3 - "$BUN/config.json" "$1" "${2:-false}" <<'EOF'
import json, sys
p, args, term = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "true"
c = json.load(open(p))
c["process"]["args"] = args
c["process"]["terminal"] = term
del c["process"]["capabilities"]["ambient"]
del c["linux"]["resources"]
c["root"]["readonly"] = False
json.dump(c, open(p, "w"), indent="\t")
EOF
}

ok() { echo "ok - $1"; }
notok() {
    local l
    echo "not ok - $1"
    fail=1
    [ -f "$T/out" ] && sed 's/^/#   out: /' "$T/out" | head -20
    [ -f "$T/err" ] && sed 's/^/#   err: /' "$T/err" | head -10
    for l in "$R"/*/daemon.log; do
        [ -f "$l" ] && grep -v 'level=debug' "$l" | tail -12 | sed "s|^|#   daemon: |"
    done
}
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else notok "$name"; fi
}
has() { grep -qE -- "$1" "$T/out"; }
err_has() { grep -qE -- "$1" "$T/err"; }
