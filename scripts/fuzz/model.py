# SPDX-License-Identifier: GPL-2.0-or-later
#
# The fuzzer's oracle: what a destination QEMU of the series should do
# with a stream.  It reads the bytes as migration/savevm.c,
# hw/vfio/migration.c, hw/pci/pci.c and vfio-sim-pci do, and predicts
# either a refusal (where, why, and the message to expect) or a load and
# the state each device must then be in: its registers, its digest
# (computed as hw/vfio/sim-content.c does), its config space and the bytes
# it loaded.  Section bodies it does not model (other devices) must be the
# seed's own; anything else gives "unknown", where only the generic checks
# apply (no crash, no hang, a refusal says why).

import re

import stream as S

M64 = 2**64 - 1
SIM_HDR_SIZE = 40
SIM_TRAILER_SIZE = 8
SIM_STREAM_MAGIC = 0x4d41455254534d53
SIM_STREAM_VERSION = 2

# migration/savevm.c: mig_cmd_args[].len, -1 for variable
CMD_LEN = {1: 0, 2: 4, 3: -1, 4: 0, 5: 0, 6: -1, 7: 4, 8: 0, 9: 0, 10: -1}
CMD_MAX = 11


def mix(x):
    """vfio_sim_mix(): the splitmix64 finalizer."""
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & M64
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & M64
    x ^= x >> 31
    return x


def sim_digest(content_sum, generation, config):
    """vfio_sim_digest() from the record's checksum and the registers."""
    d = mix(content_sum ^ generation)
    for i, c in enumerate(config):
        d = (mix(d ^ c) + i) & M64
    return d


def pci_check_mask(slot_bar_size=0x1000):
    """cmask & ~wmask & ~w1cmask of the sim's config space (hw/pci/pci.c:
    pci_init_cmask/wmask/w1cmask and pci_register_bar for its 64-bit
    memory BAR0): the bits a loaded config space must keep."""
    m = bytearray(S.PCI_CONFIG_SIZE)
    for i in (0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x0e, 0x34):
        m[i] = 0xff
    m[0x06] = 0x10                              # PCI_STATUS_CAP_LIST
    bar_keep = (slot_bar_size - 1)              # address bits are writable
    for i in range(8):
        m[0x10 + i] = (bar_keep >> (8 * i)) & 0xff
    return bytes(m)


class Refuse(Exception):
    def __init__(self, zone, reason, regex, dev=None):
        super().__init__(reason)
        self.zone = zone        # "vfio" or "core"
        self.reason = reason
        self.regex = regex
        self.dev = dev


class Unknown(Exception):
    pass


class Short(Exception):
    """A read past the end of the stream."""


class Rd:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            self.pos = len(self.data)
            raise Short()
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def be(self, n):
        return int.from_bytes(self.take(n), "big")

    def left(self):
        return len(self.data) - self.pos


