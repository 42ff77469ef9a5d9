#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The real-kernel scenarios, run inside the L1 guest (Debian's kernel, mtty
# loaded, the series' QEMU as /usr/bin/qemu-system-x86_64).  Each scenario
# starts L2 QEMUs (TCG, q35, seabios only: no guest OS is needed) on mtty
# mdevs and migrates between them over QMP on loopback TCP.
#
# Prints, on stdout, one line per scenario: "PASS name", "FAIL name: why"
# or "SKIP name: why", detail lines starting with "     | ", and "DONE" at
# the end.  The L0 side (rig.py) parses these.  Python here runs with -I -S
# on a trimmed stdlib: import only what rig.py's --list-imports also sees.
#
# usage: l1.py [--only NAME,...] | --list | --list-imports

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

QEMU = "/usr/bin/qemu-system-x86_64"
DEBIAN_QEMU = "/opt/debian-qemu/usr/bin/qemu-system-x86_64"
DEBIAN_QEMU_LIBS = "/opt/debian-qemu/lib"
DEBIAN_QEMU_MODULES = "/opt/debian-qemu/modules"
# Debian 13's QEMU 10.0 (trixie), run through trixie's own ld.so and
# libraries: it loads nothing of bookworm's.  rig.py puts it under /trixie,
# or /trixie/MISSING with the reason setup.sh could not fetch it.
TRIXIE = "/trixie"
TRIXIE_LIBS = TRIXIE + "/usr/lib/x86_64-linux-gnu"
TRIXIE_QEMU = [TRIXIE_LIBS + "/ld-linux-x86-64.so.2", "--library-path",
               TRIXIE_LIBS, TRIXIE + "/usr/bin/qemu-system-x86_64"]
TRIXIE_FIRMWARE = TRIXIE + "/usr/share/seabios"
# A machine type that 7.2 and 10.0 both have, with the same guest ABI.
CROSS_MACHINE = "pc-i440fx-7.2"
MTTY_STOCK = "/rk/mtty-stock.ko"
MTTY_NOLOG = "/rk/mtty-nolog.ko"
MDEV_TYPE = "/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2"
# mtty_data_size() for a 2-port mtty: the 24-byte header goes in pre-copy,
# the two 36-byte serial_port structures at stop-copy.
MTTY2_DATA_SIZE = 96

# Bounds of every wait.  Generous: L2 runs under TCG inside an L1 that is
# itself under TCG on a 2-core machine that may be busy.
T_START = 90        # an L2 QEMU up and answering QMP
T_FIRMWARE = 120    # seabios done assigning BARs
T_MIGRATE = 120     # a migration reaching a final state
T_STATE = 30        # a run state or migration status change
T_QMP = 60          # one QMP command


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


DETAILS = []


def detail(text):
    """A detail line, printed under the scenario's result line."""
    DETAILS.extend("     | " + l for l in str(text).splitlines() or [""])


def log(text):
    sys.stderr.write("l1: %.1f %s\n" % (time.monotonic(), text))
    sys.stderr.flush()


