# Shared settings for the series scripts.  Sourced, not run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TREE=${SERIES_TREE:-$TOP/build/qemu}
OBJ=${SERIES_OBJ:-$TOP/build/obj}
PATCHES=$TOP/patches
CACHE=${QEMU_SERIES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-vfio-series}

# Fixed identity and dates, so that the base commit and exported patches
# are byte-stable from one machine to the next.
BASE_IDENT_NAME="QEMU 7.2 base"
BASE_IDENT_EMAIL="base@qemu-vfio-series.invalid"
BASE_DATE="2022-12-14T00:00:00+00:00"

die() { echo "error: $*" >&2; exit 1; }
note() { echo "==> $*" >&2; }

# Run a command as root: directly, or through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root or sudo to run: $*"
    fi
}
