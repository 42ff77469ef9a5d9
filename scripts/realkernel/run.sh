#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The real-kernel suite: the series' QEMU against Linux's own mtty driver
# on Debian's 6.12 kernel, in an L1 guest booted under TCG (see rig.py and
# l1.py).  Prints one line per scenario and "N passed, N failed, N skipped";
# exits non-zero on any failure.
#
# usage: run.sh [--tally FILE] [--only NAME,...]
#   --tally FILE   add the counts to FILE ("passed failed skipped")
#   --only LIST    run only these scenarios (names as printed)
#
# Environment: QEMU_SERIES_CACHE (downloads and builds), SERIES_OBJ (the
# build directory), REALKERNEL_TIMEOUT (seconds for the L1 run, default 600).

set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../common.sh"

tally=
only=()
while [ $# -gt 0 ]; do
    case $1 in
    --tally) tally=$2; shift 2 ;;
    --only) only=(--only "$2"); shift 2 ;;
    *) die "usage: $0 [--tally FILE] [--only NAME,...]" ;;
    esac
done

passed=0 failed=0 skipped=0
finish() {
    echo "$passed passed, $failed failed, $skipped skipped"
    if [ -n "$tally" ]; then
        local p=0 f=0 s=0
        [ -s "$tally" ] && read -r p f s < "$tally"
        echo "$((p + passed)) $((f + failed)) $((s + skipped))" > "$tally"
    fi
    [ "$failed" -eq 0 ]
    exit
}

start=$SECONDS
mkdir -p "$CACHE"
"$HERE/setup.sh" 2> "$CACHE/realkernel-setup.log"
rc=$?
grep '^==>' "$CACHE/realkernel-setup.log" >&2
case $rc in
0) ;;
2) echo "SKIP realkernel: $(tail -n 1 "$CACHE/realkernel-setup.log")"
   skipped=1; finish ;;
*) echo "FAIL realkernel-setup: $(grep -v '^==>' "$CACHE/realkernel-setup.log" | tail -n 1)"
   sed 's/^/     | /' "$CACHE/realkernel-setup.log" | tail -n 20
   failed=1; finish ;;
esac

qemu=$OBJ/qemu-system-x86_64
if [ ! -x "$qemu" ]; then
    echo "FAIL realkernel: the series' QEMU is not built ($qemu)"
    failed=1; finish
fi

# rig.py kills L1 when it is signalled: pass our own signals on to it.
counts=$(mktemp)
python3 -u "$HERE/rig.py" "$CACHE/realkernel/assets.env" "$qemu" "$counts" "${only[@]}" &
rig=$!
trap 'kill "$rig" 2>/dev/null; wait "$rig"; rm -f "$counts"; exit 1' INT TERM HUP
wait "$rig"
trap - INT TERM HUP
counted=
if [ -s "$counts" ]; then
    read -r passed failed skipped < "$counts"
    counted=1
fi
rm -f "$counts"
if [ -z "$counted" ]; then
    echo "FAIL realkernel: rig.py ended without counts"
    failed=$((failed + 1))
fi
echo "realkernel: $((SECONDS - start)) s" >&2
finish