class Device:
    """One vfio-sim-pci of the destination, as the model tracks it."""

    def __init__(self, d, ctx):
        self.id = d["id"]
        self.slot = d["slot"]
        self.idstr = "0000:00:%02x.0/vfio" % d["slot"]
        opts = dict(kv.split("=") for kv in d["opts"].split(","))
        self.state_size = parse_size(opts.get("state-size", "1M"))
        self.precopy = opts.get("pre-copy") == "on"
        self.state = "RESUMING"         # .load_setup
        self.pci_version = 2            # PCIDevice.version_id
        self.pci_config = bytes.fromhex(ctx.meta["dst_initial_config"]
                                        [self.id])
        self.irq_state = [0, 0, 0, 0]
        self.regs = [0, 0, 0, 0]
        self.transferred = 0
        # the resuming stream (hw/vfio/sim-migration.c)
        self.rec = b""                  # bytes of the current record
        self.error = None
        self.records = 0
        self.last = None                # (generation, checksum)
        self.good = ctx.good_records.get(self.state_size, {})

    def record_len(self):
        return SIM_HDR_SIZE + self.state_size + SIM_TRAILER_SIZE

    def write(self, data):
        """vfio_sim_resume_write(), with known-good records as the check:
        the content is a function of the header, so a record the seeds do
        not hold byte for byte cannot pass the device's own checks."""
        n = self.record_len()
        while data and not self.error:
            take = min(len(data), n - len(self.rec))
            self.rec += data[:take]
            data = data[take:]
            if len(self.rec) >= SIM_HDR_SIZE and \
                    len(self.rec) - take < SIM_HDR_SIZE:
                self.error = header_error(self.rec[:SIM_HDR_SIZE],
                                          self.state_size)
                if self.error:
                    return
            if len(self.rec) == n:
                good = self.good.get(self.rec[:SIM_HDR_SIZE])
                if good is None or good[:-8] != self.rec[:-8]:
                    self.error = "corrupt state data"
                elif good != self.rec:
                    self.error = "state checksum mismatch"
                else:
                    gen = int.from_bytes(self.rec[24:32], "little")
                    csum = int.from_bytes(self.rec[-8:], "little")
                    self.last = (gen, csum)
                    self.records += 1
                self.rec = b""

    def finish(self):
        """RESUMING -> STOP: the device validates what it received."""
        if not self.error and self.rec:
            self.error = "state data too short"
        elif not self.error and not self.records:
            self.error = "no state data"
        return self.error

    def expected(self):
        gen, csum = self.last
        cfg = bytearray(self.pci_config)
        if any(self.irq_state):
            cfg[0x06] |= 0x08
        else:
            cfg[0x06] &= ~0x08 & 0xff
        return {"state": self.state, "generation": gen,
                "digest": sim_digest(csum, gen, self.regs),
                "config": list(self.regs), "pci_config": bytes(cfg).hex(),
                "transferred": self.transferred}


def header_error(h, state_size):
    if int.from_bytes(h[0:8], "little") != SIM_STREAM_MAGIC:
        return "bad stream magic"
    if int.from_bytes(h[8:12], "little") != SIM_STREAM_VERSION:
        return "unsupported stream version"
    if int.from_bytes(h[12:16], "little") != SIM_HDR_SIZE:
        return "bad stream header size"
    if int.from_bytes(h[32:40], "little") != state_size:
        return "state size differs from state-size"
    return None


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


class Context:
    """What the model knows of a seed and of its destination."""

    def __init__(self, meta, seed_bytes):
        self.meta = meta
        recs = S.parse(seed_bytes)
        self.recs = recs
        self.caps = set(meta["caps"])
        self.versions = {}      # (idstr, instance) -> version
        self.bodies = {}        # (type, idstr, instance) -> set of bodies
        self.known = {("ram", 0)}
        data = {}
        for r in recs:
            if r.kind != "section":
                continue
            key = (r.info["owner"], r.info["owner_instance"])
            self.known.add(key)
            if "idstr" in r.info:
                self.versions[key] = r.info["version"]
            if r.items is None:
                self.bodies.setdefault(key, set()).add(r.field("body"))
            else:
                for it in r.items:
                    if it.kind == "vfio-data":
                        data.setdefault(key, []).append(
                            it.field("payload"))
        # Known-good sim records, by state size and header
        self.good_records = {}
        for d in meta["devices"]:
            dev = Device(d, self)
            blob = b"".join(data.get((dev.idstr, 0), []))
            n = dev.record_len()
            for i in range(0, len(blob) - n + 1, n):
                rec = blob[i:i + n]
                self.good_records.setdefault(dev.state_size, {})[
                    rec[:SIM_HDR_SIZE]] = rec


class Verdict:
    def __init__(self, outcome, zone=None, reason="", regex=None, dev=None,
                 devices=None, ack=None, why_unknown=None):
        self.outcome = outcome      # "load", "refuse" or "unknown"
        self.zone = zone
        self.reason = reason
        self.regex = regex
        self.dev = dev
        self.devices = devices or {}
        self.ack = ack              # the destination sends SWITCHOVER_ACK
        self.why_unknown = why_unknown

    def summary(self):
        if self.outcome == "load":
            return "load"
        if self.outcome == "unknown":
            return "unknown (%s)" % self.why_unknown
        return "refuse in %s%s: %s" % (
            self.zone, " " + self.dev if self.dev else "", self.reason)


def printed(text):
    """A regex for TEXT as QEMU prints it with %s: up to a NUL, and any
    byte that is not printable ASCII as whatever it decodes to."""
    text = text.split("\0")[0]
    out = ""
    for ch in text:
        out += re.escape(ch) if 0x20 <= ord(ch) < 0x7f else ".{0,3}"
    return out


