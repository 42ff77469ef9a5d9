#!/usr/bin/env bash
# make deb: Debian's qemu source package with the series, built into the
# binary packages an x86 host needs, in build/deb/.
#
#   build.sh [--cold] [--no-ccache] [--tree]
#
# Steps:
#  1. unpack the cached .dsc of Debian's qemu (scripts/get-base.sh fetched
#     it) with dpkg-source -x into build/deb/work/: Debian's own patches
#     are applied with quilt, as dpkg-source does;
#  2. add patches/*.patch to debian/patches/vfio-v2/ with a DEP-3 header
#     (scripts/deb/dep3.py), append them to debian/patches/series and
#     apply them with quilt (no fuzz); a patch that does not apply stops
#     the build here, and the series is not touched;
#  3. a debian/changelog entry for the local version
#     1:7.2+dfsg-7+deb12u18+vfio1 and a debian/qemu-system-x86.NEWS entry;
#  4. dpkg-buildpackage -B -uc -us with Debian's debian/rules, run through
#     scripts/deb/rules-x86, which restricts it to the x86 system emulators;
#     the packages that build does not fill are left out with DH_OPTIONS;
#  5. the .debs to build/deb/, and the checks of the built qemu-system-x86:
#     no vfio-sim-pci, vfio-pci's enable-migration and x-enable-migration.
#
# ccache: Debian's compiler symlinks (/usr/lib/ccache) first in PATH, with
# its own cache in $CACHE/ccache-deb; --cold empties that cache first,
# --no-ccache builds without it.  The build's time is printed and appended
# to build/deb/times.log.  --tree stops after step 3, with the prepared
# source tree in build/deb/work.
set -euo pipefail
. "$(dirname "$0")/../common.sh"

LOCAL_SUFFIX=+vfio1
DIST=bookworm
# The binary packages built: qemu-system-x86 and those it needs at the same
# version, qemu-utils and qemu-block-extra (its Recommends), and
# qemu-guest-agent, which the same main build makes (leaving it out would
# leave its files uninstalled, which dh_missing fails on).
# qemu-system-data is Architecture: all: it is not built (-B); qemu-system-x86
# needs it only at (>> 7.2+dfsg~), which Debian's own satisfies.
KEEP=(qemu-system-x86 qemu-system-common qemu-system-gui qemu-utils
      qemu-block-extra qemu-guest-agent)

DEBDIR=$TOP/build/deb
WORK=$DEBDIR/work
CCACHE_DEB=$CACHE/ccache-deb

cold=
use_ccache=1
tree_only=
for a in "$@"; do
    case "$a" in
    --cold) cold=1 ;;
    --no-ccache) use_ccache= ;;
    --tree) tree_only=1 ;;
    *) die "unknown option $a (build.sh [--cold] [--no-ccache] [--tree])" ;;
    esac
done

