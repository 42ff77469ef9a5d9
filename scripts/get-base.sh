#!/usr/bin/env bash
# Obtain the QEMU 7.2 source the series applies to, and print its path.
#
# Default: Debian's source package "qemu", fetched with apt and unpacked
# with Debian's own patches applied (dpkg-source -x).  The deb-src entry is
# derived from the machine's own apt sources.  QEMU_SRC=<dir|tarball>
# uses a 7.2.x tree or tarball of the user's instead.
#
# Everything is cached under $CACHE, so a second run is offline.
set -euo pipefail
. "$(dirname "$0")/common.sh"

mkdir -p "$CACHE"

check_version() {
    local tree=$1 v
    [ -f "$tree/VERSION" ] || die "$tree has no VERSION file: not a QEMU tree"
    v=$(cat "$tree/VERSION")
    case "$v" in
    7.2|7.2.*) ;;
    *) die "$tree is QEMU $v; the series applies to QEMU 7.2.x only" ;;
    esac
    echo "$v"
}

# Write a deb-src twin of every enabled deb entry for this release.
add_deb_src() {
    local codename out=/etc/apt/sources.list.d/qemu-vfio-series-src.sources
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "cannot tell the Debian release from /etc/os-release"
    local tmp
    tmp=$(mktemp)
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        [ "$f" = "$out" ] && continue
        awk -v cn="$codename" 'BEGIN { RS = ""; ORS = "\n\n" }
            /(^|\n)Types:[ \t]*deb[ \t]*\n/ && $0 ~ ("Suites:[^\n]*" cn) &&
            !/(^|\n)Enabled:[ \t]*no/ {
                sub(/Types:[ \t]*deb[ \t]*\n/, "Types: deb-src\n"); print
            }' "$f" >> "$tmp"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v cn="$codename" '$1 == "deb" && $0 ~ cn {
                $1 = ""; sub(/^ /, "");
                printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", $1, $2;
                for (i = 3; i <= NF; i++) printf " %s", $i; printf "\n\n"
            }' "$f" >> "$tmp"
    done
    [ -s "$tmp" ] || die "no enabled apt source for '$codename' to derive a deb-src entry from"
    note "adding deb-src entries derived from this machine's apt sources ($out)"
    as_root install -m 0644 "$tmp" "$out"
    rm -f "$tmp"
    as_root apt-get update -q >/dev/null
}

has_src() {
    local out
    out=$(apt-cache showsrc qemu 2>/dev/null || true)
    grep -q '^Version: 1:7\.2' <<<"$out"
}

from_debian() {
    local dl=$CACHE/debian dsc
    mkdir -p "$dl"
    dsc=$(ls "$dl"/qemu_7.2*.dsc 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$dsc" ]; then
        if ! has_src; then
            add_deb_src
        fi
        has_src || die "apt offers no qemu 7.2 source package (apt-cache showsrc qemu)"
        note "fetching Debian's qemu source package into $dl"
        (cd "$dl" && apt-get source --download-only -q qemu 2>&1 |
            grep -v -e '^NOTICE' -e 'salsa' -e '^Please use' -e 'git clone' -e '^to retrieve' -e '^$' -e 'unsandboxed' >&2 || true)
        dsc=$(ls "$dl"/qemu_7.2*.dsc 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$dsc" ] || die "apt-get source did not produce a qemu 7.2 .dsc"
    fi
    local debver
    debver=$(sed -n 's/^Version: //p' "$dsc" | head -n 1)
    local tree=$CACHE/base-debian-${debver//:/_}
    if [ ! -f "$tree/.unpacked" ]; then
        rm -rf "$tree"
        note "unpacking $(basename "$dsc") with Debian's patches applied"
        dpkg-source --no-check -q -x "$dsc" "$tree" >/dev/null
        rm -rf "$tree/.pc"
        echo "debian $debver" > "$tree/.unpacked"
    fi
    echo "$tree"
}

from_user() {
    local src=$1
    if [ -d "$src" ]; then
        (cd "$src" && pwd)
        return
    fi
    [ -f "$src" ] || die "QEMU_SRC=$src is neither a directory nor a tarball"
    local sum tree
    sum=$(sha256sum "$src" | cut -c1-16)
    tree=$CACHE/base-user-$sum
    if [ ! -f "$tree/.unpacked" ]; then
        rm -rf "$tree"
        mkdir -p "$tree"
        note "unpacking $src"
        tar -xf "$src" -C "$tree" --strip-components=1
        echo "user $(basename "$src")" > "$tree/.unpacked"
    fi
    echo "$tree"
}

if [ -n "${QEMU_SRC:-}" ]; then
    tree=$(from_user "$QEMU_SRC")
    origin="QEMU_SRC=$QEMU_SRC"
else
    tree=$(from_debian)
    origin="Debian source package qemu $(cut -d' ' -f2 "$tree/.unpacked")"
fi
ver=$(check_version "$tree")
echo "$origin (QEMU $ver)" > "$CACHE/last-base"
echo "$tree"
