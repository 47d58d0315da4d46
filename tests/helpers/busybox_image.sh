# Sourced by the caller e2e tests: builds a busybox OCI image without a
# registry (umoci + skopeo), as reference/clients.md §1 describes.
#   build_busybox_image DIR   ->  DIR/busybox-docker.tar (localhost/busybox:latest)
# Returns non-zero with the reason in DIR/image.log.
build_busybox_image() {
    local D=$1
    mkdir -p "$D"
    (
        cd "$D" || exit 1
        umoci init --layout oci && umoci new --image oci:busybox &&
            umoci unpack --image oci:busybox bundle || exit 1
        R=bundle/rootfs
        mkdir -p $R/bin $R/etc $R/tmp $R/proc $R/sys $R/dev $R/root $R/var $R/usr && chmod 1777 $R/tmp
        cp /bin/busybox $R/bin/busybox || exit 1
        for a in $($R/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
        ln -s ../bin $R/usr/bin && ln -s bin $R/sbin
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >$R/etc/passwd
        printf 'root:x:0:\nnogroup:x:65534:\n' >$R/etc/group
        umoci repack --image oci:busybox bundle &&
            umoci config --image oci:busybox --config.cmd /bin/sh \
                --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                --config.workingdir / --architecture amd64 --os linux &&
            umoci gc --layout oci && rm -rf bundle &&
            skopeo copy oci:oci:busybox docker-archive:busybox-docker.tar:localhost/busybox:latest
    ) >"$D/image.log" 2>&1
}
