#!/usr/bin/env bash
# The project's checks, in order: checkpatch on every patch of the series,
# a full build, the series' own qtests and unit tests, the base tree's whole
# migration-test, the real-kernel, A/B and libvirt suites.  Ends with
# "N passed, N failed, N skipped".
set -uo pipefail
. "$(dirname "$0")/common.sh"

TALLY=$(mktemp)
trap 'rm -f "$TALLY"' EXIT
echo "0 0 0" > "$TALLY"

count() {   # count pass|fail|skip
    local p f s
    read -r p f s < "$TALLY"
    case $1 in
    pass) p=$((p + 1)) ;;
    fail) f=$((f + 1)) ;;
    skip) s=$((s + 1)) ;;
    esac
    echo "$p $f $s" > "$TALLY"
}

finish() {
    local p f s
    read -r p f s < "$TALLY"
    echo
    echo "make check: $((SECONDS / 60))m$((SECONDS % 60))s"
    echo "$p passed, $f failed, $s skipped"
    [ "$f" -eq 0 ]
    exit $?
}

# A section's heading, with the time spent so far (the cold run's budget)
section() { note "$* (at $((SECONDS / 60))m$((SECONDS % 60))s)"; }

"$TOP/scripts/materialize.sh" || { count fail; finish; }

section "checkpatch on every patch of the series"
shopt -s nullglob
for p in "$PATCHES"/*.patch; do
    if out=$("$TREE/scripts/checkpatch.pl" --no-signoff -q "$p" 2>&1); then
        echo "PASS checkpatch $(basename "$p")"
        count pass
    else
        echo "FAIL checkpatch $(basename "$p")"
        echo "$out" | sed 's/^/     | /'
        count fail
    fi
done

section "full build"
if "$TOP/scripts/build.sh" > "$OBJ.log" 2>&1; then
    echo "PASS build (log: build/obj.log)"
    count pass
else
    echo "FAIL build"
    grep -E -B2 -A8 'error|FAILED' "$OBJ.log" | head -n 60 | sed 's/^/     | /'
    count fail
    finish
fi

export QTEST_QEMU_BINARY=$OBJ/qemu-system-x86_64
if [ ! -w /dev/kvm ]; then
    echo "note: /dev/kvm is not usable here: qtests run under TCG"
fi

# The test binaries of the files the series adds that match $1 (build
# path = source path), each given $2 seconds
run_series_tests() {
    local t bin any=''
    for t in $(git -C "$TREE" diff --name-only --diff-filter=A base..HEAD -- "$1"); do
        any=1
        bin=$OBJ/$(dirname "$t")/$(basename "$t" .c)
        if [ ! -x "$bin" ]; then
            echo "FAIL $(basename "$bin"): not built"
            count fail
            continue
        fi
        "$TOP/scripts/tap-run.py" "$TALLY" "$2" "$bin"
    done
    [ -n "$any" ] || echo "(the series adds none yet)"
}

section "the series' own qtests"
run_series_tests 'tests/qtest/*-test.c' 1200

section "the series' own unit tests"
run_series_tests 'tests/unit/test-*.c' 300

# The base tree's whole migration-test: the series runs every migration
# of every guest (SERIES_MIGRATION_ARGS: e.g. -p PATH)
section "the base tree's migration-test, all of it"
"$TOP/scripts/tap-run.py" "$TALLY" 1200 "$OBJ/tests/qtest/migration-test" \
    ${SERIES_MIGRATION_ARGS:-}

section "fuzz: the destination's VFIO section parser, the fixed-seed quick slice (scripts/fuzz)"
python3 "$TOP/scripts/fuzz/fuzz.py" --quick --no-save \
    --binary "$OBJ/qemu-system-x86_64" --tally "$TALLY" || true

section "soak: one VM migrated back and forth, some migrations cancelled half-way (scripts/soak.py --quick)"
python3 "$TOP/scripts/soak.py" --quick --binary "$OBJ/qemu-system-x86_64" \
    --tally "$TALLY" || true

section "real kernel: Linux's mtty on Debian's 6.12, in a nested guest (scripts/realkernel)"
"$TOP/scripts/realkernel/run.sh" --tally "$TALLY" || true

section "A/B: guests without a VFIO device, the series against 7.2 (scripts/ab)"
"$TOP/scripts/ab/run.sh" --tally "$TALLY" || true

section "libvirt: virsh between two libvirt daemons (scripts/libvirt)"
"$TOP/scripts/libvirt/run.sh" --tally "$TALLY" || true

finish