class Kernel:
    """The kernel log since the current scenario began, read without
    blocking from /dev/kmsg, to catch a driver's oops or warning as it
    happens.  Once the kernel oopsed, the run is wedged: whatever blocks on
    the dead driver stays blocked, so every later wait is shortened."""

    TROUBLE = re.compile(r"BUG:|Oops|WARNING:|RIP: 0010|Call Trace:")
    fd = None
    lines = []
    wedged = False

    @classmethod
    def start(cls):
        if cls.fd is None:
            cls.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(cls.fd, 0, os.SEEK_END)
        cls.lines = []

    @classmethod
    def read(cls):
        """New trouble lines (also kept in cls.lines)."""
        new = []
        while cls.fd is not None:
            try:
                rec = os.read(cls.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except BrokenPipeError:     # overwritten records: go on
                continue
            # "prio,seq,usec,flags;text"
            head, _, text = rec.partition(";")
            text = text.rstrip("\n")
            usec = head.split(",")[2] if head.count(",") >= 2 else "0"
            if cls.TROUBLE.search(text) or (cls.lines and text.startswith(" ")
                                            and len(cls.lines) < 12):
                line = "[%12.6f] %s" % (int(usec) / 1e6, text)
                cls.lines.append(line)
                new.append(line)
                if "Oops" in text or "BUG:" in text:
                    cls.wedged = True
        return new


def poll(what, fn, timeout, interval=0.1):
    """Call fn until it returns something true; Fail after timeout s, or
    at once if the kernel oopsed or warned meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        trouble = Kernel.read()
        if trouble:
            raise Fail("kernel: %s (while waiting for %s)" %
                       (trouble[0].split("] ", 1)[-1], what))
        if time.monotonic() > deadline:
            raise Fail("timeout after %ds waiting for %s" % (timeout, what))
        time.sleep(interval)


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def bounded(what, fn, timeout=None):
    """Run fn in a thread, and Fail if it has not returned after timeout s:
    a driver that crashed can leave a sysfs write blocked for good, and
    that must cost one scenario, not the run."""
    res = []

    def body():
        try:
            res.append((True, fn()))
        except BaseException as e:      # handed to the caller below
            res.append((False, e))
    if timeout is None:
        timeout = 5 if Kernel.wedged else T_STATE
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if not res:
        raise Fail("%s blocked for %d s" % (what, timeout))
    ok, v = res[0]
    if not ok:
        raise v
    return v


class QMPError(Exception):
    pass


class QMP:
    """A minimal synchronous QMP client: one command at a time; events are
    not used, and skipped."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(T_QMP)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise Fail("no QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Fail("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            resp = self._read()
            if "error" in resp:
                raise QMPError(resp["error"].get("desc", str(resp["error"])))
            elif "return" in resp:
                return resp["return"]

    def close(self):
        self.sock.close()


class VM:
    """An L2 QEMU, with its QMP socket and its log.  binary may be a list:
    a loader and its arguments before the QEMU binary."""

    def __init__(self, name, args, binary=QEMU, env=None, machine="q35",
                 firmware="/usr/share/seabios"):
        self.name = name
        self.qmp_path = "/tmp/%s.qmp" % name
        self.log_path = "/tmp/%s.log" % name
        self.fw_path = "/tmp/%s-firmware.log" % name
        self.qmp = None
        for path in (self.qmp_path, self.fw_path):
            if os.path.exists(path):
                os.unlink(path)
        cmd = ([binary] if isinstance(binary, str) else list(binary)) + [
               "-machine", machine, "-accel", "tcg", "-m", "64",
               "-nodefaults", "-display", "none", "-serial", "none",
               "-L", firmware,
               # SeaBIOS's log, to tell when it is done with the devices
               "-chardev", "file,id=fw,path=%s" % self.fw_path,
               "-device", "isa-debugcon,iobase=0x402,chardev=fw",
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path] + args
        with open(self.log_path, "w") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, env=env,
                                         start_new_session=True)

    def wait_firmware_idle(self):
        """Wait until SeaBIOS found nothing to boot: it then leaves the
        devices alone, as it may not while it sets them up and boots."""
        def idle():
            try:
                with open(self.fw_path, "rb") as f:
                    return b"No bootable device" in f.read()
            except OSError:
                return False
        poll("%s's firmware to find nothing to boot" % self.name, idle,
             T_FIRMWARE)

    def wait_qmp(self):
        poll("%s to answer QMP" % self.name, self._connect, T_START)

    def _connect(self):
        if self.proc.poll() is not None:
            raise Fail("%s exited with status %d: %s" %
                       (self.name, self.proc.returncode, self.log_tail()))
        if not os.path.exists(self.qmp_path):
            return False
        try:
            self.qmp = QMP(self.qmp_path)
        except (OSError, Fail):
            # Not listening yet, or QEMU is exiting: the next round tells.
            return False
        return True

    def log_tail(self, n=5):
        try:
            with open(self.log_path) as f:
                lines = [l.strip() for l in f.read().splitlines() if l.strip()]
        except OSError:
            return "(no log)"
        return " / ".join(lines[-n:]) or "(empty log)"

    def cmd(self, name, **args):
        return self.qmp.cmd(name, **args)

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def status(self):
        return self.cmd("query-status")["status"]

    def wait_status(self, want, timeout=T_STATE):
        poll("%s run state %s" % (self.name, want),
             lambda: self.status() == want, timeout)

    def close(self):
        """Stop QEMU; bounded, since a QEMU stuck in a crashed driver's
        ioctl never exits."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=3 if Kernel.wedged else 15)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            log("%s (pid %d) does not exit" % (self.name, self.proc.pid))
        else:
            log("%s stopped" % self.name)
        if self.qmp:
            self.qmp.close()
            self.qmp = None


class Mdev:
    def __init__(self):
        u = os.urandom(16).hex()
        self.uuid = "-".join((u[:8], u[8:12], u[12:16], u[16:20], u[20:]))
        self.path = "/sys/bus/mdev/devices/" + self.uuid
        bounded("creating mdev %s" % self.uuid,
                lambda: write_file(MDEV_TYPE + "/create", self.uuid))
        poll("mdev %s" % self.uuid, lambda: os.path.exists(self.path), T_STATE)

    def remove(self):
        if os.path.exists(self.path):
            bounded("removing mdev %s" % self.uuid,
                    lambda: write_file(self.path + "/remove", "1"))

    def device(self, qid, migration="on", extra=""):
        opt = "vfio-pci,sysfsdev=%s,id=%s" % (self.path, qid)
        if migration is not None:
            opt += ",enable-migration=" + migration
        return ["-device", opt + extra]


class Scenario:
    """Resources of one scenario, released whatever its outcome."""

    port = 4440

    def __init__(self, name):
        self.name = name
        self.vms = []
        self.mdevs = []

    def mdev(self):
        m = Mdev()
        self.mdevs.append(m)
        return m

    def vm(self, role, args, **kw):
        vm = VM("%s-%s" % (self.name.split("/")[-1], role), args, **kw)
        self.vms.append(vm)
        vm.wait_qmp()
        return vm

    def drop(self, vm):
        vm.close()
        self.vms.remove(vm)

    def next_port(self):
        Scenario.port += 1
        return Scenario.port

    def cleanup(self):
        for vm in self.vms:
            vm.close()
        for m in self.mdevs:
            try:
                m.remove()
                log("mdev %s removed" % m.uuid)
            except (OSError, Fail) as e:
                log("removing mdev %s: %s" % (m.uuid, e))


SCENARIOS = []


def scenario(name, module=MTTY_STOCK):
    """Register a scenario, run with the given mtty.ko loaded."""
    def reg(fn):
        SCENARIOS.append(("realkernel/" + name, fn, module))
        return fn
    return reg


def set_caps(vm, caps, state=True):
    if caps:
        vm.cmd("migrate-set-capabilities", capabilities=[
            {"capability": c, "state": state} for c in caps])


def final_status(vm):
    info = vm.cmd("query-migrate")
    if info.get("status") in ("completed", "failed", "cancelled"):
        return info
    return None


def migration_error(info):
    return "status %s%s" % (info.get("status"),
                            ": " + info["error-desc"] if info.get("error-desc")
                            else "")


def start_pair(sc, src_devs, dst_devs):
    src = sc.vm("src", src_devs)
    dst = sc.vm("dst", dst_devs + ["-incoming", "defer"])
    return src, dst


def start_migration(sc, src, dst, caps=()):
    set_caps(src, caps)
    set_caps(dst, caps)
    uri = "tcp:127.0.0.1:%d" % sc.next_port()
    dst.cmd("migrate-incoming", uri=uri)
    src.cmd("migrate", uri=uri)


def finish_migration(src, dst):
    """Wait for the end; Fail unless completed and destination running."""
    info = poll("the migration to end", lambda: final_status(src), T_MIGRATE)
    if info["status"] != "completed":
        raise Fail("migration %s (destination: %s)" %
                   (migration_error(info), dst.log_tail(3)))
    try:
        dst.wait_status("running")
    except Fail as e:
        raise Fail("%s; destination log: %s" % (e, dst.log_tail(3)))
    detail("completed: total %s ms, downtime %s ms, vfio %s bytes" %
           (info.get("total-time"), info.get("downtime"),
            (info.get("vfio") or {}).get("transferred")))
    return info


def migrate(sc, src, dst, caps=()):
    start_migration(sc, src, dst, caps)
    return finish_migration(src, dst)


def simple(sc, migration, caps=(), mdevs_per_vm=1):
    devs = [[], []]
    for side in (0, 1):
        for i in range(mdevs_per_vm):
            devs[side] += sc.mdev().device("mtty%d" % i, migration)
    src, dst = start_pair(sc, devs[0], devs[1])
    info = migrate(sc, src, dst, caps)
    return src, dst, info


# Scenarios run in this order.  The variant goes first and the retries
# onto a reused mdev last, so that a driver left wedged by one of those
# costs no other scenario.
@scenario("mtty-nolog-variant", module=MTTY_NOLOG)
def s_nolog(sc):
    # No DMA logging ops: QEMU must fall back to the container's dirty
    # tracking, which enable-migration=auto accepts.
    simple(sc, "auto")


@scenario("mtty-enable-migration-on")
def s_on(sc):
    simple(sc, "on")


@scenario("mtty-enable-migration-auto")
def s_auto(sc):
    # auto is vfio-pci's default: give no enable-migration at all
    simple(sc, None)


@scenario("mtty-switchover-ack")
def s_switchover_ack(sc):
    simple(sc, "on", caps=("return-path", "switchover-ack"))


@scenario("mtty-viommu")
def s_viommu(sc):
    # Behind a vIOMMU the device's DMA is not dirty-tracked: under
    # enable-migration=on realize fails, naming the device (as upstream);
    # under auto the device works and migration is blocked.
    m = sc.mdev()
    viommu = ["-device", "intel-iommu,caching-mode=on"]
    vm = VM("viommu-on", viommu + m.device("mtty0", "on"))
    sc.vms.append(vm)
    poll("QEMU to refuse the device", lambda: vm.proc.poll() is not None,
         T_START)
    with open(vm.log_path) as f:
        msg = f.read()
    detail("on: exit %d: %s" % (vm.proc.returncode, vm.log_tail(1)))
    if vm.proc.returncode == 0 or "vIOMMU" not in msg or m.uuid not in msg:
        raise Fail("no realize error naming the device and the vIOMMU: %s" %
                   vm.log_tail())
    src = sc.vm("src", viommu + m.device("mtty0", None))
    try:
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % sc.next_port())
    except QMPError as e:
        detail("auto: migrate refused: %s" % e)
        if "vIOMMU" not in str(e):
            raise Fail("refusal does not name the vIOMMU: %s" % e)
        return
    raise Fail("migrate was accepted under auto with a vIOMMU")


@scenario("mtty-enable-migration-off")
def s_off(sc):
    m = sc.mdev()
    src = sc.vm("src", m.device("mtty0", "off"))
    try:
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % sc.next_port())
    except QMPError as e:
        msg = str(e)
        detail("migrate refused: " + msg)
        if m.uuid not in msg and "mtty0" not in msg:
            raise Fail("refusal does not name the device: %s" % msg)
        return
    raise Fail("migrate was accepted (query-migrate: %s)" %
               src.cmd("query-migrate").get("status"))


def io_bar(vm, qid, bar):
    """The address of I/O BAR bar of device qid, once the firmware mapped
    it (QEMU reports an unmapped BAR at an all-ones address)."""
    def find():
        for bus in vm.cmd("query-pci"):
            for dev in bus["devices"]:
                if dev.get("qdev_id") != qid:
                    continue
                for r in dev.get("regions", []):
                    if r["bar"] == bar and r["type"] == "io" and \
                       0 < r["address"] < 0x10000:
                        return r["address"]
        return None
    return poll("the firmware to map %s's I/O BAR %d" % (qid, bar), find,
                T_FIRMWARE)


def outb(vm, port, val):
    vm.hmp("o /b 0x%x 0x%x" % (port, val))


def inb(vm, port):
    r = vm.hmp("i /b 0x%x" % port)
    m = re.search(r"=\s*(0x[0-9a-fA-F]+)", r)
    if not m:
        raise Fail("unexpected HMP 'i' output: %r" % r)
    return int(m.group(1), 16)


UART_RX, UART_LCR, UART_LSR, UART_SCR = 0, 3, 5, 7
UART_LSR_DR = 0x01


# What uart_program() leaves in mtty0 for uart_check() to find
UART_PAYLOAD = b"RK!"
UART_WANT = {"port0 SCR": 0x5a, "port0 LCR": 0x03, "port1 SCR": 0xa5}


def uart_regs(base, base1):
    return {"port0 SCR": base + UART_SCR, "port0 LCR": base + UART_LCR,
            "port1 SCR": base1 + UART_SCR}


def uart_program(src):
    """Leave state in the registers of src's mtty0; returns its I/O BARs."""
    # Once the guest's firmware is idle: while it sets up and boots, it may
    # switch the device's decoding off, also on the destination after the
    # migration (1 run in 12 under load).
    src.wait_firmware_idle()
    # One 16550-like port per I/O BAR.  Port 0: scratch, line control,
    # and three bytes left in the loopback FIFO (THR writes land there);
    # port 1: scratch.
    base, base1 = io_bar(src, "mtty0", 0), io_bar(src, "mtty0", 1)
    detail("source I/O BARs at 0x%x, 0x%x" % (base, base1))
    outb(src, base + UART_SCR, 0x5a)
    outb(src, base + UART_LCR, 0x03)
    for b in UART_PAYLOAD:
        outb(src, base + UART_RX, b)
    outb(src, base1 + UART_SCR, 0xa5)
    got = {k: inb(src, p) for k, p in uart_regs(base, base1).items()}
    if got != UART_WANT or not inb(src, base + UART_LSR) & UART_LSR_DR:
        raise Fail("source does not hold what was written: %r" % got)
    return base, base1


def uart_check(dst, base, base1):
    """Fail unless dst's mtty0 holds what uart_program() left at the
    source's I/O BARs base and base1."""
    # The destination's BARs are where the source's firmware put them.
    for bar, addr in ((0, base), (1, base1)):
        if io_bar(dst, "mtty0", bar) != addr:
            raise Fail("destination maps I/O BAR %d at 0x%x, not 0x%x" %
                       (bar, io_bar(dst, "mtty0", bar), addr))
    got = {k: inb(dst, p) for k, p in uart_regs(base, base1).items()}
    lsr = inb(dst, base + UART_LSR)
    fifo = bytes(inb(dst, base + UART_RX) for _ in UART_PAYLOAD)
    lsr_after = inb(dst, base + UART_LSR)
    detail("destination: %s, LSR 0x%02x, FIFO %r, LSR after 0x%02x" %
           (", ".join("%s 0x%02x" % kv for kv in sorted(got.items())),
            lsr, fifo, lsr_after))
    if got != UART_WANT:
        raise Fail("registers differ after migration: want %r, got %r; "
                   "destination: %s; log: %s" %
                   (UART_WANT, got, dst.hmp("info pci").replace("\n", " | "),
                    dst.log_tail(5)))
    if not lsr & UART_LSR_DR or fifo != UART_PAYLOAD or \
       lsr_after & UART_LSR_DR:
        raise Fail("FIFO differs after migration: LSR 0x%02x, read %r, "
                   "LSR after 0x%02x (want %r then empty)" %
                   (lsr, fifo, lsr_after, UART_PAYLOAD))


@scenario("mtty-register-state")
def s_registers(sc):
    m_src, m_dst = sc.mdev(), sc.mdev()
    src, dst = start_pair(sc, m_src.device("mtty0", "on"),
                          m_dst.device("mtty0", "on"))
    base, base1 = uart_program(src)
    migrate(sc, src, dst)
    uart_check(dst, base, base1)


def vfio_devices(info):
    return (info.get("vfio") or {}).get("x-devices") or []


def check_device_bytes(info, dinfo, ids):
    """Fail unless each device of ids moved MIG_DATA_SIZE bytes, as both
    sides' query-migrate tell."""
    errs = []
    for side, i in (("source", info), ("destination", dinfo)):
        detail("%s: status %s, vfio %s" %
               (side, i.get("status"), json.dumps(i.get("vfio"))))
        devs = {d.get("id"): d for d in vfio_devices(i)}
        for qid in ids:
            if qid not in devs:
                errs.append("%s reports no vfio device %s" % (side, qid))
            elif devs[qid].get("transferred") != MTTY2_DATA_SIZE:
                errs.append("%s: %s transferred %s, want %d" %
                            (side, qid, devs[qid].get("transferred"),
                             MTTY2_DATA_SIZE))
    if errs:
        raise Fail("; ".join(errs))


@scenario("mtty-device-bytes")
def s_bytes(sc):
    src, dst, info = simple(sc, "on")
    check_device_bytes(info, dst.cmd("query-migrate"), ["mtty0"])


def device_state(vm, qid):
    for d in vfio_devices(vm.cmd("query-migrate")):
        if d.get("id") == qid:
            return d.get("state")
    return None


def cancel(src):
    src.cmd("migrate_cancel")


def stop_cont(src):
    src.cmd("stop")
    src.cmd("cont")


def cancel_then_retry(sc, caps, reach, same_mdev, max_bandwidth=None,
                      interrupt=cancel, want="cancelled"):
    """Start a migration, interrupt it once reach(src) holds, check it
    ends in want and the source runs on, then migrate again onto the same
    or a fresh mdev."""
    m_src, m_dst = sc.mdev(), sc.mdev()
    src, dst = start_pair(sc, m_src.device("mtty0", "on"),
                          m_dst.device("mtty0", "on"))
    if max_bandwidth:
        src.cmd("migrate-set-parameters", **{"max-bandwidth": max_bandwidth})
    start_migration(sc, src, dst, caps)
    where = reach(src)
    interrupt(src)
    info = poll("the migration to end", lambda: final_status(src), T_MIGRATE)
    if info["status"] != want:
        raise Fail("after %s at %s: %s, want %s" %
                   (interrupt.__name__, where, migration_error(info), want))
    if want == "failed" and m_src.uuid not in info.get("error-desc", ""):
        raise Fail("the error does not name the device: %s" %
                   migration_error(info))
    try:
        src.wait_status("running")
    except Fail as e:
        raise Fail("source after %s at %s: %s" % (interrupt.__name__, where, e))
    detail("%s at %s: %s; source running" %
           (interrupt.__name__, where, migration_error(info)))
    sc.drop(dst)
    m_new = m_dst if same_mdev else sc.mdev()
    dst = sc.vm("dst2", m_new.device("mtty0", "on") + ["-incoming", "defer"])
    set_caps(src, [c for c in caps if c == "pause-before-switchover"], False)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    retry_caps = [c for c in caps if c != "pause-before-switchover"]
    try:
        info = migrate(sc, src, dst, retry_caps)
        # The retry must move the whole state again, nothing less.
        check_device_bytes(info, dst.cmd("query-migrate"), ["mtty0"])
    except Fail as e:
        raise Fail("retry onto the %s destination mdev: %s" %
                   ("same" if same_mdev else "fresh", e))


def in_precopy(src):
    """Pre-copy: active, guest running, the device in pre-copy."""
    def check():
        info = src.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            raise Fail("migration ended (%s) before the cancel" %
                       migration_error(info))
        if info.get("status") == "active" and src.status() == "running" and \
           device_state(src, "mtty0") == "pre-copy":
            return "pre-copy"
        return None
    return poll("pre-copy", check, T_MIGRATE)


def at_pre_switchover(src):
    def check():
        info = src.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            raise Fail("migration ended (%s) before pre-switchover" %
                       migration_error(info))
        return info.get("status") == "pre-switchover" and "pre-switchover"
    return poll("pre-switchover", check, T_MIGRATE)


def cancel_precopy(sc, same_mdev):
    # 64 MiB of mostly zero RAM at 16 KiB/s: pre-copy lasts over ten
    # seconds, ample for the polls to see it and the cancel to land there.
    cancel_then_retry(sc, (), in_precopy, same_mdev, max_bandwidth=16 << 10)


@scenario("mtty-cancel-precopy-retry-fresh")
def s_cancel_precopy_fresh(sc):
    cancel_precopy(sc, same_mdev=False)


@scenario("mtty-cont-during-precopy")
def s_cont_precopy(sc):
    # "stop" then "cont" in pre-copy: the device leaves STOP_COPY and its
    # stream ends half sent, so the migration must fail, not complete with
    # a stream that starts over; the retry then moves the whole state.
    cancel_then_retry(sc, (), in_precopy, False, max_bandwidth=16 << 10,
                      interrupt=stop_cont, want="failed")


@scenario("mtty-guest-panic-during-precopy")
def s_panic_precopy(sc):
    # A guest panic stops the VM in pre-copy (-action panic=pause): the
    # device's stream must go on in STOP_COPY, and the migration complete
    # with the device's state, sent once.
    extra = ["-device", "pvpanic", "-action", "panic=pause"]
    m_src, m_dst = sc.mdev(), sc.mdev()
    src, dst = start_pair(sc, m_src.device("mtty0", "on") + extra,
                          m_dst.device("mtty0", "on") + extra)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 16 << 10})
    start_migration(sc, src, dst)
    in_precopy(src)
    outb(src, 0x505, 1)     # pvpanic: PVPANIC_PANICKED
    src.wait_status("guest-panicked")
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    info = poll("the migration to end", lambda: final_status(src), T_MIGRATE)
    if info["status"] != "completed":
        raise Fail("migration %s (destination: %s)" %
                   (migration_error(info), dst.log_tail(3)))
    try:
        dst.wait_status("guest-panicked")
    except Fail as e:
        raise Fail("%s; destination log: %s" % (e, dst.log_tail(3)))
    check_device_bytes(info, dst.cmd("query-migrate"), ["mtty0"])


