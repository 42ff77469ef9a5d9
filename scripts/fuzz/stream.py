# SPDX-License-Identifier: GPL-2.0-or-later
#
# QEMU 7.2 migration streams as records: the file header, the
# configuration, sections (start, part, end, full) with their footers,
# commands, EOF and what follows.  The sections of VFIO devices are parsed
# down to their be64 tags, data records and config state; the bodies of
# other sections stay opaque.  parse() then serialize() gives back the
# same bytes.

MAGIC = 0x5145564d
VERSION = 3
EOF, START, PART, END, FULL = 0x00, 0x01, 0x02, 0x03, 0x04
SUBSECTION, VMDESC, CONFIGURATION, COMMAND = 0x05, 0x06, 0x07, 0x08
FOOTER = 0x7e
SECTION_TYPES = (START, PART, END, FULL)
TYPE_NAMES = {EOF: "eof", START: "start", PART: "part", END: "end",
              FULL: "full", COMMAND: "command"}

# hw/vfio/migration.c
TAG_END = 0xffffffffef100001
TAG_CONFIG = 0xffffffffef100002
TAG_SETUP = 0xffffffffef100003
TAG_DATA = 0xffffffffef100004
TAG_INIT_SENT = 0xffffffffef100005
TAG_NAMES = {TAG_END: "END_OF_STATE", TAG_CONFIG: "DEV_CONFIG_STATE",
             TAG_SETUP: "DEV_SETUP_STATE", TAG_DATA: "DEV_DATA_STATE",
             TAG_INIT_SENT: "DEV_INIT_DATA_SENT"}

# migration/savevm.c: MIG_CMD_*
CMD_OPEN_RP, CMD_PING = 1, 2

# The config state of vfio-sim-pci: PCIDevice vmstate (be32 version, the
# 256 bytes of config space, 4 x be32 irq state), then be32 version, be32
# count and the CONFIG0..3 registers as be64 (hw/vfio/sim.c)
PCI_CONFIG_SIZE = 256
SIM_CONFIG_VERSION = 1
SIM_NUM_CONFIG = 4


class ParseError(Exception):
    pass


class Rec:
    """One record: a list of named byte fields, and what they mean.

    A VFIO section also has ITEMS, the records of its body, between its
    head fields and its footer fields (FOOT).
    """

    def __init__(self, kind, fields, items=None, foot=None, **info):
        self.kind = kind
        self.fields = fields
        self.items = items
        self.foot = foot or []
        self.info = info

    def raw(self):
        out = b"".join(v for _, v in self.fields)
        if self.items is not None:
            out += b"".join(i.raw() for i in self.items)
        return out + b"".join(v for _, v in self.foot)

    def field(self, name):
        for n, v in self.fields + self.foot:
            if n == name:
                return v
        raise KeyError(name)

    def set_field(self, name, value):
        for lst in (self.fields, self.foot):
            for f in lst:
                if f[0] == name:
                    f[1] = value
                    return
        raise KeyError(name)

    def copy(self):
        r = Rec(self.kind, [list(f) for f in self.fields],
                None if self.items is None else
                [i.copy() for i in self.items],
                [list(f) for f in self.foot], **dict(self.info))
        return r

    def __repr__(self):
        return "<%s %s>" % (self.kind, describe(self))


def describe(r):
    i = r.info
    if r.kind == "section":
        s = "%s sid=%d" % (TYPE_NAMES[i["type"]], i["sid"])
        if "idstr" in i:
            s += " %s/%d v%d" % (i["idstr"], i["instance"], i["version"])
        return s
    if r.kind == "vfio-tag":
        return TAG_NAMES.get(i["tag"], "0x%x" % i["tag"])
    if r.kind == "vfio-data":
        return "DEV_DATA_STATE %d" % i["length"]
    if r.kind == "command":
        return "cmd %d len %d" % (i["cmd"], i["len"])
    return r.kind


def is_vfio_idstr(idstr):
    return idstr == "vfio" or idstr.endswith("/vfio")


class Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ParseError("stream ends at %d, wanted %d more bytes" %
                             (len(self.data), n))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def peek(self, n=1):
        return self.data[self.pos:self.pos + n]

    def left(self):
        return len(self.data) - self.pos


def be(b):
    return int.from_bytes(b, "big")


def b64(v):
    return (v & (2**64 - 1)).to_bytes(8, "big")


def b32(v):
    return (v & (2**32 - 1)).to_bytes(4, "big")


def _parse_configuration(rd):
    """The QEMU_VM_CONFIGURATION section: machine name, subsections."""
    start = rd.pos
    rd.take(1)
    n = be(rd.take(4))
    rd.take(n)
    while rd.peek() == bytes([SUBSECTION]):
        rd.take(1)
        name = rd.take(rd.take(1)[0]).decode("latin-1")
        rd.take(4)      # version
        if name.endswith("target-page-bits"):
            rd.take(4)
        elif name.endswith("capabilities"):
            for _ in range(be(rd.take(4))):
                rd.take(rd.take(1)[0])
        elif name.endswith("uuid"):
            rd.take(16)
        else:
            raise ParseError("unknown configuration subsection %s" % name)
    return Rec("config", [["raw", rd.data[start:rd.pos]]])


def _plausible_next(data, pos, seen):
    """Whether a record may start at POS (to find opaque section ends)."""
    if pos >= len(data):
        return False
    t = data[pos]
    if t == EOF:
        return pos + 1 == len(data) or data[pos + 1] == VMDESC
    if t in (START, FULL):
        if pos + 6 > len(data):
            return False
        n = data[pos + 5]
        name = data[pos + 6:pos + 6 + n]
        return n > 0 and len(name) == n and \
            all(0x20 < c < 0x7f for c in name)
    if t in (PART, END):
        return be(data[pos + 1:pos + 5]) in seen
    if t == COMMAND:
        return be(data[pos + 1:pos + 3]) in range(1, 12)
    return False


def _opaque_body(rd, sid, seen):
    """An opaque body ends at the first footer of its section followed by
    something that can start a record."""
    foot = bytes([FOOTER]) + b32(sid)
    at = rd.pos
    while True:
        at = rd.data.find(foot, at)
        if at < 0:
            raise ParseError("no footer for section %d" % sid)
        if _plausible_next(rd.data, at + 5, seen | {sid}):
            return rd.take(at - rd.pos)
        at += 1


def parse_config_state(rd):
    """DEV_CONFIG_STATE's payload, the sim's layout, and its END tag."""
    f = [["pci_version", rd.take(4)],
         ["pci_config", rd.take(PCI_CONFIG_SIZE)],
         ["irq_state", rd.take(16)],
         ["sim_version", rd.take(4)],
         ["sim_count", rd.take(4)],
         ["regs", rd.take(8 * SIM_NUM_CONFIG)]]
    return f


def parse_vfio_body(rd, end):
    """The tags of one VFIO section body, up to offset END (its footer)."""
    items = []
    while rd.pos < end:
        tag_b = rd.take(8)
        tag = be(tag_b)
        if tag == TAG_DATA:
            len_b = rd.take(8)
            n = be(len_b)
            items.append(Rec("vfio-data", [["tag", tag_b], ["len", len_b],
                                           ["payload", rd.take(n)]],
                             tag=tag, length=n))
        elif tag == TAG_CONFIG:
            items.append(Rec("vfio-config", [["tag", tag_b]] +
                             parse_config_state(rd), tag=tag))
        else:
            items.append(Rec("vfio-tag", [["tag", tag_b]], tag=tag))
    if rd.pos != end:
        raise ParseError("VFIO body overruns its footer")
    return items


