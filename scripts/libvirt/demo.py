#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The demo's migration, through libvirt: virsh migrate --live --verbose.

Starts two private libvirt daemons (lvrig.py), a q35 domain with a
vfio-sim-pci on the first, live-migrates it to the second with virsh,
which shows its own progress display, then checks the device's digest on
the destination and prints libvirt's statistics of the completed job.
Libvirt's defaults hold (300 ms downtime limit): most of the state moves
in pre-copy, the stop-copy rest is small.  Exits non-zero on any failure.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lvrig  # noqa: E402
from suite import other_seed  # noqa: E402

MiB = 1 << 20


def parse_size(text):
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1:].upper()])
    return int(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-size", type=parse_size, default=256 * MiB,
                    help="device state size (default 256M)")
    ap.add_argument("--stream-bandwidth", type=parse_size, default=0,
                    help="cap the device's stream, bytes/s (default none)")
    opts = ap.parse_args()
    stop_copy = min(8 * MiB, opts.state_size // 8)
    props = dict(state_size=opts.state_size, pre_copy="on", p2p="on",
                 initial_size=opts.state_size - stop_copy, seed=1)
    if opts.stream_bandwidth:
        props["stream_bandwidth"] = opts.stream_bandwidth

    workdir = tempfile.mkdtemp(prefix="vfio-libvirt-demo-")
    rig = lvrig.Rig(workdir)
    ok = False
    try:
        rig.start()
        kvm = lvrig.kvm_usable()
        print("demo (libvirt): two libvirt daemons, a q35 VM (128 MiB, %s) "
              "with a vfio-sim-pci of %d MiB state (pre-copy, P2P; %d MiB "
              "left for stop-copy)" % ("KVM" if kvm else "TCG",
                                       opts.state_size // MiB,
                                       stop_copy // MiB), flush=True)
        xml = os.path.join(workdir, "demo.xml")
        with open(xml, "w") as f:
            f.write(lvrig.domain_xml("vfio-demo", rig.emulator,
                                     lvrig.sim_device(**props), kvm=kvm))
        rig.src.virsh("create", xml)
        digest = lvrig.sim_digest(rig.src, "vfio-demo")
        print("source device digest 0x%016x" % digest, flush=True)
        dst_xml = os.path.join(workdir, "demo-dst.xml")
        with open(dst_xml, "w") as f:
            f.write(other_seed(rig.src.virsh("dumpxml", "--migratable",
                                             "vfio-demo").stdout))
        cmd = [lvrig.VIRSH, "-c", rig.src.uri, "migrate", "--live",
               "--verbose", "--xml", dst_xml, "vfio-demo", rig.dst.uri,
               "--migrateuri", "tcp://127.0.0.1",
               "--listen-address", "127.0.0.1"]
        print("$ virsh migrate --live --verbose vfio-demo DEST", flush=True)
        start = time.monotonic()
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                            timeout=600).returncode
        took = time.monotonic() - start
        if rc != 0:
            print("demo: virsh migrate failed (status %d)" % rc)
            return 1
        state = rig.dst.state("vfio-demo")
        got = lvrig.sim_digest(rig.dst, "vfio-demo")
        print("migrated in %.1fs; destination domain %s; device digest "
              "0x%016x: %s" % (took, state, got,
                               "matches" if got == digest else "DIFFERS"))
        print(rig.dst.virsh("domjobinfo", "--completed",
                            "vfio-demo").stdout.rstrip())
        ok = got == digest and state == "running" and \
            not rig.src.has_domain("vfio-demo")
    except (lvrig.RigError, subprocess.TimeoutExpired) as e:
        print("demo: %s" % e)
    finally:
        rig.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("demo: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
