# SPDX-License-Identifier: GPL-2.0-or-later
#
# QEMU processes for the fuzzer: one QEMU with its QMP monitor (and a
# qtest channel, for sources) on socket pairs, no socket files anywhere;
# small synchronous clients with a deadline on every wait; and the
# bookkeeping that ends every QEMU we started, even on Ctrl-C.

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

# Every QEMU alive, by pid: the signal and exit handlers end them all.
# A QEMU is started and registered under the lock, and none once we are
# stopping, so that none escapes; re-entrant, as the signal handler runs
# in the main thread, which may be starting one.
_live = {}
_live_lock = threading.RLock()
_stopping = threading.Event()

# The sim's BAR0 registers (hw/vfio/sim.h)
REG_MAGIC = 0x00
REG_DIGEST = 0x08
REG_DEVICE_STATE = 0x10
REG_GENERATION = 0x18
REG_CONFIG = 0x20
SIM_MAGIC = 0x4d49532d4f494656
STATE_STOP, STATE_RUNNING, STATE_RESUMING = 1, 2, 4

# Where we map the sim BARs: the PCI hole of a small pc machine, as libqos
BAR_BASE = 0xe0000000


class VmError(Exception):
    pass


class Timeout(VmError):
    pass


class Stopped(Exception):
    """A signal asked us to stop: no new QEMU."""


def stopping():
    return _stopping.is_set()


def _pdeathsig_prefix():
    # A QEMU must not outlive a runner that is SIGKILLed
    tool = shutil.which("setpriv")
    return [tool, "--pdeathsig", "KILL", "--"] if tool else []


_PREFIX = _pdeathsig_prefix()


