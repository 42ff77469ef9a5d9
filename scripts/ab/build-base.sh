#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build QEMU 7.2, the `base` tag of build/qemu, with the series' fix of
# 7.2's TCG dirty sync and nothing else, for the A/B suite: export the tag
# into build/base/qemu, apply the fix (again only when either changes:
# build/base/qemu.stamp holds their ids) and build its
# qemu-system-x86_64 into build/base/obj with scripts/build.sh, i.e. with
# the series' own configure options.  build/base/{qemu,obj} mirrors
# build/{qemu,obj}: build.sh sets CCACHE_BASEDIR to the tree's parent and
# meson uses relative paths (../qemu/...), so every file that the series
# does not change is a ccache hit.  build/obj-base links to base/obj.
#
# Exit status: 0 built; 1 failure (the reason on stderr, the build's
# output in build/base/obj.log).

set -euo pipefail
. "$(dirname "$0")/../common.sh"

MAIN_TREE=$TOP/build/qemu
BASE=$TOP/build/base

git -C "$MAIN_TREE" rev-parse --git-dir >/dev/null 2>&1 ||
    die "no build/qemu; run 'make tree' first"
base_id=$(git -C "$MAIN_TREE" rev-parse --verify -q 'base^{commit}') ||
    die "build/qemu has no tag 'base'"

# The series' fix of 7.2's TCG dirty-bitmap sync, which loses guest writes
# (see ab.py): applied to the reference too, so that both sides track the
# guest's dirty pages alike.  The fix itself is held to account by rule R2.
fix=$(git -C "$MAIN_TREE" log --format=%H -1 --fixed-strings \
      --grep='physmem: Reset TCG TLB entries of pages cleared by the dirty sync' \
      base..HEAD)
[ -n "$fix" ] || die "build/qemu has no TCG dirty sync fix over base"
fix_id=$(git -C "$MAIN_TREE" diff "$fix~1" "$fix" | git patch-id --stable | cut -d' ' -f1)
# The reference also gets the series' CONFIG_VFIO_SIM symbol, and nothing
# that uses it: with it, config-poison.h (which every file includes through
# qemu/osdep.h) is the series' build's, so every file the series does not
# change is a ccache hit.  No code depends on the symbol in 7.2.
poison=vfio-sim-symbol-1
id="$base_id+$fix_id+$poison"

if [ "$(cat "$BASE/qemu.stamp" 2>/dev/null)" != "$id" ] || [ ! -d "$BASE/qemu" ]; then
    note "exporting base ($base_id) and the TCG dirty sync fix into build/base/qemu"
    rm -rf "$BASE/qemu" "$BASE/qemu.stamp"
    mkdir -p "$BASE/qemu"
    git -C "$MAIN_TREE" archive "$base_id" | tar -x -C "$BASE/qemu"
    git -C "$MAIN_TREE" diff "$fix~1" "$fix" | patch -s -p1 -d "$BASE/qemu" ||
        die "the TCG dirty sync fix does not apply to base"
    mak=configs/devices/x86_64-softmmu/vfio-sim.mak
    if [ -f "$MAIN_TREE/$mak" ]; then
        printf '%s\n' '' '# scripts/ab/build-base.sh: the symbol only, for ccache' \
            'config VFIO_SIM' '    bool' >> "$BASE/qemu/hw/vfio/Kconfig"
        cp "$MAIN_TREE/$mak" "$BASE/qemu/$mak"
    fi
    # A new tree: configure again (build.sh keys its stamp on the options)
    rm -f "$BASE/obj/.config-stamp"
    echo "$id" > "$BASE/qemu.stamp"
fi
ln -sfn base/obj "$TOP/build/obj-base"

mkdir -p "$BASE/obj"
start=$SECONDS
if ! SERIES_TREE=$BASE/qemu SERIES_OBJ=$BASE/obj \
        "$TOP/scripts/build.sh" qemu-system-x86_64 > "$BASE/obj.log" 2>&1; then
    tail -n 30 "$BASE/obj.log" >&2
    die "building 7.2 failed; full log in build/base/obj.log"
fi
[ -x "$BASE/obj/qemu-system-x86_64" ] || die "no build/base/obj/qemu-system-x86_64 after the build"
note "7.2 built in $((SECONDS - start)) s (build/obj-base/qemu-system-x86_64)"
