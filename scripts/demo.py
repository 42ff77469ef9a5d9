#!/usr/bin/env python3
"""Live-migrate a VM between two local QEMU instances, driven over QMP.

The source runs a VM (KVM when /dev/kvm works, TCG otherwise).  When the
built QEMU has the software VFIO device (vfio-sim-pci), the VM carries one,
and the demo checks that the device's state digest survives the migration.
Prints a live progress line, then a summary; exits non-zero on any failure.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qmpvm import (MiB, OBJ, Vm, human, parse_size,  # noqa: E402
                   sim_bar0, sim_digest)


# max-bandwidth as libvirt sets it by default: no limit
UNLIMITED = (1 << 63) - 1


def main():
    if "--libvirt" in sys.argv[1:]:
        # The operator's view: the same migration through virsh
        args = [a for a in sys.argv[1:] if a != "--libvirt"]
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "libvirt", "demo.sh")
        os.execv(script, [script] + args)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-size", type=parse_size, default=512 * MiB,
                    help="device state size (default 512M)")
    ap.add_argument("--ram", default="1G", help="guest RAM (default 1G)")
    ap.add_argument("--transport", choices=("tcp", "unix"), default="tcp")
    ap.add_argument("--downtime-limit", type=int, default=None,
                    help="downtime limit in ms (default: QEMU's, 300)")
    ap.add_argument("--no-precopy", action="store_true",
                    help="stop-copy only: no pre-copy, P2P or switchover-ack")
    ap.add_argument("--dirty-rate", type=parse_size, default=0,
                    help="bytes/s of device state dirtied while running "
                         "(default 0)")
    ap.add_argument("--keep", action="store_true",
                    help="keep both QEMUs up afterwards, for QMP poking")
    ap.add_argument("--binary",
                    default=os.path.join(OBJ, "qemu-system-x86_64"))
    opts = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="vfio-demo-")
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    accel = "kvm" if kvm else "tcg"
    help_out = subprocess.run([opts.binary, "-device", "help"],
                              capture_output=True, text=True).stdout
    has_sim = "vfio-sim-pci" in help_out

    common = ["-machine", "q35", "-accel", accel, "-m", opts.ram]
    props = subprocess.run([opts.binary, "-device", "vfio-sim-pci,help"],
                           capture_output=True, text=True).stdout
    precopy = (has_sim and not opts.no_precopy and "initial-size" in props)
    dev = []
    if has_sim:
        spec = "vfio-sim-pci,id=sim0,addr=0x5,state-size=%d" % opts.state_size
        if precopy:
            # Most of the state moves while the VM runs; the rest at stop.
            spec += ",pre-copy=on,p2p=on,initial-size=%d,dirty-rate=%d" % (
                opts.state_size - opts.state_size // 8, opts.dirty_rate)
        dev = ["-device", spec]
    if opts.transport == "tcp":
        uri = "tcp:127.0.0.1:0"
    else:
        uri = "unix:%s" % os.path.join(workdir, "migrate.sock")

    print("demo: %s, %s guest RAM, accel %s, transport %s" %
          ("vfio-sim-pci with %s of device state%s" %
           (human(opts.state_size),
            " (pre-copy, P2P, switchover-ack)" if precopy else
            " (stop-copy only)")
           if has_sim else "plain VM (no vfio-sim-pci in this build)",
           opts.ram, accel, opts.transport))
    ok = False
    src = dst = None
    try:
        src = Vm("source", opts.binary, common + dev, workdir)
        dst = Vm("destination", opts.binary,
                 common + dev + ["-incoming", "defer"], workdir)
        if precopy:
            dst.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "return-path", "state": True},
                {"capability": "switchover-ack", "state": True}])
        dst.cmd("migrate-incoming", uri=uri)
        if opts.transport == "tcp":
            # The destination listens on a port of the kernel's choosing.
            addr = dst.cmd("query-migrate")["socket-address"][0]
            uri = "tcp:%s:%s" % (addr["host"], addr["port"])
        caps = [{"capability": "events", "state": True}]
        if precopy:
            caps += [{"capability": "return-path", "state": True},
                     {"capability": "switchover-ack", "state": True}]
        src.cmd("migrate-set-capabilities", capabilities=caps)
        # QEMU's defaults, but for max-bandwidth, which libvirt sets to
        # unlimited (7.2's default, 128 MiB/s, throttles the migration).
        params = {"max-bandwidth": UNLIMITED}
        if opts.downtime_limit is not None:
            params["downtime-limit"] = opts.downtime_limit
        src.cmd("migrate-set-parameters", **params)
        print("max-bandwidth unlimited (as libvirt sets it), downtime-limit "
              "%s" % ("%d ms" % opts.downtime_limit
                      if opts.downtime_limit is not None
                      else "QEMU's default (300 ms)"))

        if has_sim:
            # Let the guest firmware place the BAR before the VM stops,
            # so that the device's registers can be read on both sides.
            sim_bar0(src)
        start = time.monotonic()
        src.cmd("migrate", uri=uri)
        status = None
        info = {}
        while True:
            info = src.cmd("query-migrate")
            status = info.get("status")
            ram = info.get("ram", {})
            vfio = info.get("vfio", {}).get("transferred", 0)
            # What is left: RAM's, and the devices' pre-copy data
            left = ram.get("remaining", 0) + sum(
                d.get("precopy-initial-bytes", 0) +
                d.get("precopy-dirty-bytes", 0)
                for d in info.get("vfio", {}).get("x-devices", []))
            line = ("\r[%-9s] RAM %10s  VFIO %10s  remaining %10s  "
                    "%7.1f MB/s  expected downtime %5d ms  %5.1fs" % (
                        status, human(ram.get("transferred", 0)), human(vfio),
                        human(left), ram.get("mbps", 0.0) / 8.0,
                        info.get("expected-downtime", 0),
                        time.monotonic() - start))
            # The per-device figures (QEMU with the series' stats)
            for dev in info.get("vfio", {}).get("x-devices", []):
                line += "  %s %s" % (dev["id"], dev["state"])
                if "precopy-initial-bytes" in dev:
                    line += " (initial %s, dirty %s left)" % (
                        human(dev["precopy-initial-bytes"]),
                        human(dev["precopy-dirty-bytes"]))
            line += "\033[K"
            sys.stdout.write(line)
            sys.stdout.flush()
            if status in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - start > 600:
                src.cmd("migrate_cancel")
                raise RuntimeError("migration did not finish in 600 s")
            time.sleep(0.1)  # display refresh rate, not synchronization
        print()
        if status != "completed":
            raise RuntimeError("migration %s: %s" %
                               (status, info.get("error-desc", "no reason")))
        deadline = time.monotonic() + 30
        # 7.2 sets "completed" before it records total-time and downtime
        while not info.get("total-time"):
            if time.monotonic() > deadline:
                raise RuntimeError("query-migrate has no total-time")
            time.sleep(0.01)
            info = src.cmd("query-migrate")
        while dst.cmd("query-status")["status"] != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("destination did not start running")
            time.sleep(0.05)
        # The source device is stopped now: its digest is what was sent.
        digest_before = sim_digest(src) if has_sim else None
        digest_after = sim_digest(dst) if has_sim else None
        print("summary:")
        print("  total time     %d ms" % info.get("total-time", 0))
        print("  downtime       %d ms" % info.get("downtime", 0))
        print("  RAM bytes      %s" % human(info.get("ram", {}).get("transferred", 0)))
        print("  VFIO bytes     %s" % human(info.get("vfio", {}).get("transferred", 0)))
        loaded = {d["id"]: d for d in
                  dst.cmd("query-migrate").get("vfio", {}).get("x-devices", [])}
        for dev in info.get("vfio", {}).get("x-devices", []):
            print("  %-14s sent %s, destination loaded %s" %
                  (dev["id"], human(dev["transferred"]),
                   human(loaded.get(dev["id"], {}).get("transferred", 0))))
        if has_sim:
            match = digest_before is not None and digest_before == digest_after
            print("  device digest  source %s, destination %s: %s" %
                  (hex(digest_before or 0), hex(digest_after or 0),
                   "MATCH" if match else "MISMATCH"))
            ok = match
        else:
            ok = True
        print("  destination    %s" % dst.cmd("query-status")["status"])
    except Exception as e:
        print("\ndemo: FAILED: %s" % e)
        ok = False
    finally:
        if opts.keep and src and dst:
            print("keeping the VMs up: QMP sockets %s and %s (Ctrl-C ends)" %
                  (src.sock, dst.sock))
            try:
                while src.proc.poll() is None and dst.proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        for vm in (src, dst):
            if vm:
                vm.close()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("logs kept in %s" % workdir)
    print("demo: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