@scenario("mtty-shutdown-in-precopy")
def s_shutdown_precopy(sc):
    # The guest shuts down in pre-copy under -no-shutdown, as libvirt
    # starts QEMU (-no-reboot makes system_reset a shutdown): the VM stops
    # in 'shutdown', the device's stream goes on in STOP_COPY, and the
    # destination gets the registers and ends in 'shutdown' too.
    extra = ["-no-shutdown", "-no-reboot"]
    m_src, m_dst = sc.mdev(), sc.mdev()
    src, dst = start_pair(sc, m_src.device("mtty0", "on") + extra,
                          m_dst.device("mtty0", "on") + extra)
    base, base1 = uart_program(src)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 16 << 10})
    start_migration(sc, src, dst)
    in_precopy(src)
    src.cmd("system_reset")
    src.wait_status("shutdown")
    info = src.cmd("query-migrate")
    state = {d.get("id"): d.get("state")
             for d in vfio_devices(info)}.get("mtty0")
    detail("source in 'shutdown': migration %s, mtty0 %s" %
           (info.get("status"), state))
    if info.get("status") == "active" and state != "stop-copy":
        raise Fail("mtty0 in %s once the VM stopped, not stop-copy" % state)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    info = poll("the migration to end", lambda: final_status(src), T_MIGRATE)
    if info["status"] != "completed":
        raise Fail("migration %s (destination: %s)" %
                   (migration_error(info), dst.log_tail(3)))
    try:
        dst.wait_status("shutdown")
    except Fail as e:
        raise Fail("%s; destination log: %s" % (e, dst.log_tail(3)))
    check_device_bytes(info, dst.cmd("query-migrate"), ["mtty0"])
    uart_check(dst, base, base1)


