# podman_jail.sh: podman in a "jail" for the e2e suites (sourced).
#
# podman gets its own config, storage and tmp dir under $T and a private
# mount namespace (kept alive by a bind-mounted nsfs file) with a tmpfs on
# /run: podman passes no --root to the runtime (and its cleanup process
# passes no environment at all), so husk's default root /run/husk, podman's
# run dirs and every overlay mount stay inside the jail.  With a network
# namespace as well (jail_make net), podman0, netavark's iptables chains and
# published ports live there too and vanish with it.  HUSK_HYPERVISOR
# reaches the runtime through containers.conf's conmon_env_vars.
#
# Needs T (the test's temp dir) and HUSK.  Provides:
#   jail_make [net]       config + namespaces; returns non-zero with the reason
#                         on stdout when they cannot be made
#   pm ARGS...            podman in the jail (timeout TMO, default 120 s;
#                         CONF picks containers.conf or containers-qemu.conf)
#   jx CMD...             a command on the jail's "host" side
#   jail_pids             every process in the jail's mount namespace
#   jail_cleanup          podman rm -af, kill what is left, unmount, and
#                         remove podman's cgroupfs parent when we made it
JAIL_MNT=$T/ns/mnt
JAIL_NET=
JAIL_NSENTER=(nsenter --mount="$JAIL_MNT")
JAIL_CG_MADE=()

jx() { "${JAIL_NSENTER[@]}" "$@"; }

pm() {
    timeout --foreground "${TMO:-120}" "${JAIL_NSENTER[@]}" env -i PATH="$PATH" HOME=/root \
        TERM="${TERM:-xterm}" CONTAINERS_CONF="$CONF" CONTAINERS_STORAGE_CONF="$T/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$T/registries.conf" podman --runtime "$HUSK" "$@"
}

jail_pids() {
    local ino p
    ino=$(stat -L -c %i "$JAIL_MNT" 2>/dev/null) || return 0
    for p in /proc/[0-9]*; do
        [ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$ino" ] && echo "${p#/proc/}"
    done
}

jail_conf() { # file hypervisor
    cat >"$1" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_config_dir = "$T/networks"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "$T/tmp"
runtime_supports_json = ["crun", "runc", "husk"]
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HUSK_HYPERVISOR=$2"]
EOF
}

jail_make() { # [net]
    local d
    for d in /sys/fs/cgroup/*/; do
        [ -d "$d/libpod_parent" ] || JAIL_CG_MADE+=("$d/libpod_parent")
    done
    mkdir -p "$T/root" "$T/runroot" "$T/tmp" "$T/networks" "$T/ns"
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/root"\nrunroot = "%s/runroot"\n' "$T" "$T" \
        >"$T/storage.conf"
    : >"$T/registries.conf"
    jail_conf "$T/containers.conf" local
    jail_conf "$T/containers-qemu.conf" qemu
    CONF=$T/containers.conf
    mount --bind "$T/ns" "$T/ns" && mount --make-private "$T/ns" && : >"$JAIL_MNT" || {
        echo "cannot prepare the namespace files"
        return 1
    }
    if [ "${1:-}" = net ]; then
        JAIL_NET=$T/ns/net
        JAIL_NSENTER=(nsenter --mount="$JAIL_MNT" --net="$JAIL_NET")
        : >"$JAIL_NET" && unshare --mount="$JAIL_MNT" --net="$JAIL_NET" --propagation private \
            sh -c 'mount -t tmpfs -o mode=0755 husk-podman-run /run && mkdir -m 0700 /run/husk && ip link set lo up' || {
            echo "cannot make the private mount and network namespaces"
            return 1
        }
    else
        unshare --mount="$JAIL_MNT" --propagation private \
            sh -c 'mount -t tmpfs -o mode=0755 husk-podman-run /run && mkdir -m 0700 /run/husk' || {
            echo "cannot make the private mount namespace"
            return 1
        }
    fi
}

jail_cleanup() {
    local sig p d
    if grep -qF " $JAIL_MNT " /proc/mounts; then
        CONF=$T/containers.conf TMO=60 pm rm -af -t 0 >/dev/null 2>&1
        for sig in TERM KILL; do
            for p in $(jail_pids); do kill -$sig "$p" 2>/dev/null; done
            for _ in $(seq 30); do [ -z "$(jail_pids)" ] && break; sleep 0.1; done
        done
        umount "$JAIL_MNT" 2>/dev/null || umount -l "$JAIL_MNT"
    fi
    # the network namespace: podman0, iptables, the pods' namespaces go with it
    [ -n "$JAIL_NET" ] && grep -qF " $JAIL_NET " /proc/mounts &&
        { umount "$JAIL_NET" 2>/dev/null || umount -l "$JAIL_NET"; }
    grep -F " $T/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    # podman's cgroupfs parent (host sidecar, reference/clients.md §0 #10)
    for d in "${JAIL_CG_MADE[@]}"; do
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
}