def parse(data):
    rd = Reader(data)
    recs = []
    if be(rd.peek(4)) != MAGIC:
        raise ParseError("not a migration stream")
    recs.append(Rec("header", [["magic", rd.take(4)],
                               ["version", rd.take(4)]]))
    if rd.peek() == bytes([CONFIGURATION]):
        recs.append(_parse_configuration(rd))
    idstrs = {}         # section id -> (idstr, instance)
    while True:
        t = rd.take(1)[0]
        if t == EOF:
            recs.append(Rec("eof", [["type", bytes([t])]]))
            if rd.left():
                recs.append(Rec("trailer", [["raw", rd.take(rd.left())]]))
            return recs
        if t == COMMAND:
            cmd_b, len_b = rd.take(2), rd.take(2)
            recs.append(Rec("command", [["type", bytes([t])],
                                        ["cmd", cmd_b], ["len", len_b],
                                        ["data", rd.take(be(len_b))]],
                            cmd=be(cmd_b), len=be(len_b)))
            continue
        if t not in SECTION_TYPES:
            raise ParseError("unknown record type %d at %d" % (t, rd.pos - 1))
        head = [["type", bytes([t])], ["sid", rd.take(4)]]
        sid = be(head[1][1])
        info = {"type": t, "sid": sid}
        if t in (START, FULL):
            n = rd.take(1)
            idstr = rd.take(n[0])
            head += [["idlen", n], ["idstr", idstr],
                     ["instance", rd.take(4)], ["version", rd.take(4)]]
            info.update(idstr=idstr.decode("latin-1"),
                        instance=be(head[4][1]), version=be(head[5][1]))
            idstrs[sid] = (info["idstr"], info["instance"])
        elif sid not in idstrs:
            raise ParseError("part of unknown section %d" % sid)
        info["owner"] = idstrs[sid][0]
        info["owner_instance"] = idstrs[sid][1]
        if is_vfio_idstr(info["owner"]):
            # Find the footer by parsing the tags: exact for VFIO
            body_start = rd.pos
            probe = Reader(data, rd.pos)
            end = _vfio_body_end(probe)
            items = parse_vfio_body(rd, end)
            assert rd.pos == end and end >= body_start
            rec = Rec("section", head, items, None, **info)
        else:
            body = _opaque_body(rd, sid, set(idstrs))
            rec = Rec("section", head + [["body", body]], None, None, **info)
        mark = rd.take(1)
        fsid = rd.take(4)
        if mark[0] != FOOTER or be(fsid) != sid:
            raise ParseError("bad footer for section %d" % sid)
        rec.foot = [["footer", mark], ["footer_sid", fsid]]
        recs.append(rec)


def _vfio_body_end(rd):
    """Where a VFIO section's body ends: after END_OF_STATE at the top
    level, after the config state's END, or after INIT_DATA_SENT."""
    while True:
        tag = be(rd.take(8))
        if tag == TAG_DATA:
            rd.take(be(rd.take(8)))
        elif tag == TAG_CONFIG:
            parse_config_state(rd)
            if be(rd.take(8)) != TAG_END:
                raise ParseError("config state without END_OF_STATE")
            return rd.pos
        elif tag == TAG_SETUP:
            if be(rd.take(8)) != TAG_END:
                raise ParseError("setup state without END_OF_STATE")
            return rd.pos
        elif tag in (TAG_END, TAG_INIT_SENT):
            return rd.pos
        else:
            raise ParseError("unknown VFIO tag 0x%x" % tag)


def serialize(recs):
    return b"".join(r.raw() for r in recs)


def strip_ram(recs):
    """The records without the RAM sections (idstr "ram")."""
    return [r for r in recs
            if not (r.kind == "section" and r.info["owner"] == "ram")]


def offsets(recs):
    """Start offset of each record, and the total length."""
    out, pos = [], 0
    for r in recs:
        out.append(pos)
        pos += len(r.raw())
    return out, pos


def dump(recs):
    """One line a record (runs of alike records as one), its items below."""
    offs, total = offsets(recs)
    lines, prev, run = [], None, 0
    for r, o in zip(recs, offs):
        text = "%s (%d bytes)" % (describe(r), len(r.raw()))
        sub = ["         %s" % describe(it) for it in r.items or []]
        key = (text, tuple(sub))
        if key == prev:
            run += 1
            continue
        if run:
            lines.append("         ... %d more alike" % run)
        prev, run = key, 0
        lines.append("%6d %s" % (o, text))
        lines += sub
    if run:
        lines.append("         ... %d more alike" % run)
    lines.append("%6d end" % total)
    return "\n".join(lines)