@scenario("mtty-cancel-pre-switchover-retry-fresh")
def s_cancel_psw_fresh(sc):
    cancel_then_retry(sc, ("pause-before-switchover",), at_pre_switchover,
                      same_mdev=False)


@scenario("mtty-two-devices-p2p")
def s_p2p(sc):
    src, dst, info = simple(sc, "on", mdevs_per_vm=2)
    check_device_bytes(info, dst.cmd("query-migrate"), ["mtty0", "mtty1"])


@scenario("debian-qemu-7.2-refuses")
def s_debian(sc):
    if not os.path.exists(DEBIAN_QEMU):
        raise Fail("Debian's QEMU is not in the initramfs")
    m = sc.mdev()
    env = dict(os.environ, LD_LIBRARY_PATH=DEBIAN_QEMU_LIBS,
               QEMU_MODULE_DIR=DEBIAN_QEMU_MODULES)
    src = sc.vm("src", m.device("mtty0", None), binary=DEBIAN_QEMU, env=env)
    detail(src.hmp("info version").strip())
    reasons = src.cmd("query-migrate").get("blocked-reasons")
    try:
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % sc.next_port())
    except QMPError as e:
        detail("migrate refused: %s" % e)
        detail("blocked-reasons: %s" % "; ".join(reasons or ["(none)"]))
        # 7.2 refuses with the text of the first blocker.
        if not reasons or not any(r in str(e) for r in reasons):
            raise Fail("refused, but not by a migration blocker: %s" % e)
        return
    raise Fail("Debian's QEMU accepted the migration")


