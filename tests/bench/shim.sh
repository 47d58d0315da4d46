#!/bin/bash
# bench: containerd-shim-husk-v2 under a private containerd 1.6 (figures
# printed, not asserted; run by `make bench`).
#
#  1. `ctr run --rm <busybox image> <id> /bin/true` through
#     io.containerd.runc.v2, io.containerd.husk.v2 (local backend) and the
#     same shim on qemu TCG, interleaved in the same run so that the load of
#     this shared host weighs on all of them alike: medians and ratios
#     against runc.
#  2. Memory per pod: a pod of two containers (a sandbox container and one
#     more, grouped by io.kubernetes.cri.sandbox-id; the second one on a
#     plain --rootfs directory, which the local backend needs: docs/shim.md)
#     for each runtime; RSS and PSS of the shim from /proc/<pid>/smaps_rollup,
#     and of the pod's VMM (qemu) or agent (local backend).
#
# Env: B (build dir), BENCH_SHIM_RUNS (runc and local runs, 10),
#      BENCH_SHIM_QEMU_RUNS (qemu runs, 3; 0 skips qemu).
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHIM=$ROOT/$B/bin/containerd-shim-husk-v2
N=${BENCH_SHIM_RUNS:-10}
NQ=${BENCH_SHIM_QEMU_RUNS:-3}

say() { echo "   $*"; }
[ "$(id -u)" = 0 ] || { say "shim: skipped (needs root)"; exit 0; }
for t in containerd ctr containerd-shim-runc-v2 runc umoci skopeo unshare nsenter; do
    command -v $t >/dev/null || { say "shim: skipped ($t not installed)"; exit 0; }
done
[ -x /bin/busybox ] || { say "shim: skipped (busybox-static missing)"; exit 0; }
[ -x "$SHIM" ] && [ -x "$ROOT/$B/bin/husk-agent" ] || { say "shim: skipped ($SHIM missing: make B=$B)"; exit 0; }
QEMU=1
[ "$NQ" -gt 0 ] && [ -f "$ROOT/$B/guest/vmlinux" ] && [ -f "$ROOT/$B/guest/initrd.img" ] &&
    command -v qemu-system-x86_64 >/dev/null || QEMU=0

T=$(mktemp -d /tmp/husk-bench-shim.XXXXXX)
NSP=husk-bench-$$
. "$ROOT/tests/helpers/containerd_private.sh"
trap 'ctrd_teardown; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

. "$ROOT/tests/helpers/busybox_image.sh"
build_busybox_image "$T/image" || { say "shim: skipped (busybox image: $(tail -1 "$T/image/image.log"))"; exit 0; }
IMG=localhost/busybox:latest
ctrd_setup || { say "shim: skipped (mount namespace: $(cat "$T/ns.log"))"; exit 0; }
mkdir -p "$T/husk" "$T/rootfs/bin" "$T/rootfs/proc" "$T/rootfs/dev" "$T/rootfs/sys" "$T/rootfs/tmp"
cp /bin/busybox "$T/rootfs/bin/busybox" && ln -s busybox "$T/rootfs/bin/sleep"
printf '[runtime]\nroot = %s/husk\nhypervisor = local\n' "$T" >"$T/husk.conf"
printf '[runtime]\nroot = %s/husk\nhypervisor = qemu\n[hypervisor]\nkernel = %s\ninitrd = %s\n' \
    "$T" "$ROOT/$B/guest/vmlinux" "$ROOT/$B/guest/initrd.img" >"$T/husk-qemu.conf"
ln -s "$SHIM" "$T/opt/bin/containerd-shim-husk-v2"
printf '#!/bin/sh\nHUSK_CONFIG=%s exec %s "$@"\n' "$T/husk-qemu.conf" "$SHIM" >"$T/opt/bin/containerd-shim-huskqemu-v2"
chmod +x "$T/opt/bin/containerd-shim-huskqemu-v2"
ctrd_start || { say "shim: skipped (containerd did not start: $(tail -1 "$T/containerd.log"))"; exit 0; }
timeout 60 ctr "${A[@]}" images import "$T/image/busybox-docker.tar" >/dev/null 2>&1 ||
    { say "shim: skipped (ctr images import failed)"; exit 0; }

declare -A RTNAME=([runc]=io.containerd.runc.v2 [local]=io.containerd.husk.v2 [qemu]=io.containerd.huskqemu.v2)

