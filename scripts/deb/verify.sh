#!/usr/bin/env bash
# Checks of the qemu-system-x86 that `make deb` built, run on this host
# from the unpacked .debs (build/deb/extract): the local version, no
# vfio-sim-pci (CONFIG_VFIO_SIM stays off in Debian's configuration) in any
# binary or module, and vfio-pci's enable-migration and x-enable-migration.
# Run by scripts/deb/build.sh after the build; runnable on its own.
set -euo pipefail
. "$(dirname "$0")/../common.sh"

DEBDIR=$TOP/build/deb
X=$DEBDIR/extract
shopt -s nullglob

debs=("$DEBDIR"/qemu-system-x86_*.deb)
[ ${#debs[@]} -eq 1 ] || die "expected one qemu-system-x86 .deb in build/deb (make deb)"
ver=$(dpkg-deb -f "${debs[0]}" Version)
rm -rf "$X"
mkdir -p "$X"
for p in qemu-system-x86 qemu-system-common; do
    d=("$DEBDIR/${p}_"*.deb)
    [ ${#d[@]} -eq 1 ] || die "no $p .deb in build/deb"
    dpkg-deb -x "${d[0]}" "$X"
done

passed=0 failed=0
ok() { echo "PASS: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

bin=$X/usr/bin/qemu-system-x86_64
moddir=$(echo "$X"/usr/lib/*/qemu)
[ -x "$bin" ] || die "no usr/bin/qemu-system-x86_64 in the qemu-system-x86 .deb"
# The binary looks for its modules in the installed path; point it at the
# unpacked ones.  The host has the libraries (the Build-Depends).
run() { QEMU_MODULE_DIR=$moddir "$bin" "$@" 2>&1; }

out=$(run --version | head -n 1)
if grep -qF "(Debian $ver)" <<<"$out"; then
    ok "qemu-system-x86_64 --version: $out"
else
    bad "qemu-system-x86_64 --version does not name Debian $ver: $out"
fi

devs=$(run -device help || true)
if grep -q '^name "vfio-pci"' <<<"$devs"; then
    ok "-device help lists vfio-pci"
else
    bad "-device help does not list vfio-pci"
fi
if grep -q 'vfio-sim' <<<"$devs"; then
    bad "-device help lists $(grep -o '"vfio-sim[^"]*"' <<<"$devs" | head -n 1)"
else
    ok "-device help has no vfio-sim-pci ($(grep -c '^name ' <<<"$devs") devices)"
fi

props=$(run -device vfio-pci,help || true)
for p in enable-migration x-enable-migration; do
    line=$(grep -E "^  $p=" <<<"$props" || true)
    if [ -n "$line" ]; then
        ok "-device vfio-pci,help lists $p:${line#*=}"
    else
        bad "-device vfio-pci,help does not list $p"
    fi
done
if grep -E '^  enable-migration=' <<<"$props" | grep -q 'default: "auto"'; then
    ok "enable-migration defaults to auto"
else
    bad "enable-migration does not default to auto"
fi

# Every ELF file of the package and its modules, the microvm build and the
# i386 emulator included: no trace of the test device.
hits=()
nfiles=0
while IFS= read -r -d '' f; do
    head -c 4 "$f" | grep -q 'ELF' || continue
    nfiles=$((nfiles + 1))
    if strings -a "$f" | grep -q 'vfio-sim'; then
        hits+=("${f#"$X"/}")
    fi
done < <(find "$X" -type f -print0)
if [ ${#hits[@]} -eq 0 ]; then
    ok "strings: no vfio-sim in the $nfiles ELF files of qemu-system-x86 and qemu-system-common"
else
    bad "strings: vfio-sim in ${hits[*]}"
fi
for f in usr/bin/qemu-system-x86_64-microvm usr/libexec/qemu-system-i386; do
    if [ -x "$X/$f" ]; then ok "$f is in the package"; else bad "$f is missing"; fi
done

echo "deb verify: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
