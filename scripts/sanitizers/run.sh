#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# make check-sanitizers: build/qemu built with ASan and UBSan into
# build/obj-san (scripts/build.sh's configuration plus the sanitizers),
# then the series' own qtests and unit tests and the base tree's
# migration-test on it, one glib test path per run so that every report
# names its test.  Any sanitizer report fails the "no sanitizer report"
# check; reports.py prints each distinct finding with its first lines and
# top frames.  Ends with "N passed, N failed, N skipped"; exits non-zero
# on any failure.
#
# usage: run.sh [--tally FILE] [--only PATH,...] [--timeout S] [--build-only]
#   --tally FILE   add the counts to FILE ("passed failed skipped")
#   --only LIST    only these test paths and what is under them, e.g.
#                  /x86_64/vfio-migration/pre-copy,/x86_64/migration/bad_dest
#   --timeout S    per test path (default 1200: ASan and UBSan under TCG)
#   --build-only   build build/obj-san and stop
#
# Logs: build/obj-san.log (the build), build/sanitizers/logs/RUN/BINARY/
# TEST/ (asan.EXE.PID, ubsan.EXE.PID, stderr.EXE.PID copies, tap.log;
# BINARY/list/ for its -l run), RUN/findings.txt; build/sanitizers/logs/last
# points at the last RUN.

set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../common.sh"

tally='' only='' timeout=1200 build_only=''
while [ $# -gt 0 ]; do
    case $1 in
    --tally) tally=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    *) die "usage: $0 [--tally FILE] [--only PATH,...] [--timeout S] [--build-only]" ;;
    esac
done

SAN_OBJ=$TOP/build/obj-san
# QEMU 7.2's configure probes -fsanitize=undefined with a program that GCC
# 12 rejects under -Werror (maybe-uninitialized), so --enable-sanitizers
# alone gives ASan only: UBSan comes in through the extra flags, as in the
# tree's tests/docker/test-clang.  The instrumentation makes GCC 12 warn
# falsely (maybe-uninitialized in base code, crypto/block-luks.c): the
# normal build keeps -Werror, this one logs warnings only.  No docs here.
SAN_CONFIGURE="--enable-sanitizers --disable-docs --disable-werror
    --extra-cflags=-fsanitize=undefined --extra-ldflags=-fsanitize=undefined"

TALLY=$(mktemp)
trap 'rm -f "$TALLY"' EXIT
echo "0 0 0" > "$TALLY"
start=$SECONDS

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
    local p f s p0=0 f0=0 s0=0
    read -r p f s < "$TALLY"
    note "check-sanitizers took $((SECONDS - start))s"
    echo
    echo "$p passed, $f failed, $s skipped"
    if [ -n "$tally" ]; then
        [ -s "$tally" ] && read -r p0 f0 s0 < "$tally"
        echo "$((p0 + p)) $((f0 + f)) $((s0 + s))" > "$tally"
    fi
    [ "$f" -eq 0 ]
    exit
}

# The series' qtests and unit tests, as scripts/check.sh finds them, and
# migration-test
series_tests=$(git -C "$TREE" diff --name-only --diff-filter=A base..HEAD \
               -- 'tests/qtest/*-test.c' 'tests/unit/test-*.c' |
               xargs -r -n1 basename | sed 's/\.c$//')
tests="$series_tests migration-test"
test_dir() {    # where the build puts test binary $1 (wrap.sh knows too)
    case $1 in
    test-*) echo tests/unit ;;
    *) echo tests/qtest ;;
    esac
}
targets=(qemu-system-x86_64)
for t in $tests; do targets+=("$(test_dir "$t")/$t"); done

note "sanitizer build: build/obj-san (${targets[*]})"
t0=$SECONDS
if SERIES_OBJ=$SAN_OBJ SERIES_CONFIGURE_EXTRA=$SAN_CONFIGURE \
        "$TOP/scripts/build.sh" "${targets[@]}" > "$SAN_OBJ.log" 2>&1; then
    echo "PASS sanitizer build (log: build/obj-san.log, $((SECONDS - t0))s)"
    count pass
else
    echo "FAIL sanitizer build"
    grep -E -B2 -A8 'error|FAILED' "$SAN_OBJ.log" | head -n 60 | sed 's/^/     | /'
    count fail
    finish
fi
[ -n "$build_only" ] && finish

run=$TOP/build/sanitizers/logs/$(date +%Y%m%d-%H%M%S)
bin=$TOP/build/sanitizers/bin
mkdir -p "$run" "$bin"
ln -sfn "$(basename "$run")" "$TOP/build/sanitizers/logs/last"
for t in qemu-system-x86_64 $tests; do
    ln -sfn "$HERE/wrap.sh" "$bin/$t"
done
export SAN_OBJ
export QTEST_QEMU_BINARY=$bin/qemu-system-x86_64

# The sanitizers' settings for one test path's processes, logs in $1.
# ASan: leak check at exit (qtest QEMUs exit through qtest_quit's SIGTERM),
# log files named after the program; allocation stacks unwound without
# frame pointers, which neither QEMU nor glib keeps (QEMU's CI does the
# same for its ASan fuzzers).  UBSan: a stack per report, the process
# dies.  With GCC, libubsan hands its log_path to libasan's runtime, where
# it replaces ASAN_OPTIONS' (and keeps writing its own reports to stderr,
# GCC PR 94328: wrap.sh): the same path in both.
san_env() {
    export SAN_LOG_DIR=$1
    export ASAN_OPTIONS="detect_leaks=1:log_path=$1/asan:log_exe_name=1:fast_unwind_on_malloc=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$1/asan"
    unset LSAN_OPTIONS
}

if [ ! -w /dev/kvm ]; then
    echo "note: /dev/kvm is not usable here: qtests run under TCG"
fi
for t in $tests; do
    if [ ! -x "$SAN_OBJ/$(test_dir "$t")/$t" ]; then
        echo "FAIL $t: not built"
        count fail
        continue
    fi
    # the listing run's reports count too
    mkdir -p "$run/$t/list"
    san_env "$run/$t/list"
    paths=$("$bin/$t" -l 2>> "$run/$t/list/list.err" |
            python3 "$HERE/reports.py" paths ${only:+--only "$only"})
    [ -n "$paths" ] && note "$t on the sanitizer build"
    if [ -z "$paths" ] && [ -n "$only" ]; then
        continue
    elif [ -z "$paths" ]; then
        echo "FAIL $t: -l lists no test (logs: ${run#"$TOP"/}/$t/list)"
        count fail
        continue
    fi
    for p in $paths; do
        mkdir -p "$run/$t$p"
        san_env "$run/$t$p"
        "$TOP/scripts/tap-run.py" "$TALLY" "$timeout" "$bin/$t" -p "$p" |
            tee "$run/$t$p/tap.log"
        # A crash leaves tap-run.py the binary's name only (glib prints
        # the plan last under -p): say which test it was.
        if grep -q "^FAIL $t:" "$run/$t$p/tap.log"; then
            echo "     | that was $p (logs: ${run#"$TOP"/}/$t$p)"
        fi
    done
done

note "sanitizer reports"
if out=$(python3 "$HERE/reports.py" scan "$run" "$TREE" "$SAN_OBJ"); then
    echo "PASS no sanitizer report (logs: ${run#"$TOP"/})"
    count pass
else
    echo "FAIL sanitizer reports (logs: ${run#"$TOP"/}, findings.txt)"
    echo "$out" | sed 's/^/     | /'
    count fail
fi
finish
