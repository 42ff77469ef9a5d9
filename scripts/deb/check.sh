#!/usr/bin/env bash
# make check-deb: install the .debs of `make deb` with apt in a clean
# bookworm root and check them there (chroot).
#
#   check.sh [--keep] [--prepare]
#
# The root: mmdebstrap --variant=apt of bookworm from this machine's own
# apt sources, made once and cached as a tarball in $CACHE/deb-check/, and
# unpacked anew into build/deb/root for every run.  In it, apt installs
# every .deb of build/deb (`apt-get install ./x.deb`; what they depend on
# comes from Debian, qemu-system-data and the firmware packages among it),
# then the checks run inside it with chroot, and the real-kernel suite runs
# with the installed QEMU (rig.py --l2-root).  Ends with
# "N passed, N failed, N skipped" and exits non-zero on a failure.
# --keep leaves build/deb/root in place (it is removed otherwise);
# --prepare only makes the cached root.
set -euo pipefail
. "$(dirname "$0")/../common.sh"

DEBDIR=$TOP/build/deb
ROOT=$DEBDIR/root
ROOTCACHE=$CACHE/deb-check
TARBALL=$ROOTCACHE/bookworm-apt.tar

keep=
prepare=
for a in "$@"; do
    case "$a" in
    --keep) keep=1 ;;
    --prepare) prepare=1 ;;
    *) die "unknown option $a (check.sh [--keep] [--prepare])" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "make check-deb runs as root (mmdebstrap, chroot)"
shopt -s nullglob

start=$SECONDS
passed=0 failed=0 skipped=0
ok() { echo "PASS: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }
summary() {
    echo "check-deb: $((SECONDS - start)) s"
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}

# The apt sources of the root: this machine's enabled bookworm "deb"
# entries, deb822 or one-line, so that it uses the same registry.
root_sources() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
            /(^|\n)Types:[ \t]*deb[ \t]*\n/ && /Suites:[^\n]*bookworm/ &&
            !/(^|\n)Enabled:[ \t]*no/ { print }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" && /bookworm/' "$f"
    done
}

unmount_root() {
    if mountpoint -q "$ROOT/proc" 2>/dev/null; then
        umount "$ROOT/proc" || umount -l "$ROOT/proc"
    fi
}
cleanup() {
    unmount_root
    if [ -z "$keep" ] && [ -d "$ROOT" ]; then
        rm -rf "$ROOT"
    fi
}

# 1. The cached clean root.
if [ ! -s "$TARBALL" ]; then
    mkdir -p "$ROOTCACHE"
    src=$(mktemp)
    root_sources > "$src"
    [ -s "$src" ] || die "no enabled bookworm apt source on this machine to make the root from"
    if grep -q '^Types:' "$src"; then mv "$src" "$src.sources"; src=$src.sources
    else mv "$src" "$src.list"; src=$src.list; fi
    note "making a clean bookworm root with mmdebstrap (variant apt), cached in $TARBALL"
    mmdebstrap --quiet --format=tar --variant=apt --include=debian-archive-keyring \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        bookworm "$TARBALL.tmp" "$src" ||
        { rm -f "$src" "$TARBALL.tmp"; die "mmdebstrap failed"; }
    rm -f "$src"
    mv "$TARBALL.tmp" "$TARBALL"
fi

[ -z "$prepare" ] || { echo "check-deb: clean root cached in $TARBALL"; exit 0; }

