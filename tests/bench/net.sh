#!/bin/bash
# make bench: network throughput and latency container <-> host (iperf3,
# busybox ping) through a CNI bridge namespace, beside the same between the
# plain namespace and the host in the same run (ratio), with the local
# backend and with qemu TCG (when the guest image exists).  Figures are
# printed, not asserted.  Needs root, the CNI plugins and iperf3; prints a
# reason and exits 0 otherwise.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK_BIN=$ROOT/$B/bin/husk
CNI=/usr/lib/cni
SECS=${NET_BENCH_SECS:-5}
PINGS=${NET_BENCH_PINGS:-20}
[ "$(id -u)" = 0 ] || { echo "net bench: skipped (needs root)"; exit 0; }
[ -x "$HUSK_BIN" ] || { echo "net bench: skipped ($HUSK_BIN missing)"; exit 0; }
for x in "$CNI/bridge" "$CNI/loopback" "$(command -v iperf3)" /bin/busybox; do
    [ -x "$x" ] || { echo "net bench: skipped (${x:-iperf3} missing)"; exit 0; }
done
T=$(mktemp -d /tmp/husk-bench-net.XXXXXX)
chmod 755 "$T"
ID=$$
O=$((ID % 200 + 20))
NS=hb$ID
BR=hbbr$ID
R=$T/state
export CNI_PATH=$CNI
husk() { timeout 120 "$HUSK_BIN" --root "$R" "$@"; }
cni() { CNI_COMMAND=$1 CNI_IFNAME=$2 CNI_CONTAINERID=$NS CNI_NETNS=/run/netns/$NS "$CNI/$3" <"$4"; }
cleanup() {
    for c in $(ls "$R" 2>/dev/null); do "$HUSK_BIN" --root "$R" delete -f "$c" >/dev/null 2>&1; done
    for p in $(pgrep -f "$T" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    if [ -e "/run/netns/$NS" ]; then
        cni DEL eth0 bridge "$T/bridge.json" >/dev/null 2>&1
        cni DEL lo loopback "$T/lo.json" >/dev/null 2>&1
        ip netns del "$NS"
    fi
    ip link del "$BR" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

echo '{"cniVersion": "1.0.0", "name": "hb-lo", "type": "loopback"}' >"$T/lo.json"
cat >"$T/bridge.json" <<EOF
{"cniVersion": "1.0.0", "name": "husk-bench", "type": "bridge", "bridge": "$BR",
 "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "dataDir": "$T/ipam",
          "ranges": [[{"subnet": "10.$O.0.0/24", "gateway": "10.$O.0.1"}]],
          "routes": [{"dst": "0.0.0.0/0"}]}}
EOF
BUN=$T/bundle
mkdir -p "$BUN/rootfs"/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$BUN/rootfs/bin/busybox"
chroot "$BUN/rootfs" /bin/busybox --install -s /bin
cp "$(command -v iperf3)" "$BUN/rootfs/bin/iperf3"
for l in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    mkdir -p "$BUN/rootfs$(dirname "$l")"
    cp -L "$l" "$BUN/rootfs$l"
done
cat >"$BUN/config.json" <<JSON
{"ociVersion": "1.0.2",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sleep", "600"],
             "env": ["PATH=/bin"], "cwd": "/",
             "capabilities": {"bounding": ["CAP_NET_RAW"], "effective": ["CAP_NET_RAW"], "permitted": ["CAP_NET_RAW"]}},
 "root": {"path": "rootfs"},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                          {"type": "network", "path": "/run/netns/$NS"}]}}
JSON
printf '[hypervisor]\nkernel = %s\ninitrd = %s\n' "$ROOT/$B/guest/vmlinux" "$ROOT/$B/guest/initrd.img" >"$T/husk.conf"
export HUSK_CONFIG=$T/husk.conf

