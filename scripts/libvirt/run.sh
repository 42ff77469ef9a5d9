#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The series through libvirt 9.0: two private libvirt daemons on this
# machine, live migration with virsh, domjobinfo, domjobabort, refusals,
# save and restore of a domain with a vfio-sim-pci.  One line per scenario,
# then "N passed, N failed, N skipped"; non-zero exit on any failure.
#
# usage: run.sh [--tally FILE] [-v] [--keep] [SCENARIO ...]
set -euo pipefail
exec python3 "$(dirname "$0")/suite.py" "$@"
