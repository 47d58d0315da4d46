#!/bin/bash
# mkguest.sh: builds the husk guest (kernel + initramfs) from Debian packages.
#
#   tools/mkguest.sh [--out DIR] [--agent PATH] [--cache DIR]
#                    [--modules "m1 m2 ..."] [--early "m1 m2 ..."]
#                    [--compress none|gzip] [--force]
#
# Produces in DIR (default build/guest):
#   vmlinux      uncompressed ELF kernel with the PVH entry note; QEMU boots it
#                directly (-kernel vmlinux), skipping the ~4 s of in-guest XZ
#                decompression under TCG (docs/guest-boot.md)
#   vmlinuz      the Debian bzImage as shipped (fallback, e.g. firmware boot)
#   initrd.img   cpio newc archive, uncompressed by default: under TCG the
#                kernel's gunzip of the ~3 MB archive costs ~0.1-0.2 s of boot,
#                more than QEMU loading 8.7 MB (docs/guest-boot.md)
#   kernel-version, modules.txt (what went in), .stamp (input hashes)
#
# Inputs, all from Debian:
#   - the kernel of linux-image-amd64: the metapackage is resolved to the real
#     linux-image-<ver>-amd64 package, fetched with `apt-get download` into the
#     cache dir (default build/guest-cache, reused) and unpacked with dpkg-deb;
#   - busybox-static (cached .deb, else the installed /bin/busybox);
#   - the agent binary (/init) and the shared libraries it links (ldd).
#
# Modules: the wanted set (--modules, default below) is closed over
# modules.dep (generated with depmod in the unpacked tree, Debian does not ship
# it) and modules.softdep ("pre:" soft dependencies, e.g. ext4 -> crc32c),
# minus what modules.builtin says is built in.  The result is written, in an
# order with every dependency before its users, to /lib/modules/load-order
# inside the initramfs: one absolute path per line, '#' starts a comment.
# The closure of the --early set (default: the virtio transports, the
# console port driver and 9p, i.e. what the agent needs to talk to the host
# and mount the share) comes first and is followed by the line "#early-end";
# an agent may signal ready after that line and load the rest later (ext4
# alone costs ~150 ms under TCG, see docs/guest-boot.md).  A reader that
# ignores comments simply loads everything.
# The agent loads them in that order with finit_module(2); it must treat
# EEXIST as success and ENODEV as "hardware absent, continue" (softdep
# alternatives such as crc32c-intel need SSE4.2, which TCG's default CPU lacks).
# Modules are stored uncompressed: this kernel has no
# CONFIG_MODULE_DECOMPRESS, so finit_module cannot take a .ko.xz/.ko.zst; any
# compressed module is decompressed here on the host.  They are not stripped
# (that would break their signatures).
#
# Rebuilds only when an input changed: .stamp holds the sha256 of the kernel
# .deb, busybox, the agent and its libraries, this script, the module list and
# the compression; if it matches and the outputs exist, nothing is done.
set -euo pipefail

die() { echo "mkguest: error: $*" >&2; exit 1; }
say() { echo "mkguest: $*"; }

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SCRIPT")/.." && pwd)

OUT=$ROOT/build/guest
AGENT=$ROOT/build/bin/husk-agent
CACHE=$ROOT/build/guest-cache
COMPRESS=none
FORCE=0
MODULES_DEFAULT="virtio_pci virtio_mmio virtio_console virtio_rng 9p 9pnet_virtio virtio_net virtio_blk overlay ext4"
MODULES=$MODULES_DEFAULT
EARLY="virtio_pci virtio_mmio virtio_console virtio_rng 9p 9pnet_virtio"
KPKG_META=linux-image-amd64
BBPKG=busybox-static

usage() { sed -n '2,12p' "$SCRIPT" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$2; shift 2 ;;
    --agent) AGENT=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --modules) MODULES=$2; shift 2 ;;
    --early) EARLY=$2; shift 2 ;;
    --compress) COMPRESS=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case $COMPRESS in gzip | none) ;; *) die "--compress must be gzip or none" ;; esac

# --- tools, each named with the Debian package that provides it -------------
need() { # command package
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package '$2' (make deps)"
}
need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need depmod kmod
need cpio cpio
need xz xz-utils
need zstd zstd
need gzip gzip
need readelf binutils
need ldd libc-bin
need sha256sum coreutils
need flock util-linux