# Debian 13's QEMU 10.0 as the other side, both ways, on machine type
# CROSS_MACHINE.  What upstream 10.0 does with Linux's mtty on Debian's
# 6.12 kernel, measured here, is what these scenarios expect of it:
# - A device that advertises DMA logging (stock mtty) is trusted with it,
#   under enable-migration=auto (the default) and on alike.  Debian's
#   6.12 fails every report with EOPNOTSUPP, and 10.0 has no fallback: the
#   migration fails at once ("ram_save_setup failed: Operation not
#   supported"), the source runs on.  x-device-dirty-page-tracking=off, an
#   option of 10.0's that the series does not have, makes it use type1's
#   tracking instead, which it accepts only under on, with a warning.
# - 10.0 does not count type1's tracking, not even for an mdev: under auto
#   a device without DMA logging (the variant) gets a migration blocker
#   ("VFIO device doesn't support device and IOMMU dirty tracking"); under
#   on only that warning, and it migrates.
# So a VM that 10.0 started with its defaults cannot leave it with mtty
# here, one that came by the upgrade included; the way back checks that
# (once per variant), then starts 10.0 as it must be for mtty to migrate:
# enable-migration=on, plus x-device-dirty-page-tracking=off for stock
# mtty.  The upgrade needs nothing: the series migrates under its default
# (auto), and 10.0 loads the stream under its own.  Each side loads the
# other's stream, switchover-ack and pre-copy data included.

_trixie = []


