#!/usr/bin/env bash
# Install what `make deb` and `make check-deb` need and is missing: the
# Build-Depends of Debian's qemu source package for an arch-only build
# (apt-get build-dep --arch-only on the unpacked tree, so the list is
# Debian's own, minus Build-Depends-Indep: the cross compilers of the
# firmware in qemu-system-data, which this build does not make), plus the
# tools of the packaging steps; with --check, what check-deb needs.
# Says what it installs.
set -euo pipefail
. "$(dirname "$0")/../common.sh"

# check-deb (--check) needs only Debian's tool for a clean bookworm root.
if [ "${1:-}" = --check ]; then
    TOOLS=(mmdebstrap)
else
    TOOLS=(build-essential dpkg-dev debhelper quilt ccache)
fi

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${TOOLS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "deb deps: installing missing tools: ${missing[*]}"
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "${1:-}" = --check ] && { echo "deb deps: mmdebstrap present"; exit 0; }

base=$("$TOP/scripts/get-base.sh")
if (cd "$base" && dpkg-checkbuilddeps -B >/dev/null 2>&1); then
    echo "deb deps: tools and qemu's arch-only Build-Depends present"
    exit 0
fi
unmet=$(cd "$base" && dpkg-checkbuilddeps -B 2>&1 | sed -n 's/.*Unmet build dependencies: //p' || true)
note "deb deps: qemu's Build-Depends missing here: $unmet"
note "deb deps: apt-get build-dep --arch-only on $base"
as_root apt-get update -q >/dev/null
as_root apt-get build-dep -y -q --arch-only --no-install-recommends "$base"
(cd "$base" && dpkg-checkbuilddeps -B) || die "Build-Depends still unmet after apt-get build-dep"
