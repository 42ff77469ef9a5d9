#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Runs a program of the sanitizer build (build/obj-san) with a copy of its
# stderr in $SAN_LOG_DIR/stderr.NAME.PID.  run.sh installs it as symlinks
# named after the programs in build/sanitizers/bin: qemu-system-* runs
# $SAN_OBJ/NAME (it is QTEST_QEMU_BINARY), any other name
# $SAN_OBJ/tests/qtest/NAME.
#
# Why the copy: with GCC, UBSan linked next to ASan ignores log_path and
# writes its reports to stderr only (GCC PR 94328), and qtests often start
# QEMU with 2>/dev/null.  ASan and LSan reports go to log_path files.
name=${0##*/}
case $name in
qemu-system-*) real=$SAN_OBJ/$name ;;
test-*) real=$SAN_OBJ/tests/unit/$name ;;
*) real=$SAN_OBJ/tests/qtest/$name ;;
esac
copy=$SAN_LOG_DIR/stderr.$name.$$

# exec keeps the PID: libqtest signals and waits for this very process.
if [ -f /proc/$$/fd/2 ]; then
    # A test that sends stderr to a file reads it once QEMU has exited: a
    # tee could still be behind then.  A hard link keeps the file's text
    # after the test removes it.
    ln "$(readlink /proc/$$/fd/2)" "$copy" 2>/dev/null ||
        echo "stderr went to $(readlink /proc/$$/fd/2): no copy" > "$copy.none"
    exec "$real" "$@"
fi
exec "$real" "$@" 2> >(exec tee -a "$copy" >&2)
