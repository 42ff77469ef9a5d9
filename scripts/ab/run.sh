#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The A/B suite: guests without a VFIO device migrate the same with the
# series as with QEMU 7.2 (the rules are in ab.py's docstring and
# printed by each run).  Builds 7.2 with the series' TCG dirty sync fix
# when needed (build-base.sh), prepares
# the guest (the real-kernel suite's kernel and busybox, dirtier.c), runs
# every scenario with both binaries and prints one line per scenario and
# "N passed, N failed, N skipped"; exits non-zero on any failure.
#
# usage: run.sh [--tally FILE] [--only NAME,...]
#   --tally FILE   add the counts to FILE ("passed failed skipped")
#   --only LIST    run only these scenarios (names without "ab-")
#
# Environment: QEMU_SERIES_CACHE (downloads), SERIES_OBJ (the series'
# build directory), AB_SERIES_QEMU (the binary that plays the series;
# e.g. build/obj-base/qemu-system-x86_64 runs 7.2 against itself),
# AB_JSON (write every record there; default build/ab/last.json).

set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../common.sh"

tally=
only=()
while [ $# -gt 0 ]; do
    case $1 in
    --tally) tally=$2; shift 2 ;;
    --only) only=(--only "${2//ab-/}"); shift 2 ;;
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

# A skip names every scenario it skips, with the reason.
skip_all() {
    local n
    for n in $(python3 "$HERE/ab.py" --list "${only[@]}"); do
        echo "SKIP ab-$n: $*"
        skipped=$((skipped + 1))
    done
    finish
}

start=$SECONDS
mkdir -p "$CACHE" "$TOP/build/ab"

series=${AB_SERIES_QEMU:-$OBJ/qemu-system-x86_64}
if [ ! -x "$series" ]; then
    echo "FAIL ab: the series' QEMU is not built ($series)"
    failed=1; finish
fi

if ! "$HERE/build-base.sh" 2> "$TOP/build/ab/build-base.log"; then
    echo "FAIL ab-build-base: $(grep -v '^==>' "$TOP/build/ab/build-base.log" | tail -n 1)"
    sed 's/^/     | /' "$TOP/build/ab/build-base.log" | tail -n 20
    failed=1; finish
fi
grep '^==>' "$TOP/build/ab/build-base.log" >&2
base=$TOP/build/obj-base/qemu-system-x86_64

if ! command -v gcc >/dev/null 2>&1; then
    skip_all "no gcc on this host to build the guest's dirtier"
fi

# The guest's kernel and busybox: the real-kernel suite's downloads
"$TOP/scripts/realkernel/setup.sh" 2> "$CACHE/ab-setup.log" > /dev/null
rc=$?
grep '^==>' "$CACHE/ab-setup.log" >&2
case $rc in
0) ;;
2) skip_all "$(tail -n 1 "$CACHE/ab-setup.log")" ;;
*) echo "FAIL ab-setup: $(grep -v '^==>' "$CACHE/ab-setup.log" | tail -n 1)"
   sed 's/^/     | /' "$CACHE/ab-setup.log" | tail -n 20
   failed=1; finish ;;
esac

# ab.py kills its QEMUs when it is signalled: pass our own signals on.
counts=$(mktemp)
python3 -u "$HERE/ab.py" "$CACHE/realkernel/assets.env" "$base" "$series" \
    --counts "$counts" --json "${AB_JSON:-$TOP/build/ab/last.json}" "${only[@]}" &
ab=$!
trap 'kill "$ab" 2>/dev/null; wait "$ab"; rm -f "$counts"; exit 1' INT TERM HUP
wait "$ab"
trap - INT TERM HUP
counted=
if [ -s "$counts" ]; then
    read -r passed failed skipped < "$counts"
    counted=1
fi
rm -f "$counts"
if [ -z "$counted" ]; then
    echo "FAIL ab: ab.py ended without counts"
    failed=$((failed + 1))
fi
echo "ab: $((SECONDS - start)) s" >&2
finish
