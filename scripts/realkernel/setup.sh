#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Fetch and prepare what the real-kernel suite boots: Debian's newest 6.12
# bookworm kernel, mtty.ko built out of tree from that kernel's own source
# (stock, and a variant without DMA logging ops), busybox-static,
# Debian's stock QEMU 7.2 with the libraries this host lacks, and Debian
# 13's (trixie's) QEMU 10.0 with every library it loads, its glibc and
# ld.so included, and its SeaBIOS: the peer of the upgrade scenarios.
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
# PKG/trixie names trixie's package in $VERSIONS; its deb lies beside
# bookworm's (the file names differ by version).
deb_of() {
    local f p=${1%/trixie}
    f=$DEBS/${p}_${2/:/%3a}_$(dpkg --print-architecture).deb
    [ -f "$f" ] || f=$DEBS/${p}_${2/:/%3a}_all.deb
    echo "$f"
}

# Whether every deb of $VERSIONS is here: bookworm's entries, or with
# the argument trixie, trixie's (and there is at least one).
cached() {
    [ -s "$VERSIONS" ] || return 1
    local p v n=0
    while read -r p v; do
        case $p in
        */trixie) [ "${1:-}" = trixie ] || continue ;;
        *) [ -z "${1:-}" ] || continue ;;
        esac
        [ -f "$(deb_of "$p" "$v")" ] || return 1
        n=$((n + 1))
    done < "$VERSIONS"
    [ "$n" -gt 0 ]
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
    # Keep trixie's entries: they are resolved on their own below.
    grep '/trixie ' "$VERSIONS" >> "$VERSIONS.new" 2>/dev/null || true
    mv "$VERSIONS.new" "$VERSIONS"
    cached || die "apt-get download did not fetch every package of $VERSIONS"
fi

# Debian 13's QEMU, through an apt state of its own under $TAPT: a sources
# list with this machine's Debian entries moved to trixie, its own lists,
# archives and an empty dpkg status, so that the host's apt and dpkg never
# see trixie.  Every path is set with -o, which overrides apt.conf.d.
TAPT=$RK_CACHE/trixie-apt
tapt() {   # apt-get|apt-cache ARGS...
    local cmd=$1
    shift
    "$cmd" -o Dir::State="$TAPT/state" -o Dir::State::Lists="$TAPT/lists" \
        -o Dir::State::status="$TAPT/status" -o Dir::Cache="$TAPT/cache" \
        -o Dir::Cache::archives="$TAPT/archives" \
        -o Dir::Cache::pkgcache="$TAPT/cache/pkgcache.bin" \
        -o Dir::Cache::srcpkgcache="$TAPT/cache/srcpkgcache.bin" \
        -o Dir::Etc::sourcelist="$TAPT/sources.list" \
        -o Dir::Etc::sourceparts="$TAPT/sources.list.d" \
        -o Dir::Etc::preferences="$TAPT/preferences" \
        -o Dir::Etc::preferencesparts="$TAPT/preferences.d" \
        -o APT::Architectures="$(dpkg --print-architecture)" \
        -o Acquire::Languages=none "$@"
}

# The registry this machine's apt uses, read from /etc/apt now: every
# enabled deb entry of this release, with the release's name in its suites
# (bookworm, bookworm-updates, bookworm-security) changed to trixie.
trixie_sources() {
    local cn f
    cn=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$cn" ] || die "cannot tell the Debian release from /etc/os-release"
    rm -rf "$TAPT/sources.list.d" "$TAPT/preferences.d"
    mkdir -p "$TAPT/sources.list.d" "$TAPT/preferences.d" "$TAPT/state" \
        "$TAPT/lists/partial" "$TAPT/cache" "$TAPT/archives/partial"
    : > "$TAPT/status"
    : > "$TAPT/sources.list"
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        awk -v cn="$cn" 'BEGIN { RS = ""; ORS = "\n" }
            /(^|\n)Types:[^\n]*deb([ \t]|\n|$)/ && $0 ~ ("Suites:[^\n]*" cn) &&
            !/(^|\n)Enabled:[ \t]*no/ {
                n = split($0, l, "\n")
                for (i = 1; i <= n; i++) {
                    if (l[i] ~ /^#/) continue
                    if (l[i] ~ /^Types:/) l[i] = "Types: deb"
                    if (l[i] ~ /^Suites:/) gsub(cn, "trixie", l[i])
                    print l[i]
                }
                print ""
            }' "$f"
    done > "$TAPT/sources.list.d/trixie.sources"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -En "s/^(deb([ \t]+\[[^]]*\])?[ \t]+[^ \t]+[ \t]+)$cn/\1trixie/p" "$f"
    done > "$TAPT/sources.list"
    shopt -u nullglob
    [ -s "$TAPT/sources.list.d/trixie.sources" ] || [ -s "$TAPT/sources.list" ] ||
        die "no enabled apt source for '$cn' to derive trixie's from"
}

# The shared-library packages (Section: libs) that PKG needs, recursively,
# as trixie's apt sees them: trixie's QEMU runs on nothing of the host's.
# One apt-cache call per level of the tree, each of which reads all lists.
trixie_libs() {   # PKG...
    local todo=("$@") seen=" $* " next p sec deps dep
    while [ ${#todo[@]} -gt 0 ]; do
        next=()
        while read -r p sec deps; do
            case " $* " in
            *" $p "*) ;;
            *) case $sec in libs|*/libs) echo "$p" ;; *) continue ;; esac ;;
            esac
            for dep in ${deps//,/ }; do
                case "$seen" in *" $dep "*) continue ;; esac
                seen="$seen$dep "
                next+=("$dep")
            done
        done < <(tapt apt-cache show --no-all-versions "${todo[@]}" 2>/dev/null | awk '
            /^Package:/ {p = $2; s = ""; d = ""}
            /^Section:/ {s = $2}
            /^(Pre-)?Depends:/ {sub(/^[^:]*: /, ""); d = d "," $0}
            /^$/ && p != "" {
                n = split(d, a, ",")
                out = ""
                for (i = 1; i <= n; i++) {
                    sub(/\|.*/, "", a[i]); gsub(/\([^)]*\)|:any|[ \t]/, "", a[i])
                    if (a[i] != "") out = out "," a[i]
                }
                print p, s, (out == "" ? "," : out)
                p = ""
            }')
        todo=("${next[@]}")
    done
}

