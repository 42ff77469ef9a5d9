#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Fetch and prepare what the real-kernel suite boots: Debian's newest 6.12
# bookworm kernel, mtty.ko built out of tree from that kernel's own source
# (stock, and a variant without DMA logging ops), busybox-static, and
# Debian's stock QEMU 7.2 with the libraries this host lacks.
#
# Packages are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`; nothing is installed.  Everything lands in $RK_CACHE and is
# reused: once $RK_CACHE/versions lists files that are all there, no apt
# command runs (delete that file to move to a newer kernel).
#
# Exit status: 0 ready (assets.env written); 1 failure (the reason on
# stderr); 2 the suite cannot run on this host (the reason on stderr).

set -euo pipefail
. "$(dirname "$0")/../common.sh"

RK_CACHE=$CACHE/realkernel
DEBS=$RK_CACHE/debs
VERSIONS=$RK_CACHE/versions

skip() { echo "$*" >&2; exit 2; }

for tool in apt-get apt-cache dpkg-deb dpkg make gcc-12 ld xz tar python3 strip ldd; do
    command -v "$tool" >/dev/null 2>&1 || skip "host tool $tool is missing"
done

mkdir -p "$DEBS"

# Newest version of PKG that apt knows, or nothing.
newest() {
    local v best=
    for v in $(apt-cache madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}'); do
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then
            best=$v
        fi
    done
    echo "$best"
}

# The deb of PKG at version VER in $DEBS (apt-get download escapes ':').
deb_of() {
    local f
    f=$DEBS/${1}_${2/:/%3a}_$(dpkg --print-architecture).deb
    [ -f "$f" ] || f=$DEBS/${1}_${2/:/%3a}_all.deb
    echo "$f"
}

cached() {
    [ -s "$VERSIONS" ] || return 1
    local p v
    while read -r p v; do
        [ -f "$(deb_of "$p" "$v")" ] || return 1
    done < "$VERSIONS"
}

# Libraries that Debian's qemu-system-x86 needs and this host lacks: the
# not-installed lib* packages among its dependencies, recursively.
missing_libs() {
    local todo=("$@") seen=" " p dep
    while [ ${#todo[@]} -gt 0 ]; do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        for dep in $(apt-cache show --no-all-versions "$p" 2>/dev/null |
                     sed -n 's/^\(Pre-\)\{0,1\}Depends: //p' | tr ',' '\n' |
                     sed 's/|.*//; s/(.*)//; s/:any//; s/ //g'); do
            case "$seen" in *" $dep "*) continue ;; esac
            seen="$seen$dep "
            case "$dep" in lib*) ;; *) continue ;; esac
            [ "$(dpkg-query -W -f='${db:Status-Status}' "$dep" 2>/dev/null)" = installed ] &&
                continue
            echo "$dep"
            todo+=("$dep")
        done
    done
}

# The version apt would install of PKG; fails if apt knows none.
candidate() {
    local v
    v=$(apt-cache policy "$1" | sed -n 's/^ *Candidate: //p')
    if [ -z "$v" ] || [ "$v" = "(none)" ]; then
        die "$1 is not in the package registry"
    fi
    echo "$v"
}

resolve() {
    local src kver abi p v
    src=$(newest linux-source-6.12)
    if [ -z "$src" ]; then
        note "apt knows no linux-source-6.12: running apt-get update"
        as_root apt-get update -q >/dev/null || die "apt-get update failed"
        src=$(newest linux-source-6.12)
    fi
    [ -n "$src" ] || die "no linux-source-6.12 in the package registry"
    # 6.12.117-1~deb12u1 -> ABI name 6.12.117+deb12
    kver=${src%%-*}
    abi=$kver+deb12
    {
        for p in linux-image-$abi-amd64-unsigned linux-headers-$abi-amd64 \
                 linux-headers-$abi-common linux-kbuild-$abi linux-source-6.12; do
            apt-cache show "$p=$src" >/dev/null 2>&1 ||
                die "$p $src is not in the package registry"
            echo "$p $src"
        done
        v=$(candidate busybox-static)
        echo "busybox-static $v"
        # Debian's QEMU, and qemu-system-common of the same version: it
        # holds the TCG accelerator module.
        v=$(candidate qemu-system-x86)
        apt-cache show "qemu-system-common=$v" >/dev/null 2>&1 ||
            die "qemu-system-common $v is not in the package registry"
        echo "qemu-system-x86 $v"
        echo "qemu-system-common $v"
        for p in $(missing_libs qemu-system-x86); do
            v=$(candidate "$p")
            echo "$p $v"
        done
    } > "$VERSIONS.new"
}

