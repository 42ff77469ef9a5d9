# SPDX-License-Identifier: GPL-2.0-or-later
#
# Structure-aware mutations of a migration stream, aimed at the VFIO
# sections: each class edits the parsed records (stream.py) and returns
# the new bytes with a one-line description.  Everything is drawn from the
# random.Random handed in, so a (seed, case) pair always gives the same
# bytes.

import stream as S

M64 = 2**64 - 1

# Lengths around the edges of what the loader may do with them
EDGE_LENGTHS = [0, 1, 7, 8, 0xffff, 0x10000, 2**31 - 1, 2**31, 2**32 - 1,
                2**32, 2**32 + 8, 2**48, 2**63 - 1, 2**63, 2**64 - 2,
                2**64 - 1]


def data_record(payload):
    return S.Rec("vfio-data", [["tag", S.b64(S.TAG_DATA)],
                               ["len", S.b64(len(payload))],
                               ["payload", payload]],
                 tag=S.TAG_DATA, length=len(payload))


def vfio_sections(recs):
    return [i for i, r in enumerate(recs) if r.items is not None]


def vfio_items(recs, kinds=None):
    out = []
    for si in vfio_sections(recs):
        for ii, it in enumerate(recs[si].items):
            if kinds is None or it.kind in kinds:
                out.append((si, ii))
    return out


def boundaries(recs):
    """Every record and field boundary, with what starts there; and a
    point inside each VFIO field, for cuts mid-field."""
    out = {}
    pos = 0

    def fields(flist, what):
        nonlocal pos
        for name, val in flist:
            out.setdefault(pos, "%s: %s" % (what, name))
            if name in ("payload", "pci_config", "regs") and len(val) > 1:
                out.setdefault(pos + len(val) // 2,
                               "%s: middle of %s" % (what, name))
            pos += len(val)

    for r in recs:
        what = S.describe(r)
        out[pos] = "start of " + what
        if r.items is None:
            pos += len(r.raw())
            continue
        fields(r.fields, what)
        for it in r.items:
            fields(it.fields, "%s / %s" % (what, S.describe(it)))
        fields(r.foot, what)
    return sorted(out.items())


