# SPDX-License-Identifier: GPL-2.0-or-later
#
# Soak test: one VM with a vfio-sim-pci device (pre-copy, a dirty rate, its
# DMA engine writing guest RAM) live-migrated back and forth between two
# local QEMUs over unix sockets, many times, under QEMU's default migration
# parameters, some migrations cancelled half-way; checks the device state
# and guest RAM every time, and that fds, RSS and address space do not
# grow.  `make soak`; --quick is the short version for `make check`.

"""Soak: migrate one VM with vfio-sim-pci back and forth, cancel some.

Each round starts a fresh destination QEMU (-incoming defer), migrates the
VM to it, checks both sides and quits the old source: two QEMUs exist at a
time, and every process but the first was born as a destination.  Before
every --cancel-every'th migration the source first migrates to another
fresh destination and cancels half-way; the last migration's source also
takes --cancel-streak more cancels in a row (one process through many
cancels, for the leak checks).

After every migration, the source stopped (postmigrate) and the
destination's DMA engine idle (its DMA registers are not migrated):
  * DIGEST, GENERATION and CONFIG0..3 of the device agree on both sides,
    CONFIG is what this script wrote, and DIGEST is what an independent
    model of hw/vfio/sim-content.c gives for (seed, generation, config);
  * the DMA range of guest RAM has the same SHA-256 on both sides, and a
    range filled once with random bytes still has its hash;
  * the destination runs, and its DMA engine writes once reprogrammed.
The sim's dirty rate changes the state of a running device: the
destination's passes through RUNNING_P2P on its way to RUNNING, one more
generation.  Odd rounds start the destination with -S, as libvirt does, and
compare with both sides stopped, exactly, before `cont`; even rounds let it
start by itself, as demo.py does, and allow that one generation.

After every cancel: the migration ends "cancelled", the source runs again,
its device is RUNNING with its config, a generation not below the one
before and a DIGEST that is the model's for that generation (it precopied,
so the dirty rate moved it: the model says whether it is intact), its DMA
engine goes on, the destination exits by itself and the source's fds come
back to their count before the attempt.  The cancelled migrations run with
the pause-before-switchover capability (the migration parameters stay
QEMU's defaults): one that outruns the poll waits at pre-switchover instead
of completing, so every cancel lands half-way whatever the machine's load.
The poll cancels once the migration is active and RAM and device bytes
moved.

Leaks, measured on the source right before it migrates (round 2, the first
process born as a destination, against the last round) and on the last
source through its cancels in a row: open fds must stay equal, RSS grow by
less than --rss-limit (16 MiB), the address space (VmSize) through the
cancels by less than --vm-limit (128 MiB).  See Soak.leak_checks().
"""

import argparse
import base64
import collections
import functools
import hashlib
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qmpvm import (BINARY, MiB, SIM_MAGIC, Vm, has_device,  # noqa: E402
                   kvm_usable, parse_size, sim_bar0, wait_until)

# vfio-sim-pci BAR0 registers (hw/vfio/sim.h)
REG_MAGIC = 0x00
REG_DIGEST = 0x08
REG_DEVICE_STATE = 0x10
REG_GENERATION = 0x18
REG_CONFIG = 0x20               # CONFIG0..3, 8 bytes apart
REG_DMA_ADDR = 0x68
REG_DMA_SIZE = 0x70
REG_DMA_WRITES = 0x78
STATE_STOP = 1                  # enum vfio_device_mig_state
STATE_RUNNING = 2

SIM_SLOT = 5                    # bus 0, function 0
# Guest RAM: the DMA engine's range, and one filled once with random bytes
GUEST_RAM = "128M"
DMA_ADDR = 32 * MiB
DMA_SIZE = 4 * MiB
FILL_ADDR = 64 * MiB
FILL_SIZE = 8 * MiB
# Short b64write lines: qtest rescans its whole input buffer for a newline
# every 1 KiB it receives, so a long line costs quadratic time.
FILL_CHUNK = 64 * 1024

# Bounds on waits: generous for a busy 2-core host, never unbounded.
T_START = 60            # a QEMU answering qtest
T_FIRMWARE = 120        # SeaBIOS done: "No bootable device"
T_MIGRATE = 300         # a migration reaching a final status
T_RUNSTATE = 120
T_DMA = 60              # the DMA engine's first page after programming
T_DST_EXIT = 120        # a cancelled migration's destination exiting
T_FDS = 60              # a cancelled migration's fds closing
T_QMP = 120             # any one QMP or qtest command


class Failure(Exception):
    """A check failed: the run does not go on from this state."""


# ---------------------------------------------------------------------------
# An independent model of the sim's DIGEST register (hw/vfio/sim-content.c),
# a pure function of (seed, generation, CONFIG0..3, state-size).  It tells
# whether a digest that changed (the dirty rate moves the generation) is
# that of a valid state, and cross-checks the device's own arithmetic.

M64 = (1 << 64) - 1
GOLDEN = 0x9e3779b97f4a7c15


def mix(x):
    """splitmix64's finalizer, as vfio_sim_mix()."""
    x &= M64
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & M64
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


# Per 1 KiB block of a 4 KiB page and per lane: the sum of the pattern's
# words and of the checksum's keys for their places in the block
_PATTERN_KEYS = [(mix(j * 8 + GOLDEN), mix(~((j % 128) * 8) & M64))
                 for j in range(512)]