def binary_id(path):
    """Changes when the binary is rebuilt."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def kill_all():
    with _live_lock:
        procs = list(_live.values())
        _live.clear()
    for p in procs:
        try:
            p.kill()
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


class Chan:
    """A socket read line by line, every read bounded by a deadline."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def readline(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no answer in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Timeout("no answer in time")
            except OSError as e:
                raise VmError("channel error: %s" % e)
            if not chunk:
                raise EOFError("channel closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Qmp:
    def __init__(self, sock):
        self.ch = Chan(sock)
        self.events = []

    def handshake(self, deadline):
        json.loads(self.ch.readline(deadline))
        self.cmd("qmp_capabilities", deadline)

    def _read(self, deadline):
        msg = json.loads(self.ch.readline(deadline))
        if "event" in msg:
            self.events.append(msg)
        return msg

    def cmd(self, name, deadline, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.ch.send(json.dumps(req).encode() + b"\n")
        while True:
            msg = self._read(deadline)
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise VmError("%s: %s" % (name, msg["error"]["desc"]))

    def cmd_fd(self, name, fd, deadline, **args):
        """A command with FD passed along (SCM_RIGHTS), as for getfd."""
        req = {"execute": name, "arguments": args}
        socket.send_fds(self.ch.sock, [json.dumps(req).encode() + b"\n"],
                        [fd])
        while True:
            msg = self._read(deadline)
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise VmError("%s: %s" % (name, msg["error"]["desc"]))

    def wait_event(self, pred, deadline):
        """The first event (seen or to come) for which PRED holds."""
        while True:
            for i, ev in enumerate(self.events):
                if pred(ev):
                    return self.events.pop(i)
            self._read(deadline)


class Qtest:
    """The qtest protocol: port I/O and memory, one command a line."""

    def __init__(self, sock):
        self.ch = Chan(sock)

    def _cmd(self, line, deadline):
        self.ch.send(line.encode() + b"\n")
        while True:
            ans = self.ch.readline(deadline).decode()
            if ans.startswith("IRQ"):
                continue
            if not ans.startswith("OK"):
                raise VmError("qtest %r: %s" % (line, ans))
            return ans[2:].strip()

    def outl(self, port, val, dl):
        self._cmd("outl 0x%x 0x%x" % (port, val), dl)

    def outw(self, port, val, dl):
        self._cmd("outw 0x%x 0x%x" % (port, val), dl)

    def inl(self, port, dl):
        return int(self._cmd("inl 0x%x" % port, dl), 16)

    def readq(self, addr, dl):
        return int(self._cmd("readq 0x%x" % addr, dl), 16)

    def writeq(self, addr, val, dl):
        self._cmd("writeq 0x%x 0x%x" % (addr, val), dl)

    # PCI configuration space of bus 0, by the 0xcf8/0xcfc mechanism
    def cfg_addr(self, slot, reg, dl):
        self.outl(0xcf8, 0x80000000 | slot << 11 | (reg & 0xfc), dl)

    def cfg_readl(self, slot, reg, dl):
        self.cfg_addr(slot, reg, dl)
        return self.inl(0xcfc, dl)

    def cfg_writel(self, slot, reg, val, dl):
        self.cfg_addr(slot, reg, dl)
        self.outl(0xcfc, val, dl)

    def cfg_space(self, slot, dl):
        out = bytearray()
        for reg in range(0, 256, 4):
            out += self.cfg_readl(slot, reg, dl).to_bytes(4, "little")
        return bytes(out)

    def map_bar0(self, slot, addr, dl):
        """Program the sim's 64-bit BAR0 and enable memory decoding."""
        self.cfg_writel(slot, 0x10, addr & 0xffffffff, dl)
        self.cfg_writel(slot, 0x14, addr >> 32, dl)
        cmd = self.cfg_readl(slot, 0x04, dl) & 0xffff
        self.cfg_writel(slot, 0x04, cmd | 0x2, dl)


class HmpIo(Qtest):
    """Qtest's port reads and writes and memory reads, by HMP commands:
    "o", "i" and "xp".  No memory writes."""

    def __init__(self, qmp):
        self.qmp = qmp
        self.ch = None

    def _hmp(self, line, dl, want=None):
        out = self.qmp.cmd("human-monitor-command", dl,
                           **{"command-line": line})
        if want and want not in out or not want and out.strip():
            raise VmError("HMP %r: %s" % (line, out.strip()))
        return out

    # HMP sizes: /b 8, /h 16, /w 32, /g 64 bits
    def outl(self, port, val, dl):
        self._hmp("o /w 0x%x 0x%x" % (port, val), dl)

    def outw(self, port, val, dl):
        self._hmp("o /h 0x%x 0x%x" % (port, val), dl)

    def inl(self, port, dl):
        # "portl[0x0cfc] = 0x00f01b36"
        return int(self._hmp("i /w 0x%x" % port, dl, "=").split("=")[1],
                   16)

    def readq(self, addr, dl):
        # "00000000e0010000: 0x4d49532d4f494656"
        return int(self._hmp("xp /1gx 0x%x" % addr, dl, ":").split(":")[1]
                   .split()[0], 16)

    def writeq(self, addr, val, dl):
        raise VmError("no memory writes through the monitor")


class Qemu:
    """One QEMU under -accel qtest (no guest code runs), QMP and, with
    QTEST, the qtest protocol on socket pairs.

    EXTRA_PAIRS socket pairs are made for the caller: QEMU inherits one end
    of each (self.child_fds[i] is its number there), the caller keeps the
    other (self.pairs[i]).
    """

    def __init__(self, binary, args, extra_pairs=0, gdb=False, qtest=True):
        self.qmp_sock, qmp_child = socket.socketpair()
        self.qt_sock, qt_child = socket.socketpair()
        self.pairs, childs = [], []
        for _ in range(extra_pairs):
            mine, theirs = socket.socketpair()
            self.pairs.append(mine)
            childs.append(theirs)
        self.child_fds = [c.fileno() for c in childs]
        cmd = [binary, "-nodefaults", "-display", "none", "-accel", "qtest",
               "-chardev", "socket,id=qmp,fd=%d" % qmp_child.fileno(),
               "-mon", "chardev=qmp,mode=control"]
        if qtest:
            cmd += ["-chardev", "socket,id=qt,fd=%d" % qt_child.fileno(),
                    "-object", "qtest,id=qtest0,chardev=qt,log=/dev/null"]
        cmd += args
        if gdb:
            cmd = ["gdb", "-batch", "-nx", "-ex", "set pagination off",
                   "-ex", "handle SIGUSR1 SIGPIPE nostop noprint",
                   "-ex", "run", "-ex", "thread apply all bt", "--args"] + cmd
        self.cmdline = cmd
        # An unlinked file: nothing to clean up, whatever happens
        self.errf = tempfile.TemporaryFile()
        fds = [qmp_child.fileno(), qt_child.fileno()] + self.child_fds
        self.started = time.monotonic()
        try:
            with _live_lock:
                if _stopping.is_set():
                    raise Stopped()
                self.proc = subprocess.Popen(
                    _PREFIX + cmd, pass_fds=fds, stdin=subprocess.DEVNULL,
                    stdout=self.errf, stderr=self.errf,
                    start_new_session=True)
                _live[self.proc.pid] = self.proc
        finally:
            for s in [qmp_child, qt_child] + childs:
                s.close()
        self.qmp = Qmp(self.qmp_sock)
        # Without the qtest object (QEMU leaks it at exit, which a
        # sanitizer build reports), the monitor does port and memory I/O
        self.qt = Qtest(self.qt_sock) if qtest else HmpIo(self.qmp)

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        self.errf.seek(0)
        return self.errf.read().decode("utf-8", "replace")

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None

    def backtrace(self, timeout=60):
        """All threads' stacks of the live process, by gdb, or ''."""
        if not shutil.which("gdb") or self.proc.poll() is not None:
            return ""
        try:
            r = subprocess.run(["gdb", "-p", str(self.pid), "-batch", "-nx",
                                "-ex", "thread apply all bt"],
                               capture_output=True, text=True,
                               timeout=timeout)
            return r.stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def quit(self, timeout=20):
        """Graceful quit (LeakSanitizer reports at exit), then kill."""
        rc = self.proc.poll()
        if rc is None:
            try:
                self.qmp.cmd("quit", time.monotonic() + timeout)
            except (VmError, EOFError, OSError, ValueError):
                pass
            rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
            rc = self.proc.returncode
        self.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.close()

    def close(self):
        with _live_lock:
            _live.pop(self.proc.pid, None)
        self.qmp.ch.close()
        if self.qt.ch:
            self.qt.ch.close()
        self.qt_sock.close()
        for s in self.pairs:
            try:
                s.close()
            except OSError:
                pass


def install_cleanup():
    """On SIGINT/SIGTERM/SIGHUP: start no QEMU any more and end those
    running (their cases then end at once); the caller sees stopping()
    and winds down.  Returns a function giving the signal number."""
    got = []

    def handler(signum, frame):
        got.append(signum)
        _stopping.set()
        kill_all()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    return lambda: got[0] if got else None