class Mutator:
    """The mutation classes over one seed's records."""

    CLASSES = [
        # (name, weight): byte flips are a minority on purpose
        ("truncate", 12), ("tag-bitflip", 10), ("length-bitflip", 8),
        ("length-edge", 10), ("duplicate", 9), ("reorder", 9),
        ("drop", 7), ("pci-config", 12), ("foreign", 8),
        ("tag-insert", 7), ("rechunk", 6), ("command", 4), ("bytes", 4),
    ]

    def __init__(self, recs, meta):
        self.recs = recs
        self.meta = meta
        self.data = S.serialize(recs)
        self.bounds = boundaries(recs)
        self.idstrs = ["0000:00:%02x.0/vfio" % d["slot"]
                       for d in meta["devices"]]

    def classes(self):
        """The classes that apply to this seed, with their weights."""
        has_cmd = any(r.kind == "command" for r in self.recs)
        return [(n, w) for n, w in self.CLASSES
                if n != "command" or has_cmd]

    def mutate(self, rng, cls, k):
        """Case K of class CLS: (bytes, description)."""
        fn = getattr(self, "m_" + cls.replace("-", "_"))
        return fn(rng, k)

    def copy(self):
        return [r.copy() for r in self.recs]

    # -- classes --------------------------------------------------------

    def m_truncate(self, rng, k):
        # Every boundary in turn, in a spread-out order (a stride prime to
        # their number), so that a short run still cuts all over
        n = len(self.bounds)
        stride = next(s for s in (37, 41, 43, 47, 1) if n % s)
        pos, what = self.bounds[(k * stride) % n]
        return self.data[:pos], "cut at %d (%s)" % (pos, what)

    def _tag_positions(self):
        out, pos = [], 0
        for r in self.recs:
            if r.items is None:
                pos += len(r.raw())
                continue
            pos += sum(len(v) for _, v in r.fields)
            for it in r.items:
                out.append((pos, S.describe(it)))
                pos += len(it.raw())
            pos += sum(len(v) for _, v in r.foot)
        return out

    def m_tag_bitflip(self, rng, k):
        tags = self._tag_positions()
        pos, what = rng.choice(tags)
        # The low 16 bits number the tags: flip there more often
        bit = rng.randrange(16) if rng.random() < 0.5 else rng.randrange(64)
        data = bytearray(self.data)
        data[pos + 7 - bit // 8] ^= 1 << (bit % 8)
        return bytes(data), "flip bit %d of the tag at %d (%s)" % (
            bit, pos, what)

    def _data_item(self, rng, recs):
        items = vfio_items(recs, ("vfio-data",))
        si, ii = rng.choice(items)
        return recs[si], recs[si].items[ii]

    def m_length_bitflip(self, rng, k):
        recs = self.copy()
        sec, it = self._data_item(rng, recs)
        n = S.be(it.field("len"))
        bit = rng.randrange(64)
        it.set_field("len", S.b64(n ^ (1 << bit)))
        return S.serialize(recs), "flip bit %d of a data length %d (%s)" % (
            bit, n, S.describe(sec))

    def m_length_edge(self, rng, k):
        recs = self.copy()
        sec, it = self._data_item(rng, recs)
        n = S.be(it.field("len"))
        # The length that takes the data up to the end of the stream
        offs, total = S.offsets(recs)
        start = offs[recs.index(sec)] + sum(len(v) for _, v in sec.fields)
        for x in sec.items:
            if x is it:
                break
            start += len(x.raw())
        to_end = total - start - 16
        values = EDGE_LENGTHS + [n - 1, n + 1, 2 * n, n + 8, n - 8,
                                 to_end, to_end + 1, to_end - 1,
                                 2**64 - n]
        v = values[k % len(values)] & M64
        it.set_field("len", S.b64(v))
        return S.serialize(recs), "data length %d -> %d (%s)" % (
            n, v, S.describe(sec))

    def m_duplicate(self, rng, k):
        recs = self.copy()
        if rng.random() < 0.5:
            si, ii = rng.choice(vfio_items(recs))
            sec = recs[si]
            sec.items.insert(ii, sec.items[ii].copy())
            what = "%s / %s" % (S.describe(sec), S.describe(sec.items[ii]))
        else:
            i = self._pick_record(rng, recs)
            recs.insert(i, recs[i].copy())
            what = S.describe(recs[i])
        return S.serialize(recs), "duplicate " + what

    def _pick_record(self, rng, recs, vfio_bias=0.7):
        """A top-level record other than the header and configuration,
        more often a VFIO section."""
        vfio = vfio_sections(recs)
        if rng.random() < vfio_bias:
            return rng.choice(vfio)
        return rng.randrange(2, len(recs))

    def m_reorder(self, rng, k):
        recs = self.copy()
        mode = rng.randrange(3)
        if mode == 0:
            # two items of one VFIO section trade places
            secs = [i for i in vfio_sections(recs)
                    if len(recs[i].items) > 1]
            sec = recs[rng.choice(secs)]
            a, b = rng.sample(range(len(sec.items)), 2)
            sec.items[a], sec.items[b] = sec.items[b], sec.items[a]
            return S.serialize(recs), "swap items %d and %d of %s" % (
                a, b, S.describe(sec))
        i = self._pick_record(rng, recs)
        if mode == 1:
            # with the next record
            j = i + 1 if i + 1 < len(recs) else i - 1
        else:
            j = rng.randrange(2, len(recs))
        if j < 2 or i == j:
            j = 2 if i != 2 else 3
        what = "%s and %s" % (S.describe(recs[i]), S.describe(recs[j]))
        recs[i], recs[j] = recs[j], recs[i]
        return S.serialize(recs), "swap records %d and %d (%s)" % (
            i, j, what)

    def m_drop(self, rng, k):
        recs = self.copy()
        if rng.random() < 0.5:
            si, ii = rng.choice(vfio_items(recs))
            sec = recs[si]
            it = sec.items.pop(ii)
            return S.serialize(recs), "drop %s from %s" % (
                S.describe(it), S.describe(sec))
        i = self._pick_record(rng, recs)
        what = S.describe(recs[i])
        del recs[i]
        return S.serialize(recs), "drop record %d (%s)" % (i, what)

    # Edits of the config state: (field, offset, how), how a function of
    # (rng, old bytes) -> new bytes
    def m_pci_config(self, rng, k):
        recs = self.copy()
        si, ii = rng.choice(vfio_items(recs, ("vfio-config",)))
        it = recs[si].items[ii]
        cfg = bytearray(it.field("pci_config"))
        choice = rng.randrange(12)
        if choice == 0:
            off, size = rng.choice([(0x00, 2), (0x02, 2)])  # vendor, device
            old = int.from_bytes(cfg[off:off + size], "little")
            new = rng.choice([0xffff, 0, old ^ 1, rng.randrange(0x10000)])
            cfg[off:off + size] = new.to_bytes(size, "little")
            what = "%s id 0x%04x -> 0x%04x" % (
                "vendor" if off == 0 else "device", old, new)
        elif choice == 1:
            # BAR0's size and type bits (read-only), or its address
            lo = int.from_bytes(cfg[0x10:0x14], "little")
            new = rng.choice([
                (lo & ~0xfff) | 0x800 | (lo & 0xf),     # an 8 KiB BAR
                (lo & ~0xfff) | (lo & 0xf) | 0x10,      # 32 bytes smaller
                lo & ~0x4,                              # 32-bit
                lo | 0x8,                               # prefetchable
                lo | 0x1,                               # I/O
                (lo & 0xf) | (rng.randrange(1, 0x100000) << 12),  # moved
                0xffffffff])
            cfg[0x10:0x14] = (new & 0xffffffff).to_bytes(4, "little")
            what = "BAR0 low 0x%08x -> 0x%08x" % (lo, new & 0xffffffff)
        elif choice == 2:
            hi = rng.choice([0xffffffff, 1, rng.randrange(2**32)])
            cfg[0x14:0x18] = hi.to_bytes(4, "little")
            what = "BAR0 high -> 0x%08x" % hi
        elif choice == 3:
            # the capability list: its status bit and its pointer
            if rng.random() < 0.5:
                cfg[0x06] ^= 0x10
                what = "status capability-list bit toggled"
            else:
                cfg[0x34] = rng.choice([0x40, 0x50, 0xff, 0x01])
                what = "capability pointer -> 0x%02x" % cfg[0x34]
        elif choice == 4:
            off = rng.choice([0x08, 0x09, 0x0a, 0x0b, 0x0e])
            cfg[off] ^= 1 << rng.randrange(8)
            what = "byte 0x%02x (revision/class/header type) -> 0x%02x" % (
                off, cfg[off])
        elif choice == 5:
            cmd = rng.randrange(0x10000)
            cfg[0x04:0x06] = cmd.to_bytes(2, "little")
            what = "command -> 0x%04x" % cmd
        elif choice == 6:
            # unimplemented BARs, subsystem, ROM, interrupt line and pin
            off = rng.choice([0x18, 0x1c, 0x24, 0x2c, 0x2e, 0x30, 0x3c,
                              0x3d, 0x3e, 0x3f])
            cfg[off] = rng.randrange(1, 256)
            what = "byte 0x%02x -> 0x%02x" % (off, cfg[off])
        elif choice == 7:
            off = rng.randrange(0x40, 0x100)
            cfg[off] = rng.randrange(256)
            what = "device-specific byte 0x%02x -> 0x%02x" % (off, cfg[off])
        elif choice == 8:
            v = rng.choice([0, 1, 3, 2**32 - 1, 2**31 - 1, 2**31])
            it.set_field("pci_version", S.b32(v))
            what = "PCIDevice vmstate version -> %d" % v
        elif choice == 9:
            irq = [0, 0, 0, 0]
            irq[rng.randrange(4)] = rng.choice([1, 2, 2**32 - 1, 0x100])
            it.set_field("irq_state", b"".join(S.b32(x) for x in irq))
            what = "irq state -> %s" % irq
        elif choice == 10:
            name = rng.choice(["sim_version", "sim_count"])
            v = rng.choice([0, 2, 3, 5, 2**32 - 1, 0x05000000])
            it.set_field(name, S.b32(v))
            what = "%s -> %d" % (name, v)
        else:
            regs = bytearray(it.field("regs"))
            i = rng.randrange(len(regs))
            regs[i] ^= rng.randrange(1, 256)
            it.set_field("regs", bytes(regs))
            what = "CONFIG register byte %d changed" % i
        it.set_field("pci_config", bytes(cfg))
        return S.serialize(recs), "config state of %s: %s" % (
            recs[si].info["owner"], what)

    def m_foreign(self, rng, k):
        recs = self.copy()
        heads = [i for i in vfio_sections(recs) if "idstr" in recs[i].info]
        i = rng.choice(heads)
        r = recs[i]
        old = r.info["idstr"]
        mode = rng.randrange(4)
        if mode == 0 or (mode == 3 and len(self.idstrs) < 2):
            new = rng.choice(["0000:00:06.0/vfio", "0000:00:04.1/vfio",
                              "vfio", "0000:00:04.0/vfio2",
                              "0000:01:04.0/vfio", "vfio-sim-pci"])
            r.set_field("idlen", bytes([len(new)]))
            r.set_field("idstr", new.encode())
            what = "idstr %s -> %s" % (old, new)
        elif mode == 1:
            v = rng.choice([1, 2, 2**32 - 1])
            r.set_field("instance", S.b32(v))
            what = "%s instance -> %d" % (old, v)
        elif mode == 2:
            v = rng.choice([0, 2, 2**32 - 1])
            r.set_field("version", S.b32(v))
            what = "%s version -> %d" % (old, v)
        else:
            # The other device's section id string: its records go there
            new = [x for x in self.idstrs if x != old][0]
            r.set_field("idstr", new.encode())
            what = "idstr %s -> %s (the other device)" % (old, new)
            if rng.random() < 0.5:
                # and the other way round, for every header of both
                for x in recs:
                    if x.items is not None and "idstr" in x.info and \
                            x is not r and x.info["idstr"] in (old, new):
                        x.set_field("idstr", (old if x.info["idstr"] == new
                                              else new).encode())
                what = "idstrs of the two devices swapped"
        return S.serialize(recs), "%s (%s)" % (what, S.describe(recs[i]))

    def m_tag_insert(self, rng, k):
        recs = self.copy()
        si = rng.choice(vfio_sections(recs))
        sec = recs[si]
        at = rng.randrange(len(sec.items) + 1)
        choice = rng.randrange(7)
        if choice == 0:
            tag = rng.choice([S.TAG_END, S.TAG_SETUP, S.TAG_INIT_SENT,
                              S.TAG_CONFIG])
            new = S.Rec("vfio-tag", [["tag", S.b64(tag)]], tag=tag)
        elif choice == 1:
            tag = 0xffffffffef100000 | rng.choice([0, 6, 7, 0xff, 0xffff])
            new = S.Rec("vfio-tag", [["tag", S.b64(tag)]], tag=tag)
        elif choice == 2:
            tag = rng.randrange(2**64)
            new = S.Rec("vfio-tag", [["tag", S.b64(tag)]], tag=tag)
        elif choice in (3, 4):
            # a copy of some data record, or of some config state
            kinds = ("vfio-data",) if choice == 3 else ("vfio-config",)
            items = vfio_items(recs, kinds)
            if not items:
                items = vfio_items(recs)
            a, b = rng.choice(items)
            new = recs[a].items[b].copy()
        elif choice == 5:
            n = rng.choice([0, 1, 40, 48])
            payload = bytes(rng.randrange(256) for _ in range(n))
            new = S.Rec("vfio-data", [["tag", S.b64(S.TAG_DATA)],
                                      ["len", S.b64(n)],
                                      ["payload", payload]],
                        tag=S.TAG_DATA, length=n)
        else:
            new = S.Rec("vfio-tag", [["tag", S.b64(S.TAG_SETUP)]],
                        tag=S.TAG_SETUP)
            sec.items.insert(at, S.Rec("vfio-tag",
                                       [["tag", S.b64(S.TAG_END)]],
                                       tag=S.TAG_END))
        sec.items.insert(at, new)
        return S.serialize(recs), "insert %s at item %d of %s" % (
            S.describe(new), at, S.describe(sec))

    def m_rechunk(self, rng, k):
        """The same device data in other records: split one (empty and
        one-byte records too) or merge a section's records.  Valid: the
        destination accepts any record size."""
        recs = self.copy()
        si, ii = rng.choice(vfio_items(recs, ("vfio-data",)))
        sec = recs[si]
        it = sec.items[ii]
        payload = it.field("payload")
        if rng.random() < 0.25:
            # merge every data record of this section into one
            datas = [x for x in sec.items if x.kind == "vfio-data"]
            blob = b"".join(x.field("payload") for x in datas)
            first = sec.items.index(datas[0])
            sec.items = [x for x in sec.items if x.kind != "vfio-data"]
            sec.items.insert(first, data_record(blob))
            return S.serialize(recs), "merge %d data records of %s" % (
                len(datas), S.describe(sec))
        cuts = sorted(rng.choice([0, 1, len(payload) - 1, len(payload),
                                  rng.randrange(len(payload) + 1)])
                      for _ in range(rng.randrange(1, 5)))
        pieces, prev = [], 0
        for c in cuts + [len(payload)]:
            pieces.append(payload[prev:max(c, prev)])
            prev = max(c, prev)
        sec.items[ii:ii + 1] = [data_record(p) for p in pieces]
        return S.serialize(recs), "split a data record of %d bytes into " \
            "%s (%s)" % (len(payload), [len(p) for p in pieces],
                         S.describe(sec))

    def m_command(self, rng, k):
        recs = self.copy()
        cmds = [i for i, r in enumerate(recs) if r.kind == "command"]
        i = rng.choice(cmds)
        r = recs[i]
        mode = rng.randrange(5)
        if mode == 0:
            recs.insert(i, r.copy())
            what = "duplicate"
        elif mode == 1:
            del recs[i]
            what = "drop"
        elif mode == 2:
            c = rng.choice([0, 11, 0xffff, 3, 4, 8])
            r.set_field("cmd", c.to_bytes(2, "big"))
            what = "number -> %d" % c
        elif mode == 3:
            n = rng.choice([0, 1, 4, 8, 0xffff])
            r.set_field("len", n.to_bytes(2, "big"))
            what = "length -> %d" % n
        else:
            # a PING earlier than the return path
            j = next((x for x in cmds if recs[x].info["cmd"] == S.CMD_PING),
                     i)
            recs.insert(2, recs.pop(j))
            what = "moved to the front"
        return S.serialize(recs), "command %s: %s" % (S.describe(r), what)

    def m_bytes(self, rng, k):
        data = bytearray(self.data)
        secs = vfio_sections(self.recs)
        offs, total = S.offsets(self.recs)
        out = []
        for _ in range(rng.randrange(1, 5)):
            if rng.random() < 0.5:
                i = rng.choice(secs)
                lo = offs[i]
                hi = lo + len(self.recs[i].raw())
            else:
                lo, hi = 0, total
            pos = rng.randrange(lo, hi)
            data[pos] ^= rng.randrange(1, 256)
            out.append(pos)
        return bytes(data), "bytes changed at %s" % ", ".join(
            str(p) for p in sorted(out))
