#!/bin/bash
# bench: `husk run` of /bin/true in a busybox bundle (figures printed, not
# asserted; run by `make bench`).
#
#  1. local backend beside `runc run` and `crun run` of the same bundle, in
#     the same run: medians over N runs (hyperfine when installed, else a
#     loop), ratio against crun (and runc).  crun 1.8 refuses this hybrid
#     cgroup host unless /sys/fs/cgroup/unified/cgroup.controllers looks
#     empty: it runs in a private mount namespace with an empty file bound
#     over it (reference/clients.md §0 #1); if it still cannot run, the
#     reason is printed and husk is compared with runc only.
#  2. qemu TCG: `husk run` beside a bare boot of the same kernel with the
#     same QEMU arguments (read from husk's own QEMU process), the initramfs
#     holding the guest probe init (tests/helpers/guest_probe_init.c: boots,
#     loads the same modules, finds agent.0, mounts the 9p share, powers
#     off).  The difference is husk's overhead: daemon, agent, container
#     create/start/exit/delete and the VM's shutdown.
#
# Env: B (build dir), BENCH_RUNS (local runs, 20), BENCH_QEMU_RUNS (5),
#      BENCH_QEMU=0 to skip part 2.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK=$ROOT/$B/bin/husk
N=${BENCH_RUNS:-20}
NQ=${BENCH_QEMU_RUNS:-5}

say() { echo "   $*"; }
[ "$(id -u)" = 0 ] || { say "cli_run: skipped (needs root)"; exit 0; }
[ -x "$HUSK" ] && [ -x "$ROOT/$B/bin/husk-agent" ] || { say "cli_run: skipped ($HUSK missing: make B=$B)"; exit 0; }
[ -x /bin/busybox ] || { say "cli_run: skipped (busybox-static missing)"; exit 0; }

