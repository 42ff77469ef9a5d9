# SPDX-License-Identifier: GPL-2.0-or-later
"""The A/B suite's guest: Debian's kernel (the real-kernel suite's cached
download) on an initramfs of busybox-static and dirtier.c.

build_initramfs() compiles scripts/ab/dirtier.c with the host's gcc
(-static -O2) and writes build/ab/initramfs.gz (cpio newc, gzip): /init
(a busybox shell script that mounts /proc and /sys and runs the dirtier on
the console), /bin/busybox, /bin/dirtier and /dev/console.  Both are
redone only when their inputs change (a stamp holds their digest).
"""

import gzip
import hashlib
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
DIRTIER_C = os.path.join(HERE, "dirtier.c")

INIT = b"""#!/bin/busybox sh
# The A/B suite's init: W and R come from the kernel command line
# (dirtier.w=MiB, dirtier.r=MiB/s), read by the dirtier from /proc/cmdline.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox echo "AB INIT $(/bin/busybox cat /proc/cmdline)"
/bin/dirtier
/bin/busybox echo "AB DIRTIER EXITED $?"
exec /bin/busybox sh
"""


def read_env(path):
    """KEY=VALUE lines of a shell env file (assets.env) as a dict."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


class Cpio:
    """A cpio archive in the kernel's "newc" format."""

    def __init__(self):
        self.data = bytearray()
        self.ino = 0

    def entry(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        nb = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(nb), 0)
        self.data += b"070701" + "".join("%08X" % v for v in fields).encode()
        self.data += nb + b"\0" * (-(110 + len(nb)) % 4)
        self.data += data + b"\0" * (-len(data) % 4)

    def finish(self):
        self.entry("TRAILER!!!", 0)
        return bytes(self.data)


def digest(*paths):
    h = hashlib.sha256(INIT)
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def build_initramfs(busybox, outdir):
    """Build OUTDIR/dirtier and OUTDIR/initramfs.gz; return the latter."""
    os.makedirs(outdir, exist_ok=True)
    dirtier = os.path.join(outdir, "dirtier")
    image = os.path.join(outdir, "initramfs.gz")
    stamp = os.path.join(outdir, "initramfs.stamp")
    want = digest(DIRTIER_C, busybox)
    try:
        with open(stamp) as f:
            if f.read().strip() == want and os.path.exists(image):
                return image
    except OSError:
        pass
    r = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra",
                        "-o", dirtier, DIRTIER_C],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gcc -static dirtier.c failed: %s" %
                           (r.stderr.strip() or r.stdout.strip()))
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp"):
        c.entry(d, 0o40755)
    c.entry("dev/console", 0o20600, rdev=(5, 1))
    c.entry("init", 0o100755, INIT)
    with open(busybox, "rb") as f:
        c.entry("bin/busybox", 0o100755, f.read())
    with open(dirtier, "rb") as f:
        c.entry("bin/dirtier", 0o100755, f.read())
    with open(image + ".tmp", "wb") as f:
        f.write(gzip.compress(c.finish(), compresslevel=6, mtime=0))
    os.replace(image + ".tmp", image)
    with open(stamp, "w") as f:
        f.write(want + "\n")
    return image