def trixie_peer():
    """VM() arguments that run trixie's QEMU, once it said it is 10.0; a
    Skip when setup.sh could not fetch it here."""
    missing = os.path.join(TRIXIE, "MISSING")
    if os.path.exists(missing):
        with open(missing) as f:
            raise Skip(f.read().strip())
    if not _trixie:
        try:
            r = subprocess.run(TRIXIE_QEMU + ["--version"],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=T_START)
        except subprocess.TimeoutExpired:
            raise Fail("trixie's QEMU --version still runs after %d s" %
                       T_START)
        first = (r.stdout.splitlines() or [""])[0]
        if r.returncode or "version 10.0." not in first:
            raise Fail("trixie's QEMU is not 10.0: %s" % r.stdout.strip())
        _trixie.append(first)
    detail("trixie: " + _trixie[0])
    return dict(binary=TRIXIE_QEMU, firmware=TRIXIE_FIRMWARE,
                machine=CROSS_MACHINE)


def trixie_only(vm):
    """Fail unless every shared object vm's QEMU mapped is trixie's."""
    with open("/proc/%d/maps" % vm.proc.pid) as f:
        objs = {l.split()[-1] for l in f if " /" in l and ".so" in l}
    other = sorted(o for o in objs if not o.startswith(TRIXIE + "/"))
    if not objs or other:
        raise Fail("trixie's QEMU loaded %s" %
                   (", ".join(other) or "no shared object at all"))


def firmware_from(vm, rom):
    """Fail unless the SeaBIOS that vm ran is the one in file rom."""
    with open(vm.fw_path, "rb") as f:
        m = re.search(rb"SeaBIOS \(version ([^)\s]+)\)", f.read())
    with open(rom, "rb") as f:
        ok = m and m.group(1) in f.read()
    detail("%s: SeaBIOS %s" % (vm.name, m.group(1).decode() if m else "?"))
    if not ok:
        raise Fail("%s did not run the SeaBIOS of %s" % (vm.name, rom))


def series_bytes(vm, side):
    """Fail unless the series' vm moved mtty0's MIG_DATA_SIZE bytes."""
    info = vm.cmd("query-migrate")
    detail("%s (series): vfio %s" % (side, json.dumps(info.get("vfio"))))
    devs = {d.get("id"): d for d in vfio_devices(info)}
    if (devs.get("mtty0") or {}).get("transferred") != MTTY2_DATA_SIZE:
        raise Fail("%s: mtty0 moved %s bytes, want %d" %
                   (side, (devs.get("mtty0") or {}).get("transferred"),
                    MTTY2_DATA_SIZE))


def upgrade(sc, caps):
    """bookworm + series -> trixie, with vfio-pci's defaults on both sides,
    the same command line as libvirt would give them."""
    tq = trixie_peer()
    m_src, m_dst = sc.mdev(), sc.mdev()
    src = sc.vm("src", m_src.device("mtty0", None), machine=CROSS_MACHINE)
    dst = sc.vm("dst", m_dst.device("mtty0", None) + ["-incoming", "defer"],
                **tq)
    trixie_only(dst)
    base, base1 = uart_program(src)
    migrate(sc, src, dst, caps)
    series_bytes(src, "source")
    uart_check(dst, base, base1)
    # What the VM may do next on 10.0 (see above)
    detail("destination (10.0) blocked-reasons: %s" % "; ".join(
        dst.cmd("query-migrate").get("blocked-reasons") or ["(none)"]))


def defaults_refuse(sc, m, tq, dma_logging):
    """Fail unless 10.0, with vfio-pci's defaults, refuses to migrate mdev
    m as measured (see above)."""
    vm = sc.vm("defaults", m.device("mtty0", None), **tq)
    trixie_only(vm)
    port = sc.next_port()
    uri = "tcp:127.0.0.1:%d" % port
    if not dma_logging:
        try:
            vm.cmd("migrate", uri=uri)
        except QMPError as e:
            detail("10.0's defaults: migrate refused: %s" % e)
            if "dirty tracking" not in str(e):
                raise Fail("10.0 refused for another reason: %s" % e)
            sc.drop(vm)
            return
        raise Fail("10.0 under its defaults accepted the migration")
    # 10.0 fails in its setup, before a destination could answer: a socket
    # that takes the connection stands in for one.
    sink = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sink.bind(("127.0.0.1", port))
        sink.listen(1)
        vm.cmd("migrate", uri=uri)
        info = poll("the migration to end", lambda: final_status(vm),
                    T_MIGRATE)
    finally:
        sink.close()
    detail("10.0's defaults: %s" % migration_error(info))
    if info["status"] != "failed" or \
       "Operation not supported" not in info.get("error-desc", ""):
        raise Fail("10.0 under its defaults: %s, want failed with "
                   "EOPNOTSUPP" % migration_error(info))
    vm.wait_status("running")
    sc.drop(vm)


def way_back(sc, caps, dma_logging):
    """trixie -> bookworm + series, 10.0 started with the options it needs
    to migrate mtty here.  Without capabilities, check first that 10.0's
    defaults refuse (they refuse the same with them)."""
    tq = trixie_peer()
    m_src = sc.mdev()
    if not caps:
        defaults_refuse(sc, m_src, tq, dma_logging)
    extra = ",x-device-dirty-page-tracking=off" if dma_logging else ""
    src = sc.vm("src", m_src.device("mtty0", "on", extra), **tq)
    trixie_only(src)
    dst = sc.vm("dst", sc.mdev().device("mtty0", None) +
                ["-incoming", "defer"], machine=CROSS_MACHINE)
    base, base1 = uart_program(src)
    firmware_from(src, TRIXIE_FIRMWARE + "/bios-256k.bin")
    migrate(sc, src, dst, caps)
    series_bytes(dst, "destination")
    uart_check(dst, base, base1)


RP_ACK = ("return-path", "switchover-ack")


@scenario("trixie-upgrade")
def s_trixie_upgrade(sc):
    upgrade(sc, ())


@scenario("trixie-upgrade-switchover-ack")
def s_trixie_upgrade_ack(sc):
    upgrade(sc, RP_ACK)


@scenario("trixie-way-back")
def s_trixie_back(sc):
    way_back(sc, (), dma_logging=True)


@scenario("trixie-way-back-switchover-ack")
def s_trixie_back_ack(sc):
    way_back(sc, RP_ACK, dma_logging=True)


