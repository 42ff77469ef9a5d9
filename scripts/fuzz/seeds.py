# SPDX-License-Identifier: GPL-2.0-or-later
#
# Seed streams for the fuzzer, captured from the series itself: a source
# QEMU with vfio-sim-pci migrates to a real destination through a recording
# proxy (the source of a switchover-ack migration waits for the
# destination's ack, so a plain sink would not do).  The RAM section is
# then stripped when the destination still loads the stream without it,
# which keeps seeds a few KiB.  Each seed comes with a JSON description:
# the device configuration and the source's device registers.

import hashlib
import json
import os
import socket
import threading
import time

import stream
import vm

MACHINE = ["-M", "pc-i440fx-7.2", "-m", "32"]

# Source configurations.  Small device states keep the seeds small;
# distinct seeds and registers per device make a mix-up visible.
FAMILIES = {
    # (a) stop-copy only
    "stopcopy": {
        "devices": [("sim0", 4, "state-size=4K,seed=11")],
        "caps": [],
    },
    # (b) pre-copy: the first record is split, 4 KiB of initial data in
    # pre-copy, the rest in STOP_COPY
    "precopy": {
        "devices": [("sim0", 4, "state-size=8K,seed=12,pre-copy=on,"
                                "initial-size=4K")],
        "caps": [],
    },
    # (c) pre-copy with return path and switchover-ack
    "ack": {
        "devices": [("sim0", 4, "state-size=8K,seed=13,pre-copy=on,"
                                "initial-size=4K")],
        "caps": ["return-path", "switchover-ack"],
    },
    # (d) two devices (two need P2P), one with pre-copy
    "twodev": {
        "devices": [("sim0", 4, "state-size=4K,seed=14,p2p=on,pre-copy=on"),
                    ("sim1", 5, "state-size=6K,seed=15,p2p=on")],
        "caps": [],
    },
}


def device_args(fam):
    args = []
    for dev_id, slot, opts in fam["devices"]:
        args += ["-device", "vfio-sim-pci,id=%s,addr=%d.0,%s" %
                 (dev_id, slot, opts)]
    return args


def device_args_meta(meta):
    args = []
    for d in meta["devices"]:
        args += ["-device", "vfio-sim-pci,id=%s,addr=%d.0,%s" %
                 (d["id"], d["slot"], d["opts"])]
    return args


