#!/bin/bash
# e2e: networking with the real CNI plugins (containernetworking-plugins):
# a network namespace prepared as CNI does it (loopback + bridge with
# host-local IPAM, IPv4 and IPv6), a busybox+iperf3 container run by the
# husk CLI with linux.namespaces network path = that namespace, with the
# local backend and with qemu TCG (when the guest image exists):
#   IPv4 and IPv6 ping container -> host and host -> container, TCP with
#   iperf3 both ways, /etc/resolv.conf bind-mounted from the bundle,
#   (qemu) a second interface added by CNI after start and followed through
#   `husk update --network` (hotplug on q35), then removed again (unplug,
#   its tap gone),
#   a container with no network namespace path sees only lo (up),
#   teardown leaves the namespace exactly as CNI made it (no tap, qdisc or
#   filter).
# Prints ok / not ok lines; exit 77 when a piece is missing.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK_BIN=$ROOT/$B/bin/husk
CNI=/usr/lib/cni
[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 77; }
[ -x "$HUSK_BIN" ] && [ -x "$ROOT/$B/bin/husk-agent" ] || { echo "skip: husk or husk-agent not built"; exit 77; }
for p in bridge host-local loopback ptp; do
    [ -x "$CNI/$p" ] || { echo "skip: CNI plugin $CNI/$p missing (containernetworking-plugins)"; exit 77; }
done
for t in iperf3 ip tc python3; do
    command -v $t >/dev/null || { echo "skip: $t missing"; exit 77; }
done
[ -x /bin/busybox ] || { echo "skip: busybox-static missing"; exit 77; }

T=$(mktemp -d /tmp/husk-e2e-net.XXXXXX)
chmod 755 "$T"
ID=$$
O=$((ID % 200 + 20)) # 10.$O.0.0/24, fd00:$O::/64: no clash between parallel runs
NS=hn$ID
BR=hkbr$ID
R=$T/state
FAILS=0
export CNI_PATH=$CNI

ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; FAILS=$((FAILS + 1)); }
check() { # name command...
    local n=$1
    shift
    if "$@" >"$T/check.out" 2>&1; then ok "$n"; else nok "$n"; sed 's/^/#   /' "$T/check.out" | tail -8; fi
}
husk() { timeout 120 "$HUSK_BIN" --root "$R" "$@"; }
HK="timeout 120 $HUSK_BIN --root $R" # inside sh -c

cni() { # command ifname plugin conf
    CNI_COMMAND=$1 CNI_IFNAME=$2 CNI_CONTAINERID=$NS CNI_NETNS=/run/netns/$NS "$CNI/$3" <"$4"
}

cleanup() {
    for c in $(ls "$R" 2>/dev/null); do "$HUSK_BIN" --root "$R" delete -f "$c" >/dev/null 2>&1; done
    for p in $(pgrep -f "$T" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    if [ -e "/run/netns/$NS" ]; then
        cni DEL eth1 ptp "$T/ptp.json" >/dev/null 2>&1
        cni DEL eth0 bridge "$T/bridge.json" >/dev/null 2>&1
        cni DEL lo loopback "$T/lo.json" >/dev/null 2>&1
        ip netns del "$NS" 2>/dev/null
    fi
    ip link del "$BR" 2>/dev/null
    grep -q " $T" /proc/self/mountinfo && awk -v t="$T" '$5 ~ "^"t {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

# ---- CNI configuration (clients.md section 4) ----
cat >"$T/lo.json" <<EOF
{"cniVersion": "1.0.0", "name": "husk-lo", "type": "loopback"}
EOF
cat >"$T/bridge.json" <<EOF
{"cniVersion": "1.0.0", "name": "husk-e2e", "type": "bridge", "bridge": "$BR",
 "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "dataDir": "$T/ipam",
          "ranges": [[{"subnet": "10.$O.0.0/24", "gateway": "10.$O.0.1"}],
                     [{"subnet": "fd00:$O::/64", "gateway": "fd00:$O::1"}]],
          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}
EOF
cat >"$T/ptp.json" <<EOF
{"cniVersion": "1.0.0", "name": "husk-e2e-ptp", "type": "ptp",
 "ipam": {"type": "host-local", "dataDir": "$T/ipam2",
          "ranges": [[{"subnet": "10.$((O + 1)).0.0/24"}]]}}
EOF

# ---- the bundle: busybox + iperf3 (with its libraries) ----
BUN=$T/bundle
mkdir -p "$BUN/rootfs"/{bin,proc,sys,dev,etc,tmp,lib,lib64,usr/lib}
cp /bin/busybox "$BUN/rootfs/bin/busybox"
chroot "$BUN/rootfs" /bin/busybox --install -s /bin
cp "$(command -v iperf3)" "$BUN/rootfs/bin/iperf3"
for l in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    mkdir -p "$BUN/rootfs$(dirname "$l")"
    cp -L "$l" "$BUN/rootfs$l"
done
echo "nameserver 10.$O.0.1" >"$BUN/resolv.conf"
echo "search husk.test" >>"$BUN/resolv.conf"
mkspec() { # dir netns-entry
    cat >"$1/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sleep", "600"],
              "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
              "capabilities": {"bounding": ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
                               "effective": ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
                               "permitted": ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL"]}},
  "root": {"path": "$BUN/rootfs", "readonly": false},
  "hostname": "husknet",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
    {"destination": "/etc/resolv.conf", "type": "bind", "source": "$BUN/resolv.conf", "options": ["rbind", "ro"]}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}$2]}
}
JSON
}
mkdir -p "$T/b-net" "$T/b-none"
mkspec "$T/b-net" ", {\"type\": \"network\", \"path\": \"/run/netns/$NS\"}"
mkspec "$T/b-none" ", {\"type\": \"network\"}"
printf '[hypervisor]\nkernel = %s\ninitrd = %s\n' "$ROOT/$B/guest/vmlinux" "$ROOT/$B/guest/initrd.img" >"$T/husk.conf"
export HUSK_CONFIG=$T/husk.conf