def _names(dev):
    """A message names the device: its id, or its section id string."""
    return "(?:\\b%s\\b|'?%s'?)" % (re.escape(dev.id), re.escape(dev.idstr))


class Loader:
    """The destination's load of one stream, step by step."""

    def __init__(self, ctx, data):
        self.ctx = ctx
        self.rd = Rd(data)
        self.devs = [Device(d, ctx) for d in ctx.meta["devices"]]
        self.by_idstr = {d.idstr: d for d in self.devs}
        self.ack_on = "switchover-ack" in ctx.caps
        self.pending = 0
        self.rp_open = False
        self.ack_sent = False
        self.loaded_sid = {}        # (idstr, instance) -> load_section_id

    def vfio_refuse(self, dev, reason, msg):
        raise Refuse("vfio", reason, msg, dev.id)

    def run(self):
        rd = self.rd
        try:
            magic = rd.be(4)
        except Short:
            raise Refuse("core", "empty stream", "Not a migration stream")
        if magic != S.MAGIC:
            raise Refuse("core", "bad magic", "Not a migration stream")
        try:
            version = rd.be(4)
        except Short:
            raise Refuse("core", "short header", "Unsupported migration")
        if version == 2:
            raise Refuse("core", "v2 stream", "SaveVM v2 format is obsolete")
        if version != S.VERSION:
            raise Refuse("core", "bad version", "Unsupported migration "
                         "stream version")
        self.configuration()
        # .load_setup: every device RESUMING; switchover-ack counts
        if self.ack_on:
            self.pending = sum(1 for d in self.devs if d.precopy)
        while True:
            try:
                t = rd.be(1)
            except Short:
                raise Refuse("core", "stream ends between records",
                             "load of migration failed: Input/output error")
            if t in (S.START, S.FULL):
                self.section_start()
            elif t in (S.PART, S.END):
                self.section_part()
            elif t == S.COMMAND:
                self.command()
            elif t == S.EOF:
                break
            else:
                raise Refuse("core", "unknown record type %d" % t,
                             "Unknown savevm section type %d" % t)
        # .load_finish: a device that never got its config state (still
        # RESUMING, its data unchecked) fails the load
        for d in self.devs:
            if d.state == "RESUMING":
                raise Refuse("vfio", "no config state",
                             "VFIO device %s: the migration stream ended "
                             "without its config state" % d.id, d.id)
        return self.devs

    def configuration(self):
        seed = self.ctx.recs[1]
        assert seed.kind == "config"
        blob = seed.raw()
        rd = self.rd
        got = rd.data[rd.pos:rd.pos + len(blob)]
        if got[:1] != bytes([S.CONFIGURATION]):
            raise Refuse("core", "no configuration",
                         "Configuration section missing")
        if got != blob[:len(got)]:
            raise Unknown("configuration section changed")
        if len(got) < len(blob):
            raise Refuse("core", "configuration cut", "load of migration "
                         "failed")
        rd.pos += len(blob)

    def section_start(self):
        rd = self.rd
        try:
            sid = rd.be(4)
            n = rd.be(1)
            idstr = rd.take(n).decode("latin-1")
            inst = rd.be(4)
            version = rd.be(4)
        except Short:
            raise Refuse("core", "section header cut",
                         "load of migration failed")
        key = (idstr, inst)
        dev = self.by_idstr.get(idstr) if inst == 0 else None
        if key not in self.ctx.known:
            if S.is_vfio_idstr(idstr) or idstr in ("", "vfio-sim-pci"):
                raise Refuse("core", "no such section %r/%d" % key,
                             "Unknown savevm section or instance '%s' %d" %
                             (printed(idstr), inst))
            raise Unknown("section %r instance %d" % key)
        seed_version = self.ctx.versions.get(key, version)
        if version > seed_version:
            raise Refuse("core", "version %d of %s" % (version, idstr),
                         "savevm: unsupported version -?\\d+ for '%s'" %
                         printed(idstr))
        if dev is None and version != seed_version:
            raise Unknown("%s loaded as version %d" % (idstr, version))
        self.loaded_sid[key] = sid
        self.body(key, dev)
        self.footer(key, sid)

    def section_part(self):
        rd = self.rd
        try:
            sid = rd.be(4)
        except Short:
            raise Refuse("core", "section id cut",
                         "load of migration failed")
        owners = [k for k, s in self.loaded_sid.items() if s == sid]
        if sid == 0 or len(owners) > 1:
            # The first handler in QEMU's own order wins: unknown here
            raise Unknown("part of section id %d" % sid)
        if not owners:
            raise Refuse("core", "part of unknown section %d" % sid,
                         "Unknown savevm section -?\\d+")
        key = owners[0]
        dev = self.by_idstr.get(key[0]) if key[1] == 0 else None
        self.body(key, dev)
        self.footer(key, sid)

    def footer(self, key, sid):
        rd = self.rd
        where = printed(key[0])
        try:
            mark = rd.be(1)
        except Short:
            raise Refuse("core", "footer cut",
                         "(Read section footer failed|load of migration "
                         "failed)")
        if mark != S.FOOTER:
            raise Refuse("core", "no footer",
                         "Missing section footer for %s" % where)
        try:
            fsid = rd.be(4)
        except Short:
            raise Refuse("core", "footer cut",
                         "Mismatched section id in footer for %s" % where)
        if fsid != sid:
            raise Refuse("core", "footer id %d" % fsid,
                         "Mismatched section id in footer for %s" % where)

    def body(self, key, dev):
        if dev is not None:
            return self.vfio_body(dev)
        rd = self.rd
        for body in self.ctx.bodies.get(key, ()):
            chunk = rd.data[rd.pos:rd.pos + len(body)]
            if chunk == body:
                rd.pos += len(body)
                return
            if len(chunk) < len(body) and body.startswith(chunk):
                raise Refuse("core", "stream ends in section %s" % key[0],
                             "load of migration failed")
        raise Unknown("body of %s changed" % key[0])

    def vfio_body(self, dev):
        """vfio_load_state()."""
        rd = self.rd
        short = ("(%s|error while loading state (for instance 0x0 of "
                 "device|section id \\d+\\()'?%s)" %
                 (_names(dev), re.escape(dev.idstr)))
        try:
            tag = rd.be(8)
            while tag != S.TAG_END:
                if tag == S.TAG_CONFIG:
                    if dev.state == "RESUMING":
                        err = dev.finish()
                        if err:
                            self.vfio_refuse(
                                dev, "device refused its state: " + err,
                                "vfio %s: refusing resumed state: %s" %
                                (re.escape(dev.id), err))
                        dev.state = "STOP"
                    return self.config_state(dev, short)
                if tag == S.TAG_SETUP:
                    if rd.be(8) != S.TAG_END:
                        self.vfio_refuse(dev, "setup without END_OF_STATE",
                                         "%s: SETUP STATE: EOS not found" %
                                         re.escape(dev.id))
                    return
                if tag == S.TAG_DATA:
                    size = rd.be(8)
                    if dev.state != "RESUMING":
                        self.vfio_refuse(dev, "data in state STOP",
                                         "%s: Unexpected device data in "
                                         "state STOP" % re.escape(dev.id))
                    if size > rd.left():
                        dev.write(rd.take(rd.left()))
                        self.vfio_refuse(dev, "data record cut",
                                         "%s: Failed to load %d bytes of "
                                         "device data" %
                                         (re.escape(dev.id), size))
                    dev.write(rd.take(size))
                    dev.transferred += size
                elif tag == S.TAG_INIT_SENT:
                    return self.init_data_sent(dev)
                else:
                    self.vfio_refuse(dev, "unknown tag 0x%x" % tag,
                                     "%s: Unknown tag 0x%x" %
                                     (re.escape(dev.id), tag))
                tag = rd.be(8)
        except Short:
            raise Refuse("vfio", "section cut", short, dev.id)

    def init_data_sent(self, dev):
        name = re.escape(dev.id)
        if not dev.precopy:
            self.vfio_refuse(dev, "INIT_DATA_SENT without pre-copy",
                             "%s: Unexpected initial data sent tag .*does "
                             "not support pre-copy" % name)
        if not self.ack_on:
            self.vfio_refuse(dev, "INIT_DATA_SENT without switchover-ack",
                             "%s: Unexpected initial data sent tag .*"
                             "switchover-ack is off" % name)
        if not self.pending:
            self.vfio_refuse(dev, "INIT_DATA_SENT once too often",
                             "Unexpected switchover approval \\(0 pending\\)"
                             "(.|\\n)*%s: Failed to approve switchover" %
                             name)
        self.pending -= 1
        self.try_ack()

    def try_ack(self):
        if self.ack_on and not self.pending and self.rp_open:
            self.ack_sent = True

    def config_state(self, dev, short):
        """vfio_load_device_config_state(): the sim's layout."""
        rd = self.rd
        name = re.escape(dev.id)
        pci_fail = "vfio %s: failed to load PCI config space" % name
        v = rd.be(4)
        if v >= 2**31:
            v -= 2**32
        if not 0 <= v <= dev.pci_version:
            self.vfio_refuse(dev, "PCI vmstate version %d" % v,
                             "Invalid value %d expecting positive value "
                             "<= %d(.|\\n)*%s" % (v, dev.pci_version,
                                                  pci_fail))
        dev.pci_version = v
        cfg = rd.take(S.PCI_CONFIG_SIZE)
        mask = pci_check_mask()
        for i in range(S.PCI_CONFIG_SIZE):
            if (cfg[i] ^ dev.pci_config[i]) & mask[i]:
                self.vfio_refuse(dev, "PCI config byte 0x%x" % i,
                                 "Bad config data: i=0x%x(.|\\n)*%s" %
                                 (i, pci_fail))
        dev.pci_config = cfg
        irq = [rd.be(4) for _ in range(4)]
        for s in irq:
            if s not in (0, 1):
                # printed with %d
                signed = s - 2**32 if s >= 2**31 else s
                self.vfio_refuse(dev, "irq state %d" % signed,
                                 "irq state %d: must be 0 or 1(.|\\n)*%s" %
                                 (signed, pci_fail))
        dev.irq_state = irq
        ver, count = rd.be(4), rd.be(4)
        if ver != S.SIM_CONFIG_VERSION or count != S.SIM_NUM_CONFIG:
            self.vfio_refuse(dev, "sim config version %d count %d" %
                             (ver, count),
                             "vfio %s: bad config state \\(version %d, %d "
                             "registers" % (name, ver, count))
        dev.regs = [rd.be(8) for _ in range(4)]
        end = rd.be(8)
        if end != S.TAG_END:
            self.vfio_refuse(dev, "config state without END_OF_STATE",
                             "%s: Failed loading device config space, end "
                             "flag incorrect 0x%x" % (name, end))

    def command(self):
        rd = self.rd
        try:
            cmd, n = rd.be(2), rd.be(2)
        except Short:
            raise Refuse("core", "command cut", "load of migration failed")
        if cmd >= CMD_MAX or cmd == 0:
            raise Refuse("core", "unknown command %d" % cmd,
                         "MIG_CMD 0x%x unknown" % cmd)
        want = CMD_LEN.get(cmd, 0)
        if want != -1 and want != n:
            raise Refuse("core", "command %d length %d" % (cmd, n),
                         "received with bad length - expecting %d, got %d"
                         % (want, n))
        if cmd == S.CMD_OPEN_RP:
            if not self.rp_open:
                self.rp_open = True
                self.try_ack()
            return
        if cmd == S.CMD_PING:
            try:
                val = rd.be(4)
            except Short:
                raise Refuse("core", "ping cut", "load of migration failed")
            if not self.rp_open:
                raise Refuse("core", "ping without return path",
                             "CMD_PING \\(0x%x\\) received with no return "
                             "path" % val)
            return
        raise Unknown("command %d" % cmd)


def predict(ctx, data):
    ld = Loader(ctx, data)
    try:
        devs = ld.run()
    except Refuse as r:
        return Verdict("refuse", r.zone, r.reason, r.regex, r.dev)
    except Unknown as u:
        return Verdict("unknown", why_unknown=str(u))
    out = {}
    for d in devs:
        out[d.id] = d.expected()
    return Verdict("load", devices=out,
                   ack=ld.ack_sent if ld.ack_on else None)
