#!/bin/bash
# e2e: podman 4.3 with its default network (netavark, network "podman",
# bridge podman0, 10.88.0.0/16, iptables) and `husk` as the OCI runtime,
# with the local backend and with qemu TCG:
#   the container gets an address on the default network, pings the bridge
#   (the host side) and is pinged from it, opens a TCP connection to a
#   listener on the host side and accepts one from it, a published port
#   (-p) reaches it through netavark's DNAT (bridge address and 127.0.0.1);
#   `podman network connect` of a second network while it runs, followed by
#   `husk update --network` (qemu: hot-plug), the new eth1 has its address
#   and carries a ping; `podman network disconnect` + `husk update
#   --network` removes it (qemu: unplug, its tap gone);
#   teardown (podman stop, rm) leaves no tap, qdisc or filter in the pod's
#   network namespace, kept alive by the test after podman let it go.
#
# podman runs in a jail as in cli_podman.sh (private mount namespace with a
# tmpfs on /run, own storage and config) that also has its own network
# namespace standing for the host: podman0, netavark's iptables chains,
# ip_forward and the published ports all live there and vanish with it, so
# parallel runs cannot collide and the host is never touched.
#
# Prints "ok - name" / "not ok - name"; exit 77 with a reason when podman
# cannot run here.  HUSK_PODMAN_QEMU=0 skips the TCG part.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HUSK=$ROOT/$B/bin/husk