@scenario("trixie-upgrade-nolog", module=MTTY_NOLOG)
def s_trixie_upgrade_nolog(sc):
    upgrade(sc, ())


@scenario("trixie-upgrade-nolog-switchover-ack", module=MTTY_NOLOG)
def s_trixie_upgrade_nolog_ack(sc):
    upgrade(sc, RP_ACK)


@scenario("trixie-way-back-nolog", module=MTTY_NOLOG)
def s_trixie_back_nolog(sc):
    way_back(sc, (), dma_logging=False)


@scenario("trixie-way-back-nolog-switchover-ack", module=MTTY_NOLOG)
def s_trixie_back_nolog_ack(sc):
    way_back(sc, RP_ACK, dma_logging=False)


@scenario("mtty-cancel-precopy-retry-same")
def s_cancel_precopy_same(sc):
    cancel_precopy(sc, same_mdev=True)


@scenario("mtty-cancel-pre-switchover-retry-same")
def s_cancel_psw_same(sc):
    cancel_then_retry(sc, ("pause-before-switchover",), at_pre_switchover,
                      same_mdev=True)


# Faults: a destination killed (SIGKILL) at each phase, a file that
# cannot take the stream, a source killed mid-stream.  The promise: the
# source ends 'failed' and runs on with its device running and its
# registers intact, and the same mdevs serve a new migration.  Last, as
# they reuse mdevs that a killed QEMU held.

def uart_intact(vm, base, base1):
    """Fail unless vm's mtty0 still holds uart_program()'s registers and
    has data in its FIFO (not read: the retry must carry it)."""
    got = {k: inb(vm, p) for k, p in uart_regs(base, base1).items()}
    if got != UART_WANT or not inb(vm, base + UART_LSR) & UART_LSR_DR:
        raise Fail("source registers changed: want %r, got %r" %
                   (UART_WANT, got))


# A failed migration's query-migrate has no VFIO section: the source's
# device state comes from its trace instead.
STATE_TRACE = ["-trace", "vfio_migration_set_state", "-trace",
               "migrate_set_state"]


def traced_device_state(vm, uuid):
    """The state that vm's last transition of the mdev uuid went to."""
    state = None
    with open(vm.log_path) as f:
        for line in f:
            m = re.search(r"vfio_migration_set_state\s+\(([^)]*)\) \S+ -> "
                          r"(\S+),", line)
            if m and m.group(1) == uuid:
                state = m.group(2)
    return state


def kill9(vm):
    vm.proc.kill()
    vm.proc.wait()
    log("%s killed" % vm.name)


def source_survives(src, m_src, fault):
    """After fault: the migration failed naming why, the source runs, its
    device is back in running with its registers; returns the error."""
    try:
        info = poll("the migration to end", lambda: final_status(src),
                    T_MIGRATE)
    except Fail as e:
        raise Fail("%s: status %s, run state %s; source log: %s" %
                   (e, src.cmd("query-migrate").get("status"), src.status(),
                    src.log_tail(6)))
    if info["status"] != "failed":
        raise Fail("after %s: %s, want failed" %
                   (fault, migration_error(info)))
    try:
        src.wait_status("running")
    except Fail as e:
        raise Fail("source after %s: %s" % (fault, e))
    state = traced_device_state(src, m_src.uuid)
    if state != "RUNNING":
        raise Fail("source's mtty0 in %s after %s, not running" %
                   (state, fault))
    detail("%s: %s; source running, mtty0 %s" %
           (fault, migration_error(info), state))
    return info


def retry_onto(sc, src, m_dst, base, base1, caps=()):
    """Migrate src into a new QEMU on the mdev m_dst, and check that the
    registers arrive."""
    dst = sc.vm("dst2", m_dst.device("mtty0", "on") + ["-incoming", "defer"])
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    try:
        migrate(sc, src, dst, caps)
        uart_check(dst, base, base1)
    except Fail as e:
        raise Fail("retry onto the same destination mdev: %s" % e)


def kill_destination(sc, caps, reach, before=None, max_bandwidth=16 << 10):
    m_src, m_dst = sc.mdev(), sc.mdev()
    src, dst = start_pair(sc, m_src.device("mtty0", "on") + STATE_TRACE,
                          m_dst.device("mtty0", "on"))
    base, base1 = uart_program(src)
    src.cmd("migrate-set-parameters", **{"max-bandwidth": max_bandwidth})
    set_caps(src, caps)
    set_caps(dst, caps)
    uri = "tcp:127.0.0.1:%d" % sc.next_port()
    dst.cmd("migrate-incoming", uri=uri)
    if before:
        before(dst)     # once it listens: the kernel accepts for it
    src.cmd("migrate", uri=uri)
    where = reach(src)
    detail("at %s: source mtty0 %s" % (where, device_state(src, "mtty0")))
    kill9(dst)
    sc.drop(dst)
    if "pre-switchover" in where:
        try:
            src.cmd("migrate-continue", state="pre-switchover")
        except QMPError as e:
            detail("migrate-continue: %s" % e)
    source_survives(src, m_src, "destination killed at " + where)
    uart_intact(src, base, base1)
    set_caps(src, [c for c in caps if c == "pause-before-switchover"], False)
    retry_onto(sc, src, m_dst, base, base1,
               [c for c in caps if c != "pause-before-switchover"])


def in_stop_copy(src):
    # At pre-switchover the VM is stopped for the switchover: the device
    # is in stop-copy, its stream not sent yet.
    where = at_pre_switchover(src)
    state = device_state(src, "mtty0")
    if state != "stop-copy":
        raise Fail("mtty0 in %s at pre-switchover, not stop-copy" % state)
    return "stop-copy (" + where + ")"


@scenario("mtty-kill-dst-stop-copy")
def s_kill_dst_stop_copy(sc):
    kill_destination(sc, ("pause-before-switchover",), in_stop_copy,
                     max_bandwidth=1 << 30)


@scenario("mtty-kill-dst-precopy")
def s_kill_dst_precopy(sc):
    kill_destination(sc, (), in_precopy)