[ -f "$AGENT" ] || die "agent binary '$AGENT' not found: build it first (make $AGENT) or pass --agent PATH"
[ -x "$AGENT" ] || die "agent binary '$AGENT' is not executable"
AGENT=$(readlink -f "$AGENT")

mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
CACHE=$(cd "$CACHE" && pwd)

# One builder at a time per output dir and per cache (parallel make / tests).
exec 9>"$OUT/.lock"
flock 9
exec 8>"$CACHE/.lock"
flock 8
rm -rf "$OUT"/.work.* # left by a killed run; we hold the lock

# --- fetch: apt-get download into the cache, reused when present ------------
# fetch_deb PKG VERSION -> prints the path of the cached .deb (VERSION empty:
# the newest cached one)
fetch_deb() {
    local pkg=$1 ver=${2:-} f
    if [ -n "$ver" ]; then
        # apt-get download names files pkg_version_arch.deb with ':' as %3a
        f=$(ls "$CACHE/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
        if [ -n "$f" ]; then echo "$f"; return 0; fi
        f=$(ls "/var/cache/apt/archives/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
        if [ -n "$f" ]; then
            say "using $f from apt's archive cache" >&2
            cp "$f" "$CACHE/" && echo "$CACHE/$(basename "$f")"
            return 0
        fi
        say "apt-get download $pkg=$ver" >&2
        if (cd "$CACHE" && apt-get download -q "$pkg=$ver" >&2 2>"$CACHE/.apt.err"); then
            f=$(ls "$CACHE/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
            [ -n "$f" ] && { echo "$f"; return 0; }
        fi
        sed 's/^/mkguest:   /' "$CACHE/.apt.err" >&2 || true
    fi
    # No candidate (no apt lists?) or download failed: newest cached copy.
    f=$(ls -t "$CACHE/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -n "$f" ]; then
        say "warning: could not resolve/fetch $pkg; using cached $(basename "$f")" >&2
        echo "$f"
        return 0
    fi
    return 1
}

# Resolve linux-image-amd64 to the real kernel package.
KPKG=$(apt-cache depends "$KPKG_META" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ {print $2; exit}')
if [ -z "$KPKG" ]; then
    f=$(ls -t "$CACHE"/linux-image-[0-9]*-amd64_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$f" ] || die "cannot resolve package '$KPKG_META' to a linux-image-<version>-amd64 package (run apt-get update; Debian package '$KPKG_META')"
    KPKG=$(basename "$f" | cut -d_ -f1)
    say "warning: apt-cache cannot resolve $KPKG_META; using cached $KPKG"
fi
# one apt-cache call for both candidates (each call costs ~0.7 s here)
declare -A CAND=()
while read -r p v; do CAND[$p]=$v; done < <(apt-cache policy "$KPKG" "$BBPKG" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($1, 1, length($1) - 1)} /Candidate:/ && $2 != "(none)" {print p, $2}')
KDEB=$(fetch_deb "$KPKG" "${CAND[$KPKG]:-}") || die "cannot download Debian package '$KPKG' (the kernel of '$KPKG_META'); check apt sources / run apt-get update"
KVER=${KPKG#linux-image-}
say "kernel: $KPKG ($(basename "$KDEB"))"

BBDEB=$(fetch_deb "$BBPKG" "${CAND[$BBPKG]:-}" || true)
if [ -n "$BBDEB" ]; then
    say "busybox: $(basename "$BBDEB")"
    BBSRC=deb
elif [ -x /bin/busybox ] && dpkg-query -W -f='${Status}' "$BBPKG" 2>/dev/null | grep -q 'install ok installed'; then
    say "busybox: installed package $BBPKG (/bin/busybox)"
    BBSRC=host
else
    die "Debian package '$BBPKG' is neither downloadable nor installed (apt-get install $BBPKG)"
fi

# --- agent libraries (ldd) ----------------------------------------------------
# Prints "path" for each library and the dynamic loader, host paths.
agent_libs() {
    local out
    out=$(ldd "$AGENT" 2>&1) || {
        case $out in *"not a dynamic executable"* | *"statically linked"*) return 0 ;; esac
        die "ldd $AGENT failed: $out"
    }
    case $out in *"not found"*) die "agent libraries missing on the host: $(echo "$out" | grep 'not found' | tr -s ' \t' ' ')" ;; esac
    echo "$out" | awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }'
}
mapfile -t LIBS < <(agent_libs)

# --- stamp -------------------------------------------------------------------
# The kernel .deb is 70 MB: its hash is cached beside it, keyed by size and
# mtime, so that an up-to-date check stays cheap.
deb_hash() {
    local f=$1 key h
    key=$(stat -c '%s %Y' "$f")
    if [ -f "$f.sha256" ] && [ "$(sed -n 1p "$f.sha256")" = "$key" ]; then
        sed -n 2p "$f.sha256"
        return
    fi
    h=$(sha256sum <"$f")
    case $f in "$CACHE"/*) printf '%s\n%s\n' "$key" "$h" >"$f.sha256" ;; esac
    echo "$h"
}
if [ "$BBSRC" = deb ]; then BBHASH=$(deb_hash "$BBDEB"); else BBHASH=$(sha256sum </bin/busybox); fi
STAMP_NEW=$(
    echo "kernel $(basename "$KDEB") $(deb_hash "$KDEB")"
    echo "busybox $BBHASH"
    echo "agent $(sha256sum <"$AGENT")"
    for l in "${LIBS[@]}"; do echo "lib $l $(sha256sum <"$l")"; done
    echo "script $(sha256sum <"$SCRIPT")"
    echo "modules $(echo "$MODULES" | tr -s ' \t' '\n' | sort -u | tr '\n' ' ')"
    echo "early $(echo "$EARLY" | tr -s ' \t' '\n' | sort -u | tr '\n' ' ')"
    echo "compress $COMPRESS"
)
if [ $FORCE = 0 ] && [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$STAMP_NEW" ] &&
    [ -s "$OUT/vmlinux" ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ]; then
    say "up to date: $OUT (inputs unchanged)"
    exit 0
fi
say "building into $OUT"

WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- kernel ------------------------------------------------------------------
say "unpacking $(basename "$KDEB")"
dpkg-deb -x "$KDEB" "$WORK/kpkg"
BZ=$WORK/kpkg/boot/vmlinuz-$KVER
[ -f "$BZ" ] || die "package '$KPKG' has no boot/vmlinuz-$KVER"
MODROOT=$WORK/kpkg/lib/modules/$KVER
[ -d "$MODROOT" ] || die "package '$KPKG' has no lib/modules/$KVER"

# extract_vmlinux BZIMAGE OUT: decompress the kernel payload of a bzImage.
# The boot protocol header says where the payload is: setup_sects at 0x1f1,
# payload_offset (0x248) and payload_length (0x24c), relative to the start of
# the protected-mode code at (setup_sects+1)*512.  We check the compression
# magic there; if the header is odd, scan the file for every known magic, as
# the kernel's scripts/extract-vmlinux does, and keep the first that
# decompresses to an ELF.
le32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
le8() { od -An -t u1 -j "$2" -N 1 "$1" | tr -d ' '; }
decomp_at() { # file offset kind out
    local f=$1 off=$2 kind=$3 o=$4
    case $kind in
    xz) tail -c +$((off + 1)) "$f" | xz -dc --single-stream >"$o" 2>/dev/null ;;
    lzma) tail -c +$((off + 1)) "$f" | xz -dc --format=lzma >"$o" 2>/dev/null ;;
    zstd) tail -c +$((off + 1)) "$f" | zstd -dcq >"$o" 2>/dev/null ;;
    gzip) tail -c +$((off + 1)) "$f" | gzip -dc >"$o" 2>/dev/null ;;
    esac
    # trailing data after the stream makes some tools exit non-zero: judge by result
    [ "$(head -c 4 "$o" | od -An -t x1 | tr -d ' ')" = 7f454c46 ]
}
magic_kind() { # hex-of-first-6-bytes -> kind
    case $1 in
    fd377a585a00) echo xz ;;
    28b52ffd*) echo zstd ;;
    1f8b08*) echo gzip ;;
    5d0000*) echo lzma ;;
    *) echo unknown ;;
    esac
}
extract_vmlinux() {
    local bz=$1 o=$2 hdr sects pm poff plen off kind m
    hdr=$(od -An -c -j $((0x202)) -N 4 "$bz" | tr -d ' ')
    if [ "$hdr" = HdrS ]; then
        sects=$(le8 "$bz" $((0x1f1)))
        [ "$sects" -eq 0 ] && sects=4
        pm=$(((sects + 1) * 512))
        poff=$(le32 "$bz" $((0x248)))
        plen=$(le32 "$bz" $((0x24c)))
        off=$((pm + poff))
        m=$(od -An -t x1 -j "$off" -N 6 "$bz" | tr -d ' \n')
        kind=$(magic_kind "$m")
        say "bzImage: payload at offset $off, $plen bytes, $kind-compressed (from the boot header)"
        if [ "$kind" != unknown ] && decomp_at "$bz" "$off" "$kind" "$o"; then return 0; fi
        say "bzImage: header payload did not decompress; scanning for magic"
    fi
    local pat
    for kind in xz zstd gzip lzma; do
        case $kind in
        xz) pat='\xfd\x37\x7a\x58\x5a\x00' ;;
        zstd) pat='\x28\xb5\x2f\xfd' ;;
        gzip) pat='\x1f\x8b\x08' ;;
        lzma) pat='\x5d\x00\x00\x00' ;;
        esac
        for off in $(LC_ALL=C grep -obUaP "$pat" "$bz" | cut -d: -f1); do
            if decomp_at "$bz" "$off" "$kind" "$o"; then
                say "bzImage: $kind stream at offset $off (scan)"
                return 0
            fi
        done
    done
    return 1
}
extract_vmlinux "$BZ" "$WORK/vmlinux" || die "could not find a compressed ELF kernel in $(basename "$BZ") from '$KPKG'"
readelf -h "$WORK/vmlinux" 2>/dev/null | grep -q 'Type:.*EXEC' || die "extracted vmlinux is not an ELF executable"
# XEN_ELFNOTE_PHYS32_ENTRY is note type 18 (0x12) with owner "Xen".  Older
# binutils print it as "Unknown note type: (0x00000012)".
if ! readelf -n "$WORK/vmlinux" 2>/dev/null | grep -E '^ *Xen ' |
    grep -qE 'PHYS32_ENTRY|note type: \(0x00000012\)'; then
    die "extracted vmlinux has no Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY: QEMU cannot boot it as PVH"
fi
say "vmlinux: $(stat -c %s "$WORK/vmlinux") bytes, ELF with PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"

# --- modules -----------------------------------------------------------------
if [ ! -s "$MODROOT/modules.dep" ]; then
    say "depmod -b (Debian's package does not ship modules.dep)"
    depmod -b "$WORK/kpkg" "$KVER" || die "depmod failed on $KPKG"
fi
norm() { echo "${1//-/_}"; }
modname() { local b=${1##*/}; b=${b%%.ko*}; norm "$b"; }

declare -A DEP=()    # name -> space-separated dep names
declare -A PATHOF=() # name -> relative path
while IFS= read -r line; do
    p=${line%%:*}
    n=$(modname "$p")
    PATHOF[$n]=$p
    d=
    for x in ${line#*:}; do d+="$(modname "$x") "; done
    DEP[$n]=$d
done <"$MODROOT/modules.dep"
declare -A BUILTIN=()
while IFS= read -r p; do BUILTIN[$(modname "$p")]=1; done <"$MODROOT/modules.builtin"
declare -A ALIAS=() # alias -> names (modules.alias, exact aliases only)
while read -r _ a m; do
    case $a in *'*'* | *'?'* | *'['*) continue ;; esac
    ALIAS[$a]+="$(norm "$m") "
done < <(grep -E '^alias [^ ]+ [^ ]+$' "$MODROOT/modules.alias")
declare -A SOFTPRE=() # name -> pre: soft dependencies (names or aliases)
if [ -f "$MODROOT/modules.softdep" ]; then
    while read -r kw m rest; do
        [ "$kw" = softdep ] || continue
        pre=$(echo " $rest" | sed -n 's/.* pre: *\(.*\)/\1/p' | sed 's/ post:.*//')
        SOFTPRE[$(norm "$m")]=$pre
    done <"$MODROOT/modules.softdep"
fi

ORDER=()
declare -A STATE=() # 1 = visiting, 2 = done
NOTES=()
visit() { # name required(1|0)
    local n=$1 req=$2 d a cands
    [ "${STATE[$n]:-0}" = 2 ] && return 0
    [ "${STATE[$n]:-0}" = 1 ] && die "module dependency cycle at $n"
    if [ -n "${BUILTIN[$n]:-}" ]; then
        NOTES+=("$n: built into the kernel, skipped")
        STATE[$n]=2
        return 0
    fi
    if [ -z "${PATHOF[$n]:-}" ]; then
        [ "$req" = 1 ] && die "module '$n' is neither built in nor shipped in '$KPKG'"
        return 1
    fi
    STATE[$n]=1
    for a in ${SOFTPRE[$n]:-}; do
        # a soft dependency names a module or an alias; load every module
        # that provides it (alternatives that fail with ENODEV are harmless)
        cands=$(norm "$a")
        if [ -z "${PATHOF[$cands]:-}" ] && [ -z "${BUILTIN[$cands]:-}" ]; then
            cands=${ALIAS[$a]:-}
        fi
        [ -n "$cands" ] || { NOTES+=("$n: soft dependency '$a' not found, ignored"); continue; }
        for d in $cands; do
            [ "${STATE[$d]:-0}" = 2 ] && continue
            visit "$d" 0 && NOTES+=("$d: soft dependency of $n ('$a')") || true
        done
    done
    for d in ${DEP[$n]}; do visit "$d" 1; done
    STATE[$n]=2
    ORDER+=("$n")
}
WANTED=()
for m in $MODULES; do WANTED+=("$(norm "$m")"); done
EARLYN=()
for m in $EARLY; do
    m=$(norm "$m")
    case " ${WANTED[*]} " in *" $m "*) ;; *) die "--early module '$m' is not in the module list" ;; esac
    EARLYN+=("$m")
done
for m in "${EARLYN[@]}"; do visit "$m" 1; done
NEARLY=${#ORDER[@]}
for m in "${WANTED[@]}"; do visit "$m" 1; done

STAGE=$WORK/root
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,run,tmp,mnt,etc,root} "$STAGE/lib/modules/$KVER"
chmod 1777 "$STAGE/tmp"
{
    echo "# husk guest modules for $KVER: load in this order (dependencies first)"
    echo "# with finit_module(2); EEXIST = already loaded, ENODEV = no such hardware."
    echo "# wanted: ${WANTED[*]}"
    echo "# the modules before the line #early-end serve: ${EARLYN[*]}"
} >"$STAGE/lib/modules/load-order"
i=0
for n in "${ORDER[@]}"; do
    [ $i -eq "$NEARLY" ] && echo "#early-end" >>"$STAGE/lib/modules/load-order"
    i=$((i + 1))
    src=$MODROOT/${PATHOF[$n]}
    rel=${PATHOF[$n]%.xz}; rel=${rel%.zst}; rel=${rel%.gz}
    mkdir -p "$STAGE/lib/modules/$KVER/$(dirname "$rel")"
    case ${PATHOF[$n]} in
    *.ko.xz) xz -dc "$src" >"$STAGE/lib/modules/$KVER/$rel" ;;
    *.ko.zst) zstd -dcq "$src" >"$STAGE/lib/modules/$KVER/$rel" ;;
    *.ko.gz) gzip -dc "$src" >"$STAGE/lib/modules/$KVER/$rel" ;;
    *) cp "$src" "$STAGE/lib/modules/$KVER/$rel" ;;
    esac
    echo "/lib/modules/$KVER/$rel" >>"$STAGE/lib/modules/load-order"
