# Sourced by tests and benchmarks that drive a real containerd 1.6 (shim v2).
#
# A private containerd: own root, state, sockets, opt dir and config under
# $T, running in a mount namespace of the caller's own with a tmpfs on
# /run/containerd (1.6 keeps shim sockets there whatever --state says;
# reference/clients.md §0 #4).  The namespace is kept alive by a bind mount
# of its nsfs file on $T/ns/mnt, so containerd can be killed and started
# again (nsenter) and find the shims' sockets.
#
# The caller sets T (its scratch directory) and NSP (containerd namespace),
# then:
#   ctrd_setup        config.toml, opt/bin, fifo/, the namespace   (1 = failed, reason in $T/ns.log)
#   ctrd_start        containerd with HUSK_CONFIG=$T/husk.conf; CTRD_PID   (1 = did not answer)
#   ctrd_pids         every process of the setup (command line naming $T/, or in the namespace)
#   ctrd_teardown     kills them all, unmounts, removes containerd's cgroups of $NSP
# and uses S (grpc socket), A (ctr's -a/-n flags), in_ns CMD.
S=$T/containerd.sock
A=(-a "$S" -n "$NSP")
CTRD_PID=
CTRD_RUN_CREATED=0

ctrd_setup() {
    mkdir -p "$T/opt/bin" "$T/fifo" "$T/ns" || return 1
    cat >"$T/config.toml" <<EOF
version = 2
root  = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$S"
[ttrpc]
  address = "$S.ttrpc"
[debug]
  address = "$T/debug.sock"
  level = "debug"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$T/opt"
EOF
    [ -d /run/containerd ] || { mkdir -p /run/containerd && CTRD_RUN_CREATED=1; }
    # an nsfs file can only be bound on a private mount
    { mount --bind "$T/ns" "$T/ns" && mount --make-private "$T/ns" && : >"$T/ns/mnt" &&
        unshare --mount="$T/ns/mnt" --propagation private \
            mount -t tmpfs -o mode=0711 husk-ctrd-run /run/containerd; } >"$T/ns.log" 2>&1
}

in_ns() { nsenter --mount="$T/ns/mnt" "$@"; }

ctrd_start() {
    (
        # no stray fds of ours into containerd, shims and containers
        for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null
        exec env -u HUSK_HYPERVISOR HUSK_CONFIG="$T/husk.conf" setsid nsenter --mount="$T/ns/mnt" \
            containerd --config "$T/config.toml" </dev/null >>"$T/containerd.log" 2>&1
    ) &
    CTRD_PID=$!
    # the socket file of a killed containerd remains: wait for an answer
    local _
    for _ in $(seq 150); do
        ctr "${A[@]}" version >/dev/null 2>&1 && return 0
        kill -0 $CTRD_PID 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

ctrd_pids() {
    local p ino
    ino=$(stat -L -c %i "$T/ns/mnt" 2>/dev/null)
    [ "$ino" = "$(stat -L -c %i /proc/self/ns/mnt)" ] && ino= # not bound (yet)
    for p in /proc/[0-9]*; do
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$T/" ||
            { [ -n "$ino" ] && [ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$ino" ]; }; then
            [ "${p#/proc/}" != $$ ] && [ "${p#/proc/}" != "$BASHPID" ] && echo "${p#/proc/}"
        fi
    done
}

ctrd_teardown() {
    local pid _ m d
    if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
        kill -TERM "$CTRD_PID"
        for _ in $(seq 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    # shims outlive containerd by design: stop them (and agents, VMs) by pid
    for pid in $(ctrd_pids); do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 50); do [ -z "$(ctrd_pids)" ] && break; sleep 0.1; done
    for pid in $(ctrd_pids); do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.2
    # the namespace (tmpfs /run/containerd, overlays) goes with its last
    # process and the nsfs bind mount
    grep -F " $T/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    [ "$CTRD_RUN_CREATED" = 1 ] && rmdir /run/containerd 2>/dev/null
    # cgroups made by containerd-shim-runc-v2 (/sys/fs/cgroup/*/<ns>/<id>)
    for d in /sys/fs/cgroup/*/"$NSP" /sys/fs/cgroup/unified/"$NSP"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}
