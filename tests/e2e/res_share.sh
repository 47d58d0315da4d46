#!/bin/bash
# e2e: resources/share on this host through tests/helpers/res_share_probe.
# A busybox-like rootfs and a spec with binds (directory, file, read-only,
# relative) and pass-through mounts; share it, check the host mounts, tear
# down and check that /proc/self/mountinfo holds nothing of ours and the
# directories are gone, also after a failure injected at every step.
# Prints "ok - name" / "not ok - name".  Needs root; exits 77 otherwise.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROBE=$ROOT/$B/tests/helpers/res_share_probe

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (bind mounts in the host namespace)"
    exit 77
fi
if [ ! -x "$PROBE" ]; then
    make -s -C "$ROOT" B="$B" "$B/tests/helpers/res_share_probe" >/dev/null 2>&1
fi
if [ ! -x "$PROBE" ]; then
    echo "not ok - build $B/tests/helpers/res_share_probe"
    exit 1
fi

T=$(mktemp -d /tmp/husk-e2e-share.XXXXXX)
cleanup() {
    "$PROBE" teardown "$SB" >/dev/null 2>&1
    # Anything of ours still mounted: detach it before removing the tree.
    grep -o " $T[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

SB=$T/run/sb1
BUN=$T/bundle
mkdir -p "$SB" "$BUN/rootfs/bin" "$BUN/rootfs/etc" "$BUN/rel" "$T/data" && chmod 700 "$SB"
if [ -x /bin/busybox ]; then
    cp /bin/busybox "$BUN/rootfs/bin/"
    for a in sh ls cat; do ln -s busybox "$BUN/rootfs/bin/$a"; done
else
    echo '#!/bin/sh' >"$BUN/rootfs/bin/sh"
fi
echo "root:x:0:0:root:/root:/bin/sh" >"$BUN/rootfs/etc/passwd"
echo precious >"$T/data/keep"
echo "127.0.0.1 localhost" >"$T/hosts"
echo rel >"$BUN/rel/f"

spec() { # readonly extra-mounts
    cat >"$BUN/config.json" <<JSON
{ "ociVersion": "1.0.2",
  "process": { "args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0} },
  "root": { "path": "rootfs", "readonly": $1 },
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid","mode=755"] },
    { "destination": "/data", "type": "bind", "source": "$T/data", "options": ["rbind","rw"] },
    { "destination": "/etc/hosts", "type": "bind", "source": "$T/hosts", "options": ["bind","ro"] },
    { "destination": "/rel", "source": "rel", "options": ["rbind"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"] }
    $2 ] }
JSON
}

failed=0
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1${2:+: $2}"; failed=1; }
check() { # name, condition...
    local name=$1; shift
    if "$@"; then ok "$name"; else nok "$name"; fi
}
ours_mounted() { grep -c " $T" /proc/self/mountinfo; }
nothing_left() { # no mounts under $T, no shared dir
    [ "$(ours_mounted)" = 0 ] && [ ! -e "$SB/shared" ]
}

# ---- share and check --------------------------------------------------------------
spec true ""
out=$("$PROBE" add "$SB" c1 "$BUN" 2>&1)
check "add container" test $? = 0
check "guest rootfs path" grep -qx "rootfs /run/husk/shared/c1/rootfs ro" <<<"$out"
check "bind rewritten to the guest share" \
    grep -qx "mount 2 /data bind /run/husk/shared/c1/mounts/2 rbind,rw" <<<"$out"
check "file bind rewritten" \
    grep -qx "mount 3 /etc/hosts bind /run/husk/shared/c1/mounts/3 bind,ro" <<<"$out"
check "relative bind source" grep -qx "mount 4 /rel bind /run/husk/shared/c1/mounts/4 rbind" <<<"$out"
check "proc passed through" grep -qx "mount 0 /proc proc proc " <<<"$out"
check "tmpfs passed through" grep -qx "mount 1 /dev tmpfs tmpfs nosuid,mode=755" <<<"$out"
check "share is a mount point" grep -q " $SB/shared " /proc/self/mountinfo
check "rootfs visible through the share" test -f "$SB/shared/c1/rootfs/etc/passwd"
check "rootfs read-only on the host side" bash -c "! touch '$SB/shared/c1/rootfs/x' 2>/dev/null"
check "directory bind visible" grep -qx precious "$SB/shared/c1/mounts/2/keep"
check "file bind visible" grep -q localhost "$SB/shared/c1/mounts/3"
check "ro bind enforced" bash -c "! echo x 2>/dev/null >'$SB/shared/c1/mounts/3'"
check "relative bind visible" grep -qx rel "$SB/shared/c1/mounts/4/f"
check "nothing propagated onto the sources" \
    bash -c "[ \$(awk -v d='$T/data' -v b='$BUN' '\$5 == d || index(\$5, b \"/\") == 1' \
        /proc/self/mountinfo | wc -l) = 0 ]"
check "second container" "$PROBE" add "$SB" c2 "$BUN" >/dev/null
check "remove one container" "$PROBE" remove "$SB" c1
check "its mounts are gone" bash -c "[ \$(grep -c ' $SB/shared/c1' /proc/self/mountinfo) = 0 ]"
check "its directory is gone" test ! -e "$SB/shared/c1"
"$PROBE" teardown "$SB"
check "teardown" test $? = 0
check "mountinfo holds nothing of ours" test "$(ours_mounted)" = 0
check "share directory gone" test ! -e "$SB/shared"
check "sources intact" bash -c "grep -qx precious '$T/data/keep' && grep -q localhost '$T/hosts' \
    && test -f '$BUN/rootfs/etc/passwd'"

# ---- a host device bind is refused ---------------------------------------------------
spec false ', { "destination": "/dev/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"] }'
err=$("$PROBE" add "$SB" c3 "$BUN" 2>&1)
check "host device bind refused" test $? = 1
check "refusal names the mount" grep -q 'mounts\[6\] (/dev/kmsg): host device `/dev/kmsg` is refused' <<<"$err"
check "refused add leaves no container dir" test ! -e "$SB/shared/c3"
"$PROBE" teardown "$SB"
check "clean after refusal" nothing_left

# ---- a missing source half-way ---------------------------------------------------------
spec false ', { "destination": "/gone", "type": "bind", "source": "/nonexistent/husk-e2e", "options": ["bind"] }'
err=$("$PROBE" add "$SB" c4 "$BUN" 2>&1)
check "missing source fails" test $? = 1
check "failure half-way unmounted what it did" \
    bash -c "[ \$(grep -c ' $SB/shared/c4' /proc/self/mountinfo) = 0 ] && [ ! -e '$SB/shared/c4' ]"
"$PROBE" teardown "$SB"
check "clean after half-way failure" nothing_left

# ---- a failure injected at every step ---------------------------------------------------
spec true ""
steps=0 bad=""
for n in $(seq 0 60); do
    if HUSK_SHARE_FAIL_AFTER=$n "$PROBE" add "$SB" c5 "$BUN" >/dev/null 2>"$T/err"; then
        steps=$n
        break
    fi
    grep -q "injected failure" "$T/err" || bad="$bad $n(wrong error: $(cat "$T/err"))"
    if [ "$(grep -c " $SB/shared/c5" /proc/self/mountinfo)" != 0 ] || [ -e "$SB/shared/c5" ]; then
        bad="$bad $n(left mounts or dirs)"
    fi
    "$PROBE" teardown "$SB" || bad="$bad $n(teardown failed)"
    nothing_left || bad="$bad $n(not clean after teardown)"
done
if [ -z "$bad" ] && [ "$steps" -gt 5 ]; then
    ok "failure injected at each of $steps steps leaves nothing"
else
    nok "failure injected at each step leaves nothing" "steps=$steps$bad"
fi
"$PROBE" teardown "$SB"
check "final teardown leaves nothing" nothing_left
exit $failed
