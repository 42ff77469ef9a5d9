#!/usr/bin/env python3
"""Benchmark VFIO stop-copy migration against the transport's own limit.

Runs a matrix of live migrations between two local QEMUs (driven over QMP,
like demo.py), the VM carrying a vfio-sim-pci device, on every transport a
user has for device state: tcp and unix sockets on loopback, fd: with a
pipe (libvirt's save and tunnelled paths) and exec: into a file (`cat >
FILE` on the source, `cat FILE` on the destination once the file is
complete); stop-copy state of 64 MiB, 256 MiB and 1 GiB, the largest of them
once more with the device's null-content mode (it neither makes nor checks
its bytes: what QEMU's own path does, without the device's work, as
null-co measures the block layer), plus one pre-copy
case (1 GiB, 900 MiB of it initial bytes, switchover-ack, tcp) when the
build has it, plus the same VM without the device (the baseline downtime),
plus, on each transport, a RAM-only case: a VM without the device whose
RAM (--ram-size, 1 GiB) is written, migrated by the series and by QEMU 7.2
(the A/B suite's build), so that the bench shows what the series does to
RAM migration.  Each case runs --runs times; runs are interleaved (run 1
of every case, then run 2, ...) so that drift in the machine's load
spreads over all cases.

Method, per run of a case:

* Raw limit.  Right before and right after the migration,
  scripts/rawsock.c moves the same number of bytes (the device's stop-copy
  stream: state, header, trailer) over the same kind of transport (a
  loopback socket, a pipe, a pipe into `cat > FILE`) with the options
  QEMU's migration code gives them with VFIO devices, timed from the first
  write, the receiver connected and ready, until the receiver has taken
  the last byte.  It does so with write()s and read()s of 32 KiB, 64 KiB,
  256 KiB, 1 MiB and 4 MiB, and with each of those writes but 256 KiB
  again read 256 KiB at a time (QEMU's read size; since 2026-12-05 20:40),
  and keeps the best:
  the limit is that of the best plain program, on that transport and this
  machine, not of one guess at a chunk size (on loopback TCP small chunks
  win, on unix sockets and pipes larger ones).  The limit is the better of
  the two sweeps.  Each run reports the ratio of its own throughput to the
  limit measured next to it; only ratios should be compared across runs,
  absolute figures are noisy.

* A plain program with one copy per side (the largest device case of each
  transport, without null-content): right after the raw limit, rawsock
  once more with RAWSOCK_TOUCH=1, where the writer copies each chunk in
  (memcpy) before writing it and the reader copies each chunk out after
  reading it: what the least device costs, as a driver's data_fd read and
  write are a copy each.  (Until 2026-12-05 19:40 the writer filled each
  chunk and the reader summed it, 8 bytes at a time: slower than the
  AVX2 content of vfio-sim-pci.)  Not a limit of the transport: a
  reference for QEMU's path with a device that works on every byte, as
  vfio-sim-pci does.  Its ratio is reported, not judged.

* The raw helper against its own limit (every device case, from the trials
  above): the median of its 256 KiB trials (QEMU's record size, both
  sweeps) over the limit, the best of all its trials.  QEMU's migration is
  one sample held against that best; so is each trial here.  On a machine
  whose trials scatter, this ratio is the most the plain transport itself
  scores, and so the most QEMU can be expected to.  Reported, not judged.

* VFIO stop-copy throughput, measured inside the two QEMUs with their
  trace events (this build's trace backend is `log`, so: -D FILE
  -msg timestamp=on; on the source -trace vfio_migration_set_state
  -trace vfio_save_complete_precopy, and -trace vfio_save_block in the
  pre-copy case; on the destination -trace vfio_sim_resume_record; every
  line carries a microsecond timestamp of the same clock).  Time: from the
  source's last `vfio_migration_set_state ... -> STOP_COPY`, the device
  entering STOP_COPY, until the destination's last `vfio_sim_resume_record`,
  its device having taken and checked the last byte of the state: end to
  end, as the raw helper's window, which ends at its receiver.  Up to
  2026-12-05 19:30 the window ended at the source's
  `vfio_save_complete_precopy`, when the complete handler has handed all
  of the data to the channel; it is kept as stop_copy_seconds_sent (the
  two ends measured 0.0-0.3 ms apart on tcp, unix and pipes).  exec: and
  builds without the destination's event end at the source (exec: the
  destination reads the file once it is complete).  Bytes: without
  pre-copy, all of the device's stream moves in that window: the VFIO
  bytes that query-migrate reports (the device's own bytes, without the
  migration stream's framing).  With pre-copy, the sum of the
  `vfio_save_block` sizes in the window, a trace event enabled only for
  that case (each event is a write() of the log, one per 256 KiB read).

* RAM throughput (RAM-only cases): ram.transferred over total-time minus
  setup-time, from query-migrate on the source, under QEMU's default
  downtime limit.  The guest's RAM is a private mapping of a file with a
  non-zero word in every 8 bytes (no zero page to skip), its firmware
  running; 64 words of guest RAM are compared on both sides afterwards.

* Downtime and total time: what query-migrate reports on the source.

* Peak RSS growth: each QEMU's VmRSS is sampled idle, once both are set up
  and just before `migrate`; the peak is VmHWM after the migration, with
  the high-water mark reset to the idle RSS beforehand by writing 5 to
  /proc/PID/clear_refs, and, as a cross-check and fallback, the largest
  VmRSS seen by a thread polling every 10 ms during the migration.
  The destination runs with -S so that it does not resume the guest after
  the migration: its figure is the incoming migration alone.  The
  no-device baseline shows what the guest's RAM alone adds.

The stop-copy cases use a downtime-limit far above any real downtime (a
stop-copy-only device moves all of its state while the VM is stopped); the
pre-copy case uses QEMU's default (300 ms).  Every case runs with an
unthrottled max-bandwidth, as libvirt sets it.  The device digest is
compared on both sides after every migration: a broken migration fails
the benchmark.

Writes bench/results/<date>.json and bench/results/<date>.png (gnuplot),
prints a table and, from the figures, whether each target of issues 7
and 22 holds.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qmpvm import (BINARY, TOP, TREE, GiB, MiB, Vm,  # noqa: E402
                   device_props, has_device, kvm_usable, parse_size,
                   sim_digest, wait_pci_assigned, wait_until)

SIM_STREAM_OVERHEAD = 40 + 8      # the sim stream's header and trailer
DOWNTIME_LIMIT_MS = 300000        # far above any downtime of this matrix
MAX_BANDWIDTH = 64 * GiB          # bytes/s: no throttling of pre-copy
RSS_LIMIT = 16 * MiB
PRECOPY_SIZE = 1 * GiB
PRECOPY_INITIAL = 900 * MiB

TRACE_RE = re.compile(r"^\d+@(\d+)\.(\d+):(vfio_\w+)\s+(.*)$")
SET_STATE_RE = re.compile(r"\((\S+)\) (\S+) -> (\S+),")
BLOCK_RE = re.compile(r"\((\S+)\) data size (-?\d+)")


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# Measurements

def proc_status(pid, field):
    """A field of /proc/PID/status in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_hwm(pid):
    """Reset VmHWM to the current RSS; False when the kernel refuses."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssPoller(threading.Thread):
    """Largest VmRSS of some processes, polled every INTERVAL s."""

    def __init__(self, pids, interval=0.01):
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak = {pid: 0 for pid in pids}
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid in self.pids:
                rss = proc_status(pid, "VmRSS")
                if rss is not None and rss > self.peak[pid]:
                    self.peak[pid] = rss
            self.done.wait(self.interval)

    def stop(self):
        self.done.set()
        self.join(timeout=5)
        return self.peak


# The raw helper's name of each transport (scripts/rawsock.c)
RAW_TRANSPORT = {"tcp": "tcp", "unix": "unix", "fd": "pipe", "exec": "exec"}
TRANSPORTS = ("tcp", "unix", "fd", "exec")


# The size of QEMU's reads and writes of device state: VFIO's data buffer
QEMU_RECORD = 256 * 1024


def raw_own_ratio(run):
    """The raw helper's own trials at QEMU_RECORD against the run's limit.

    What a program that is the raw transport scores when one of its trials
    is held against the best of all of them, as QEMU's one migration is:
    the ceiling of the ratio on this machine, whatever QEMU does.  None
    without such trials.
    """
    own = [t["bytes_per_second"]
           for key in ("raw_before", "raw_after")
           if isinstance(run.get(key), dict)
           for t in run[key].get("trials", [])
           if t["chunk"] == QEMU_RECORD and
           t.get("read_chunk", t["chunk"]) == QEMU_RECORD]
    if not own or not run.get("raw_bytes_per_second"):
        return None
    return statistics.median(own) / run["raw_bytes_per_second"]


def raw_limit(rawsock, transport, nbytes, workdir, touch=False):
    """Best throughput of a plain program over TRANSPORT (bytes/s); with
    TOUCH, of one that also makes a pass over each chunk on each side."""
    args = [rawsock, RAW_TRANSPORT[transport], str(nbytes)]
    if transport == "exec":
        args += ["32K,64K,256K,1M,4M", os.path.join(workdir, "raw.bin")]
    env = dict(os.environ, RAWSOCK_TOUCH="1" if touch else "0")
    out = subprocess.run(args, capture_output=True, text=True, timeout=600,
                         env=env)
    if out.returncode:
        raise RuntimeError("rawsock failed: %s" % out.stderr.strip())
    return json.loads(out.stdout)


def parse_trace(path):
    """Stop-copy window of the device from the source's trace log.

    Returns (start, sent, bytes, blocks) or None when the events are
    missing: the times of the device's STOP_COPY and of the end of its
    complete handler, and the bytes and count of the blocks in between.
    """
    t_stop_copy = None
    t_complete = None
    blocks = []
    try:
        f = open(path, errors="replace")
    except OSError:
        return None
    with f:
        for line in f:
            m = TRACE_RE.match(line.strip())
            if not m:
                continue
            t = int(m.group(1)) + int(m.group(2)) / 1e6
            name, rest = m.group(3), m.group(4)
            if name == "vfio_migration_set_state":
                s = SET_STATE_RE.search(rest)
                if s and s.group(3) == "STOP_COPY":
                    t_stop_copy = t
                    blocks = []
                    t_complete = None
            elif name == "vfio_save_block":
                b = BLOCK_RE.search(rest)
                if b and t_stop_copy is not None and t_complete is None:
                    blocks.append(int(b.group(2)))
            elif name == "vfio_save_complete_precopy":
                if t_stop_copy is not None:
                    t_complete = t
    if t_stop_copy is None or t_complete is None:
        return None
    return (t_stop_copy, t_complete, sum(b for b in blocks if b > 0),
            len(blocks))


def last_resumed(path, after):
    """When the destination's device took the last byte of its state.

    The time of the last vfio_sim_resume_record event after AFTER in the
    destination's trace log, or None (a build without the event).
    """
    last = None
    try:
        f = open(path, errors="replace")
    except OSError:
        return None
    with f:
        for line in f:
            m = TRACE_RE.match(line.strip())
            if m and m.group(3) == "vfio_sim_resume_record":
                t = int(m.group(1)) + int(m.group(2)) / 1e6
                if t >= after:
                    last = t
    return last


# ---------------------------------------------------------------------------
# One migration

def ram_sample(vm, size):
    """Guest RAM words at 64 spread addresses (the RAM-only cases' check)."""
    words = []
    for i in range(64):
        addr = (size // 64) * i + 4096 * (i % 7) + 8 * i
        out = vm.hmp("xp /1gx %#x" % addr)
        words.append(out.split(":", 1)[-1].strip())
    return words


def migrate_once(opts, case, workdir, rawsock):
    """Run one migration of CASE; returns a dict of figures."""
    transport = case["transport"]
    size = case["state_size"]
    binary = opts.base_binary if case.get("variant") == "7.2" else \
        opts.binary
    result = {}
    rundir = tempfile.mkdtemp(prefix="run-", dir=workdir)
    if case["device"]:
        raw = raw_limit(rawsock, transport, size + SIM_STREAM_OVERHEAD,
                        rundir)
        result["raw_before"] = raw
        result["raw_before_bytes_per_second"] = raw["bytes_per_second"]

    trace = os.path.join(rundir, "source-trace.log")
    dst_trace = os.path.join(rundir, "destination-trace.log")
    common = ["-machine", "q35", "-accel", opts.accel, "-m", opts.ram]
    src_mem = dst_mem = []
    if case["ram"]:
        # RAM-only: the guest's whole RAM holds the pattern file's bytes
        # (a private mapping: written, never zero pages), the destination's
        # is anonymous, as any guest's
        common = ["-machine", "q35,memory-backend=ram0", "-accel",
                  opts.accel, "-m", size_label(size)]
        src_mem = ["-object", "memory-backend-file,id=ram0,size=%d,"
                   "mem-path=%s,share=off" % (size, opts.pattern)]
        dst_mem = ["-object", "memory-backend-ram,id=ram0,size=%d" % size]
    dev = []
    if case["device"]:
        props = "id=sim0,addr=0x5,state-size=%d" % size
        if case["precopy"]:
            props += ",pre-copy=on,initial-size=%d" % case["initial_size"]
        if case.get("null"):
            props += ",null-content=on"
        if opts.device_props:
            props += "," + opts.device_props
        dev = ["-device", "vfio-sim-pci," + props]
        dev_trace = ["-D", trace, "-msg", "timestamp=on",
                     "-trace", "vfio_migration_set_state",
                     "-trace", "vfio_save_complete_precopy"]
        if case["precopy"]:
            # Which bytes move after the switchover: only the blocks tell.
            # Not in the other cases: each event is a write() to the log,
            # 4096 per GiB, that the raw helper does not pay for
            dev_trace += ["-trace", "vfio_save_block"]
    else:
        dev_trace = []
    src_args = common + src_mem + dev + dev_trace
    # The window ends when the destination's device has taken the last
    # byte, as the raw helper's ends at its receiver (one event per record)
    dst_dev_trace = ["-D", dst_trace, "-msg", "timestamp=on",
                     "-trace", "vfio_sim_resume_record"] if dev else []

    pipe = None
    dst_fds = ()
    if transport == "tcp":
        src_uri = dst_uri = "tcp:127.0.0.1:0"
    elif transport == "unix":
        src_uri = dst_uri = "unix:%s" % os.path.join(rundir, "migrate.sock")
    elif transport == "fd":
        # A pipe, as libvirt hands one to each QEMU: the destination
        # inherits its read end, the source gets the write end over QMP
        pipe = os.pipe()
        dst_fds = (pipe[0],)
        dst_uri = "fd:%d" % pipe[0]
        src_uri = "fd:migfd"
    else:
        image = os.path.join(rundir, "state.bin")
        src_uri = "exec:cat > %s" % image
        dst_uri = "exec:cat %s" % image

    src = dst = None
    ok = False
    try:
        src = Vm("source", binary, src_args, rundir, qmp_timeout=300)
        dst = Vm("destination", binary,
                 common + dst_mem + dev + dst_dev_trace +
                 ["-S", "-incoming", "defer"],
                 rundir, qmp_timeout=300, pass_fds=dst_fds)
        if pipe:
            os.close(pipe[0])
            src.qmp.send_fd_scm(pipe[1])
            src.cmd("getfd", fdname="migfd")
            os.close(pipe[1])
            pipe = None
        caps = []
        if case["precopy"]:
            caps = [{"capability": "return-path", "state": True},
                    {"capability": "switchover-ack", "state": True}]
            dst.cmd("migrate-set-capabilities", capabilities=caps)
        if transport != "exec":
            # exec: the destination reads the file once it is complete
            dst.cmd("migrate-incoming", uri=dst_uri)
        if transport == "tcp":
            addr = dst.cmd("query-migrate")["socket-address"][0]
            src_uri = "tcp:%s:%s" % (addr["host"], addr["port"])
        if caps:
            src.cmd("migrate-set-capabilities", capabilities=caps)
        # A stop-copy-only device moves all of its state while the VM is
        # stopped: those cases measure the stop-copy throughput, under a
        # limit above any downtime.  The pre-copy and RAM-only cases run
        # with QEMU's default downtime limit (300 ms), as operators do.
        params = {"max-bandwidth": MAX_BANDWIDTH}
        if not case["precopy"] and not case["ram"]:
            params["downtime-limit"] = DOWNTIME_LIMIT_MS
        src.cmd("migrate-set-parameters", **params)
        # The same point of the guest's boot in every case, with or without
        # the device: its firmware has set up PCI (then the BAR is mapped)
        wait_pci_assigned(src)
        digest_before = sim_digest(src) if case["device"] else None

        # Idle: both QEMUs set up, the source's guest in its firmware
        idle = {"source": proc_status(src.pid, "VmRSS"),
                "destination": proc_status(dst.pid, "VmRSS")}
        hwm_ok = reset_hwm(src.pid) and reset_hwm(dst.pid)
        poller = RssPoller([src.pid, dst.pid])
        poller.start()

        src.cmd("migrate", uri=src_uri)
        timeout = 120 + 4 * (size / MiB) / 64.0
        info = wait_until(
            lambda: (lambda i: i if i.get("status") in
                     ("completed", "failed", "cancelled") else None)(
                         src.cmd("query-migrate")),
            timeout, "the source to finish migrating")
        if info["status"] != "completed":
            raise RuntimeError("migration %s: %s" %
                               (info["status"],
                                info.get("error-desc", "no reason")))
        # 7.2 sets "completed" before it records total-time and downtime
        # (migration_iteration_finish): until then they read 0.
        info = wait_until(
            lambda: (lambda i: i if i.get("total-time") else None)(
                src.cmd("query-migrate")),
            30, "the source to record its migration times")
        if transport == "exec":
            dst.cmd("migrate-incoming", uri=dst_uri)
        dinfo = wait_until(
            lambda: (lambda i: i if i.get("status") in
                     ("completed", "failed") else None)(
                         dst.cmd("query-migrate")),
            timeout, "the destination to finish loading")
        peaks = poller.stop()
        if dinfo["status"] != "completed":
            raise RuntimeError("destination: incoming migration %s" %
                               dinfo["status"])

        for name, vm in (("source", src), ("destination", dst)):
            polled = peaks[vm.pid]
            hwm = proc_status(vm.pid, "VmHWM") if hwm_ok else None
            peak = max(polled, hwm or 0)
            result["rss_%s" % name] = {
                "idle": idle[name], "peak_polled": polled,
                "peak_hwm": hwm, "growth": peak - idle[name]}

        if case["device"]:
            digest_after = sim_digest(dst)
            if digest_after != digest_before:
                raise RuntimeError("device digest mismatch: source %#x, "
                                   "destination %#x" %
                                   (digest_before, digest_after))
        ram_bytes = info.get("ram", {}).get("transferred")
        if case["ram"]:
            a, b = ram_sample(src, size), ram_sample(dst, size)
            if a != b:
                raise RuntimeError("guest RAM differs after the migration: "
                                   "%s on the source, %s on the "
                                   "destination" % (a, b))
            # The pattern is in every page: RAM must really have moved
            if not ram_bytes or ram_bytes < 0.9 * size:
                raise RuntimeError("only %s bytes of RAM sent for %s of "
                                   "written RAM" % (ram_bytes, size))
            busy = info["total-time"] - (info.get("setup-time") or 0)
            result["ram_bytes_per_second"] = ram_bytes / (busy / 1000.0)
        result.update({
            "downtime_ms": info.get("downtime"),
            "total_time_ms": info.get("total-time"),
            "setup_time_ms": info.get("setup-time"),
            "ram_bytes": ram_bytes,
            "vfio_bytes": info.get("vfio", {}).get("transferred"),
        })
        ok = True
    finally:
        if pipe:
            os.close(pipe[0])
            os.close(pipe[1])
        for vm in (src, dst):
            if vm:
                vm.close()
        if not ok:
            log("  logs kept in %s" % rundir)

    if case["device"]:
        raw = raw_limit(rawsock, transport, size + SIM_STREAM_OVERHEAD,
                        rundir)
        result["raw_after"] = raw
        result["raw_after_bytes_per_second"] = raw["bytes_per_second"]
        # The limit is the better of the two: a dip of the machine's load
        # during one of them must not pass for the transport's limit
        result["raw_bytes_per_second"] = max(
            result["raw_before_bytes_per_second"],
            result["raw_after_bytes_per_second"])
        if case.get("pass_ref"):
            raw = raw_limit(rawsock, transport, size + SIM_STREAM_OVERHEAD,
                            rundir, touch=True)
            result["raw_pass"] = raw
            result["raw_pass_bytes_per_second"] = raw["bytes_per_second"]
        window = parse_trace(trace)
        if window is None:
            raise RuntimeError("no STOP_COPY window in the trace %s" % trace)
        t_start, t_sent, nbytes, nblocks = window
        # exec: the destination reads the file only once it is complete
        t_end = None if transport == "exec" else \
            last_resumed(dst_trace, t_start)
        result["stop_copy_end"] = "destination" if t_end else "source"
        result["stop_copy_seconds_sent"] = t_sent - t_start
        seconds = (t_end or t_sent) - t_start
        if not nblocks:
            # No per-block events: without pre-copy the whole stream moved
            # in the window, the device's bytes that query-migrate counts;
            # with it, how much did is unknown
            nbytes = None if case["precopy"] else \
                result["vfio_bytes"] or size
        result.update({
            "stop_copy_seconds": seconds, "stop_copy_bytes": nbytes,
            "stop_copy_blocks": nblocks,
            "stop_copy_bytes_per_second": nbytes / seconds
            if seconds and nbytes else None,
        })
        if result["stop_copy_bytes_per_second"]:
            result["ratio"] = (result["stop_copy_bytes_per_second"] /
                               result["raw_bytes_per_second"])
            if result.get("raw_pass_bytes_per_second"):
                result["ratio_pass"] = (
                    result["stop_copy_bytes_per_second"] /
                    result["raw_pass_bytes_per_second"])
    if not opts.keep_logs:
        shutil.rmtree(rundir, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------
# The matrix

def build_cases(opts, precopy_reason):
    cases = []
    for transport in opts.transports:
        cases.append({"name": "%s-nodev" % transport, "transport": transport,
                      "state_size": 0, "device": False, "precopy": False,
                      "ram": False})
        for size in opts.sizes:
            cases.append({"name": "%s-%s" % (transport, size_label(size)),
                          "transport": transport, "state_size": size,
                          "device": True, "precopy": False, "ram": False,
                          "pass_ref": size == max(opts.sizes)})
        if opts.null and opts.sizes:
            size = max(opts.sizes)
            cases.append({"name": "%s-%s-null" % (transport,
                                                  size_label(size)),
                          "transport": transport, "state_size": size,
                          "device": True, "precopy": False, "ram": False,
                          "null": True})
        if opts.ram_size:
            for variant in ("series", "7.2") if opts.base_binary else \
                    ("series",):
                cases.append({
                    "name": "%s-ram-%s%s" % (
                        transport, size_label(opts.ram_size),
                        "" if variant == "series" else "-7.2"),
                    "transport": transport, "state_size": opts.ram_size,
                    "device": False, "precopy": False, "ram": True,
                    "variant": variant})
    if precopy_reason is None:
        cases.append({"name": "tcp-%s-precopy" % size_label(PRECOPY_SIZE),
                      "transport": "tcp", "state_size": PRECOPY_SIZE,
                      "initial_size": PRECOPY_INITIAL,
                      "device": True, "precopy": True, "ram": False})
    return cases


def size_label(size):
    return "%dG" % (size // GiB) if size % GiB == 0 else "%dM" % (size // MiB)


def precopy_unavailable(binary):
    """None when the pre-copy case can run, else why not."""
    props = device_props(binary, "vfio-sim-pci")
    missing = [p for p in ("pre-copy", "initial-size") if p not in props]
    if missing:
        return "vfio-sim-pci has no %s property" % " or ".join(missing)
    tmp = tempfile.mkdtemp(prefix="vfio-bench-probe-")
    vm = None
    try:
        vm = Vm("probe", binary, ["-machine", "none"], tmp, qmp_timeout=60)
        caps = [c["capability"] for c in
                vm.cmd("query-migrate-capabilities")]
    finally:
        if vm:
            vm.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if "switchover-ack" not in caps:
        return "no switchover-ack migration capability"
    return None


def tree_head():
    """The QEMU tree's HEAD, for the record (None when unknown)."""
    try:
        r = subprocess.run(["git", "-C", TREE, "log", "-1", "--format=%h %s"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None


def summarize(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values), "n": len(values)}


def summarize_case(case, runs):
    keys = ["downtime_ms", "total_time_ms", "raw_bytes_per_second",
            "stop_copy_bytes_per_second", "stop_copy_seconds", "ratio",
            "ram_bytes_per_second", "raw_pass_bytes_per_second",
            "ratio_pass"]
    s = {k: summarize([r.get(k) for r in runs]) for k in keys}
    s["ratio_raw_own"] = summarize([raw_own_ratio(r) for r in runs])
    for side in ("source", "destination"):
        s["rss_growth_%s" % side] = summarize(
            [r["rss_%s" % side]["growth"] for r in runs
             if "rss_%s" % side in r])
    return s


# ---------------------------------------------------------------------------
# Reporting

def fmt_med(s, scale=1.0, fmt="%.0f"):
    if not s:
        return "-"
    med = fmt % (s["median"] / scale)
    if s["n"] > 1:
        return "%s (%s-%s)" % (med, fmt % (s["min"] / scale),
                               fmt % (s["max"] / scale))
    return med


def table(cases, summaries):
    head = ("case", "stop-copy MiB/s", "raw MiB/s", "ratio", "RAM MiB/s",
            "downtime ms", "total ms", "RSS+ src MiB", "RSS+ dst MiB")
    rows = [head]
    for case in cases:
        s = summaries[case["name"]]
        rows.append((
            case["name"],
            fmt_med(s["stop_copy_bytes_per_second"], MiB),
            fmt_med(s["raw_bytes_per_second"], MiB),
            fmt_med(s["ratio"], 1, "%.2f"),
            fmt_med(s["ram_bytes_per_second"], MiB),
            fmt_med(s["downtime_ms"]),
            fmt_med(s["total_time_ms"]),
            fmt_med(s["rss_growth_source"], MiB, "%.1f"),
            fmt_med(s["rss_growth_destination"], MiB, "%.1f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in
                                       zip(r, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def targets(cases, summaries, runs_by_case, precopy_reason):
    """Each target of issues 7 and 22: (name, verdict, detail)."""
    out = []
    dev_sizes = sorted({c["state_size"] for c in cases
                        if c["device"] and not c["precopy"]})
    if not dev_sizes:
        return out
    big = GiB if GiB in dev_sizes else dev_sizes[-1]
    note = "" if big == GiB else \
        " [at %s: no 1 GiB case in this run, indicative only]" % \
        size_label(big)

    def verdict(ok):
        if big != GiB:
            return "indicative: " + ("met" if ok else "not met")
        return "MET" if ok else "NOT MET"

    transports = sorted({c["transport"] for c in cases})
    rams = sorted({c["state_size"] for c in cases if c["ram"]})
    # 1. throughput ratio: the raw helper must be a bound on every
    # transport, so a median above 1.05 is a fault of the bench
    parts, oks = [], []
    for t in transports:
        s = summaries.get("%s-%s" % (t, size_label(big)))
        if s and s["ratio"]:
            r = s["ratio"]["median"]
            if t != "exec":
                oks.append(r >= 0.9)
            parts.append("%s %.2f" % (t, r))
    if oks:
        out.append(("stop-copy throughput >= 0.9x raw at 1 GiB (tcp, unix, "
                    "fd)", verdict(all(oks)),
                    "median ratio " + ", ".join(parts) + note))
    # 1b. the same without the device's work on each byte (null-content):
    # QEMU's own path, and what the device's work costs on top of it
    parts, oks, costs = [], [], []
    for t in transports:
        s = summaries.get("%s-%s-null" % (t, size_label(big)))
        d = summaries.get("%s-%s" % (t, size_label(big)))
        if s and s["ratio"]:
            r = s["ratio"]["median"]
            if t != "exec":
                oks.append(r >= 0.9)
            parts.append("%s %.2f" % (t, r))
            if d and d["ratio"]:
                costs.append("%s x%.2f" % (t, d["ratio"]["median"] / r))
    if oks:
        out.append(("QEMU's path (null-content device) >= 0.9x raw at "
                    "1 GiB (tcp, unix, fd)", verdict(all(oks)),
                    "median ratio " + ", ".join(parts) +
                    "; the device's work on each byte (null-content off) "
                    "multiplies them by " + ", ".join(costs) + note))
    def info(key, text):
        """A line of KEY's medians on each transport, not judged."""
        parts = []
        for t in transports:
            d = summaries.get("%s-%s" % (t, size_label(big)))
            if d and d.get(key):
                parts.append("%s %.2f" % (t, d[key]["median"]))
        if parts:
            out.append((text, "INFO",
                        "median ratio " + ", ".join(parts) + note))

    # 1c. not a target: against a plain program that copies each buffer
    # once on each side, as any device's read and write do
    info("ratio_pass", "with the device's work, against a plain program "
         "that copies each buffer once on each side (RAWSOCK_TOUCH=1), "
         "1 GiB")
    # 1d. not a target: the same limit against the raw helper itself
    info("ratio_raw_own", "the raw helper's own %d KiB trials (QEMU's "
         "record size) against the same limit, 1 GiB: what the plain "
         "transport itself scores, one trial against the best of all" %
         (QEMU_RECORD // 1024))
    above = ["%s %.2f" % (c["name"], summaries[c["name"]]["ratio"]["median"])
             for c in cases if summaries[c["name"]]["ratio"] and
             summaries[c["name"]]["ratio"]["median"] > 1.05]
    if oks:
        out.append(("no median ratio above 1.05 (the raw limit is a bound)",
                    "MET" if not above else "NOT MET",
                    "above: " + ", ".join(above) if above else
                    "highest %.2f" % max(
                        summaries[c["name"]]["ratio"]["median"]
                        for c in cases if summaries[c["name"]]["ratio"])))
    # 2. downtime bound
    parts, oks = [], []
    for t in transports:
        name = "%s-%s" % (t, size_label(big))
        s = summaries.get(name)
        base = summaries.get("%s-nodev" % t)
        if not s or not s["downtime_ms"] or not s["raw_bytes_per_second"]:
            continue
        base_ms = base["downtime_ms"]["median"] if base and \
            base["downtime_ms"] else 0
        bound = 1.5 * big / s["raw_bytes_per_second"]["median"] * 1000 + \
            base_ms
        d = s["downtime_ms"]["median"]
        oks.append(d <= bound)
        parts.append("%s %.0f ms <= %.0f ms (1.5 x %s / raw + %.0f ms "
                     "without device)" % (t, d, bound, size_label(big),
                                          base_ms)
                     if d <= bound else
                     "%s %.0f ms > %.0f ms (1.5 x %s / raw + %.0f ms "
                     "without device)" % (t, d, bound, size_label(big),
                                          base_ms))
    if oks:
        out.append(("downtime <= 1.5x state/raw + no-device downtime",
                    verdict(all(oks)), "; ".join(parts) + note))
    # 3. RSS: the worst run of any case with the device
    worst = (0, None, None)
    for c in cases:
        if not c["device"]:
            continue
        for r in runs_by_case[c["name"]]:
            for side in ("source", "destination"):
                g = r["rss_%s" % side]["growth"]
                if g > worst[0]:
                    worst = (g, c["name"], side)
    base_worst = max([r["rss_%s" % side]["growth"]
                      for c in cases if not c["device"] and not c["ram"]
                      for r in runs_by_case[c["name"]]
                      for side in ("source", "destination")] or [0])
    if worst[1]:
        ok = worst[0] < RSS_LIMIT
        out.append(("RSS growth < 16 MiB, whatever the state size",
                    ("MET" if ok else "NOT MET") if GiB in dev_sizes
                    else "indicative: " + ("met" if ok else "not met"),
                    "worst %.1f MiB (%s, %s); the VM without the device: "
                    "up to %.1f MiB" % (worst[0] / MiB, worst[1], worst[2],
                                        base_worst / MiB)))
    # 4. RAM-only: the series against 7.2.  A single run of either moves
    # by +-30% on this machine, whichever QEMU it is, so the verdict pools
    # the runs of every transport; each transport's medians are shown too
    parts, pooled = [], {"series": [], "7.2": []}
    label = size_label(rams[0]) if rams else ""
    for t in transports:
        a = summaries.get("%s-ram-%s" % (t, label))
        b = summaries.get("%s-ram-%s-7.2" % (t, label))
        if a and b and a["ram_bytes_per_second"] and \
                b["ram_bytes_per_second"]:
            r = a["ram_bytes_per_second"]["median"] / \
                b["ram_bytes_per_second"]["median"]
            parts.append("%s %.0f vs %.0f MiB/s: %.2fx" % (
                t, a["ram_bytes_per_second"]["median"] / MiB,
                b["ram_bytes_per_second"]["median"] / MiB, r))
            for variant, name in (("series", "%s-ram-%s" % (t, label)),
                                  ("7.2", "%s-ram-%s-7.2" % (t, label))):
                pooled[variant] += [x["ram_bytes_per_second"]
                                    for x in runs_by_case[name]]
    if pooled["series"] and pooled["7.2"]:
        r = statistics.median(pooled["series"]) / \
            statistics.median(pooled["7.2"])
        out.append(("RAM-only (%s written): series >= 0.9x 7.2's RAM "
                    "throughput, median of all runs" % label,
                    "MET" if r >= 0.9 else "NOT MET",
                    "%.2fx (%d runs each); %s" % (
                        r, len(pooled["series"]), "; ".join(parts))))
    # 5. pre-copy
    if precopy_reason is not None:
        out.append(("pre-copy + switchover-ack downtime <= 0.25x "
                    "stop-copy-only (1 GiB)", "NOT MEASURED",
                    "skipped: " + precopy_reason))
    else:
        pc = summaries.get("tcp-%s-precopy" % size_label(PRECOPY_SIZE))
        sc = summaries.get("tcp-%s" % size_label(PRECOPY_SIZE))
        if pc and sc and pc["downtime_ms"] and sc["downtime_ms"]:
            a, b = pc["downtime_ms"]["median"], sc["downtime_ms"]["median"]
            out.append(("pre-copy + switchover-ack downtime <= 0.25x "
                        "stop-copy-only (1 GiB)",
                        "MET" if a <= 0.25 * b else "NOT MET",
                        "%.0f ms vs %.0f ms: %.2fx" % (a, b, a / b)))
        else:
            out.append(("pre-copy + switchover-ack downtime <= 0.25x "
                        "stop-copy-only (1 GiB)", "NOT MEASURED",
                        "no tcp 1 GiB stop-copy-only case in this run"))
    return out


def chart(path, cases, summaries):
    """PNG: throughput vs raw limit, and downtime vs state size."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot is not installed (make deps installs gnuplot-nox)"
    tmp = tempfile.mkdtemp(prefix="vfio-bench-plot-")
    try:
        files = {}
        for t in sorted({c["transport"] for c in cases}):
            rows = []
            for c in cases:
                if c["transport"] != t or not c["device"] or \
                        c["precopy"] or c.get("null"):
                    continue
                s = summaries[c["name"]]
                if not s["stop_copy_bytes_per_second"]:
                    continue
                rows.append("%d %f %f %f %f %f %f %f" % (
                    c["state_size"] // MiB,
                    s["stop_copy_bytes_per_second"]["median"] / MiB,
                    s["stop_copy_bytes_per_second"]["min"] / MiB,
                    s["stop_copy_bytes_per_second"]["max"] / MiB,
                    s["raw_bytes_per_second"]["median"] / MiB,
                    s["downtime_ms"]["median"],
                    s["downtime_ms"]["min"], s["downtime_ms"]["max"]))
            files[t] = os.path.join(tmp, t + ".dat")
            with open(files[t], "w") as f:
                f.write("\n".join(rows) + "\n")
        null_files = {}
        for c in cases:
            s = summaries[c["name"]]
            if c.get("null") and s["stop_copy_bytes_per_second"]:
                null_files[c["transport"]] = os.path.join(
                    tmp, c["transport"] + "-null.dat")
                with open(null_files[c["transport"]], "w") as f:
                    f.write("%d %f %f %f\n" % (
                        c["state_size"] // MiB,
                        s["stop_copy_bytes_per_second"]["median"] / MiB,
                        s["stop_copy_bytes_per_second"]["min"] / MiB,
                        s["stop_copy_bytes_per_second"]["max"] / MiB))
        pc_file = None
        for c in cases:
            s = summaries[c["name"]]
            if c["precopy"] and s["downtime_ms"]:
                pc_file = os.path.join(tmp, "precopy.dat")
                with open(pc_file, "w") as f:
                    f.write("%d %f %f %f\n" % (
                        c["state_size"] // MiB, s["downtime_ms"]["median"],
                        s["downtime_ms"]["min"], s["downtime_ms"]["max"]))
        colors = {"tcp": "#1f77b4", "unix": "#d62728", "fd": "#2ca02c",
                  "exec": "#9467bd"}
        tput, down = [], []
        for t, f in files.items():
            tput.append("'%s' u 1:2:3:4 w yerrorlines lw 2 lc rgb '%s' "
                        "t '%s: VFIO stop-copy'" % (f, colors[t], t))
            tput.append("'%s' u 1:5 w linespoints dt 2 lw 2 lc rgb '%s' "
                        "t '%s: raw limit'" % (f, colors[t], t))
            down.append("'%s' u 1:6:7:8 w yerrorlines lw 2 lc rgb '%s' "
                        "t '%s: stop-copy only'" % (f, colors[t], t))
            down.append("'%s' u 1:($1*1048576*1.5/($5*1048576)*1000) "
                        "w lines dt 3 lc rgb '%s' "
                        "t '%s: 1.5 x state / raw'" % (f, colors[t], t))
        for t, f in null_files.items():
            tput.append("'%s' u 1:2:3:4 w yerrorbars pt 6 ps 1.5 lc rgb '%s' "
                        "t '%s: null-content device'" % (f, colors[t], t))
        if pc_file:
            down.append("'%s' u 1:2:3:4 w yerrorbars pt 7 ps 1.5 "
                        "lc rgb '#ff7f0e' t 'tcp: pre-copy + switchover-ack'"
                        % pc_file)
        script = """
set terminal pngcairo size 1200,480 font 'sans,10'
set output '%s'
set multiplot layout 1,2 title 'VFIO migration, vfio-sim-pci, loopback'
set logscale x 2
set xlabel 'stop-copy state (MiB)'
set xrange [48:1400]
set xtics (64, 256, 1024)
set key top left
set grid
set ylabel 'MiB/s'
set yrange [0:*]
set title 'Throughput vs raw transport limit'
plot %s
set ylabel 'ms'
set title 'Downtime vs state size'
plot %s
unset multiplot
""" % (path, ", ".join(tput), ", ".join(down))
        with open(os.path.join(tmp, "plot.gp"), "w") as f:
            f.write(script)
        r = subprocess.run([gnuplot, os.path.join(tmp, "plot.gp")],
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            return "gnuplot failed: %s" % r.stderr.strip()
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per case (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 run, 64M and 256M only")
    ap.add_argument("--sizes", type=lambda s: [parse_size(x) for x in
                                               s.split(",")],
                    default=[64 * MiB, 256 * MiB, 1 * GiB],
                    help="stop-copy state sizes (default 64M,256M,1G)")
    ap.add_argument("--transports", type=lambda s: s.split(","),
                    default=list(TRANSPORTS),
                    help="default tcp,unix,fd,exec (fd: a pipe; exec: "
                    "cat to and from a file)")
    ap.add_argument("--ram-size", type=parse_size, default=1 * GiB,
                    help="written guest RAM of the RAM-only cases "
                    "(default 1G; 0: no RAM-only case)")
    ap.add_argument("--base-binary",
                    default=os.path.join(TOP, "build", "obj-base",
                                         "qemu-system-x86_64"),
                    help="QEMU 7.2 for the RAM-only cases (make base-build "
                    "builds it, as make check-ab does)")
    ap.add_argument("--no-precopy", action="store_true",
                    help="skip the pre-copy case")
    ap.add_argument("--no-null", dest="null", action="store_false",
                    help="skip the null-content cases")
    ap.add_argument("--ram", default="256M",
                    help="guest RAM (default 256M)")
    ap.add_argument("--binary", default=BINARY)
    ap.add_argument("--device-props", default="",
                    help="more vfio-sim-pci properties, e.g. x-avx2=off "
                    "(its portable 16-byte path)")
    ap.add_argument("--rawsock",
                    default=os.path.join(TOP, "build", "rawsock"),
                    help="the raw socket helper (make builds it)")
    ap.add_argument("--out", default=os.path.join(TOP, "bench", "results"),
                    help="directory of the JSON and PNG results")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep every run's QEMU logs and traces")
    ap.add_argument("--report", metavar="JSON",
                    help="print the table and the targets of a saved run "
                    "(its own figures, with this version's rules)")
    opts = ap.parse_args()
    if opts.report:
        with open(opts.report) as f:
            doc = json.load(f)
        cases = doc["cases"]
        runs_by_case = {c["name"]: c["runs"] for c in cases}
        summaries = {c["name"]: summarize_case(c, c["runs"]) for c in cases}
        log("%s: %d run(s), load average %.2f before, %.2f after" % (
            opts.report, doc["runs"], doc["load_average_before"][0],
            doc["load_average_after"][0]))
        log(table(cases, summaries))
        for t, v, d in targets(cases, summaries, runs_by_case,
                               doc["precopy_skipped"]):
            log("  %-13s %s: %s" % (v, t, d))
        return 0
    if opts.quick:
        opts.runs = 1
        opts.sizes = [64 * MiB, 256 * MiB]
        opts.ram_size = min(opts.ram_size, 256 * MiB)
    for t in opts.transports:
        if t not in TRANSPORTS:
            ap.error("unknown transport %r" % t)
    if opts.runs < 1:
        ap.error("--runs must be at least 1")

    if not os.access(opts.binary, os.X_OK):
        log("bench: no QEMU binary at %s (make build)" % opts.binary)
        return 1
    if not os.access(opts.rawsock, os.X_OK):
        log("bench: no raw socket helper at %s (make build/rawsock)" %
            opts.rawsock)
        return 1
    if not has_device(opts.binary, "vfio-sim-pci"):
        log("bench: this build has no vfio-sim-pci device: nothing to "
            "measure")
        return 1
    opts.accel = "kvm" if kvm_usable() else "tcg"
    if opts.ram_size and not os.access(opts.base_binary, os.X_OK):
        log("bench: no QEMU 7.2 at %s: the RAM-only cases run with the "
            "series only (make base-build)" % opts.base_binary)
        opts.base_binary = None

    if opts.no_precopy:
        precopy_reason = "disabled with --no-precopy"
    elif "tcp" not in opts.transports:
        precopy_reason = "the pre-copy case runs on tcp, not selected"
    else:
        precopy_reason = precopy_unavailable(opts.binary)
    if precopy_reason:
        log("bench: skipping the pre-copy case: %s" % precopy_reason)
    if opts.null and "null-content" not in device_props(opts.binary,
                                                        "vfio-sim-pci"):
        log("bench: skipping the null-content cases: vfio-sim-pci has no "
            "null-content property")
        opts.null = False
    cases = build_cases(opts, precopy_reason)

    load_before = os.getloadavg()
    log("bench: %d cases x %d run(s), guest RAM %s, accel %s, "
        "load average %.2f %.2f %.2f on %d CPUs" %
        (len(cases), opts.runs, opts.ram, opts.accel, *load_before,
         os.cpu_count()))
    if load_before[0] > 1.0:
        log("bench: note: the machine is busy; absolute figures are noisy, "
            "compare ratios")

    workdir = tempfile.mkdtemp(prefix="vfio-bench-")
    if opts.ram_size:
        # The RAM-only guests' memory: a non-zero word in every 8 bytes
        opts.pattern = os.path.join(workdir, "ram-pattern.bin")
        block = b"".join((0x5ab5000000000000 + i).to_bytes(8, "little")
                         for i in range(MiB // 8))
        with open(opts.pattern, "wb") as f:
            for _ in range(opts.ram_size // MiB):
                f.write(block)
            # Written back before any run: no run may pay for the writeback
            f.flush()
            os.fsync(f.fileno())
    runs_by_case = {c["name"]: [] for c in cases}
    started = time.monotonic()
    failed = []
    for run in range(opts.runs):
        order = list(cases)
        if run % 2:
            # A RAM-only pair in the other order every other run: each
            # variant then follows the same cases as often as the other
            for i, c in enumerate(order):
                if c["ram"] and c["variant"] == "series" and \
                        i + 1 < len(order) and order[i + 1]["ram"]:
                    order[i], order[i + 1] = order[i + 1], order[i]
        prev = None
        for case in order:
            t0 = time.monotonic()
            try:
                if case["ram"] and not (prev and prev["ram"]):
                    # How fast a 1 GiB guest migrates here depends on what
                    # ran just before, whichever QEMU it is (up to 2.5x, the
                    # kernel's memory handling, it seems): a warm-up run,
                    # not recorded, and the pair's order swapped every other
                    # run give both variants the same starts
                    migrate_once(opts, case, workdir, opts.rawsock)
                prev = case
                r = migrate_once(opts, case, workdir, opts.rawsock)
            except Exception as e:
                log("  run %d %-16s FAILED: %s" % (run + 1, case["name"], e))
                failed.append("%s run %d: %s" % (case["name"], run + 1, e))
                continue
            runs_by_case[case["name"]].append(r)
            if case["ram"]:
                log("  run %d %-16s RAM %7.0f MiB/s  downtime %5d ms  "
                    "total %5d ms  RSS+ %.1f/%.1f MiB  (%.1f s)" % (
                        run + 1, case["name"],
                        r["ram_bytes_per_second"] / MiB, r["downtime_ms"],
                        r["total_time_ms"],
                        r["rss_source"]["growth"] / MiB,
                        r["rss_destination"]["growth"] / MiB,
                        time.monotonic() - t0))
            elif case["device"]:
                log("  run %d %-16s stop-copy %7.0f MiB/s  raw %7.0f MiB/s "
                    " ratio %.2f  downtime %5d ms  total %5d ms  "
                    "RSS+ %.1f/%.1f MiB  (%.1f s)" % (
                        run + 1, case["name"],
                        (r.get("stop_copy_bytes_per_second") or 0) / MiB,
                        r["raw_bytes_per_second"] / MiB,
                        r.get("ratio") or 0, r["downtime_ms"],
                        r["total_time_ms"],
                        r["rss_source"]["growth"] / MiB,
                        r["rss_destination"]["growth"] / MiB,
                        time.monotonic() - t0))
                if r.get("ratio_pass"):
                    log("  run %d %-16s raw with a copy per side %7.0f "
                        "MiB/s  ratio %.2f" % (
                            run + 1, case["name"],
                            r["raw_pass_bytes_per_second"] / MiB,
                            r["ratio_pass"]))
            else:
                log("  run %d %-16s downtime %5d ms  total %5d ms  "
                    "RSS+ %.1f/%.1f MiB  (%.1f s)" % (
                        run + 1, case["name"], r["downtime_ms"],
                        r["total_time_ms"],
                        r["rss_source"]["growth"] / MiB,
                        r["rss_destination"]["growth"] / MiB,
                        time.monotonic() - t0))
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    summaries = {c["name"]: summarize_case(c, runs_by_case[c["name"]])
                 for c in cases}
    verdicts = targets(cases, summaries, runs_by_case, precopy_reason)

    os.makedirs(opts.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H%M%SZ")
    json_path = os.path.join(opts.out, stamp + ".json")
    png_path = os.path.join(opts.out, stamp + ".png")
    doc = {
        "date": stamp,
        "binary": opts.binary,
        "base_binary": opts.base_binary,
        "binary_mtime": datetime.datetime.fromtimestamp(
            os.stat(opts.binary).st_mtime, datetime.timezone.utc).isoformat(),
        "tree_head": tree_head(),
        "accel": opts.accel,
        "guest_ram": opts.ram,
        "runs": opts.runs,
        "quick": opts.quick,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "elapsed_seconds": elapsed,
        "precopy_skipped": precopy_reason,
        "method": __doc__,
        "cases": [dict(c, runs=runs_by_case[c["name"]],
                       summary=summaries[c["name"]]) for c in cases],
        "targets": [{"target": t, "verdict": v, "detail": d}
                    for t, v, d in verdicts],
        "failures": failed,
    }
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    why = chart(png_path, cases, summaries)

    log("")
    log("Medians (min-max) over %d run(s); RSS+ is the peak growth over "
        "idle RSS." % opts.runs)
    log(table(cases, summaries))
    log("")
    log("Targets of issues 7 and 22:")
    for t, v, d in verdicts:
        log("  %-13s %s: %s" % (v, t, d))
    log("")
    log("bench: load average %.2f before, %.2f after; %.0f s" %
        (load_before[0], load_after[0], elapsed))
    log("bench: wrote %s" % json_path)
    if why:
        log("bench: no chart: %s" % why)
    else:
        log("bench: wrote %s" % png_path)
    if failed:
        log("bench: %d run(s) FAILED; their logs are in %s" %
            (len(failed), workdir))
        return 1
    if opts.keep_logs:
        log("bench: logs and traces kept in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