def waiting_for_ack(src):
    """All of RAM sent and the device in pre-copy, the migration still
    active: the source waits for the stopped destination's ack."""
    def check():
        info = src.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            raise Fail("migration ended (%s) before the ack wait" %
                       migration_error(info))
        ram = info.get("ram") or {}
        # The firmware's timer keeps a page or two dirty: "all sent" is
        # less than 1 MiB left after a few syncs.
        return info.get("status") == "active" and \
            ram.get("dirty-sync-count", 0) >= 3 and \
            ram.get("remaining", 1 << 30) < (1 << 20) and \
            device_state(src, "mtty0") == "pre-copy"
    poll("the source to wait for the switchover ack", check, T_MIGRATE)
    return "switchover-ack wait"


@scenario("mtty-kill-dst-switchover-ack")
def s_kill_dst_ack(sc):
    # The destination is stopped (SIGSTOP) before the migration starts:
    # its ack cannot come, and the source waits for it with all sent.
    kill_destination(sc, ("return-path", "switchover-ack"), waiting_for_ack,
                     before=lambda dst: os.kill(dst.proc.pid, signal.SIGSTOP),
                     max_bandwidth=1 << 30)


@scenario("mtty-file-fs-full")
def s_fs_full(sc):
    # A migration to a file on a file system too small for the stream
    # (64 MiB of RAM, mostly zero pages, still needs more than 64 KiB).
    full = "/tmp/full"
    os.makedirs(full, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full])
    try:
        m_src, m_dst = sc.mdev(), sc.mdev()
        src = sc.vm("src", m_src.device("mtty0", "on") + STATE_TRACE)
        base, base1 = uart_program(src)
        src.cmd("migrate", uri="exec:cat > %s/state" % full)
        source_survives(src, m_src, "a file on a full tmpfs")
        uart_intact(src, base, base1)
        st = os.statvfs(full)
        detail("tmpfs: %d of %d KiB free" %
               (st.f_bavail * st.f_frsize >> 10, st.f_blocks * st.f_frsize >> 10))
        retry_onto(sc, src, m_dst, base, base1)
    finally:
        run(["umount", full])


@scenario("mtty-kill-src-precopy")
def s_kill_src(sc):
    # The source dies mid-stream: the destination must end by itself with
    # a message, and both mdevs serve a new pair of QEMUs.
    m_src, m_dst = sc.mdev(), sc.mdev()
    src, dst = start_pair(sc, m_src.device("mtty0", "on"),
                          m_dst.device("mtty0", "on"))
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 16 << 10})
    start_migration(sc, src, dst)
    in_precopy(src)
    kill9(src)
    sc.drop(src)
    poll("the destination to exit", lambda: dst.proc.poll() is not None,
         T_MIGRATE)
    with open(dst.log_path) as f:
        msg = f.read().strip()
    detail("destination exit %d: %s" % (dst.proc.returncode, dst.log_tail(2)))
    if dst.proc.returncode == 0 or not msg:
        raise Fail("destination exited %d without a message" %
                   dst.proc.returncode)
    sc.drop(dst)
    src, dst = start_pair(sc, m_src.device("mtty0", "on"),
                          m_dst.device("mtty0", "on"))
    base, base1 = uart_program(src)
    try:
        migrate(sc, src, dst)
        uart_check(dst, base, base1)
    except Fail as e:
        raise Fail("a new migration on the same mdevs: %s" % e)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if r.returncode:
        raise Fail("%s: %s" % (" ".join(cmd), r.stdout.strip()))


loaded = None


def swap_mtty(ko):
    global loaded
    if loaded == ko:
        return
    if os.path.exists("/sys/module/mtty"):
        run(["rmmod", "mtty"])
    loaded = None
    run(["insmod", ko])
    poll("mtty's mdev types", lambda: os.path.exists(MDEV_TYPE), T_STATE)
    loaded = ko


def selftest():
    """Exercise, on the build host, the stdlib paths the scenarios use, so
    that --list-imports sees every module they load."""
    subprocess.run(["true"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                   universal_newlines=True)
    with open(os.devnull, "w") as f:
        p = subprocess.Popen(["true"], stdin=subprocess.DEVNULL, stdout=f,
                             stderr=f, start_new_session=True)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    a, b = socket.socketpair()
    a.settimeout(1)
    b.sendall(json.dumps({"return": {}}).encode() + b"\n")
    json.loads(a.recv(100).split(b"\n")[0])
    re.search(r"=\s*(0x[0-9a-fA-F]+)", "= 0x1")
    os.urandom(16).hex()


def main():
    if sys.argv[1:] == ["--list-imports"]:
        selftest()
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if f:
                print(f)
        return
    if sys.argv[1:] == ["--list"]:
        for name, _, _ in SCENARIOS:
            print(name)
        return
    only = None
    if len(sys.argv) == 3 and sys.argv[1] == "--only":
        only = [n if n.startswith("realkernel/") else "realkernel/" + n
                for n in sys.argv[2].split(",")]
    # Which QEMU the scenarios run (the series' build, or make check-deb's
    # package): rig.py relays this line and check-deb looks for it.
    r = subprocess.run([QEMU, "--version"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    out("     | L2 QEMU: " + (r.stdout.splitlines() or ["(no output)"])[0])
    for name, fn, module in SCENARIOS:
        if only and name not in only:
            continue
        sc = Scenario(name)
        t0 = time.monotonic()
        Kernel.start()
        log("scenario %s" % name)
        try:
            swap_mtty(module)
            fn(sc)
            result = "PASS %s" % name
        except Fail as e:
            result = "FAIL %s: %s" % (name, e)
        except Skip as e:
            result = "SKIP %s: %s" % (name, e)
        except (QMPError, OSError, ValueError, KeyError) as e:
            result = "FAIL %s: %s: %s" % (name, type(e).__name__, e)
        finally:
            sc.cleanup()
        Kernel.read()
        oops = Kernel.lines
        if oops and result.startswith("PASS"):
            result = "FAIL %s: kernel: %s" % (name, oops[0].split("] ", 1)[-1])
        if oops:
            detail("kernel log:\n" + "\n".join(oops))
        detail("%.1f s" % (time.monotonic() - t0))
        out(result)
        for line in DETAILS:
            out(line)
        DETAILS.clear()
    out("DONE")
    # A thread may still sit in a blocked sysfs write: do not wait for it.
    os._exit(0)


if __name__ == "__main__":
    main()
