# SPDX-License-Identifier: GPL-2.0-or-later
#
# One fuzz case: a destination QEMU with the seed's device configuration
# waits with -incoming defer and -S; the runner, playing the source, writes
# the stream into its migration socket (a socket pair: the return path
# works) and reads what comes back; then it waits, bounded, for the
# outcome and holds it against the model's prediction.

import re
import socket
import time

import seeds
import vm

SANITIZER = re.compile(r"ERROR: \w*Sanitizer|runtime error:|LeakSanitizer|"
                       r"AddressSanitizer|UndefinedBehaviorSanitizer")

# Outcomes that are not findings
REFUSED_VFIO = "refused-vfio"
REFUSED_CORE = "refused-core"
LOADED = "loaded"
OK_OUTCOMES = (REFUSED_VFIO, REFUSED_CORE, LOADED)
# The case could not run (QEMU did not start): no verdict on the parser
HARNESS_ERROR = "harness-error"

RP_SWITCHOVER_ACK = 7


class Dest:
    """A destination QEMU, started ahead of its case."""

    def __init__(self, binary, meta, gdb=False):
        self.meta = meta
        args = (meta["machine"] + seeds.device_args_meta(meta) +
                ["-incoming", "defer", "-S"])
        self.q = vm.Qemu(binary, args, extra_pairs=1, gdb=gdb, qtest=False)

    def ready(self, dl):
        """QMP up, capabilities set, listening on its socket."""
        q = self.q
        q.qmp.handshake(dl)
        seeds.set_caps(q, self.meta["caps"], dl)
        q.qmp.cmd("migrate-incoming", dl, uri="fd:%d" % q.child_fds[0])

    def kill(self):
        self.q.kill()


class Result:
    def __init__(self, outcome, detail="", stderr="", backtrace=""):
        self.outcome = outcome      # one of OK_OUTCOMES, else a finding
        self.detail = detail
        self.stderr = stderr
        self.backtrace = backtrace
        self.section_only = False   # named by its section id string only

    @property
    def finding(self):
        return self.outcome not in OK_OUTCOMES + (HARNESS_ERROR,)


def names_device(text, meta, by_id_only=False):
    """Whether TEXT names a device: by its id (the VFIO device name of
    the sim), or by its section id string."""
    for d in meta["devices"]:
        if re.search(r"\b%s\b" % re.escape(d["id"]), text):
            return True
        if not by_id_only and "0000:00:%02x.0/vfio" % d["slot"] in text:
            return True
    return False


def error_lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def rp_messages(data):
    out, pos = [], 0
    while pos + 4 <= len(data):
        t = int.from_bytes(data[pos:pos + 2], "big")
        n = int.from_bytes(data[pos + 2:pos + 4], "big")
        out.append(t)
        pos += 4 + n
    return out


def drain(sock):
    """What the destination sent back so far, without waiting."""
    out = b""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except (BlockingIOError, OSError):
        pass
    return out


def run_case(dest, data, verdict, timeout=20.0):
    """Play the source of DATA to DEST; the Result against VERDICT."""
    q = dest.q
    dl = time.monotonic() + timeout
    try:
        dest.ready(dl)
    except (vm.VmError, EOFError, OSError) as e:
        dest.kill()
        return Result(HARNESS_ERROR, "destination did not come up: %s" %
                      e, q.stderr())
    sock = q.pairs[0]
    sock.settimeout(max(dl - time.monotonic(), 0.1))
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except socket.timeout:
        return hang(dest, "the destination stopped reading the stream")
    except OSError:
        pass        # it refused and closed before the end: fine
    status = None
    try:
        ev = q.qmp.wait_event(
            lambda e: e["event"] == "MIGRATION" and
            e["data"]["status"] in ("completed", "failed"), dl)
        status = ev["data"]["status"]
    except EOFError:
        status = "exited"
    except vm.Timeout:
        return hang(dest, "no migration outcome after %g s" % timeout)
    except (vm.VmError, ValueError):
        status = "exited"
    rp = drain(sock)

    if status == "completed":
        return loaded(dest, verdict, rp, dl)

    rc = q.wait_exit(dl - time.monotonic())
    if rc is None:
        return hang(dest, "migration %s but QEMU did not exit" % status)
    err = q.stderr()
    q.close()
    common = crash_or_sanitizer(rc, err)
    if common:
        return common
    if rc != 1:
        return Result("bad-exit", "refused with exit status %d" % rc, err)
    if not error_lines(err):
        return Result("no-message", "refused without a message", err)
    if verdict.outcome == "load":
        return Result("refused-valid", "a stream the model loads was "
                      "refused", err)
    if verdict.outcome == "unknown":
        return Result(REFUSED_VFIO if names_device(err, dest.meta)
                      else REFUSED_CORE, "(unpredicted)", err)
    if verdict.zone == "vfio":
        if not names_device(err, dest.meta):
            return Result("no-device-in-message", "a refusal in the VFIO "
                          "section of %s does not name the device" %
                          verdict.dev, err)
    if verdict.regex and not re.search(verdict.regex, err):
        return Result("wrong-reason", "expected /%s/ (%s)" %
                      (verdict.regex, verdict.reason), err)
    res = Result(REFUSED_VFIO if verdict.zone == "vfio" else REFUSED_CORE,
                 verdict.reason, err)
    res.section_only = (verdict.zone == "vfio" and
                        not names_device(err, dest.meta, by_id_only=True))
    return res


def crash_or_sanitizer(rc, err):
    if rc is not None and rc < 0:
        return Result("crash", "killed by signal %d" % -rc, err)
    for line in err.splitlines():
        if SANITIZER.search(line):
            # "==123==ERROR: AddressSanitizer: heap-use-after-free on ..."
            what = re.sub(r"^==\d+==", "", line).strip()
            return Result("sanitizer", what[:120], err)
    return None