ip netns add "$NS"
cni ADD lo loopback "$T/lo.json" >/dev/null && cni ADD eth0 bridge "$T/bridge.json" >/dev/null || {
    echo "net bench: CNI ADD failed"
    exit 0
}
IP=10.$O.0.2
GW=10.$O.0.1
gbits() { python3 -c "import json,sys
try:
    d=json.load(open(sys.argv[1])); print('%.2f' % (d['end']['sum_received']['bits_per_second']/1e9))
except Exception: print('-')" "$1"; }
rtt() { sed -n 's|.*min/avg/max = [0-9.]*/\([0-9.]*\)/.*|\1|p' "$1" | head -1; }
ratio() { python3 -c "import sys
try: print('%.3f' % (float(sys.argv[1])/float(sys.argv[2])))
except Exception: print('-')" "$1" "$2"; }

# measure WHERE: "ns" (plain namespace) or "ctr" (the container); prints
# "h2c c2h rtt_h2c rtt_c2h"
measure() {
    local where=$1 tag=$2 in_c
    if [ "$where" = ns ]; then in_c="ip netns exec $NS"; else in_c="husk exec ctr"; fi
    if [ "$where" = ns ]; then
        ip netns exec "$NS" iperf3 -s -1 -B "$IP" -p 5299 >/dev/null 2>&1 &
    else
        husk exec -d ctr iperf3 -s -1 -p 5299 >/dev/null 2>&1
    fi
    # the server in a TCG guest takes a while to listen: retry the client
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        sleep 1
        timeout $((SECS + 60)) iperf3 -c "$IP" -p 5299 -t "$SECS" -J >"$T/$tag-h2c.json" 2>&1
        [ "$(gbits "$T/$tag-h2c.json")" != - ] && break
    done
    timeout $((SECS + 90)) iperf3 -s -1 -B "$GW" -p 5298 >/dev/null 2>&1 &
    sleep 0.5
    $in_c iperf3 -c "$GW" -p 5298 -t "$SECS" -J >"$T/$tag-c2h.json" 2>&1
    wait
    for f in h2c c2h; do
        [ "$(gbits "$T/$tag-$f.json")" = - ] && echo "$tag $f: $(grep -m1 -o '"error":.*' "$T/$tag-$f.json" || head -c 200 "$T/$tag-$f.json")" >&2
    done
    busybox ping -c "$PINGS" -q "$IP" >"$T/$tag-p1" 2>&1
    if [ "$where" = ns ]; then
        ip netns exec "$NS" busybox ping -c "$PINGS" -q "$GW" >"$T/$tag-p2" 2>&1
    else
        husk exec ctr ping -c "$PINGS" -q "$GW" >"$T/$tag-p2" 2>&1
    fi
    echo "$(gbits "$T/$tag-h2c.json") $(gbits "$T/$tag-c2h.json") $(rtt "$T/$tag-p1") $(rtt "$T/$tag-p2")"
}

read -r b_h2c b_c2h b_r1 b_r2 <<<"$(measure ns base)"
printf '%-22s %12s %12s %14s %14s\n' "path (IPv4, ${SECS}s)" "host->c Gb/s" "c->host Gb/s" "rtt h->c ms" "rtt c->h ms"
printf '%-22s %12s %12s %14s %14s\n' "plain netns (veth)" "$b_h2c" "$b_c2h" "${b_r1:--}" "${b_r2:--}"
bes="local"
[ -f "$ROOT/$B/guest/vmlinux" ] && command -v qemu-system-x86_64 >/dev/null && bes="local qemu"
for be in $bes; do
    export HUSK_HYPERVISOR=$be
    if ! (cd "$BUN" && husk run -d ctr </dev/null >"$T/run.out" 2>&1); then
        echo "$be: husk run failed: $(tail -1 "$T/run.out")"
        continue
    fi
    read -r h2c c2h r1 r2 <<<"$(measure ctr "$be")"
    printf '%-22s %12s %12s %14s %14s\n' "husk $be" "$h2c" "$c2h" "${r1:--}" "${r2:--}"
    printf '%-22s %12s %12s %14s %14s\n' "  ratio to plain netns" "$(ratio "$h2c" "$b_h2c")" \
        "$(ratio "$c2h" "$b_c2h")" "$(ratio "$r1" "$b_r1")" "$(ratio "$r2" "$b_r2")"
    husk delete -f ctr >/dev/null 2>&1
done
echo "(single TCP stream; qemu is TCG on this host: expect a small fraction of the veth figure)"