# 1. Debian's source package, as get-base.sh cached it.
"$TOP/scripts/get-base.sh" >/dev/null
dsc=$(ls "$CACHE"/debian/qemu_7.2*.dsc 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$dsc" ] || die "no qemu .dsc in $CACHE/debian (scripts/get-base.sh)"
debver=$(sed -n 's/^Version: //p' "$dsc" | head -n 1)
newver=$debver$LOCAL_SUFFIX
# Above Debian's version and its binNMUs (bookworm's amd64 packages are
# 1:7.2+dfsg-7+deb12u18+b3), below Debian's next update.
dpkg --compare-versions "$newver" gt "$debver+b99" ||
    die "$newver does not sort above $debver and its binNMUs"
upver=${debver#*:}; upver=${upver%-*}
src=$WORK/qemu-$upver

mkdir -p "$DEBDIR"
rm -rf "$WORK"
mkdir -p "$WORK"
note "unpacking $(basename "$dsc") into build/deb/work (dpkg-source -x: Debian's patches applied)"
dpkg-source --no-check -q -x "$dsc" "$src" >/dev/null

# 2. The series as Debian patches after Debian's own.
cd "$src"
export QUILT_PATCHES=debian/patches QUILT_PC=.pc
n_debian=$(grep -c -v -e '^#' -e '^[[:space:]]*$' debian/patches/series)
[ "$(quilt applied 2>/dev/null | wc -l)" -eq "$n_debian" ] ||
    die "Debian's $n_debian patches are not all applied after dpkg-source -x"
shopt -s nullglob
series=("$PATCHES"/*.patch)
[ ${#series[@]} -gt 0 ] || die "no patches in $PATCHES"
{
    echo "# VFIO device live migration, protocol v2 (local, not in Debian)"
    python3 "$TOP/scripts/deb/dep3.py" debian/patches/vfio-v2 "${series[@]}" |
        sed 's|^|vfio-v2/|'
} >> debian/patches/series
note "applying the series with quilt after Debian's $n_debian patches (${#series[@]} patches, no fuzz)"
if ! quilt push -a --fuzz=0 > "$DEBDIR/quilt.log" 2>&1; then
    failed=$(basename "$(quilt next 2>/dev/null || echo unknown)")
    tail -n 20 "$DEBDIR/quilt.log" >&2
    die "patch patches/$failed does not apply in Debian's tree (log: build/deb/quilt.log); the series was not changed, stopping"
fi
# Hunks that applied at an offset (fuzz is refused), for the record.
offsets=$(grep -c -E '^Hunk .*offset' "$DEBDIR/quilt.log" || true)
[ "$offsets" -eq 0 ] ||
    note "$offsets hunks applied at an offset (build/deb/quilt.log)"
[ "$(quilt applied | wc -l)" -eq $((n_debian + ${#series[@]})) ] ||
    die "quilt applied $(quilt applied | wc -l) patches, expected $((n_debian + ${#series[@]}))"

# 3. debian/changelog and debian/qemu-system-x86.NEWS.  The entry's date is
# the newest patch's, so that the same series gives the same packages
# (SOURCE_DATE_EPOCH comes from it).
maint="${DEBFULLNAME:-QEMU series developer} <${DEBEMAIL:-dev@qemu-vfio-series.invalid}>"
epoch=$(sed -n 's/^Date: //p' "${series[@]}" | while read -r d; do date -d "$d" +%s; done | sort -n | tail -n 1)
stamp=$(LC_ALL=C date -u -R -d "@$epoch")
trailer=" -- $maint  $stamp"
{
    echo "qemu ($newver) $DIST; urgency=medium"
    echo
    echo "  * Local build: VFIO device live migration with the kernel's migration"
    echo "    protocol v2 (Linux 5.18 and later), ${#series[@]} patches in debian/patches/vfio-v2/"
    echo "    applied after Debian's own.  vfio-pci's enable-migration=auto is the"
    echo "    default; x-enable-migration is a deprecated alias of enable-migration."
    echo "    The test device vfio-sim-pci (CONFIG_VFIO_SIM) is not built."
    echo "    See /usr/share/doc/qemu-system-x86/NEWS.Debian.gz."
    for p in debian/patches/vfio-v2/*.patch; do
        sed -n 's/^Description: //p' "$p" | head -n 1
    done | python3 -c '
import sys, textwrap
for line in sys.stdin:
    print(textwrap.fill(line.strip(), width=78, initial_indent="    - ",
                        subsequent_indent="      "))'
    echo
    echo "$trailer"
    echo
    cat debian/changelog
} > debian/changelog.new
mv debian/changelog.new debian/changelog
got=$(dpkg-parsechangelog -S Version)
[ "$got" = "$newver" ] || die "debian/changelog says $got, expected $newver"

{
    cat <<EOF
qemu ($newver) $DIST; urgency=medium

  This local build adds live migration of assigned (VFIO) devices with the
  kernel's migration protocol v2 (Linux 5.18 and later).

  vfio-pci has the property enable-migration=on|off|auto, and its default
  is auto.  A device whose kernel driver supports protocol v2 now takes
  part in migration: its state moves with the VM, and it follows the VM's
  run state (it is stopped when the VM stops and resumed when it runs).
  A device that cannot migrate (no protocol v2, no MIG_DATA_SIZE, which
  came in Linux 6.2, no dirty tracking of its DMA, or a vIOMMU) adds a
  migration blocker that names the device and the reason, and migrating
  the VM fails with that reason, as it did for every assigned device
  before.  enable-migration=off keeps a device out of migration (the
  blocker always), and enable-migration=on makes a device without
  protocol v2 an error when the VM starts.

  x-enable-migration, the property of QEMU 7.2 (protocol v1, which no
  kernel has had since 5.18), is kept as a deprecated alias of
  enable-migration: x-enable-migration=on|off sets enable-migration=on|off
  and prints a deprecation warning.  Command lines and libvirt domain XML
  that set it still start; replace it with enable-migration.

  Note that Debian's next qemu update (1:7.2+dfsg-7+deb12u19 or later)
  sorts above this version and does not carry these changes.

$trailer

EOF
    cat debian/qemu-system-x86.NEWS
} > debian/qemu-system-x86.NEWS.new
mv debian/qemu-system-x86.NEWS.new debian/qemu-system-x86.NEWS

if [ -n "$tree_only" ]; then
    echo "deb: source tree with the series prepared in ${src#"$TOP"/}"
    exit 0
fi

# 4. The build.
mapfile -t all_arch < <(dh_listpackages -a 2>/dev/null)
exclude=()
for p in "${all_arch[@]}"; do
    keep=
    for k in "${KEEP[@]}"; do [ "$p" = "$k" ] && keep=1; done
    [ -n "$keep" ] || exclude+=("$p")
done
for k in "${KEEP[@]}"; do
    printf '%s\n' "${all_arch[@]}" | grep -qx "$k" || die "debian/control has no arch package $k"
done
dh_opts=$(printf -- '-N%s ' "${exclude[@]}")
note "building ${KEEP[*]}"
note "left out (DH_OPTIONS): ${exclude[*]}"

# The build sees the system's PATH, as a buildd's build does: no python,
# compiler or tool of a user's own (pyenv's python3, for one) ahead of
# Debian's.
build_path=/usr/sbin:/usr/bin:/sbin:/bin
env_ccache=()
if [ -n "$use_ccache" ]; then
    [ -x /usr/lib/ccache/gcc ] || die "ccache is not installed (make deb installs it)"
    if [ -n "$cold" ]; then
        note "--cold: emptying $CCACHE_DEB"
        rm -rf "$CCACHE_DEB"
    fi
    mkdir -p "$CCACHE_DEB"
    build_path=/usr/lib/ccache:$build_path
    env_ccache=(CCACHE_DIR=$CCACHE_DEB)
    env CCACHE_DIR="$CCACHE_DEB" ccache -M 5G >/dev/null
    env CCACHE_DIR="$CCACHE_DEB" ccache -z >/dev/null
fi

note "dpkg-buildpackage -B -uc -us (2 jobs; log: build/deb/build.log)"
start=$(date +%s)
rc=0
env -u PYTHONPATH -u PYENV_VERSION "${env_ccache[@]}" \
    PATH="$build_path" \
    DEB_BUILD_OPTIONS="parallel=2" \
    DH_OPTIONS="$dh_opts" \
    dpkg-buildpackage -B -uc -us -R"$TOP/scripts/deb/rules-x86" \
    > "$DEBDIR/build.log" 2>&1 || rc=$?
secs=$(( $(date +%s) - start ))
took="$((secs / 60)) min $((secs % 60)) s"
if [ $rc -ne 0 ]; then
    tail -n 40 "$DEBDIR/build.log" >&2
    die "dpkg-buildpackage failed after $took (exit $rc); log: build/deb/build.log"
fi

cc_line="without ccache"
if [ -n "$use_ccache" ]; then
    stats=$(env CCACHE_DIR="$CCACHE_DEB" ccache --print-stats 2>/dev/null || true)
    hit=$(awk -F'\t' '$1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" {s += $2} END {print s + 0}' <<<"$stats")
    miss=$(awk -F'\t' '$1 == "cache_miss" {print $2}' <<<"$stats")
    cc_line="ccache ${cold:+(emptied first) }$hit hits, ${miss:-0} misses"
    [ "$hit" -gt 0 ] || [ "${miss:-0}" -gt 0 ] ||
        cc_line="ccache NOT used by the build (0 hits, 0 misses)"
fi
echo "deb: dpkg-buildpackage took $took ($cc_line)"
echo "$(date -u +%FT%TZ) $newver ${secs}s $cc_line" >> "$DEBDIR/times.log"

# 5. The packages, and the checks of the built binaries.
rm -f "$DEBDIR"/*.deb "$DEBDIR"/*.changes "$DEBDIR"/*.buildinfo
mv "$WORK"/*.deb "$WORK"/*.changes "$WORK"/*.buildinfo "$DEBDIR"/
echo "deb: packages in build/deb/:"
for d in "$DEBDIR"/*.deb; do
    printf '  %-28s %s\n' "$(dpkg-deb -f "$d" Package)" "$(dpkg-deb -f "$d" Version)"
done

"$TOP/scripts/deb/verify.sh"