# Every package built, without the -dbgsym ones (debug symbols).
debs=()
for d in "$DEBDIR"/*.deb; do
    case "$d" in *-dbgsym_*) ;; *) debs+=("$d") ;; esac
done
[ ${#debs[@]} -gt 0 ] || die "no .deb in build/deb: run 'make deb' first"
x86=("$DEBDIR"/qemu-system-x86_*.deb)
[ ${#x86[@]} -eq 1 ] || die "expected one qemu-system-x86 .deb in build/deb"
ver=$(dpkg-deb -f "${x86[0]}" Version)

unmount_root
rm -rf "$ROOT"
mkdir -p "$ROOT"
trap cleanup EXIT
tar -xf "$TARBALL" -C "$ROOT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# No service starts inside the root (qemu-guest-agent's postinst).
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root "$@"; }
ok "clean bookworm root: $(in_root cat /etc/debian_version), $(in_root dpkg-query -W -f='.\n' | wc -l) packages (mmdebstrap --variant=apt)"

# 2. apt install ./x.deb of every built package.
mkdir -p "$ROOT/srv/debs"
cp "${debs[@]}" "$ROOT/srv/debs/"
chmod 0755 "$ROOT/srv/debs"
chmod 0644 "$ROOT"/srv/debs/*.deb
names=()
for d in "${debs[@]}"; do names+=("/srv/debs/$(basename "$d")"); done
note "apt-get install in the root: ${names[*]##*/}"
if in_root apt-get update -q > "$DEBDIR/check-apt.log" 2>&1 &&
   in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
       --no-install-recommends "${names[@]}" >> "$DEBDIR/check-apt.log" 2>&1; then
    ok "apt-get install of ${#names[@]} .debs (and $(grep -c '^Setting up' "$DEBDIR/check-apt.log") packages set up; log build/deb/check-apt.log)"
else
    tail -n 20 "$DEBDIR/check-apt.log" >&2
    bad "apt-get install of the .debs failed (log: build/deb/check-apt.log)"
    summary
    exit 1
fi
for d in "${debs[@]}"; do
    p=$(dpkg-deb -f "$d" Package)
    v=$(dpkg-deb -f "$d" Version)
    got=$(in_root dpkg-query -W -f='${db:Status-Status} ${Version}' "$p" 2>/dev/null || true)
    if [ "$got" = "installed $v" ]; then
        ok "$p $v installed"
    else
        bad "$p: expected installed $v, dpkg says '$got'"
    fi
done
data=$(in_root dpkg-query -W -f='${Version}' qemu-system-data 2>/dev/null || true)
echo "    (qemu-system-data $data from Debian, as qemu-system-x86 needs it at >> 7.2+dfsg~)"

# 3. The checks inside the root.
q=/usr/bin/qemu-system-x86_64
out=$(in_root $q --version 2>&1 | head -n 1 || true)
if grep -qF "(Debian $ver)" <<<"$out"; then
    ok "qemu-system-x86_64 --version: $out"
else
    bad "qemu-system-x86_64 --version does not show $ver: $out"
fi
out=$(in_root qemu-img --version 2>&1 | head -n 1 || true)
if grep -qF "(Debian $ver)" <<<"$out"; then
    ok "qemu-img --version: $out"
else
    bad "qemu-img --version does not show $ver: $out"
fi

props=$(in_root $q -device vfio-pci,help 2>&1 || true)
for p in enable-migration x-enable-migration; do
    line=$(grep -E "^  $p=" <<<"$props" || true)
    if [ -n "$line" ]; then
        ok "-device vfio-pci,help lists $p:${line#*=}"
    else
        bad "-device vfio-pci,help does not list $p"
    fi
done

devs=$(in_root $q -device help 2>&1 || true)
if ! grep -q '^name "vfio-pci"' <<<"$devs"; then
    bad "-device help does not list vfio-pci (output: $(head -c 200 <<<"$devs"))"
