"""Shared by demo.py and bench.py: start a local QEMU and drive it over QMP.

Uses the QMP client library of the base tree (python/qemu/qmp), found
through SERIES_TREE (default build/qemu); the binary through SERIES_OBJ
(default build/obj).
"""

import argparse
import os
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.environ.get("SERIES_TREE", os.path.join(TOP, "build", "qemu"))
OBJ = os.environ.get("SERIES_OBJ", os.path.join(TOP, "build", "obj"))
BINARY = os.path.join(OBJ, "qemu-system-x86_64")
sys.path.insert(0, os.path.join(TREE, "python"))

from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
SIM_MAGIC = 0x4d49532d4f494656     # vfio-sim-pci BAR0 MAGIC, "VFIO-SIM"


def parse_size(text):
    units = {"": 1, "k": 1024, "m": MiB, "g": GiB}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    unit = t[-1] if t and t[-1] in "kmg" else ""
    number = t[:-1] if unit else t
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError("bad size: %r" % text)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024.0


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def device_help(binary, device=None):
    """Output of -device help (or -device DEVICE,help), '' on failure."""
    arg = "help" if device is None else "%s,help" % device
    try:
        r = subprocess.run([binary, "-device", arg], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout + r.stderr


def has_device(binary, device):
    return ('name "%s"' % device) in device_help(binary)


def device_props(binary, device):
    """The property names of DEVICE (empty when the build lacks it)."""
    props = set()
    for line in device_help(binary, device).splitlines():
        line = line.strip()
        if "=<" in line:
            props.add(line.split("=<", 1)[0])
    return props


class Vm:
    """One QEMU, its QMP monitor on a unix socket in WORKDIR."""

    def __init__(self, name, binary, args, workdir, qmp_timeout=None,
                 pass_fds=()):
        self.name = name
        self.sock = os.path.join(workdir, name + ".qmp")
        self.logpath = os.path.join(workdir, name + ".log")
        self.log = open(self.logpath, "w")
        self.qmp = QEMUMonitorProtocol(self.sock, server=True)
        cmd = [binary, "-nodefaults", "-display", "none",
               "-qmp", "unix:%s" % self.sock] + args
        self.proc = subprocess.Popen(cmd, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     pass_fds=pass_fds)
        try:
            self.qmp.accept(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("%s: QEMU did not come up: %s" %
                               (name, self.log_tail()))
        if qmp_timeout is not None:
            # A bound on every later command: nothing may hang forever
            self.qmp.settimeout(qmp_timeout)

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, lines=5):
        try:
            with open(self.logpath) as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def cmd(self, name, **args):
        r = self.qmp.cmd(name, args)
        if "error" in r:
            raise RuntimeError("%s: %s failed: %s" %
                               (self.name, name, r["error"]["desc"]))
        return r["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def close(self):
        try:
            self.cmd("quit")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.qmp.close()
        except (EOFError, OSError):
            pass    # QEMU quit first: the connection is already gone
        self.log.close()


def wait_until(predicate, timeout, what, interval=0.02):
    """Poll PREDICATE until it returns a true value, at most TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %g s waiting for %s" %
                               (timeout, what))
        time.sleep(interval)


def wait_pci_assigned(vm, timeout=60):
    """Poll until the guest's firmware has assigned every PCI BAR."""
    def assigned():
        for bus in vm.cmd("query-pci"):
            for dev in bus["devices"]:
                for region in dev.get("regions", []):
                    if not 0 < region["address"] < (1 << 64) - 1:
                        return False
        return True
    wait_until(assigned, timeout,
               "%s: the guest firmware to assign the PCI BARs" % vm.name,
               interval=0.05)


def sim_bar0(vm, qdev_id="sim0", timeout=60):
    """Guest-physical address of the sim device's register BAR.

    Right after start-up the guest's firmware has not assigned the BAR yet
    (query-pci shows -1): poll until it has, at most TIMEOUT s.  Reading
    an unassigned BAR would read no device at all.
    """
    def address():
        for bus in vm.cmd("query-pci"):
            for dev in bus["devices"]:
                if dev.get("qdev_id") == qdev_id:
                    for region in dev["regions"]:
                        if region["bar"] == 0:
                            a = region["address"]
                            return a if 0 < a < (1 << 64) - 1 else None
                    break
        raise RuntimeError("%s: no BAR0 for device %s" % (vm.name, qdev_id))
    what = "%s: the guest to assign BAR0 of %s" % (vm.name, qdev_id)
    return wait_until(address, timeout, what, interval=0.05)


def sim_digest(vm):
    """The device's state digest, read from its DIGEST register."""
    bar = sim_bar0(vm)
    magic = vm.hmp("xp /1gx 0x%x" % bar)
    if int(magic.split(":")[1].split()[0], 16) != SIM_MAGIC:
        raise RuntimeError("%s: no vfio-sim-pci registers at 0x%x: %s" %
                           (vm.name, bar, magic.strip()))
    out = vm.hmp("xp /1gx 0x%x" % (bar + 8))
    return int(out.split(":")[1].split()[0], 16)
