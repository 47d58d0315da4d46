#!/bin/bash
# The main job: a busybox container in a VM, through `husk run`.
# Builds a bundle from busybox-static, then runs it with the qemu backend
# (HUSK_HYPERVISOR=local to try the no-VM backend) and shows its output and
# the kernel it ran under.  Needs root; leaves nothing behind.
set -eu
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HUSK=$ROOT/$B/bin/husk
[ -x "$HUSK" ] || { echo "demo: $HUSK is missing: run make first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "demo: run as root (namespaces, mounts, VMs)" >&2; exit 1; }
T=$(mktemp -d /tmp/husk-demo.XXXXXX)
trap '"$HUSK" --root "$T/state" delete -f demo >/dev/null 2>&1; rm -rf "$T"' EXIT
mkdir -p "$T/bundle/rootfs"/{bin,proc,dev,sys,tmp,etc,run} "$T/state"
cp /bin/busybox "$T/bundle/rootfs/bin/busybox"
chroot "$T/bundle/rootfs" /bin/busybox --install -s /bin
cd "$T/bundle"
"$HUSK" spec
# not a terminal: print and exit
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "echo hello from husk; echo kernel: $(uname -r); echo host name: $(hostname); cat \/proc\/cpuinfo | grep -m1 \\"model name\\""/' config.json
echo "demo: husk run (backend ${HUSK_HYPERVISOR:-qemu}; under TCG the VM takes a few seconds to boot)"
start=$(date +%s.%N)
"$HUSK" --root "$T/state" run demo
rc=$?
end=$(date +%s.%N)
echo "demo: exit status $rc after $(echo "$end - $start" | bc) s (host kernel: $(uname -r))"
