#!/usr/bin/env bash
# Install, with apt-get, whatever the build, the checks and the demo need
# and is missing.  Says what it installs.
set -euo pipefail
. "$(dirname "$0")/common.sh"

PKGS=(
    build-essential git dpkg-dev pkg-config python3 python3-venv
    meson ninja-build flex bison ccache
    libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev
    seabios ipxe-qemu qemu-system-data
    python3-sphinx python3-sphinx-rtd-theme
    gnuplot-nox
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libelf1 libssl3 xz-utils
)
PKGS+=(${EXTRA_PKGS:-})

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#PKGS[@]} packages present"
    exit 0
fi

note "installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -q >/dev/null
as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