done
[ $i -eq "$NEARLY" ] && echo "#early-end" >>"$STAGE/lib/modules/load-order"
cp "$MODROOT/modules.builtin" "$MODROOT/modules.builtin.modinfo" "$MODROOT/modules.order" "$STAGE/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$STAGE" "$KVER" 2>/dev/null || true # for busybox modprobe/debugging
for note in "${NOTES[@]}"; do say "modules: $note"; done
say "modules: ${#ORDER[@]} to load: ${ORDER[*]:0:$NEARLY} #early-end ${ORDER[*]:$NEARLY}"

# --- busybox -----------------------------------------------------------------
if [ "$BBSRC" = deb ]; then
    dpkg-deb -x "$BBDEB" "$WORK/bbpkg"
    BB=$WORK/bbpkg/bin/busybox
    [ -x "$BB" ] || die "package '$BBPKG' has no bin/busybox"
else
    BB=/bin/busybox
fi
cp "$BB" "$STAGE/bin/busybox"
napplets=0
while IFS= read -r a; do
    a=${a#/}
    [ -n "$a" ] && [ "$a" != bin/busybox ] || continue
    [ -e "$STAGE/$a" ] || [ -L "$STAGE/$a" ] && continue
    mkdir -p "$STAGE/$(dirname "$a")"
    ln -s /bin/busybox "$STAGE/$a"
    napplets=$((napplets + 1))
done < <("$BB" --list-full)
say "busybox: /bin/busybox with $napplets applet links"

# --- agent as /init, with its libraries --------------------------------------
# stripped: debug info is of no use in the guest, and every MB of the
# initramfs costs ~12 ms of unpacking under TCG (docs/performance.md)
if command -v strip >/dev/null; then
    strip -o "$STAGE/init" "$AGENT" || die "strip $AGENT failed"
else
    cp "$AGENT" "$STAGE/init"
fi
chmod 0755 "$STAGE/init"
for l in "${LIBS[@]}"; do
    # keep the path the binary asks for (the loader path is baked into it);
    # copy the file behind any symlink
    mkdir -p "$STAGE/$(dirname "$l")"
    cp -L "$l" "$STAGE/$l"
done
say "agent: $AGENT as /init, ${#LIBS[@]} libraries: ${LIBS[*]:-none (static)}"
# merged-/usr hosts list /lib/x86_64-linux-gnu; make /usr/lib/... resolve too
if [ -d "$STAGE/lib/x86_64-linux-gnu" ] && [ ! -e "$STAGE/usr/lib/x86_64-linux-gnu" ]; then
    mkdir -p "$STAGE/usr/lib"
    ln -s ../../lib/x86_64-linux-gnu "$STAGE/usr/lib/x86_64-linux-gnu"
fi

echo "root:x:0:0:root:/root:/bin/sh" >"$STAGE/etc/passwd"
echo "root:x:0:" >"$STAGE/etc/group"

# --- initramfs ---------------------------------------------------------------
# Device nodes go in a tiny hand-written newc archive (no mknod, works
# unprivileged); the kernel opens /dev/console for init's stdio before /init
# runs and accepts concatenated archives.
newc_entry() { # name mode(octal) rdevmajor rdevminor
    local name=$1 mode=$2 maj=$3 min=$4 namesize hdr pad
    namesize=$((${#name} + 1))
    hdr=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 $((8#$mode)) 0 0 1 0 0 0 0 "$maj" "$min" "$namesize" 0)
    printf '%s%s\0' "$hdr" "$name"
    pad=$(((4 - (110 + namesize) % 4) % 4))
    head -c "$pad" /dev/zero
}
{
    newc_entry dev 040755 0 0
    newc_entry dev/console 020600 5 1
    newc_entry dev/null 020666 1 3
    newc_entry TRAILER!!! 0 0 0
} >"$WORK/devs.cpio"

find "$STAGE" -exec touch -h -d @0 {} + # reproducible archive
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) >"$WORK/root.cpio"
cat "$WORK/devs.cpio" "$WORK/root.cpio" >"$WORK/initrd.cpio"
if [ "$COMPRESS" = gzip ]; then
    gzip -n -6 -c "$WORK/initrd.cpio" >"$WORK/initrd.img"
else
    mv "$WORK/initrd.cpio" "$WORK/initrd.img"
fi
say "initrd.img: $(stat -c %s "$WORK/initrd.img") bytes ($COMPRESS; $(stat -c %s "$WORK/root.cpio") bytes of cpio)"

# --- install atomically ------------------------------------------------------
cp "$BZ" "$WORK/vmlinuz"
echo "$KVER" >"$WORK/kernel-version"
printf '%s\n' "${ORDER[@]}" >"$WORK/modules.txt"
rm -f "$OUT/.stamp"
for f in vmlinux vmlinuz initrd.img kernel-version modules.txt; do
    mv -f "$WORK/$f" "$OUT/$f"
done
echo "$STAMP_NEW" >"$OUT/.stamp"
say "done: $OUT/vmlinux $OUT/vmlinuz $OUT/initrd.img"