if ! cached; then
    resolve
    note "realkernel: downloading $(wc -l < "$VERSIONS.new") packages into $DEBS"
    mapfile -t want < <(awk '{print $1 "=" $2}' "$VERSIONS.new")
    (cd "$DEBS" && apt-get download -q "${want[@]}" 2>&1 |
        grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
    mv "$VERSIONS.new" "$VERSIONS"
    cached || die "apt-get download did not fetch every package of $VERSIONS"
fi

echo "realkernel: packages used:"
sed 's/^/    /' "$VERSIONS"

ver() { awk -v p="$1" '$1 == p {print $2}' "$VERSIONS"; }
IMG=$(awk '$1 ~ /^linux-image-/ {print $1}' "$VERSIONS")
ABI=${IMG#linux-image-}
ABI=${ABI%-amd64-unsigned}
KREL=$ABI-amd64
KSRCVER=$(ver linux-source-6.12)
KDIR=$RK_CACHE/kernel-$KSRCVER

# Unpack once per set of packages; the stamp is written last, so an
# interrupted unpack is redone.
unpack() {   # DIR PKG...
    local dir=$1 p
    shift
    [ "$(cat "$dir/.unpacked" 2>/dev/null)" = "$*" ] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    for p in "$@"; do
        dpkg-deb -x "$(deb_of "$p" "$(ver "$p")")" "$dir"
    done
    echo "$*" > "$dir/.unpacked"
}

unpack "$KDIR/root" "$IMG" "linux-headers-$ABI-amd64" "linux-headers-$ABI-common" \
    "linux-kbuild-$ABI"
unpack "$RK_CACHE/busybox-$(ver busybox-static | tr : _)" busybox-static
QV=$(ver qemu-system-x86)
mapfile -t QLIBS < <(awk '$1 ~ /^lib/ {print $1}' "$VERSIONS")
unpack "$RK_CACHE/debian-qemu-${QV/:/_}" qemu-system-x86 qemu-system-common "${QLIBS[@]}"

# The kbuild package's tools are prebuilt: their libraries (libelf1,
# libssl3, zlib1g) must be on the host.
for tool in "$KDIR"/root/usr/lib/linux-kbuild-*/scripts/mod/modpost \
            "$KDIR"/root/usr/lib/linux-kbuild-*/tools/objtool/objtool; do
    [ -x "$tool" ] || continue
    if ldd "$tool" | grep -q 'not found'; then
        die "$(basename "$tool") of linux-kbuild lacks libraries:$(ldd "$tool" |
               awk '/not found/ {printf " %s", $1}')"
    fi
done

# mtty.c, straight from the kernel's source package.
if [ ! -s "$KDIR/mtty.c" ]; then
    dpkg-deb --fsys-tarfile "$(deb_of linux-source-6.12 "$KSRCVER")" |
        tar -xO ./usr/src/linux-source-6.12.tar.xz |
        tar -xJO --wildcards '*/samples/vfio-mdev/mtty.c' > "$KDIR/mtty.c.tmp"
    [ -s "$KDIR/mtty.c.tmp" ] || die "no samples/vfio-mdev/mtty.c in linux-source-6.12 $KSRCVER"
    mv "$KDIR/mtty.c.tmp" "$KDIR/mtty.c"
fi

# Build mtty.ko in DIR from the C file SRC.  The headers'
# Makefile includes the common headers' Makefile by its installed path
# (/usr/src/...), so name that Makefile ourselves.  Module BTF would need
# pahole and nothing here reads it: turn it off.
build_mtty() {   # DIR SRC
    local dir=$1 hdr=$KDIR/root/usr/src
    [ -s "$dir/mtty.ko" ] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$2" "$dir/mtty.c"
    echo 'obj-m := mtty.o' > "$dir/Kbuild"
    make -s -C "$hdr/linux-headers-$KREL" -f "$hdr/linux-headers-$ABI-common/Makefile" \
        M="$dir" CONFIG_DEBUG_INFO_BTF_MODULES= modules > "$dir/build.log" 2>&1 ||
        { cat "$dir/build.log" >&2; die "building mtty.ko in $dir failed"; }
    strip --strip-debug "$dir/mtty.ko"
}

build_mtty "$KDIR/mtty-stock" "$KDIR/mtty.c"

# The variant without DMA logging: delete the one line that hands the
# driver's log ops to the VFIO core, `vdev->log_ops = &mtty_log_ops;` in
# mtty_init_dev().  Without log ops the kernel refuses DMA_LOGGING_*, so
# QEMU must fall back to the container's dirty tracking.
if [ "$(grep -c 'vdev->log_ops = &mtty_log_ops;' "$KDIR/mtty.c")" != 1 ]; then
    die "mtty.c of $KSRCVER does not set vdev->log_ops exactly once: cannot derive the variant"
fi
sed '/vdev->log_ops = &mtty_log_ops;/d' "$KDIR/mtty.c" > "$KDIR/mtty-nolog.c"
build_mtty "$KDIR/mtty-nolog" "$KDIR/mtty-nolog.c"

cat > "$RK_CACHE/assets.env" <<EOF
KREL=$KREL
KSRCVER=$KSRCVER
VMLINUZ=$KDIR/root/boot/vmlinuz-$KREL
MODULES=$KDIR/root/lib/modules/$KREL
MTTY_STOCK=$KDIR/mtty-stock/mtty.ko
MTTY_NOLOG=$KDIR/mtty-nolog/mtty.ko
BUSYBOX=$RK_CACHE/busybox-$(ver busybox-static | tr : _)/bin/busybox
DEBQEMU=$RK_CACHE/debian-qemu-${QV/:/_}
DEBQEMU_VERSION=$QV
EOF