def hang(dest, what):
    bt = dest.q.backtrace()
    dest.kill()
    return Result("hang", what, dest.q.stderr(), bt)


def loaded(dest, verdict, rp, dl):
    """The destination completed the load: check the device state."""
    q = dest.q
    problems = []
    try:
        problems = check_loaded(dest, verdict, rp, dl)
    except vm.Timeout:
        return hang(dest, "no answer while checking the loaded device")
    except (vm.VmError, EOFError, OSError, ValueError) as e:
        problems.append("checking the loaded device failed: %s" % e)
    rc = q.quit()
    err = q.stderr()
    common = crash_or_sanitizer(rc, err)
    if common:
        return common
    if rc != 0:
        problems.append("exit status %d after quit" % rc)
    if verdict.outcome == "refuse":
        return Result("accepted-invalid", "loaded, but the model refuses "
                      "it (%s): %s" % (verdict.summary(),
                                       "; ".join(problems) or
                                       "device state as checked"), err)
    if problems:
        return Result("bad-state", "; ".join(problems), err)
    return Result(LOADED, "" if verdict.outcome == "load" else
                  "(unpredicted)", err)


def check_loaded(dest, verdict, rp, dl):
    q, meta = dest.q, dest.meta
    probs = []
    info = q.qmp.cmd("query-migrate", dl)
    if info.get("status") != "completed":
        probs.append("query-migrate status %s" % info.get("status"))
    stats = {d["id"]: d for d in
             info.get("vfio", {}).get("x-devices", [])}
    exp = verdict.devices if verdict.outcome == "load" else {}
    for d in meta["devices"]:
        want = exp.get(d["id"])
        st = stats.get(d["id"])
        if st is None:
            probs.append("%s: no VFIO statistics" % d["id"])
            continue
        if want and want["state"] == "RESUMING":
            # Never got its config state; the stream was taken anyway
            probs.append("%s: left in RESUMING: the stream had no config "
                         "state for it, and the load completed" % d["id"])
            continue
        if st["state"] != "stop":
            probs.append("%s: state %s after the load, not stop" %
                         (d["id"], st["state"]))
        if want and st["transferred"] != want["transferred"]:
            probs.append("%s: %d bytes loaded, expected %d" %
                         (d["id"], st["transferred"], want["transferred"]))
    if verdict.outcome == "load" and verdict.ack is not None:
        got = RP_SWITCHOVER_ACK in rp_messages(rp)
        if got != verdict.ack:
            probs.append("switchover ack %s, expected %s" %
                         ("sent" if got else "not sent",
                          "sent" if verdict.ack else "none"))
    if probs:
        return probs

    # Compare the config spaces first, then map every BAR0 where we read
    # it (the loaded addresses may be anything, even the same for two)
    bars = {}
    for i, d in enumerate(meta["devices"]):
        want = exp.get(d["id"])
        cfg = q.qt.cfg_space(d["slot"], dl)
        if want and cfg.hex() != want["pci_config"]:
            wb = bytes.fromhex(want["pci_config"])
            diff = [j for j in range(len(cfg)) if cfg[j] != wb[j]]
            probs.append("%s: config space differs at %s" %
                         (d["id"], ", ".join("0x%02x" % j
                                             for j in diff[:8])))
        bars[d["id"]] = vm.BAR_BASE + 0x10000 * (i + 1)
        q.qt.map_bar0(d["slot"], bars[d["id"]], dl)
    regs = {}
    for d in meta["devices"]:
        want = exp.get(d["id"])
        bar = bars[d["id"]]
        r = {n: q.qt.readq(bar + off, dl) for n, off in
             (("magic", vm.REG_MAGIC), ("state", vm.REG_DEVICE_STATE),
              ("generation", vm.REG_GENERATION),
              ("digest", vm.REG_DIGEST))}
        r["config"] = [q.qt.readq(bar + vm.REG_CONFIG + 8 * j, dl)
                       for j in range(4)]
        regs[d["id"]] = (bar, r)
        if r["magic"] != vm.SIM_MAGIC:
            probs.append("%s: no registers at BAR0" % d["id"])
            continue
        if r["state"] != vm.STATE_STOP:
            probs.append("%s: DEVICE_STATE %d after the load, not STOP" %
                         (d["id"], r["state"]))
        if want:
            for k in ("generation", "digest", "config"):
                if r[k] != want[k]:
                    probs.append("%s: %s %s, expected %s" % (
                        d["id"], k, fmt(r[k]), fmt(want[k])))
    if probs:
        return probs

    # The VM starts: every device RUNNING, its state unchanged
    q.qmp.cmd("cont", dl)
    q.qmp.wait_event(lambda e: e["event"] == "RESUME", dl)
    info = q.qmp.cmd("query-migrate", dl)
    stats = {d["id"]: d for d in info.get("vfio", {}).get("x-devices", [])}
    for d in meta["devices"]:
        bar, before = regs[d["id"]]
        st = q.qt.readq(bar + vm.REG_DEVICE_STATE, dl)
        if st != vm.STATE_RUNNING:
            probs.append("%s: DEVICE_STATE %d once the VM runs" %
                         (d["id"], st))
        if stats.get(d["id"], {}).get("state") != "running":
            probs.append("%s: query-migrate state %s once the VM runs" %
                         (d["id"], stats.get(d["id"], {}).get("state")))
        dig = q.qt.readq(bar + vm.REG_DIGEST, dl)
        if dig != before["digest"]:
            probs.append("%s: digest changed when the VM started" %
                         d["id"])
    return probs


def fmt(v):
    if isinstance(v, list):
        return "[%s]" % ", ".join("0x%x" % x for x in v)
    return "0x%x" % v
