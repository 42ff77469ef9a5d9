#!/usr/bin/env bash
# Exit non-zero, and say what is missing, when build/qemu holds commits or
# edits that patches/ lacks.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if [ ! -d "$TREE/.git" ]; then
    echo "series-status: no build/qemu; patches/ is all there is"
    exit 0
fi

rc=0
dirty=$(git -C "$TREE" status --porcelain)
if [ -n "$dirty" ]; then
    echo "series-status: build/qemu has uncommitted changes or new files:"
    echo "$dirty" | head -n 20 | sed 's/^/    /'
    rc=1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$TOP/scripts/export.sh" --to "$tmp" >/dev/null
if ! diff -rq "$tmp" "$PATCHES" >/dev/null 2>&1; then
    echo "series-status: the commits base..HEAD of build/qemu differ from patches/:"
    diff -rq "$tmp" "$PATCHES" 2>&1 | sed -e "s|$tmp|build/qemu|g" -e "s|$PATCHES|patches|g" \
        -e 's/^/    /' | head -n 20
    echo "    run 'make export' and commit patches/"
    rc=1
fi
if [ $rc -eq 0 ]; then
    echo "series-status: patches/ holds all of build/qemu ($(git -C "$TREE" rev-list --count base..HEAD) commits)"
fi
exit $rc
