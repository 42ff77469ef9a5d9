#!/usr/bin/env bash
# Configure (once) and build build/qemu into build/obj: x86_64-softmmu only,
# with KVM, VFIO and the qtests, the AVX2 paths (on in Debian's package, off
# under --without-default-features), -Werror, ccache when present, and Debian's
# firmware packages on the firmware path.
#
# SERIES_CONFIGURE_EXTRA: extra configure arguments, split on blanks and
# appended last (scripts/sanitizers/run.sh: --enable-sanitizers into
# build/obj-san).  Unset, the arguments and the config stamp are unchanged.
set -euo pipefail
. "$(dirname "$0")/common.sh"

FIRMWAREPATH=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
CONFIG_ARGS=(
    --target-list=x86_64-softmmu
    --without-default-features
    --enable-kvm
    --enable-tcg
    --enable-werror
    --enable-docs
    --disable-install-blobs
    --enable-avx2
    --firmwarepath="$FIRMWAREPATH"
    --prefix="$TOP/build/install"
)

# vfio-sim-pci, the software VFIO device the tests use, is off in every
# default device configuration: the series' tree has one that adds it.
if [ -f "$TREE/configs/devices/x86_64-softmmu/vfio-sim.mak" ]; then
    CONFIG_ARGS+=(--with-devices-x86_64=vfio-sim)
fi

# ccache through Debian's compiler symlinks, so that meson uses it.
if [ -x /usr/lib/ccache/gcc ] && [ -z "${NO_CCACHE:-}" ]; then
    CONFIG_ARGS+=(--cc=/usr/lib/ccache/gcc --cxx=/usr/lib/ccache/g++)
fi
if [ -n "${SERIES_CONFIGURE_EXTRA:-}" ]; then
    # shellcheck disable=SC2206  # split on blanks on purpose
    CONFIG_ARGS+=($SERIES_CONFIGURE_EXTRA)
fi

[ -x "$TREE/configure" ] || die "no QEMU tree in $TREE; run 'make tree' first"
mkdir -p "$OBJ"

want=$(printf '%s\n' "${CONFIG_ARGS[@]}" | sha256sum | cut -d' ' -f1)
have=$(cat "$OBJ/.config-stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -f "$OBJ/build.ninja" ]; then
    note "configuring ${OBJ#"$TOP"/}"
    (cd "$OBJ" && "$TREE/configure" "${CONFIG_ARGS[@]}" > configure.log 2>&1) || {
        tail -n 30 "$OBJ/configure.log" >&2
        die "configure failed; full log in ${OBJ#"$TOP"/}/configure.log"
    }
    echo "$want" > "$OBJ/.config-stamp"
fi

if command -v ccache >/dev/null 2>&1; then
    export CCACHE_DIR=${CCACHE_DIR:-$CACHE/ccache}
    export CCACHE_BASEDIR=$(dirname "$TREE")
    export CCACHE_NOHASHDIR=1
    ccache -M 5G >/dev/null
fi
note "building ($(nproc) jobs)"
ninja -C "$OBJ" -j"$(nproc)" "$@"

# A QEMU run from the build tree looks up every data directory inside
# build/obj/qemu-bundle.  Point the firmware directories there at Debian's
# packages, so that the built binary boots with no install step.
IFS=: read -r -a fwdirs <<< "$FIRMWAREPATH"
for d in "${fwdirs[@]}"; do
    link=$OBJ/qemu-bundle$d
    if [ ! -e "$link" ]; then
        mkdir -p "$(dirname "$link")"
        ln -sfn "$d" "$link"
    fi
done