skip() { echo "# skip: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
for t in podman conmon umoci skopeo unshare nsenter iptables ip tc timeout; do
    command -v $t >/dev/null || skip "$t not installed (tools/deps.sh)"
done
[ -x /usr/lib/podman/netavark ] || skip "netavark is not installed"
[ -x /bin/busybox ] || skip "busybox-static is not installed"
[ -x "$HUSK" ] && [ -x "$ROOT/$B/bin/husk-agent" ] || skip "build husk and husk-agent first (make B=$B)"

T=$(mktemp -d /tmp/husk-netpodman-e2e.XXXXXX)
FAILS=0
N=0
. "$ROOT/tests/helpers/podman_jail.sh"

cleanup() {
    set +e
    jail_cleanup
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { N=$((N + 1)); echo "ok $N - $1"; }
notok() {
    N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /' | head -25
}
check() { # name command...: ok when the command succeeds
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else notok "$name" "$out"; fi
}

# ---- image, config, jail ---------------------------------------------------------------
. "$ROOT/tests/helpers/busybox_image.sh"
build_busybox_image "$T/image" || skip "cannot build the busybox image: $(tail -2 "$T/image/image.log")"

jail_make net >"$T/jail.log" || skip "$(cat "$T/jail.log")"
# an HTTP GET with bash's /dev/tcp, on the jail's host side: body on stdout
http_get() { # addr port
    jx timeout 20 bash -c 'exec 3<>/dev/tcp/$0/$1 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' "$1" "$2"
}
IMG=localhost/busybox:latest
pm load -i "$T/image/busybox-docker.tar" >"$T/load.log" 2>&1 || skip "podman load failed: $(tail -2 "$T/load.log")"
backend=$(pm info --format '{{.Host.NetworkBackend}}' 2>&1)
[ "$backend" = netavark ] || skip "podman's network backend here is '$backend', not netavark"
echo "# podman $(podman --version | awk '{print $3}'), netavark $(/usr/lib/podman/netavark --version | awk '{print $2}'), jail $T"
pm network create --disable-dns husk-second >/dev/null 2>"$T/err" ||
    skip "podman network create: $(cat "$T/err")"

# predicates for check (functions run in this shell)
has_addr() { pm exec "$1" ip -o -4 addr show "$2" | grep -q " $3/"; }            # ctr dev ip
keep_has() { jx nsenter --net="$1" sh -c "$2" | grep -q -- "$3"; }                # keep cmd pattern
serves() { http_get "$1" "$2" | grep -q served-by-husk; }                         # addr port

wait_http() { # addr port: until the container's httpd answers (boot, DNAT)
    local i
    for i in $(seq 60); do
        http_get "$1" "$2" 2>/dev/null | grep -q "served-by-husk" && return 0
        sleep 0.5
    done
    return 1
}

run_backend() { # local | qemu
    local be=$1 c=web-$1 port=18080
    echo "# backend $be"
    if ! pm run -d --name "$c" -p "$port:8080" $IMG sh -c \
        'mkdir -p /www && echo served-by-husk >/www/index.html && httpd -p 8080 -h /www && exec sleep 600' \
        >/dev/null 2>"$T/err"; then
        notok "$be: podman run -d -p $port:8080 on the default network" "$(cat "$T/err")"
        return
    fi
    local ip nets key id
    ip=$(pm inspect -f '{{.NetworkSettings.IPAddress}}' "$c")
    nets=$(pm inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c")
    key=$(pm inspect -f '{{.NetworkSettings.SandboxKey}}' "$c")
    id=$(pm inspect -f '{{.Id}}' "$c")
    case $ip in
    10.88.*) [ "$nets" = "podman " ] && ok "$be: podman run -d on the default network 'podman': $ip" ||
        notok "$be: default network" "networks: $nets" ;;
    *) notok "$be: an address on the default network 10.88.0.0/16" "ip=$ip networks=$nets" ;;
    esac
    # keep the pod's namespace to look into it after podman has let it go
    : >"$T/keep-$be"
    jx mount --bind "$key" "$T/keep-$be" || notok "$be: keep the pod's network namespace ($key)"
    if [ "$be" = qemu ]; then
        check "$be: tap0_husk and mirred redirects in the pod's namespace" \
            keep_has "$T/keep-$be" "tc filter show dev eth0 ingress" "Egress Redirect to device tap0_husk"
    fi
    check "$be: the container's eth0 has $ip" has_addr "$c" eth0 "$ip"
    check "$be: ping container -> bridge (10.88.0.1)" pm exec "$c" ping -c 3 -W 5 10.88.0.1
    check "$be: ping host side -> container ($ip)" jx busybox ping -c 3 -W 5 "$ip"
    # TCP: container -> a listener on the bridge address
    (jx timeout 60 busybox nc -l -p 19000 >"$T/nc.out" 2>&1) &
    local lpid=$! got=
    for _ in $(seq 50); do jx ss -ltn 2>/dev/null | grep -q ':19000 ' && break; sleep 0.1; done
    pm exec "$c" sh -c "echo tcp-from-$be | nc 10.88.0.1 19000" >"$T/err" 2>&1
    wait $lpid
    got=$(cat "$T/nc.out")
    [ "$got" = "tcp-from-$be" ] && ok "$be: TCP container -> listener on 10.88.0.1" ||
        notok "$be: TCP container -> listener on 10.88.0.1" "got '$got' $(cat "$T/err")"
    # TCP: host side -> the container's httpd, direct and through the published port
    check "$be: TCP host side -> container ($ip:8080)" serves "$ip" 8080
    local pp
    pp=$(pm port "$c" 2>&1)
    if [ "$pp" = "8080/tcp -> 0.0.0.0:$port" ] && wait_http 10.88.0.1 "$port"; then
        ok "$be: published port ($pp) through netavark's DNAT to 10.88.0.1:$port"
    else
        notok "$be: published port through netavark's DNAT" "podman port: $pp; $(http_get 10.88.0.1 "$port" 2>&1 | tail -3)"
    fi
    check "$be: published port on 127.0.0.1:$port" serves 127.0.0.1 "$port"

    # a second network while it runs, followed through `husk update --network`
    if pm network connect husk-second "$c" >"$T/err" 2>&1; then
        local ip2
        ip2=$(pm inspect -f '{{(index .NetworkSettings.Networks "husk-second").IPAddress}}' "$c")
        check "$be: husk update --network after podman network connect" \
            jx timeout 300 "$HUSK" update --network "$id"
        check "$be: the container's eth1 has $ip2" has_addr "$c" eth1 "$ip2"
        local gw2=${ip2%.*}.1
        check "$be: ping over eth1 ($gw2)" pm exec "$c" ping -c 3 -W 5 -I eth1 "$gw2"
        [ "$be" = qemu ] && check "$be: tap1_husk for eth1 in the pod's namespace" \
            keep_has "$T/keep-$be" "ip -o link" tap1_husk
        pm network disconnect husk-second "$c" >"$T/err" 2>&1 || notok "$be: podman network disconnect" "$(cat "$T/err")"
        check "$be: husk update --network after podman network disconnect" \
            jx timeout 300 "$HUSK" update --network "$id"
        check "$be: eth1 gone from the container" eval '! pm exec "$c" ip link show eth1'
        check "$be: no tap1_husk left in the pod's namespace" eval '! keep_has "$T/keep-$be" "ip -o link" tap1_husk'

        check "$be: eth0 still carries traffic" pm exec "$c" ping -c 2 -W 5 10.88.0.1
    else
        notok "$be: podman network connect husk-second" "$(cat "$T/err")"
    fi

    # teardown: nothing of ours left in the pod's namespace, nothing running
    pm stop -t 2 "$c" >/dev/null 2>&1
    pm rm -f -t 0 "$c" >"$T/err" 2>&1 || notok "$be: podman rm" "$(cat "$T/err")"
    local left=
    for _ in $(seq 100); do
        left=$(for p in $(jail_pids); do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done 2>/dev/null |
            grep -E "husk|conmon|qemu")
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] && ok "$be: podman rm: no husk daemon, proxy, qemu or conmon left" || notok "$be: processes left" "$left"
    local st
    st=$(jx nsenter --net="$T/keep-$be" sh -c 'ip -o link; tc qdisc show; tc filter show dev eth0 ingress 2>/dev/null')
    if echo "$st" | grep -qE '_husk|ingress|mirred'; then
        notok "$be: teardown leaves no tap, qdisc or filter in the pod's namespace" "$st"
    else
        ok "$be: teardown leaves no tap, qdisc or filter in the pod's namespace"
    fi
    jx umount "$T/keep-$be"
    [ -z "$(jx ip -o link show master podman0 2>/dev/null)" ] &&
        ok "$be: no veth left on podman0" || notok "$be: veth left on podman0" "$(jx ip -o link show master podman0)"
}

run_backend local
if [ "${HUSK_PODMAN_QEMU:-1}" = 1 ]; then
    if [ -f "$ROOT/$B/guest/vmlinux" ] || [ -f "$ROOT/$B/guest/vmlinuz" ]; then
        CONF=$T/containers-qemu.conf
        run_backend qemu
        CONF=$T/containers.conf
    else
        echo "# qemu part skipped: no guest image in $B/guest (make guest)"
    fi
fi
[ $FAILS = 0 ]