_BLOCK_SUMS = [[sum(p + k for p, k in _PATTERN_KEYS[block + lane:
                                                   block + 128:8]) & M64
                for lane in range(8)]
               for block in range(0, 512, 128)]


@functools.lru_cache(maxsize=8)
def sim_content_hash(seed, generation, size):
    """The content's checksum: 8 lanes over 64-byte stripes, each lane
    mixed after every 1 KiB block.  Each word of a page is the pattern's
    plus the page's word, so a block adds the table's sum and 16 page
    words to each lane."""
    key = mix(seed ^ mix(generation ^ 0x5eed5eed5eed5eed))
    lanes = [mix(0x6a09e667f3bcc908 + i) for i in range(8)]
    for page in range(size // 4096):
        pw16 = mix(key + (page + 1) * GOLDEN) * 16
        for sums in _BLOCK_SUMS:
            for lane in range(8):
                acc = (lanes[lane] + sums[lane] + pw16) & M64
                lanes[lane] = ((acc ^ (acc >> 29)) * GOLDEN) & M64
    h = mix(size ^ GOLDEN)
    for i, lane in enumerate(lanes):
        h = (mix(h ^ lane) + i) & M64
    return h


def sim_digest_model(seed, generation, config, size):
    d = mix(sim_content_hash(seed, generation, size) ^ generation)
    for i, c in enumerate(config):
        d = (mix(d ^ c) + i) & M64
    return d


# ---------------------------------------------------------------------------
# Processes

def fd_targets(pid):
    """What the open fds of PID point to, sorted ([] once it is gone)."""
    out = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
    except OSError:
        pass
    return sorted(out)


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def usage(pid):
    """Open fds, RSS and address space (VmSize) of PID, in bytes."""
    u = {"fds": fd_count(pid), "rss": -1, "vm": -1}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmSize:")):
                    key = "rss" if line.startswith("VmRSS") else "vm"
                    u[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return u


def mib(n):
    if abs(n) < MiB:
        return "%d KiB" % (n // 1024)
    return "%.1f MiB" % (n / MiB)


def show(u):
    return "%d fds, RSS %s, VmSize %s" % (u["fds"], mib(u["rss"]),
                                          mib(u["vm"]))


def children():
    """Pids of this process's children."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                # pid (comm) state ppid ...: comm may hold spaces
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me:
            out.append(int(entry))
    return out


class Qtest:
    """QEMU's qtest protocol on a unix socket, next to the real accelerator
    (as the series' test_boot does), for what QMP cannot do: write MMIO,
    port I/O and RAM.  QEMU connects to our socket as it starts."""

    def __init__(self, path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.conn = self.file = None

    def accept(self):
        self.listener.settimeout(T_START)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(T_QMP)
        self.file = self.conn.makefile("rwb")
        self.close_listener()

    def close_listener(self):
        if self.listener:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def cmd(self, line):
        self.file.write(line.encode() + b"\n")
        self.file.flush()
        answer = self.file.readline().decode().rstrip("\n")
        if not answer.startswith("OK"):
            raise Failure("qtest %r: %r" % (line[:40], answer[:200]))
        return answer[3:]

    def readq(self, addr):
        return int(self.cmd("readq 0x%x" % addr), 16)

    def writeq(self, addr, value):
        self.cmd("writeq 0x%x 0x%x" % (addr, value))

    def write(self, addr, data):
        for off in range(0, len(data), FILL_CHUNK):
            chunk = data[off:off + FILL_CHUNK]
            self.cmd("b64write 0x%x 0x%x %s" % (
                addr + off, len(chunk), base64.b64encode(chunk).decode()))

    def close(self):
        self.close_listener()
        for f in (self.file, self.conn):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        self.file = self.conn = None


class Qemu:
    """One QEMU of the soak: QMP (qmpvm.Vm), qtest, the sim's BAR0."""

    def __init__(self, soak, name, incoming, paused=False):
        self.name = name
        self.workdir = soak.workdir
        self.fw_log = os.path.join(self.workdir, name + ".fw")
        self.qtest = Qtest(os.path.join(self.workdir, name + ".qtest"))
        self.vm = None
        self.bar = None
        args = soak.qemu_args + [
            # SeaBIOS's log, to see when the firmware is done (test_boot)
            "-chardev", "file,id=fw,path=%s" % self.fw_log,
            "-device", "isa-debugcon,iobase=0x402,chardev=fw",
            # qtest logs every command to stderr unless told not to
            "-qtest", "unix:%s" % self.qtest.path, "-qtest-log", "none"]
        if incoming:
            args += ["-incoming", "defer"]
        if paused:
            args += ["-S"]
        soak.live.append(self)
        try:
            self.vm = Vm(name, soak.binary, args, self.workdir,
                         qmp_timeout=T_QMP)
            self.qtest.accept()
        except Exception as e:
            raise Failure("%s: QEMU did not start: %s %s" %
                          (name, e, self.vm.log_tail() if self.vm else ""))

    @property
    def pid(self):
        return self.vm.pid

    def cmd(self, name, **args):
        return self.vm.cmd(name, **args)

    def runstate(self):
        return self.cmd("query-status")["status"]

    def wait_runstate(self, goal):
        wait_until(lambda: self.runstate() == goal, T_RUNSTATE,
                   "%s to be %s" % (self.name, goal), interval=0.02)

    def reg(self, off):
        return self.qtest.readq(self.bar + off)

    def set_reg(self, off, value):
        self.qtest.writeq(self.bar + off, value)

    def find_bar(self):
        """BAR0 as the guest's firmware programmed it (migrated along)."""
        self.bar = sim_bar0(self.vm, timeout=T_FIRMWARE)
        magic = self.reg(REG_MAGIC)
        if magic != SIM_MAGIC:
            raise Failure("%s: no vfio-sim-pci registers at 0x%x (0x%x)" %
                          (self.name, self.bar, magic))

    def device(self):
        """The sim's migrated state, as its registers show it."""
        return {"state": self.reg(REG_DEVICE_STATE),
                "digest": self.reg(REG_DIGEST),
                "generation": self.reg(REG_GENERATION),
                "config": [self.reg(REG_CONFIG + 8 * i) for i in range(4)]}

    def ram_sha(self, addr, size):
        """SHA-256 of guest RAM, saved by QEMU into a file (qtest's b64read
        takes half a second a MiB here)."""
        path = os.path.join(self.workdir, self.name + ".ram")
        try:
            self.cmd("pmemsave", val=addr, size=size, filename=path)
            with open(path, "rb") as f:
                data = f.read()
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if len(data) != size:
            raise Failure("%s: pmemsave wrote %d bytes, not %d" %
                          (self.name, len(data), size))
        return hashlib.sha256(data).hexdigest()

    def start_dma(self):
        """Program the DMA engine, and wait for it to write a page."""
        writes = self.reg(REG_DMA_WRITES)
        self.set_reg(REG_DMA_ADDR, DMA_ADDR)
        self.set_reg(REG_DMA_SIZE, DMA_SIZE)
        wait_until(lambda: self.reg(REG_DMA_WRITES) > writes, T_DMA,
                   "%s: the sim's DMA engine to write" % self.name,
                   interval=0.01)

    def set_caps(self, **caps):
        self.cmd("migrate-set-capabilities", capabilities=[
            {"capability": c.replace("_", "-"), "state": v}
            for c, v in caps.items()])

    def query_migrate(self):
        return self.cmd("query-migrate")

    def exited(self):
        return self.vm is not None and self.vm.proc.poll() is not None

    def death(self):
        """How it ended if it died of a signal, else None."""
        rc = self.vm.proc.poll() if self.vm else None
        if rc is None or rc >= 0:
            return None
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = "signal %d" % -rc
        return "%s (pid %d) died of %s | %s" % (self.name, self.pid, sig,
                                               self.vm.log_tail())

    def close(self):
        """Quit (killed after 10 s); drop its sockets; the exit status."""
        self.qtest.close()
        if not self.vm:
            return None
        self.vm.close()
        try:
            os.unlink(self.vm.sock)     # qmpvm leaves its QMP socket
        except FileNotFoundError:
            pass
        return self.vm.proc.returncode


# ---------------------------------------------------------------------------
# The soak

class Soak:

    def __init__(self, opts):
        self.opts = opts
        self.binary = opts.binary
        self.workdir = tempfile.mkdtemp(prefix="vfio-soak-")
        self.live = []              # every QEMU not closed yet
        self.nproc = 0
        self.seed = opts.seed
        self.accel = "kvm" if kvm_usable() else "tcg"
        dev = ("vfio-sim-pci,id=sim0,addr=0x%x,state-size=%d,seed=%d,"
               "pre-copy=on,p2p=on,initial-size=%d,dirty-rate=%d,"
               "dma-rate=%d" % (SIM_SLOT, opts.state_size, opts.seed,
                                opts.state_size // 2, opts.dirty_rate,
                                opts.dma_rate))
        if opts.sim_opts:
            dev += "," + opts.sim_opts
        self.device_spec = dev
        self.qemu_args = ["-machine", "q35", "-accel", self.accel,
                          "-m", GUEST_RAM, "-device", dev]
        for pattern in opts.trace:
            self.qemu_args += ["-trace", pattern]
        rng = random.Random(opts.seed)
        self.config = [rng.getrandbits(64) for _ in range(4)]
        self.fill = hashlib.shake_256(b"soak %d" % opts.seed).digest(
            FILL_SIZE)
        self.fill_sha = hashlib.sha256(self.fill).hexdigest()
        self.inject = opts.inject
        self.step = "start-up"      # what runs, for errors without context
        self.t0 = time.monotonic()
        # Results
        self.failures = {k: [] for k in ("migrations", "cancels", "fds",
                                         "rss", "vmsize")}
        self.completed = 0
        self.cancels = 0
        self.cancel_points = {}     # migration status at the cancel: count
        self.sources = []           # (round, name, usage) before migrating
        self.streak = None          # the many-cancels process's usage
        self.uri_count = 0

    def log(self, msg):
        if self.opts.verbose:
            print(msg, flush=True)

    def fail(self, kind, msg):
        self.failures[kind].append(msg)
        print("soak: %s failure: %s" % (kind, msg), flush=True)

    def new_qemu(self, incoming, paused=False):
        name = "vm%d" % self.nproc
        self.nproc += 1
        return Qemu(self, name, incoming, paused)

    def close(self, q):
        rc = q.close()
        if q in self.live:
            self.live.remove(q)
        return rc

    def model(self, dev):
        return sim_digest_model(self.seed, dev["generation"], dev["config"],
                                self.opts.state_size)

    # -- the first VM --------------------------------------------------------

    def boot(self):
        q = self.new_qemu(incoming=False)

        def firmware_idle():
            try:
                with open(q.fw_log, errors="replace") as f:
                    return "No bootable device" in f.read()
            except OSError:
                return False
        # Until SeaBIOS is done it may switch the device's decoding off and
        # on; then it idles, touching neither PCI nor the RAM used here.
        wait_until(firmware_idle, T_FIRMWARE,
                   "%s: the firmware to finish" % q.name, interval=0.05)
        q.find_bar()
        # Bus mastering, which SeaBIOS leaves off: without it the DMA
        # engine's writes go nowhere.  PCI_COMMAND through 0xcf8/0xcfc.
        q.qtest.cmd("outl 0xcf8 0x%x" % (0x80000000 | SIM_SLOT << 11 | 4))
        command = int(q.qtest.cmd("inw 0xcfc"), 16)
        q.qtest.cmd("outw 0xcfc 0x%x" % (command | 0x4))
        for i, c in enumerate(self.config):
            q.set_reg(REG_CONFIG + 8 * i, c)
        q.qtest.write(FILL_ADDR, self.fill)
        if q.ram_sha(FILL_ADDR, FILL_SIZE) != self.fill_sha:
            raise Failure("%s: guest RAM does not read back what was "
                          "written" % q.name)
        q.start_dma()
        dev = q.device()
        if dev["config"] != self.config or dev["state"] != STATE_RUNNING:
            raise Failure("%s: sim registers not as programmed: %s" %
                          (q.name, dev))
        if self.model(dev) != dev["digest"]:
            raise Failure("the digest model of soak.py disagrees with the "
                          "device before any migration (0x%016x, device "
                          "0x%016x): did hw/vfio/sim-content.c change?" %
                          (self.model(dev), dev["digest"]))
        return q

    # -- one migration -------------------------------------------------------

    def start_migration(self, src, cancel, paused=False):
        dst = self.new_qemu(incoming=True, paused=paused)
        dst.set_caps(return_path=True, switchover_ack=True)
        self.uri_count += 1
        uri = "unix:%s/mig%d.sock" % (self.workdir, self.uri_count)
        dst.cmd("migrate-incoming", uri=uri)
        src.set_caps(return_path=True, switchover_ack=True,
                     pause_before_switchover=cancel)
        src.cmd("migrate", uri=uri)
        return dst, uri

    def wait_final(self, q):
        final = ("completed", "failed", "cancelled")
        return wait_until(
            lambda: (lambda i: i if i.get("status") in final else None)(
                q.query_migrate()),
            T_MIGRATE, "%s: the migration to end" % q.name, interval=0.02)

    def drop_uri(self, uri):
        try:
            os.unlink(uri[len("unix:"):])
        except FileNotFoundError:
            pass

    def migrate(self, src, rnd):
        """Migrate SRC to a fresh QEMU, check both; returns the new source."""
        paused = rnd % 2 == 1
        before = src.device()
        self.step = "round %d: migrating %s" % (rnd, src.name)
        dst, uri = self.start_migration(src, cancel=False, paused=paused)
        what = self.step = "round %d: %s -> %s%s" % (
            rnd, src.name, dst.name, " (-S)" if paused else "")
        info = self.wait_final(src)
        if info["status"] != "completed":
            raise Failure("%s: migration %s: %s | %s" % (
                what, info["status"], info.get("error-desc", "no reason"),
                dst.vm.log_tail()))
        src.wait_runstate("postmigrate")

        def dst_done():
            if dst.exited():
                raise Failure("%s: the destination exited (status %s): %s" %
                              (what, dst.vm.proc.returncode,
                               dst.vm.log_tail()))
            return dst.query_migrate().get("status") in ("completed",
                                                         "failed")
        wait_until(dst_done, T_MIGRATE, "%s: the destination to load" % what)
        dinfo = dst.query_migrate()
        if dinfo["status"] != "completed":
            raise Failure("%s: incoming migration %s | %s" % (
                what, dinfo["status"], dst.vm.log_tail()))
        dst.wait_runstate("paused" if paused else "running")
        self.drop_uri(uri)

        # The source's device is stopped, its DMA engine with it: registers
        # and RAM are what was sent at switchover.  The destination's
        # engine is idle until programmed again.
        dst.find_bar()
        s = src.device()
        if rnd in self.inject.get("digest", ()):
            s["digest"] ^= 1
            print("soak: %s: injected a wrong source digest" % what)
        if s["state"] != STATE_STOP:
            raise Failure("%s: source device in state %d after the "
                          "migration, not STOP" % (what, s["state"]))
        if s["generation"] < before["generation"]:
            raise Failure("%s: generation went back from %d to %d" %
                          (what, before["generation"], s["generation"]))
        if paused:
            d = dst.device()
            if d["state"] != STATE_STOP:
                raise Failure("%s: destination device in state %d under -S,"
                              " not STOP" % (what, d["state"]))
            self.check_sent(what, s, d, exact=True)
            dst.cmd("cont")
            dst.wait_runstate("running")
        d = dst.device()
        if d["state"] != STATE_RUNNING:
            raise Failure("%s: destination device in state %d, not "
                          "RUNNING" % (what, d["state"]))
        self.check_sent(what, s, d, exact=False)
        if dst.reg(REG_DMA_SIZE) != 0:
            raise Failure("%s: the destination's DMA engine is programmed "
                          "(its registers are not migrated)" % what)
        ram_s = src.ram_sha(DMA_ADDR, DMA_SIZE)
        ram_d = dst.ram_sha(DMA_ADDR, DMA_SIZE)
        if rnd in self.inject.get("ram", ()):
            ram_s = "0" * 64
            print("soak: %s: injected a wrong source RAM hash" % what)
        if ram_s != ram_d:
            raise Failure("%s: the DMA range of guest RAM differs: source "
                          "sha256 %s..., destination %s..." %
                          (what, ram_s[:16], ram_d[:16]))
        fill = dst.ram_sha(FILL_ADDR, FILL_SIZE)
        if fill != self.fill_sha:
            raise Failure("%s: the filled range of guest RAM changed: sha256"
                          " %s..., expected %s..." %
                          (what, fill[:16], self.fill_sha[:16]))
        rc = self.close(src)
        if rc != 0:
            raise Failure("%s: the source exited with status %s on quit | %s"
                          % (what, rc, src.vm.log_tail()))
        # The new source: new config, so that a stale state would show;
        # the DMA engine writing again
        self.config[1] = rnd
        dst.set_reg(REG_CONFIG + 8, rnd)
        dst.start_dma()
        dst.vm.qmp.clear_events()
        self.completed += 1
        self.log("%s: ok (generation %d, digest 0x%016x, downtime %s ms)" %
                 (what, d["generation"], d["digest"],
                  info.get("downtime", "?")))
        return dst

    def check_sent(self, what, s, d, exact):
        """Destination device D against source device S at switchover.

        EXACT: D has not run since it loaded the state; otherwise it went
        through RUNNING_P2P, which may have made one generation more.
        """
        gap = d["generation"] - s["generation"]
        if d["config"] != s["config"] or d["config"] != self.config:
            raise Failure("%s: CONFIG0..3 differ: source %s, destination %s,"
                          " written %s" % (what, s["config"], d["config"],
                                           self.config))
        if gap != 0 if exact else gap not in (0, 1):
            raise Failure("%s: destination generation %d, source %d" %
                          (what, d["generation"], s["generation"]))
        if gap == 0 and d["digest"] != s["digest"]:
            raise Failure("%s: device digest mismatch: source 0x%016x, "
                          "destination 0x%016x (generation %d)" %
                          (what, s["digest"], d["digest"], d["generation"]))
        for side, dev in (("source", s), ("destination", d)):
            if self.model(dev) != dev["digest"]:
                raise Failure("%s: %s digest 0x%016x is not the model's "
                              "0x%016x for generation %d" %
                              (what, side, dev["digest"], self.model(dev),
                               dev["generation"]))

    # -- one cancel ----------------------------------------------------------

    def cancel(self, src, rnd):
        """Start a migration from SRC, cancel it half-way, check SRC."""
        fds_before = fd_targets(src.pid)
        before = src.device()
        self.step = "round %d: cancel of %s" % (rnd, src.name)
        dst, uri = self.start_migration(src, cancel=True)
        what = self.step = "round %d: cancel %s -> %s" % (rnd, src.name,
                                                          dst.name)

        def cancel_point():
            info = src.query_migrate()
            status = info.get("status")
            if status in ("completed", "failed", "cancelled"):
                raise Failure("%s: migration %s before the cancel: %s" % (
                    what, status, info.get("error-desc", "no reason")))
            moved = (info.get("ram", {}).get("transferred", 0) > 0 and
                     info.get("vfio", {}).get("transferred", 0) > 0)
            if status == "pre-switchover" or (status == "active" and moved):
                return status
            return None
        point = wait_until(cancel_point, T_MIGRATE,
                           "%s: the migration to get under way" % what,
                           interval=0.005)
        src.cmd("migrate_cancel")
        info = self.wait_final(src)
        if info["status"] != "cancelled":
            raise Failure("%s: migration %s after migrate_cancel (issued "
                          "while %s): %s" % (
                              what, info["status"], point,
                              info.get("error-desc", "no error-desc")))
        self.cancel_points[point] = self.cancel_points.get(point, 0) + 1
        src.wait_runstate("running")
        try:
            wait_until(dst.exited, T_DST_EXIT,
                       "%s to exit by itself" % dst.name, interval=0.02)
        except RuntimeError as e:
            self.fail("cancels", "%s: %s" % (what, e))
        death = dst.death()
        self.close(dst)
        if death and "SIGKILL" not in death:
            raise Failure("%s: the destination: %s" % (what, death))
        self.drop_uri(uri)

        dev = src.device()
        if dev["state"] != STATE_RUNNING:
            raise Failure("%s: the source device is in state %d after the "
                          "cancel, not RUNNING" % (what, dev["state"]))
        if dev["config"] != self.config:
            raise Failure("%s: CONFIG0..3 are %s after the cancel, %s were "
                          "written" % (what, dev["config"], self.config))
        if dev["generation"] < before["generation"]:
            raise Failure("%s: generation went back from %d to %d" %
                          (what, before["generation"], dev["generation"]))
        if self.model(dev) != dev["digest"]:
            raise Failure("%s: digest 0x%016x after the cancel is not the "
                          "model's 0x%016x for generation %d" %
                          (what, dev["digest"], self.model(dev),
                           dev["generation"]))
        writes = src.reg(REG_DMA_WRITES)
        wait_until(lambda: src.reg(REG_DMA_WRITES) > writes, T_DMA,
                   "%s: the DMA engine to go on" % what, interval=0.01)
        if src.ram_sha(FILL_ADDR, FILL_SIZE) != self.fill_sha:
            raise Failure("%s: the filled range of guest RAM changed" % what)
        if rnd in self.inject.get("fd-leak", ()):
            # A real extra fd in QEMU, through QMP's add-fd
            with open(os.devnull) as f:
                src.vm.qmp.send_fd_scm(f.fileno())
                src.cmd("add-fd")
            print("soak: %s: injected an fd into %s" % (what, src.name))
        # The migration's sockets close in a bottom half after "cancelled":
        # wait for the count to come back, then say which fds differ.
        try:
            wait_until(lambda: fd_count(src.pid) == len(fds_before), T_FDS,
                       "%s: its fds to close" % src.name, interval=0.02)
        except RuntimeError:
            after = fd_targets(src.pid)
            more = collections.Counter(after)
            more.subtract(collections.Counter(fds_before))
            diff = ["%+d %s" % (n, t) for t, n in sorted(more.items()) if n]
            self.fail("fds", "%s: %d fds before the attempt, %d after: %s" %
                      (what, len(fds_before), len(after), ", ".join(diff)))
        src.vm.qmp.clear_events()
        self.cancels += 1
        self.log("%s: cancelled while %s (generation %d -> %d), %s" %
                 (what, point, before["generation"], dev["generation"],
                  show(usage(src.pid))))

    # -- the run -------------------------------------------------------------

    def run(self):
        opts = self.opts
        src = self.boot()
        for rnd in range(1, opts.count + 1):
            # The source right before it migrates: every one but the first
            # was born as a destination and has done the same since.
            self.sources.append((rnd, src.name, usage(src.pid)))
            n = 1 if opts.cancel_every and rnd % opts.cancel_every == 0 else 0
            streak = rnd == opts.count and opts.cancel_streak > 0
            if streak:
                n += opts.cancel_streak
                self.streak = {"name": src.name, "cancels": n,
                               "before": usage(src.pid)}
            for i in range(n):
                self.cancel(src, rnd)
                if streak and i == 0:
                    self.streak["first"] = usage(src.pid)
            if streak:
                self.streak["after"] = usage(src.pid)
            src = self.migrate(src, rnd)
            if not opts.verbose and (rnd % 10 == 0 or rnd == opts.count):
                print("soak: %d/%d migrations, %d cancels, %.0f s" % (
                    rnd, opts.count, self.cancels,
                    time.monotonic() - self.t0), flush=True)

    def error(self, e):
        """A run-ending exception as a failure, with what was running and
        any QEMU that died."""
        msg = str(e) or type(e).__name__
        if not isinstance(e, Failure) and not msg.startswith("round "):
            msg = "%s: %s: %s" % (self.step, type(e).__name__, msg)
        for q in self.live:
            death = q.death()
            if death:
                msg += "; " + death
        self.fail("cancels" if ": cancel" in self.step else "migrations", msg)
        return msg

    def cleanup(self, keep):
        for q in list(self.live):
            try:
                self.close(q)
            except BaseException as e:
                # After a signal, QMP's event loop may raise it again: kill
                # this one and go on with the others
                print("soak: closing %s: %s" % (q.name,
                                               str(e) or type(e).__name__))
                if q.vm and q.vm.proc.poll() is None:
                    q.vm.proc.kill()
                    q.vm.proc.wait()
                if q in self.live:
                    self.live.remove(q)
        # A signal in the middle of qmpvm.Vm() leaves its QEMU unknown to
        # us: end any child still there, by its pid
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        # No socket stays behind, even when the logs do
        for f in os.listdir(self.workdir):
            if f.endswith((".sock", ".qmp", ".qtest", ".ram")):
                os.unlink(os.path.join(self.workdir, f))
        if keep:
            print("soak: logs kept in %s" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the verdict ---------------------------------------------------------

    def leak_checks(self):
        """Fds, RSS, address space, where growth means something.

        Processes are replaced every round, so growth is compared
          * across processes: the source right before it migrates, at the
            second round (the first process born as a destination) and at
            the last one, with the same history --count - 2 migrations
            later: what the migrated state carries along must not grow;
          * within one process: the last source, through --cancel-streak
            (+1) cancels in a row; and for fds, every source through each
            of its cancels (checked in cancel()).
        Fds must stay equal: every process runs the same configuration, and
        a cancelled migration must close what it opened.  RSS wobbles by a
        few MiB (malloc arenas, QEMU's malloc_trim, TCG's code cache, guest
        pages touched): --rss-limit, 16 MiB, is far above that, and below
        what a leak of the device's migration buffer or of its state per
        migration or cancel adds up to over a run.  A leaked thread costs
        little RSS but keeps its 8 MiB stack mapped, so the address space
        (VmSize) is watched through the streak, from after its first cancel
        (which sets up malloc arenas for the migration threads for good).
        Without return-path, whose thread is the one that leaks today, it
        grows at the second cancel only (one more arena and a cached stack:
        72 MiB) and then stays put for 30 cancels.  --vm-limit, 128 MiB,
        lets one more 64 MiB arena come late, plus glibc's cache of freed
        thread stacks (40 MiB); a stack per cancel exceeds it within 17
        cancels, fewer than the streak of 20 (default and --quick).
        """
        opts = self.opts
        out = {"fds": [], "rss": [], "vmsize": []}
        done = {"fds": [], "rss": [], "vmsize": []}
        born = [s for s in self.sources if s[0] >= 2]
        if len(born) >= 2:
            (r1, n1, u1), (r2, n2, u2) = born[0], born[-1]
            done["fds"].append("sources")
            done["rss"].append("sources")
            if abs(u2["fds"] - u1["fds"]) > opts.fd_limit:
                out["fds"].append("source %s (round %d) had %d fds, %s "
                                  "(round %d) %d" % (n1, r1, u1["fds"], n2,
                                                     r2, u2["fds"]))
            if u2["rss"] - u1["rss"] >= opts.rss_limit:
                out["rss"].append("source RSS grew by %s from round %d to "
                                  "%d (bound %s)" % (
                                      mib(u2["rss"] - u1["rss"]), r1, r2,
                                      mib(opts.rss_limit)))
        st = self.streak
        if st and "after" in st:
            b, f, a = st["before"], st["first"], st["after"]
            for k in done:
                done[k].append("streak")
            if abs(a["fds"] - b["fds"]) > opts.fd_limit:
                out["fds"].append("%s: %d fds before %d cancels, %d after" %
                                  (st["name"], b["fds"], st["cancels"],
                                   a["fds"]))
            if a["rss"] - f["rss"] >= opts.rss_limit:
                out["rss"].append("%s: RSS grew by %s over %d cancels "
                                  "(bound %s)" % (
                                      st["name"], mib(a["rss"] - f["rss"]),
                                      st["cancels"] - 1,
                                      mib(opts.rss_limit)))
            if a["vm"] - f["vm"] >= opts.vm_limit:
                out["vmsize"].append(
                    "%s: address space (VmSize) grew by %s over %d cancels "
                    "(%s each; bound %s)" % (
                        st["name"], mib(a["vm"] - f["vm"]),
                        st["cancels"] - 1,
                        mib((a["vm"] - f["vm"]) / max(1, st["cancels"] - 1)),
                        mib(opts.vm_limit)))
        return out, done

    def report(self, error, elapsed):
        opts = self.opts
        leaks, done = self.leak_checks()
        for kind in leaks:
            self.failures[kind] += leaks[kind]
        nfail = sum(len(v) for v in self.failures.values())

        print("soak: %d migrations completed, %d cancels (%s), %d failures,"
              " %.1f s" % (self.completed, self.cancels,
                           ", ".join("%d while %s" % (n, p) for p, n in
                                     sorted(self.cancel_points.items()))
                           or "none", nfail, elapsed))
        born = [s for s in self.sources if s[0] >= 2]
        for label, s in (("start (booted VM)",
                          self.sources[0] if self.sources else None),
                         ("first born as a destination",
                          born[0] if born else None),
                         ("end", born[-1] if len(born) > 1 else None)):
            if s:
                print("soak: source before migrating, %s: round %d, %s: %s"
                      % (label, s[0], s[1], show(s[2])))
        st = self.streak
        if st and "after" in st:
            print("soak: %s through %d cancels in a row: before %s; after "
                  "the first %s; after the last %s" % (
                      st["name"], st["cancels"], show(st["before"]),
                      show(st["first"]), show(st["after"])))

        results = []
        stopped = "the run stopped: %s" % error
        if not self.failures["migrations"] and not error:
            results.append(("PASS", "soak/migrations", "%d completed, device "
                            "and guest RAM the same on both sides" %
                            self.completed))
        else:
            results.append(("FAIL", "soak/migrations", "; ".join(
                self.failures["migrations"]) or stopped))
        if self.failures["cancels"]:
            results.append(("FAIL", "soak/cancels",
                            "; ".join(self.failures["cancels"])))
        elif not self.cancels:
            results.append(("SKIP", "soak/cancels", "the run stopped before "
                            "any" if error else "no cancel asked for"))
        else:
            results.append(("PASS", "soak/cancels", "%d cancelled, each "
                            "source resumed with its device intact, the next"
                            " migration completed" % self.cancels))
        for kind, good in (
                ("fds", "equal from source to source and through every "
                        "cancel"),
                ("rss", "growth below %s" % mib(opts.rss_limit)),
                ("vmsize", "growth below %s through the cancels" %
                           mib(opts.vm_limit))):
            if self.failures[kind]:
                results.append(("FAIL", "soak/" + kind,
                                "; ".join(self.failures[kind])))
            elif error:
                results.append(("SKIP", "soak/" + kind,
                                "the run stopped before the end"))
            elif not done[kind]:
                results.append(("SKIP", "soak/" + kind, "needs 3 or more "
                                "migrations or a cancel streak"))
            else:
                results.append(("PASS", "soak/" + kind, "%s (%s)" % (
                    good, " and ".join(done[kind]))))
        counts = [0, 0, 0]
        for verdict, name, why in results:
            counts["PASS FAIL SKIP".split().index(verdict)] += 1
            print("%s %s%s" % (verdict, name,
                               (" (%s)" if verdict == "PASS" else ": %s") %
                               why))
        print("%d passed, %d failed, %d skipped" % tuple(counts))
        add_tally(opts.tally, counts)
        return counts[1] == 0


def parse_inject(text):
    """KIND@ROUND: a deliberate fault, to see the soak fail."""
    kind, _, rnd = text.partition("@")
    if kind not in ("digest", "ram", "fd-leak") or not rnd.isdigit():
        raise argparse.ArgumentTypeError(
            "bad --inject %r: digest@N, ram@N or fd-leak@N" % text)
    return kind, int(rnd)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--count", type=int, default=200,
                    help="migrations to complete (default 200)")
    ap.add_argument("--cancel-every", type=int, default=10, metavar="K",
                    help="cancel a migration before every K-th one "
                         "(default 10; 0: never)")
    ap.add_argument("--cancel-streak", type=int, default=20, metavar="S",
                    help="S more cancels in a row before the last migration"
                         " (default 20)")
    ap.add_argument("--quick", action="store_true",
                    help="for make check: --count 20 --cancel-every 10 "
                         "--cancel-streak 20")
    ap.add_argument("--binary", default=BINARY,
                    help="QEMU to run (default %(default)s)")
    ap.add_argument("--tally", metavar="FILE",
                    help='add this run\'s "passed failed skipped" to FILE')
    ap.add_argument("--state-size", type=parse_size, default=MiB,
                    help="the sim's state-size (default 1M)")
    ap.add_argument("--dirty-rate", type=parse_size, default=MiB,
                    help="the sim's dirty-rate, bytes/s (default 1M)")
    ap.add_argument("--dma-rate", type=parse_size, default=16 * MiB,
                    help="the sim's dma-rate, bytes/s (default 16M)")
    ap.add_argument("--seed", type=int, default=1,
                    help="the sim's seed and this run's data (default 1)")
    ap.add_argument("--fd-limit", type=int, default=0,
                    help="fd growth allowed (default 0)")
    ap.add_argument("--rss-limit", type=parse_size, default=16 * MiB,
                    help="RSS growth allowed (default 16M)")
    ap.add_argument("--vm-limit", type=parse_size, default=128 * MiB,
                    help="address space growth allowed through the cancel "
                         "streak (default 128M)")
    ap.add_argument("--sim-opts", default="",
                    help="more vfio-sim-pci properties for every QEMU, e.g."
                         " corrupt-stream=on")
    ap.add_argument("--inject", type=parse_inject, action="append",
                    default=[], metavar="KIND@ROUND",
                    help="a deliberate fault, to see the soak fail: a wrong "
                         "expected digest (digest@N) or RAM hash (ram@N) in "
                         "round N, an extra fd passed to QEMU in a cancel "
                         "of round N (fd-leak@N)")
    ap.add_argument("--trace", action="append", default=[],
                    metavar="PATTERN",
                    help="a trace event pattern for every QEMU (into its "
                         "log, kept on failure)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="a line per migration and per cancel")
    opts = ap.parse_args()
    if opts.quick:
        opts.count, opts.cancel_every, opts.cancel_streak = 20, 10, 20
    if opts.count < 1 or opts.cancel_every < 0 or opts.cancel_streak < 0:
        ap.error("--count must be 1 or more, the cancel options 0 or more")
    if not opts.state_size or opts.state_size % 4096:
        ap.error("--state-size must be a multiple of 4 KiB")
    inject = {}
    for kind, rnd in opts.inject:
        inject.setdefault(kind, set()).add(rnd)
    opts.inject = inject
    if not os.access(opts.binary, os.X_OK):
        return verdict_only(opts, "FAIL", "no QEMU at %s" % opts.binary)
    if not has_device(opts.binary, "vfio-sim-pci"):
        return verdict_only(opts, "SKIP", "%s has no vfio-sim-pci (its "
                            "Kconfig switch is off)" % opts.binary)

    # A signal ends the run through the `finally` below: no QEMU stays.
    def on_signal(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    soak = Soak(opts)
    print("soak: %d migrations, a cancel before every %s, %d more in a row "
          "before the last; unix sockets, QEMU's default migration "
          "parameters, accel %s, %s of guest RAM, -device %s" % (
              opts.count, ordinal(opts.cancel_every), opts.cancel_streak,
              soak.accel, GUEST_RAM, soak.device_spec), flush=True)
    error = None
    try:
        soak.run()
    except KeyboardInterrupt as e:
        error = soak.error(KeyboardInterrupt("interrupted (%s)" %
                                             (str(e) or "SIGINT")))
    except Exception as e:      # QMP, qtest, a timeout: each ends the run
        error = soak.error(e)
    finally:
        # Cleaning up is bounded (10 s a QEMU, then SIGKILL): let it finish
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        elapsed = time.monotonic() - soak.t0
        soak.cleanup(keep=error is not None)
    return 0 if soak.report(error, elapsed) else 1


def verdict_only(opts, verdict, why):
    """The soak could not run: one line, the counts, the tally."""
    print("%s soak: %s" % (verdict, why))
    counts = [int(verdict == v) for v in ("PASS", "FAIL", "SKIP")]
    print("%d passed, %d failed, %d skipped" % tuple(counts))
    add_tally(opts.tally, counts)
    return 1 if verdict == "FAIL" else 0


def add_tally(path, counts):
    """Add COUNTS to the "passed failed skipped" line of PATH."""
    if not path:
        return
    old = [0, 0, 0]
    try:
        with open(path) as t:
            old = [int(x) for x in t.read().split()]
    except (OSError, ValueError):
        pass
    with open(path, "w") as t:
        t.write("%d %d %d\n" % tuple(a + b for a, b in zip(old, counts)))


def ordinal(k):
    if not k:
        return "(never)"
    return "%d%s migration" % (k, "th" if 10 <= k % 100 < 20 else
                               {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th"))


if __name__ == "__main__":
    sys.exit(main())
