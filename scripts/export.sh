#!/usr/bin/env bash
# Rewrite patches/ from base..HEAD of build/qemu.  Byte-stable: the same
# commits give the same files (zeroed From hashes, no signature).
set -euo pipefail
. "$(dirname "$0")/common.sh"

out=$PATCHES
if [ "${1:-}" = "--to" ]; then
    out=$2
fi
[ -d "$TREE/.git" ] || die "no build/qemu; run 'make tree' first"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$TREE" -c core.abbrev=12 -c diff.noprefix=false -c diff.mnemonicPrefix=false \
    -c diff.renames=true -c format.signOff=false \
    format-patch -q --no-signature --zero-commit --diff-algorithm=myers \
    --abbrev=12 --no-numbered --encode-email-headers -o "$tmp" base..HEAD >/dev/null

mkdir -p "$out"
rm -f "$out"/*.patch
shopt -s nullglob
files=("$tmp"/*.patch)
[ ${#files[@]} -eq 0 ] || cp "${files[@]}" "$out"/
if [ "$out" = "$PATCHES" ]; then
    cat "$PATCHES"/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1 > "$TREE/.git/series-stamp"
    note "exported ${#files[@]} patches to patches/"
fi