trixie_resolve() {
    local p v
    trixie_sources
    tapt apt-get update -q >/dev/null || die "apt-get update of trixie's lists failed"
    for p in qemu-system-x86 seabios $(trixie_libs qemu-system-x86); do
        v=$(tapt apt-cache policy "$p" | sed -n 's/^ *Candidate: //p')
        if [ -z "$v" ] || [ "$v" = "(none)" ]; then
            die "$p is not in trixie's package registry"
        fi
        echo "$p/trixie $v"
    done > "$VERSIONS.trixie"
}


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
mapfile -t QLIBS < <(awk '$1 ~ /^lib/ && $1 !~ /\/trixie$/ {print $1}' "$VERSIONS")
unpack "$RK_CACHE/debian-qemu-${QV/:/_}" qemu-system-x86 qemu-system-common "${QLIBS[@]}"

# Where trixie's packages are unpacked, once $VERSIONS names them.
trixie_dir() { echo "$RK_CACHE/trixie-$(ver qemu-system-x86/trixie | tr : _)"; }

# trixie's QEMU, run through trixie's own ld.so with trixie's libraries
# only: every library it loads must resolve inside the tree (ld.so falls
# back to the host's directories for one that does not), and it must be
# 10.0, the QEMU of Debian 13.  Run in a subshell: when trixie cannot be
# had here, only its scenarios are skipped (TRIXIE_MISSING says why).
trixie_setup() {
    local want tpkgs tlibdir tld tlibs tver TRIXIE
    if ! cached trixie; then
        trixie_resolve
        note "realkernel: downloading $(wc -l < "$VERSIONS.trixie") trixie packages into $DEBS"
        mapfile -t want < <(awk '{sub("/trixie", "", $1); print $1 "=" $2}' "$VERSIONS.trixie")
        (cd "$DEBS" && tapt apt-get download -q "${want[@]}" 2>&1 |
            grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
        { grep -v '/trixie ' "$VERSIONS"; cat "$VERSIONS.trixie"; } > "$VERSIONS.new"
        mv "$VERSIONS.new" "$VERSIONS"
        rm -f "$VERSIONS.trixie" "$TAPT"/cache/*.bin
        cached trixie || die "apt-get download did not fetch every trixie package of $VERSIONS"
    fi
    TRIXIE=$(trixie_dir)
    mapfile -t tpkgs < <(awk '$1 ~ /\/trixie$/ {print $1}' "$VERSIONS")
    unpack "$TRIXIE" "${tpkgs[@]}"
    tlibdir=$TRIXIE/usr/lib/x86_64-linux-gnu
    tld=$tlibdir/ld-linux-x86-64.so.2
    [ -x "$tld" ] || die "no ld.so in trixie's libc6 ($tld)"
    tlibs=$("$tld" --library-path "$tlibdir" --list "$TRIXIE/usr/bin/qemu-system-x86_64") ||
        die "trixie's ld.so cannot load its QEMU: $tlibs"
    if grep -q 'not found' <<<"$tlibs" ||
       awk -v d="$tlibdir/" '/=>/ && index($3, d) != 1 {bad = 1} END {exit !bad}' <<<"$tlibs"; then
        die "trixie's QEMU needs libraries from outside trixie's packages:" \
            "$(grep '=>' <<<"$tlibs" | grep -v "=> $tlibdir/" | tr -s ' \t\n' ' ')"
    fi
    tver=$("$tld" --library-path "$tlibdir" "$TRIXIE/usr/bin/qemu-system-x86_64" --version |
           head -n 1)
    case $tver in
    "QEMU emulator version 10.0."*) ;;
    *) die "trixie's qemu-system-x86 $(ver qemu-system-x86/trixie) is not QEMU 10.0: $tver" ;;
    esac
}
TRIXIE_MISSING=
set +e
(set -e; trixie_setup) 2> "$RK_CACHE/trixie-setup.log"
rc=$?
set -e
TRIXIE=$(trixie_dir)
grep '^==>' "$RK_CACHE/trixie-setup.log" >&2 || true
if [ "$rc" -ne 0 ]; then
    TRIXIE_MISSING=$(grep '^error: ' "$RK_CACHE/trixie-setup.log" | tail -n 1)
    TRIXIE_MISSING="trixie's QEMU: ${TRIXIE_MISSING:-$(tail -n 1 "$RK_CACHE/trixie-setup.log")}"
    note "realkernel: $TRIXIE_MISSING; its scenarios will be skipped"
    TRIXIE=
fi

echo "realkernel: packages used:"
sed 's/^/    /' "$VERSIONS"

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
TRIXIE=$TRIXIE
TRIXIE_VERSION=$(ver qemu-system-x86/trixie)
TRIXIE_MISSING=$TRIXIE_MISSING
EOF