def binary_key(binary):
    """A short hash of the binary: seeds are only valid for it."""
    h = hashlib.sha256()
    with open(binary, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def src_setup(q, fam, dl):
    """Map each sim, give it a generation and config values, as the
    qtests' src_setup does; return its registers."""
    regs = {}
    for i, (dev_id, slot, _) in enumerate(fam["devices"]):
        bar = vm.BAR_BASE + i * 0x1000
        q.qt.map_bar0(slot, bar, dl)
        if q.qt.readq(bar + vm.REG_MAGIC, dl) != vm.SIM_MAGIC:
            raise vm.VmError("%s: no sim registers at 0x%x" % (dev_id, bar))
        for _ in range(2 + i):
            q.qt.writeq(bar + vm.REG_GENERATION, 1, dl)
        cfg = [(0x0123456789abcdef * (i + 1)) & (2**64 - 1), 0, 0x1000 + i,
               0xfedcba9876543210 ^ i]
        for r, v in enumerate(cfg):
            q.qt.writeq(bar + vm.REG_CONFIG + 8 * r, v, dl)
        regs[dev_id] = {
            "slot": slot, "bar": bar,
            "digest": q.qt.readq(bar + vm.REG_DIGEST, dl),
            "generation": q.qt.readq(bar + vm.REG_GENERATION, dl),
            "config": [q.qt.readq(bar + vm.REG_CONFIG + 8 * r, dl)
                       for r in range(4)],
            "state": q.qt.readq(bar + vm.REG_DEVICE_STATE, dl),
        }
    return regs


def _relay(src, dst, record):
    """Copy SRC to DST until EOF, keeping a copy; then pass the EOF on."""
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            record.append(data)
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def set_caps(q, caps, dl):
    caps = ["events"] + caps
    q.qmp.cmd("migrate-set-capabilities", dl, capabilities=[
        {"capability": c, "state": True} for c in caps])


def wait_migration(q, dl):
    ev = q.qmp.wait_event(
        lambda e: e["event"] == "MIGRATION" and
        e["data"]["status"] in ("completed", "failed", "cancelled"), dl)
    return ev["data"]["status"]


def capture(binary, name, timeout=120):
    """Migrate a FAMILY source to a destination through a recording proxy.

    Returns (stream bytes, return path bytes, meta).
    """
    fam = FAMILIES[name]
    dl = time.monotonic() + timeout
    src = vm.Qemu(binary, MACHINE + device_args(fam))
    dst = vm.Qemu(binary, MACHINE + device_args(fam) +
                  ["-incoming", "defer"], extra_pairs=1)
    threads = []
    try:
        src.qmp.handshake(dl)
        dst.qmp.handshake(dl)
        regs = src_setup(src, fam, dl)
        dst_cfg = {dev_id: dst.qt.cfg_space(slot, dl).hex()
                   for dev_id, slot, _ in fam["devices"]}
        set_caps(src, fam["caps"], dl)
        set_caps(dst, fam["caps"], dl)
        fwd, back = [], []
        # The source's end goes over QMP: fd:N must be a named fd there
        mine, theirs = socket.socketpair()
        src.pairs.append(mine)
        src.qmp.cmd_fd("getfd", theirs.fileno(), dl, fdname="mig")
        theirs.close()
        threads = [
            threading.Thread(target=_relay, daemon=True,
                             args=(src.pairs[0], dst.pairs[0], fwd)),
            threading.Thread(target=_relay, daemon=True,
                             args=(dst.pairs[0], src.pairs[0], back))]
        for t in threads:
            t.start()
        dst.qmp.cmd("migrate-incoming", dl, uri="fd:%d" % dst.child_fds[0])
        src.qmp.cmd("migrate", dl, uri="fd:mig")
        if wait_migration(src, dl) != "completed":
            raise vm.VmError("%s: the source migration failed: %s" %
                             (name, src.qmp.cmd("query-migrate", dl)))
        if wait_migration(dst, dl) != "completed":
            raise vm.VmError("%s: the destination failed: %s" %
                             (name, dst.stderr()))
        for dev_id, r in regs.items():
            # The source's registers, now final (cleanup stopped it)
            r["src_state_after"] = src.qt.readq(
                r["bar"] + vm.REG_DEVICE_STATE, dl)
    finally:
        src.quit()
        dst.quit()
        for t in threads:
            t.join(timeout=10)
    meta = {
        "family": name,
        "machine": MACHINE,
        "devices": [{"id": d, "slot": s, "opts": o}
                    for d, s, o in fam["devices"]],
        "caps": fam["caps"],
        "registers": regs,
        "dst_initial_config": dst_cfg,
    }
    return b"".join(fwd), b"".join(back), meta


def reduce(recs):
    """The seed from a captured stream: without the RAM section (the
    destination's RAM stays as it is), runs of empty pre-copy iterations
    cut to two, and the trailing VM description (read and thrown away by
    the destination) emptied.  The destination must still load it to the
    same device state; fuzz.py checks that before each run."""
    out, prev, run = [], None, 0
    for r in stream.strip_ram(recs):
        raw = r.raw()
        empty = (r.kind == "section" and r.items is not None and
                 [i.info.get("tag") for i in r.items] == [stream.TAG_END])
        run = run + 1 if empty and raw == prev else 0
        prev = raw
        if run >= 2:
            continue
        if r.kind == "trailer" and raw[:1] == bytes([stream.VMDESC]):
            r = stream.Rec("trailer", [["raw", bytes([stream.VMDESC]) +
                                        stream.b32(2) + b"{}"]])
        out.append(r)
    return out


def capture_all(binary, outdir, log=print):
    """Capture every family into OUTDIR (NAME.bin, NAME.json)."""
    os.makedirs(outdir, exist_ok=True)
    key = binary_key(binary)
    for name in FAMILIES:
        t0 = time.monotonic()
        data, rp, meta = capture(binary, name)
        seed = stream.serialize(reduce(stream.parse(data)))
        meta["binary_key"] = key
        meta["captured_size"] = len(data)
        meta["captured_rp"] = rp.hex()
        with open(os.path.join(outdir, name + ".bin"), "wb") as f:
            f.write(seed)
        with open(os.path.join(outdir, name + ".json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
        log("seed %s: %d bytes captured, %d kept (%.1f s)" %
            (name, len(data), len(seed), time.monotonic() - t0))


def load(outdir):
    """{family: (bytes, meta)} from OUTDIR, or None if incomplete."""
    out = {}
    for name in FAMILIES:
        try:
            with open(os.path.join(outdir, name + ".bin"), "rb") as f:
                data = f.read()
            with open(os.path.join(outdir, name + ".json")) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        out[name] = (data, meta)
    return out