# one NAME ID: one `ctr run --rm` of /bin/true; its wall time in µs in MS
one() {
    local t0 t1
    t0=$(date +%s%N)
    timeout -k 5 150 ctr "${A[@]}" run --rm --runtime "${RTNAME[$1]}" --fifo-dir "$T/fifo" \
        $IMG "$2" /bin/true </dev/null >"$T/run.out" 2>&1 || { MS=; return 1; }
    t1=$(date +%s%N)
    MS=$(((t1 - t0) / 1000)) # µs
}
median() { sort -n | awk '{a[NR]=$1} END {if (!NR) exit; m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

names=(runc local)
[ $QEMU = 1 ] && names+=(qemu)
declare -A TIMES FAILED
echo "   ctr run --rm $IMG <id> /bin/true: runc median of $N, husk local $N, husk qemu TCG $([ $QEMU = 1 ] && echo "$NQ" || echo "skipped"); interleaved; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "${names[@]}"; do # warm-up (page cache, first image unpack)
    one "$n" warm-$n || { FAILED[$n]=$(tail -2 "$T/run.out"); say "$n: the warm-up run failed: ${FAILED[$n]}"; }
done
for i in $(seq "$N"); do
    for n in "${names[@]}"; do
        [ -n "${FAILED[$n]:-}" ] && continue
        [ "$n" = qemu ] && [ "$i" -gt "$NQ" ] && continue
        if one "$n" b$i-$n; then TIMES[$n]+="$MS "; else FAILED[$n]=$(tail -2 "$T/run.out"); say "$n: run $i failed: ${FAILED[$n]}"; fi
    done
done
declare -A MED
for n in "${names[@]}"; do
    [ -n "${TIMES[$n]:-}" ] || continue
    MED[$n]=$(printf '%s\n' ${TIMES[$n]} | median)
done
[ -n "${MED[runc]:-}" ] && say "runc.v2 (runc $(runc --version | awk 'NR==1{print $3}')):  ${MED[runc]} ms"
[ -n "${MED[local]:-}" ] && say "husk.v2 local backend:     ${MED[local]} ms$([ -n "${MED[runc]:-}" ] && echo "   ratio husk local / runc: $(ratio "${MED[local]}" "${MED[runc]}")x")"
[ -n "${MED[qemu]:-}" ] && say "husk.v2 qemu TCG:          ${MED[qemu]} ms$([ -n "${MED[runc]:-}" ] && echo "   ratio husk qemu / runc: $(ratio "${MED[qemu]}" "${MED[runc]}")x")"

# ---- memory per pod ---------------------------------------------------------------------
mem() { # pid -> "RSS x MiB, PSS y MiB"
    awk '/^Rss:/{r=$2} /^Pss:/{p=$2} END{if (r == "") print "?"; else printf "RSS %.1f MiB, PSS %.1f MiB", r/1024, p/1024}' "/proc/$1/smaps_rollup" 2>/dev/null
}
exe_pid() { # basename pattern of /proc/<pid>/exe among the setup's processes
    local p
    for p in $(ctrd_pids); do case $(readlink "/proc/$p/exe" 2>/dev/null) in */$1) echo "$p"; return ;; esac; done
}
echo "   memory per pod (a sandbox container + one container, sleeping):"
for n in "${names[@]}"; do
    p=pod-$n-$$
    POD=(--annotation io.kubernetes.cri.sandbox-id=$p)
    if ! timeout 150 ctr "${A[@]}" run -d --runtime "${RTNAME[$n]}" --fifo-dir "$T/fifo" "${POD[@]}" \
        --annotation io.kubernetes.cri.container-type=sandbox $IMG $p sleep 1000 >"$T/pod.out" 2>&1 ||
        ! timeout 60 ctr "${A[@]}" run -d --runtime "${RTNAME[$n]}" --fifo-dir "$T/fifo" "${POD[@]}" \
            --annotation io.kubernetes.cri.container-type=container --rootfs "$T/rootfs" $p-c1 /bin/sleep 1000 >>"$T/pod.out" 2>&1; then
        say "$n: the pod did not start: $(tail -2 "$T/pod.out")"
    else
        sleep 1 # let the shim settle after the second create (figures, not a condition)
        case $n in
        runc) shim=$(exe_pid containerd-shim-runc-v2) extra= ;;
        local) shim=$(exe_pid containerd-shim-husk-v2) extra=$(exe_pid husk-agent)
               extra=${extra:+agent $(mem "$extra")} ;;
        qemu) shim=$(exe_pid containerd-shim-husk-v2) extra=$(exe_pid 'qemu-system-*')
              extra=${extra:+qemu $(mem "$extra")} ;;
        esac
        say "$(printf '%-6s' "$n") shim pid ${shim:-?}: $(mem "${shim:-0}")${extra:+ | $extra}"
    fi
    for c in $p-c1 $p; do
        timeout 20 ctr "${A[@]}" task kill -s SIGKILL $c >/dev/null 2>&1
        for _ in $(seq 100); do timeout 20 ctr "${A[@]}" task ls 2>/dev/null | grep -qE "^$c .* STOPPED" && break; sleep 0.1; done
        timeout 60 ctr "${A[@]}" task rm $c >/dev/null 2>&1
        timeout 20 ctr "${A[@]}" c rm $c >/dev/null 2>&1
    done
done
exit 0
