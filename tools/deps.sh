#!/bin/bash
# make deps: installs the Debian packages husk needs to build, test and run,
# only those missing.  Idempotent.
set -eu
pkgs=(
  build-essential pkg-config git bc
  libzmq3-dev libczmq-dev libmsgpack-dev libevent-dev libseccomp-dev libcmocka-dev
  libjansson-dev libprotobuf-c-dev protobuf-c-compiler libmnl-dev
  qemu-system-x86 busybox-static cpio kmod xz-utils zstd binutils
  gcovr clang libclang-rt-14-dev valgrind iproute2 procps util-linux
  containerd umoci skopeo podman conmon runc crun tmux hyperfine
  containernetworking-plugins iperf3 netavark iptables
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: must run as root to install packages" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
