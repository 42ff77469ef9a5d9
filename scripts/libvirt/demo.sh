#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The demo's live migration through libvirt (virsh migrate --live --verbose,
# with virsh's own progress display), between two private libvirt daemons.
#
# usage: demo.sh [--state-size SIZE] [--stream-bandwidth BYTES_PER_S]
set -euo pipefail
exec python3 "$(dirname "$0")/demo.py" "$@"