# state of the namespace that must come back after the container
snapshot() {
    ip -n "$NS" -o link | sed 's/^[0-9]*: //; s/link-netnsid [0-9]*//'
    tc -n "$NS" qdisc show
    for d in $(ip -n "$NS" -o link | awk -F': ' '{print $2}' | sed 's/@.*//'); do
        tc -n "$NS" filter show dev "$d" ingress
    done
}

run_backend() { # backend
    local be=$1 c=net-$1
    export HUSK_HYPERVISOR=$be
    echo "# backend $be"
    ip netns add "$NS" || { nok "$be: ip netns add"; return; }
    ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    if ! cni ADD lo loopback "$T/lo.json" >/dev/null || ! cni ADD eth0 bridge "$T/bridge.json" >"$T/add.json"; then
        nok "$be: CNI ADD (bridge, host-local, loopback)"
        cat "$T/add.json"
        return
    fi
    local ip4 ip6 gw4=10.$O.0.1 gw6=fd00:$O::1
    ip4=$(python3 -c "import json;print([i['address'].split('/')[0] for i in json.load(open('$T/add.json'))['ips'] if ':' not in i['address']][0])")
    ip6=$(python3 -c "import json;print([i['address'].split('/')[0] for i in json.load(open('$T/add.json'))['ips'] if ':' in i['address']][0])")
    sleep 2 # the bridge's IPv6 address leaves "tentative"
    snapshot >"$T/before"
    (cd "$T/b-net" && husk run -d "$c" </dev/null >"$T/run.out" 2>&1)
    if [ $? != 0 ]; then
        nok "$be: husk run -d with the CNI namespace"
        sed 's/^/#   /' "$T/run.out"
        tail -20 "$R/$c.daemon.log" 2>/dev/null | sed 's/^/#   /'
    else
        ok "$be: husk run -d with the CNI namespace ($ip4, $ip6)"
        if [ "$be" = qemu ]; then
            check "$be: tap0_husk in the namespace, mirred redirect on eth0 and on the tap" \
                sh -c "tc -n $NS filter show dev eth0 ingress | grep -q 'Egress Redirect to device tap0_husk' &&
                       tc -n $NS filter show dev tap0_husk ingress | grep -q 'Egress Redirect to device eth0'"
            check "$be: the guest's eth0 has the veth's MAC, MTU and addresses" \
                sh -c "$HK exec $c ip -o addr show dev eth0 | grep -q '$ip4/24' &&
                       $HK exec $c ip -o addr show dev eth0 | grep -q '$ip6/64' &&
                       $HK exec $c cat /sys/class/net/eth0/address | grep -qi \$(ip -n $NS -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
        fi
        check "$be: ping IPv4 container -> host ($gw4)" husk exec "$c" ping -c 3 -W 5 "$gw4"
        check "$be: ping IPv6 container -> host ($gw6)" husk exec "$c" ping -6 -c 3 -W 5 "$gw6"
        check "$be: ping IPv4 host -> container ($ip4)" busybox ping -c 3 -W 5 "$ip4"
        check "$be: ping IPv6 host -> container ($ip6)" busybox ping -6 -c 3 -W 5 "$ip6"
        check "$be: /etc/resolv.conf bind-mounted from the bundle" \
            sh -c "$HK exec $c cat /etc/resolv.conf | grep -q 'nameserver 10.$O.0.1'"
        # TCP both ways
        husk exec -d "$c" iperf3 -s -1 -p 5201 >/dev/null 2>&1
        sleep 1
        check "$be: iperf3 TCP host -> container" timeout 60 iperf3 -c "$ip4" -p 5201 -t 2
        timeout 60 iperf3 -s -1 -B "$gw4" -p 5202 >/dev/null 2>&1 &
        sleep 0.5
        check "$be: iperf3 TCP container -> host" husk exec "$c" iperf3 -c "$gw4" -p 5202 -t 2
        wait
        if :; then
            # CNI ADD on the running pod, then the runtime's update path
            # (qemu: hot-plug; local: the agent lives in the namespace)
            if cni ADD eth1 ptp "$T/ptp.json" >"$T/add2.json"; then
                local ip41
                ip41=$(python3 -c "import json;print(json.load(open('$T/add2.json'))['ips'][0]['address'].split('/')[0])")
                check "$be: husk update --network hot-plugs the new eth1" husk update --network "$c"
                [ "$be" = qemu ] && check "$be: tap1_husk with its redirects for eth1" \
                    sh -c "tc -n $NS filter show dev eth1 ingress | grep -q 'Egress Redirect to device tap1_husk'"
                check "$be: the guest's eth1 has $ip41" sh -c "$HK exec $c ip -o addr show dev eth1 | grep -q '$ip41/'"
                check "$be: ping over the hot-plugged eth1 (host side of ptp)" \
                    sh -c "busybox ping -c 3 -W 5 $ip41"
                cni DEL eth1 ptp "$T/ptp.json" >/dev/null
                check "$be: husk update --network unplugs eth1 after CNI DEL" husk update --network "$c"
                check "$be: eth1 gone from the guest" sh -c "! $HK exec $c ip link show eth1 >/dev/null 2>&1"
                [ "$be" = qemu ] && check "$be: tap1_husk gone from the namespace" sh -c "! ip -n $NS -o link | grep -q tap1_husk"
            else
                nok "$be: CNI ADD eth1 (ptp)"
            fi
        fi
        if [ "$be" = qemu ]; then
            # the daemon dies: the next command restores the sandbox, whose
            # taps the resources actor adopts (from sandbox.json), so that
            # the delete below still leaves the namespace as CNI made it
            local dpid
            dpid=$(sed -n 's/.*"daemon_pid": *\([0-9]*\).*/\1/p' "$R/$c/sandbox.json")
            [ -n "$dpid" ] && kill -9 "$dpid"
            for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
            check "$be: daemon killed, state restores the sandbox (running)" \
                sh -c "$HK state $c | grep -q '\"status\": \"running\"'"
            check "$be: ping over the restored sandbox" busybox ping -c 2 -W 5 "$ip4"
        fi
        husk delete -f "$c" >/dev/null 2>&1
        check "$be: container deleted" sh -c "! \"$HUSK_BIN\" --root \"$R\" state $c >/dev/null 2>&1"
    fi
    sleep 0.5
    snapshot >"$T/after"
    if diff "$T/before" "$T/after" >"$T/diff"; then
        ok "$be: teardown leaves the namespace exactly as CNI made it (no tap, qdisc, filter)"
    else
        nok "$be: teardown leaves the namespace exactly as CNI made it"
        sed 's/^/#   /' "$T/diff"
    fi
    if [ "$be" = qemu ]; then
        # daemon and VMM both killed: nothing to restore; the delete
        # releases what they held (svc_release_orphaned_sandbox)
        (cd "$T/b-net" && husk run -d "$c-o" </dev/null >"$T/run.out" 2>&1)
        local k p
        for k in daemon_pid vmm_pid; do
            p=$(sed -n "s/.*\"$k\": *\([0-9]*\).*/\1/p" "$R/$c-o/sandbox.json" 2>/dev/null)
            [ -n "$p" ] && [ "$p" != 0 ] && kill -9 "$p"
        done
        sleep 0.5
        husk delete -f "$c-o" >/dev/null 2>&1
        check "$be: daemon and VMM killed: delete removes the sandbox" sh -c "! \"$HUSK_BIN\" --root \"$R\" state $c-o >/dev/null 2>&1 && [ ! -e $R/$c-o ]"
        snapshot >"$T/after2"
        if diff "$T/before" "$T/after2" >"$T/diff"; then
            ok "$be: ... and leaves the namespace exactly as CNI made it"
        else
            nok "$be: ... and leaves the namespace exactly as CNI made it"
            sed 's/^/#   /' "$T/diff"
        fi
    fi
    # no network namespace path: only lo, up
    (cd "$T/b-none" && husk run -d "lo-$be" </dev/null >"$T/run.out" 2>&1)
    if [ $? = 0 ]; then
        check "$be: no network namespace path: only lo, up" \
            sh -c "$HK exec lo-$be ip -o link | grep -v ' lo:' | grep -q . && exit 1;
                   $HK exec lo-$be ip -o link show lo | grep -q 'UP'"
        check "$be: husk update --network without a namespace path is refused, saying why" \
            sh -c "! $HK update --network lo-$be 2>$T/upd.err && grep -q 'no network namespace path' $T/upd.err"
        husk delete -f "lo-$be" >/dev/null 2>&1
    else
        nok "$be: run without a network namespace path"
        sed 's/^/#   /' "$T/run.out"
    fi
    cni DEL eth0 bridge "$T/bridge.json" >/dev/null
    cni DEL lo loopback "$T/lo.json" >/dev/null
    ip netns del "$NS"
    ip link del "$BR" 2>/dev/null
}

run_backend local
if [ -f "$ROOT/$B/guest/vmlinux" ] && [ -f "$ROOT/$B/guest/initrd.img" ] && command -v qemu-system-x86_64 >/dev/null; then
    run_backend qemu
else
    echo "# qemu: skipped (no guest image in $B/guest: make guest)"
fi
[ "$FAILS" = 0 ]