T=$(mktemp -d /tmp/husk-bench-run.XXXXXX)
QCAP=
cleanup() {
    set +e
    [ -n "$QCAP" ] && kill "$QCAP" 2>/dev/null
    for d in "$T"/husk*/*/; do
        [ -f "$d/sandbox.json" ] || continue
        p=$(sed -n 's/.*"daemon_pid": *\([0-9]*\).*/\1/p' "$d/sandbox.json")
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    for p in $(pgrep -f "$T/"); do kill -9 "$p" 2>/dev/null; done
    sleep 0.2
    grep -F " $T/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the bundle --------------------------------------------------------------------
BUN=$T/bundle
mkdir -p "$BUN/rootfs"/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$BUN/rootfs/bin/busybox"
chroot "$BUN/rootfs" /bin/busybox --install -s /bin
ln -s busybox "$BUN/rootfs/bin/true" 2>/dev/null
# runc's default spec, not a terminal, /bin/true; as tests/e2e/cli_local.sh:
# no ambient caps, no cgroup resources, writable root (the same bundle for all)
mkspec() { # dir args-json
    mkdir -p "$1"
    (cd "$1" && "$HUSK" spec)
    python3 - "$1/config.json" "$2" "$BUN/rootfs" <<'EOF'
import json, sys
p, args, rootfs = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
c = json.load(open(p))
c["process"]["args"] = args
c["process"]["terminal"] = False
del c["process"]["capabilities"]["ambient"]
del c["linux"]["resources"]
c["root"] = {"path": rootfs, "readonly": False}
json.dump(c, open(p, "w"), indent="\t")
EOF
}
mkspec "$BUN" '["/bin/true"]'

HF=0
command -v hyperfine >/dev/null && HF=1
# median NAME RUNS CMD...: prints the median wall time in ms (and keeps it in MED)
median() {
    local name=$1 runs=$2
    shift 2
    MED=
    if [ $HF = 1 ]; then
        hyperfine -N --style none --warmup 1 --runs "$runs" --export-json "$T/$name.json" \
            "$*" >"$T/$name.hf" 2>&1 || { cat "$T/$name.hf" | tail -3 | sed 's/^/   # /'; return 1; }
        MED=$(python3 -c "import json;r=json.load(open('$T/$name.json'))['results'][0];print('%.1f' % (r['median']*1000))")
    else
        local i t0 t1 ts=()
        "$@" >/dev/null 2>&1 || return 1
        for i in $(seq "$runs"); do
            t0=$(date +%s%N)
            "$@" >/dev/null 2>&1 || return 1
            t1=$(date +%s%N)
            ts+=($(((t1 - t0) / 1000)))
        done
        MED=$(printf '%s\n' "${ts[@]}" | sort -n | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}')
    fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "   husk run /bin/true, busybox bundle, median of $N runs ($([ $HF = 1 ] && echo hyperfine || echo loop)), $(nproc) CPUs"

# ---- 1. local backend, runc, crun ------------------------------------------------------
HUSK_MS= RUNC_MS= CRUN_MS=
if HUSK_HYPERVISOR=local median husk-local "$N" "$HUSK" --root "$T/husk" run -b "$BUN" bl; then
    HUSK_MS=$MED
    say "husk run (local backend): $HUSK_MS ms"
else
    say "husk run (local backend) failed"
fi
if command -v runc >/dev/null; then
    if median runc "$N" runc --root "$T/runc" run -b "$BUN" br; then
        RUNC_MS=$MED
        say "runc run:                 $RUNC_MS ms   ($(runc --version | head -1))"
    else
        say "runc run failed"
    fi
else
    say "runc: not installed"
fi
if command -v crun >/dev/null; then
    : >"$T/empty"
    # crun in a private mount namespace where the unified hierarchy offers no controller
    cat >"$T/crun-jail.sh" <<EOF
#!/bin/sh
mount --bind "$T/empty" /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null
exec "\$@"
EOF
    chmod +x "$T/crun-jail.sh"
    crun_err=$(unshare -m --propagation private "$T/crun-jail.sh" crun --root "$T/crun" run -b "$BUN" bc0 2>&1 >/dev/null)
    if [ $? = 0 ]; then
        if [ $HF = 1 ]; then
            # the whole measurement inside the namespace (its set-up is not timed)
            unshare -m --propagation private "$T/crun-jail.sh" hyperfine -N --style none --warmup 1 \
                --runs "$N" --export-json "$T/crun.json" "crun --root $T/crun run -b $BUN bc" >"$T/crun.hf" 2>&1 &&
                CRUN_MS=$(python3 -c "import json;r=json.load(open('$T/crun.json'))['results'][0];print('%.1f' % (r['median']*1000))")
        else
            median crun "$N" unshare -m --propagation private "$T/crun-jail.sh" crun --root "$T/crun" run -b "$BUN" bc &&
                CRUN_MS=$MED
        fi
        [ -n "$CRUN_MS" ] && say "crun run:                 $CRUN_MS ms   ($(crun --version | head -1), private mount ns: empty unified controllers)" ||
            say "crun run failed under measurement: $(tail -2 "$T/crun.hf" 2>/dev/null)"
    else
        say "crun cannot run here: $(echo "$crun_err" | tail -1)"
    fi
else
    say "crun: not installed"
fi
if [ -n "$HUSK_MS" ]; then
    [ -n "$CRUN_MS" ] && say "ratio husk/crun: $(ratio "$HUSK_MS" "$CRUN_MS")x  (aim <= 1.5x)"
    [ -n "$RUNC_MS" ] && say "ratio husk/runc: $(ratio "$HUSK_MS" "$RUNC_MS")x"
fi

# ---- 2. qemu TCG: husk run beside a bare boot with the same QEMU arguments ---------------------
[ "${BENCH_QEMU:-1}" = 1 ] || exit 0
GUEST=$ROOT/$B/guest
if [ ! -f "$GUEST/initrd.img" ] || ! command -v qemu-system-x86_64 >/dev/null; then
    say "qemu part skipped: no guest image in $GUEST or no qemu (make B=$B guest)"
    exit 0
fi
PROBE=$ROOT/$B/tests/helpers/guest_probe_init
[ -x "$PROBE" ] || make -s -C "$ROOT" B="$B" "$B/tests/helpers/guest_probe_init" >/dev/null 2>&1
if ! (cd "$ROOT" && tools/mkguest.sh --out "$B/guest-probe" --agent "$PROBE") >"$T/mkguest.log" 2>&1; then
    say "qemu part skipped: cannot build the probe initramfs: $(tail -1 "$T/mkguest.log")"
    exit 0
fi
# husk's QEMU arguments, read from a running sandbox
mkspec "$T/bcap" '["sleep", "30"]'
HUSK_HYPERVISOR=qemu "$HUSK" --root "$T/huskcap" run -d -b "$T/bcap" capq >"$T/capq.log" 2>&1 </dev/null &
QCAP=$!
qpid=
for _ in $(seq 600); do
    qpid=$(pgrep -f -- "-name husk-capq" | head -1)
    [ -n "$qpid" ] && break
    sleep 0.05
done
[ -n "$qpid" ] && cat "/proc/$qpid/cmdline" >"$T/qemu.argv"
wait $QCAP
QCAP=
HUSK_HYPERVISOR=qemu "$HUSK" --root "$T/huskcap" delete -f capq >/dev/null 2>&1
if [ ! -s "$T/qemu.argv" ]; then
    say "qemu part skipped: could not read husk's QEMU command line ($(tail -1 "$T/capq.log"))"
    exit 0
fi
# the same arguments; initrd = the probe's; QMP dropped; the agent port and the
# console to files; share paths to empty directories
python3 - "$T/qemu.argv" "$ROOT/$B/guest-probe/initrd.img" "$T/bare" >"$T/bare.sh" <<'EOF'
import os, shlex, sys
argv = open(sys.argv[1], 'rb').read().split(b'\0')[:-1]
argv = [a.decode() for a in argv]
initrd, d = sys.argv[2], sys.argv[3]
out, i = [], 0
while i < len(argv):
    a = argv[i]
    v = argv[i + 1] if i + 1 < len(argv) else None
    if a == '-initrd':
        out += [a, initrd]; i += 2; continue
    if a == '-chardev' and v.startswith('socket,id=qmp'):
        i += 2; continue
    if a == '-mon' and 'chardev=qmp' in v:
        i += 2; continue
    if a == '-chardev' and v.startswith('socket,id=agent'):
        out += [a, 'file,id=agent,path=%s/agent.out' % d]; i += 2; continue
    if a == '-chardev' and v.startswith('file,id=console'):
        out += [a, 'file,id=console,path=%s/console.log' % d]; i += 2; continue
    if a == '-fsdev':
        parts = v.split(',')
        for k, p in enumerate(parts):
            if p.startswith('path='):
                new = os.path.join(d, 'fs', str(k) + '-' + parts[1].replace('id=', ''))
                os.makedirs(new, exist_ok=True)
                parts[k] = 'path=' + new
        out += [a, ','.join(parts)]; i += 2; continue
    out.append(a); i += 1
print('#!/bin/sh')
print('exec ' + ' '.join(shlex.quote(x) for x in out) + ' </dev/null >/dev/null 2>&1')
EOF
chmod +x "$T/bare.sh"
mkdir -p "$T/bare"
rm -f "$T/bare/agent.out"
"$T/bare.sh"
if ! grep -q GUEST-READY "$T/bare/agent.out" 2>/dev/null; then
    say "qemu part skipped: the bare boot did not report GUEST-READY ($(tail -c 300 "$T/bare/console.log" 2>/dev/null | tail -2))"
    exit 0
fi
say "qemu TCG, median of $NQ runs; bare boot = $(grep -o -- '-machine [^ ]*' "$T/bare.sh" | head -1), same arguments, probe init"
if median bare "$NQ" "$T/bare.sh"; then
    BARE_MS=$MED
    say "bare qemu boot to power-off: $BARE_MS ms"
else
    BARE_MS=
    say "bare qemu boot failed"
fi
if HUSK_HYPERVISOR=qemu median husk-qemu "$NQ" "$HUSK" --root "$T/huskq" run -b "$BUN" bq; then
    say "husk run (qemu TCG):        $MED ms"
    [ -n "$BARE_MS" ] && say "husk overhead over the bare boot: $(awk -v a="$MED" -v b="$BARE_MS" 'BEGIN {printf "%.0f", a - b}') ms"
else
    say "husk run (qemu TCG) failed"
fi
exit 0