elif grep -q 'vfio-sim' <<<"$devs"; then
    bad "-device help lists $(grep -o '"vfio-sim[^"]*"' <<<"$devs" | head -n 1)"
else
    ok "-device help lists vfio-pci and no vfio-sim-pci ($(grep -c '^name ' <<<"$devs") devices)"
fi

# An old command line: x-enable-migration=on must still parse.  Without a
# host device the device fails to realize; the error must be about the
# device, not about an unknown property.
oldcmd=($q -nodefaults -display none -machine pc -accel tcg
        -device vfio-pci,sysfsdev=/nonexistent,x-enable-migration=on)
rc=0
err=$(in_root timeout 60 "${oldcmd[@]}" 2>&1) || rc=$?
echo "    \$ ${oldcmd[*]}"
sed 's/^/    | /' <<<"$err"
if [ $rc -eq 0 ]; then
    bad "x-enable-migration=on without a host device: QEMU did not fail"
elif [ $rc -eq 124 ]; then
    bad "x-enable-migration=on without a host device: QEMU did not exit in 60 s"
elif grep -qiE "not found|invalid parameter|unknown|is not a valid" <<<"$err"; then
    bad "x-enable-migration=on: the property was refused (exit $rc)"
elif grep -q '/nonexistent' <<<"$err"; then
    ok "x-enable-migration=on parses; QEMU fails on the missing device (exit $rc)"
else
    bad "x-enable-migration=on: QEMU failed (exit $rc) without naming the device"
fi
if grep -qi 'deprecated' <<<"$err"; then
    ok "x-enable-migration=on prints a deprecation warning"
else
    bad "x-enable-migration=on prints no deprecation warning"
fi

# The same with the new property, for comparison: the same device error.
rc=0
err2=$(in_root timeout 60 $q -nodefaults -display none -machine pc -accel tcg \
       -device vfio-pci,sysfsdev=/nonexistent,enable-migration=on 2>&1) || rc=$?
if [ $rc -ne 0 ] && grep -q '/nonexistent' <<<"$err2" &&
   ! grep -qiE "not found|invalid parameter" <<<"$err2"; then
    ok "enable-migration=on parses; QEMU fails on the missing device (exit $rc)"
else
    bad "enable-migration=on: unexpected result (exit $rc): $err2"
fi

news=$(in_root zcat /usr/share/doc/qemu-system-x86/NEWS.Debian.gz 2>/dev/null | head -n 1 || true)
if grep -qF "($ver)" <<<"$news"; then
    ok "NEWS.Debian of qemu-system-x86 starts with $ver"
else
    bad "NEWS.Debian of qemu-system-x86 does not start with $ver: $news"
fi

# 4. The real-kernel suite (scripts/realkernel) with the package's QEMU,
# run with the root's ld.so, libraries, TCG module and SeaBIOS, as L1 and as
# the L2 QEMU of every mtty scenario.  Its counts are added to ours.
note "the real-kernel suite with the package's qemu-system-x86_64 as L1 and L2"
rk=$TOP/scripts/realkernel
rc=0
"$rk/setup.sh" 2> "$DEBDIR/check-realkernel-setup.log" || rc=$?
if [ $rc -eq 2 ]; then
    skip "real-kernel suite: $(tail -n 1 "$DEBDIR/check-realkernel-setup.log")"
elif [ $rc -ne 0 ]; then
    tail -n 20 "$DEBDIR/check-realkernel-setup.log" >&2
    bad "real-kernel suite: setup.sh failed (log: build/deb/check-realkernel-setup.log)"
else
    counts=$(mktemp)
    python3 -u "$rk/rig.py" "$CACHE/realkernel/assets.env" - "$counts" \
        --l2-root "$ROOT" | tee "$DEBDIR/check-realkernel.log" || true
    if [ -s "$counts" ]; then
        read -r p f s < "$counts"
        passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    else
        bad "real-kernel suite: rig.py ended without counts"
    fi
    rm -f "$counts"
    l2=$(sed -n 's/^     | L2 QEMU: //p' "$DEBDIR/check-realkernel.log")
    if grep -qF "(Debian $ver)" <<<"$l2"; then
        ok "the real-kernel suite ran the package's QEMU: $l2"
    else
        bad "the real-kernel suite did not run the package's QEMU (L2: ${l2:-unknown})"
    fi
fi

summary
