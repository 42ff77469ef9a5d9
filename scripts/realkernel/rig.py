#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# L0 side of the real-kernel suite: build the L1 initramfs (busybox, the
# VFIO modules with their dependencies, both mtty.ko, the series' QEMU,
# Debian's QEMU, trixie's QEMU 10.0 under /trixie with its own libraries,
# a trimmed python3 and l1.py), boot Debian's kernel on it
# with the series' QEMU under TCG, and relay the scenario results that l1.py
# prints on the guest's second serial port.
#
# usage: rig.py ASSETS_ENV QEMU COUNTS_FILE [--only NAME,...] [--l2-root ROOT]
#
# --l2-root ROOT (make check-deb): the QEMU installed in the Debian root ROOT
# replaces the series' build, as L1 and as L2 (/usr/bin/qemu-system-x86_64
# in L1 is then a wrapper that runs it with ROOT's ld.so, libraries, TCG
# module and SeaBIOS, copied under /pkg); QEMU is ignored.
#
# Prints the scenario lines ("PASS name", "FAIL name: why", "SKIP name:
# why", detail lines) and writes "passed failed skipped" to COUNTS_FILE.
# A scenario that l1.py never reported (L1 crashed or timed out) is a
# failure.

import hashlib
import lzma
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3.11"      # Debian's, whatever python3 is on PATH
SEABIOS = "/usr/share/seabios/bios-256k.bin"
TOP_MODULES = ("vfio", "vfio_iommu_type1", "mdev")
# Whole run, from the L1 boot to its last result.
TIMEOUT = int(os.environ.get("REALKERNEL_TIMEOUT", "600"))
# From the L1 start to its init's first word.
BOOT_TIMEOUT = 180


def die(msg):
    print("rig: " + msg, file=sys.stderr)
    sys.exit(1)


class Cpio:
    """A newc archive, written as the kernel's gen_init_cpio does."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.ino = 1
        self.names = set()

    def _entry(self, name, mode, data=b"", mtime=0):
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        self.ino += 1
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, 1, mtime, len(data), 0, 0, 0, 0, len(nb),
            0))
        self.f.write(hdr.encode() + nb)
        self.f.write(b"\0" * (-(110 + len(nb)) % 4))
        self.f.write(data)
        self.f.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), 0o40755)

    def file(self, name, data, mode=0o644, mtime=0):
        self.dir(os.path.dirname(name))
        self._entry(name, 0o100000 | mode, data, mtime)

    def copy(self, src, name=None, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
        # The mtime lets python use the stdlib's cached bytecode.
        self.file(name or src, data, mode, int(os.stat(src).st_mtime))

    def symlink(self, name, target):
        self.dir(os.path.dirname(name))
        self._entry(name, 0o120777, target.encode())

    def close(self):
        self._entry("TRAILER!!!", 0)
        self.f.close()


def guest_path(path):
    """Where a host library goes: /lib is usr/lib in the initramfs, and a
    library from elsewhere (LD_LIBRARY_PATH) goes on the loader's path."""
    if path.startswith("/lib/"):
        return "/usr" + path
    if path.startswith(("/usr/lib/", "/lib64/")):
        return path
    return "/usr/lib/x86_64-linux-gnu/" + os.path.basename(path)


def ldd(path, env=None):
    """The shared objects path needs, as (name in ldd output, host path)."""
    r = subprocess.run(["ldd", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       env=env)
    libs = []
    for line in r.stdout.splitlines():
        if "not found" in line:
            die("%s: %s" % (path, line.strip()))
        m = re.match(r"\s*\S+ => (/\S+)", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
    return libs


def modinfo_depends(ko_data):
    m = re.search(rb"\0depends=([^\0]*)\0", ko_data)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def module_closure(moddir):
    """(name, .ko bytes) of TOP_MODULES and their dependencies, in load
    order.  Debian ships no modules.dep (depmod runs at install time), so
    read each module's own depends= from its .modinfo."""
    files = {}
    for root, _, names in os.walk(os.path.join(moddir, "kernel")):
        for n in names:
            if n.endswith(".ko.xz"):
                files[n[:-6].replace("-", "_")] = os.path.join(root, n)
    order, data = [], {}

    def visit(name, stack):
        if name in data:
            return
        if name in stack:
            die("module dependency loop: %s" % " -> ".join(stack + [name]))
        if name not in files:
            die("module %s not found in %s" % (name, moddir))
        with lzma.open(files[name]) as f:
            ko = f.read()
        for dep in modinfo_depends(ko):
            visit(dep.replace("-", "_"), stack + [name])
        data[name] = ko
        order.append(name)

    for top in TOP_MODULES:
        visit(top, [])
    return [(n, data[n]) for n in order]


INIT = r"""#!/bin/busybox sh
# L1's init: mount, bring lo up, run the scenarios, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo BOOTED > /dev/ttyS1
ip link set lo up
only=$(sed -n 's/.*rk\.only=\([^ ]*\).*/\1/p' /proc/cmdline)
for m in $(cat /rk/modules.list); do
    insmod /rk/modules/$m.ko || echo "ABORT insmod $m failed" > /dev/ttyS1
done
/usr/bin/python3 -I -S -u /rk/l1.py ${only:+--only $only} > /dev/ttyS1 2> /dev/console
echo "l1: scenarios exited with status $?" > /dev/console
poweroff -f
"""


def add_tree_qemu(c, tree, prefix, modules=()):
    """The QEMU of an unpacked or installed Debian tree under prefix: its
    binary, the tree's ld.so and every library that ld.so resolves for it
    and for the named modules (each must lie in the tree: nothing of the
    host's), the modules, and the tree's SeaBIOS."""
    libdir = os.path.join(tree, "usr/lib/x86_64-linux-gnu")
    ld = os.path.join(libdir, "ld-linux-x86-64.so.2")
    binary = os.path.join(tree, "usr/bin/qemu-system-x86_64")
    objs = [binary] + [os.path.join(libdir, "qemu", m) for m in modules]
    libs = {ld}
    for obj in objs:
        r = subprocess.run([ld, "--library-path", libdir, "--list", obj],
                           stdout=subprocess.PIPE, universal_newlines=True,
                           check=True)
        libs.update(re.findall(r"=> (/\S+)", r.stdout))
    for lib in sorted(libs):
        if not lib.startswith(libdir + "/"):
            die("%s's QEMU loads %s, not a library of that tree" % (tree, lib))
        c.copy(os.path.realpath(lib),
               prefix + "/usr/lib/x86_64-linux-gnu/" + os.path.basename(lib),
               0o755)
    c.copy(binary, prefix + "/usr/bin/qemu-system-x86_64", 0o755)
    for m in modules:
        c.copy(os.path.join(libdir, "qemu", m),
               prefix + "/usr/lib/x86_64-linux-gnu/qemu/" + m, 0o755)
    c.copy(os.path.join(tree, "usr/share/seabios/bios-256k.bin"),
           prefix + "/usr/share/seabios/bios-256k.bin", 0o644)


def add_trixie(c, a):
    """trixie's QEMU under /trixie (setup.sh checked that its libraries
    all lie in the tree), or /trixie/MISSING, the reason setup.sh could
    not have it, which l1.py reports as a skip."""
    tree = a.get("TRIXIE")
    if not tree:
        c.file("/trixie/MISSING", (a.get("TRIXIE_MISSING") or
                                   "setup.sh did not fetch trixie").encode())
        return
    add_tree_qemu(c, tree, "/trixie")


# make check-deb: the L2 QEMU is the package's, installed in a clean root,
# run with that root's ld.so, libraries, TCG module and SeaBIOS.
PKG = "/pkg"
PKG_WRAPPER = """#!/bin/sh
# The package's QEMU from make check-deb's root, with the root's libraries
export QEMU_MODULE_DIR=%(p)s/usr/lib/x86_64-linux-gnu/qemu
exec %(p)s/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \\
    --library-path %(p)s/usr/lib/x86_64-linux-gnu \\
    %(p)s/usr/bin/qemu-system-x86_64 "$@"
""" % {"p": PKG}
PKG_MODULES = ("accel-tcg-x86_64.so",)


def tree_qemu(root):
    """How to run the QEMU of root on this host: (command, environment)."""
    libdir = os.path.join(root, "usr/lib/x86_64-linux-gnu")
    return ([os.path.join(libdir, "ld-linux-x86-64.so.2"), "--library-path",
             libdir, os.path.join(root, "usr/bin/qemu-system-x86_64")],
            dict(os.environ, QEMU_MODULE_DIR=os.path.join(libdir, "qemu")))


def build_initramfs(path, a, qemu, root=None):
    c = Cpio(path + ".tmp")
    for d in ("proc", "sys", "dev", "tmp", "bin", "usr/bin", "lib64"):
        c.dir(d)
    c.symlink("/lib", "usr/lib")
    c.file("/init", INIT.encode(), 0o755)
    c.copy(a["BUSYBOX"], "/bin/busybox", 0o755)

    mods = module_closure(a["MODULES"])
    for name, ko in mods:
        c.file("/rk/modules/%s.ko" % name, ko)
    c.file("/rk/modules.list", "".join(n + "\n" for n, _ in mods).encode())
    c.copy(a["MTTY_STOCK"], "/rk/mtty-stock.ko")
    c.copy(a["MTTY_NOLOG"], "/rk/mtty-nolog.ko")
    c.copy(os.path.join(HERE, "l1.py"), "/rk/l1.py")

    libs = set()
    if root:
        add_tree_qemu(c, root, PKG, PKG_MODULES)
        c.file("/usr/bin/qemu-system-x86_64", PKG_WRAPPER.encode(), 0o755)
        c.copy(os.path.join(root, SEABIOS.lstrip("/")), SEABIOS)
    else:
        # The series' QEMU, without its debug info: the guest needs none
        # of it and the kernel unpacks every byte under TCG.
        stripped = path + ".qemu"
        subprocess.run(["strip", "--strip-debug", "-o", stripped, qemu],
                       check=True)
        c.copy(stripped, "/usr/bin/qemu-system-x86_64", 0o755)
        os.unlink(stripped)
        libs.update(ldd(qemu))
        c.copy(SEABIOS, SEABIOS)

    # Debian's QEMU 7.2 from its unpacked package; the libraries this host
    # lacks come from the unpacked lib* packages beside it.
    dq = a["DEBQEMU"]
    dq_libdirs = [os.path.join(dq, d) for d in
                  ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(dq_libdirs))
    c.copy(os.path.join(dq, "usr/bin/qemu-system-x86_64"),
           "/opt/debian-qemu/usr/bin/qemu-system-x86_64", 0o755)
    # Its TCG is a loadable module (l1.py points QEMU_MODULE_DIR there).
    tcg = os.path.join(dq, "usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so")
    c.copy(tcg, "/opt/debian-qemu/modules/accel-tcg-x86_64.so", 0o755)
    for obj in (os.path.join(dq, "usr/bin/qemu-system-x86_64"), tcg):
        for lib in ldd(obj, env):
            if lib.startswith(dq):
                c.copy(lib, "/opt/debian-qemu/lib/" + os.path.basename(lib),
                       0o755)
            else:
                libs.add(lib)

    add_trixie(c, a)

    # python3 and the stdlib modules that l1.py loads.
    c.copy(PYTHON, "/usr/bin/python3", 0o755)
    libs.update(ldd(PYTHON))
    r = subprocess.run([PYTHON, "-I", "-S", os.path.join(HERE, "l1.py"),
                        "--list-imports"], stdout=subprocess.PIPE,
                       universal_newlines=True, check=True)
    pylib = "/usr/lib/python3.11/"
    for f in r.stdout.split():
        if f.startswith(pylib):
            c.copy(f, mode=0o644)
            pyc = os.path.join(os.path.dirname(f), "__pycache__",
                               os.path.basename(f)[:-3] + ".cpython-311.pyc")
            if os.path.exists(pyc):
                c.copy(pyc, mode=0o644)
            if f.endswith(".so"):
                libs.update(ldd(f))
    c.dir(pylib + "lib-dynload")

    for lib in sorted(libs):
        c.copy(os.path.realpath(lib), guest_path(lib), 0o755)
    c.close()
    os.rename(path + ".tmp", path)
    return [n for n, _ in mods]


def scenario_names():
    r = subprocess.run([PYTHON, "-I", "-S", os.path.join(HERE, "l1.py"),
                        "--list"], stdout=subprocess.PIPE,
                       universal_newlines=True, check=True)
    return r.stdout.split()


def file_digest(h, path):
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def main():
    env_file, qemu, counts_file = sys.argv[1:4]
    opts = dict(zip(sys.argv[4::2], sys.argv[5::2]))
    if len(sys.argv) % 2 or set(opts) - {"--only", "--l2-root"}:
        die("usage: rig.py ASSETS_ENV QEMU COUNTS_FILE [--only NAME,...] "
            "[--l2-root ROOT]")
    only = opts.get("--only")
    root = opts.get("--l2-root")
    if root:
        root = os.path.abspath(root)
        qemu = os.path.join(root, "usr/bin/qemu-system-x86_64")
    if only:
        only = ",".join(n if n.startswith("realkernel/") else "realkernel/" + n
                        for n in only.split(","))
    a = {}
    with open(env_file) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            a[k] = v
    cache = os.path.dirname(env_file)
    for need in (PYTHON, SEABIOS):
        if not os.path.exists(need):
            print("SKIP realkernel: %s is missing" % need)
            with open(counts_file, "w") as f:
                f.write("0 0 1\n")
            return

    # The initramfs holds the QEMU binary: rebuild it whenever that, or
    # anything else that goes in, changes.
    def key():
        h = hashlib.sha256()
        for p in (qemu, PYTHON, a["MTTY_STOCK"], a["MTTY_NOLOG"],
                  a["BUSYBOX"], os.path.join(HERE, "l1.py"),
                  os.path.abspath(__file__)):
            file_digest(h, p)
        h.update(a["KREL"].encode() + a["DEBQEMU"].encode() +
                 (root or "").encode())
        # trixie's tree: its path and the packages unpacked there
        if a.get("TRIXIE"):
            file_digest(h, os.path.join(a["TRIXIE"], ".unpacked"))
        h.update(("%s|%s" % (a.get("TRIXIE"), a.get("TRIXIE_MISSING")))
                 .encode())
        return h.hexdigest()[:16]
    initrd = os.path.join(cache, "initramfs-pkg.cpio" if root
                          else "initramfs.cpio")
    stamp = initrd + ".key"
    t0 = time.monotonic()
    k = key()
    # The binary may be relinked under us: build until it held still.
    for _ in range(3):
        if os.path.exists(initrd) and os.path.exists(stamp) and \
           open(stamp).read() == k:
            break
        mods = build_initramfs(initrd, a, qemu, root)
        k, built = key(), k
        if k != built:
            continue
        with open(stamp, "w") as f:
            f.write(k)
        print("realkernel: initramfs rebuilt (%d MiB, modules %s) in %.1f s" %
              (os.path.getsize(initrd) >> 20, " ".join(mods),
               time.monotonic() - t0), file=sys.stderr)
    else:
        die("%s kept changing while the initramfs was built" % qemu)

    names = scenario_names()
    if only:
        names = [n for n in names if n in only.split(",")]
    logdir = os.path.join(cache, "logs")
    os.makedirs(logdir, exist_ok=True)
    console = os.path.join(logdir, "l1-console.log")
    results = os.path.join(logdir, "l1-results.log")
    for p in (console, results):
        open(p, "w").close()
    append = "console=ttyS0 rdinit=/init quiet panic=-1"
    if only:
        append += " rk.only=" + only
    # One TCG thread for both vCPUs: with thread=multi, the kernel's
    # text patching (int3 on one vCPU while another runs the code) now and
    # then panicked L1 at boot ("Oops: int3" in sched_clock_cpu).
    # L1 runs on the same QEMU as L2: the series' build, or the package.
    if root:
        l1_qemu, l1_env = tree_qemu(root)
        firmware = [os.path.join(root, "usr/share/seabios"),
                    os.path.join(root, "usr/share/qemu")]
    else:
        l1_qemu, l1_env = [qemu], None
        firmware = [os.path.dirname(SEABIOS), "/usr/share/qemu"]
    cmd = l1_qemu + ["-machine", "q35", "-accel", "tcg,thread=single",
           "-cpu", "max", "-smp", "2", "-m", "2048", "-nodefaults",
           "-display", "none", "-no-reboot",
           # -L replaces the default search path: name both directories.
           "-L", firmware[0], "-L", firmware[1],
           "-kernel", a["VMLINUZ"], "-initrd", initrd, "-append", append,
           "-chardev", "file,id=con,path=" + console,
           "-chardev", "file,id=res,path=" + results,
           "-serial", "chardev:con", "-serial", "chardev:res"]
    t0 = time.monotonic()
    l1 = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                          stdout=open(os.path.join(logdir, "l1-qemu.log"), "w"),
                          stderr=subprocess.STDOUT, start_new_session=True,
                          env=l1_env)

    def kill_l1(*_):
        if l1.poll() is None:
            os.killpg(l1.pid, signal.SIGKILL)
            l1.wait()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *x: (kill_l1(), sys.exit(1)))

    reported, counts, abort, done = set(), [0, 0, 0], None, False
    booted = False
    pos, partial = 0, ""
    deadline = t0 + TIMEOUT
    try:
        while not done:
            with open(results, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            pos += len(chunk)
            partial += chunk.decode(errors="replace").replace("\r", "")
            *lines, partial = partial.split("\n")
            for line in lines:
                m = re.match(r"(PASS|FAIL|SKIP) (\S+?)(:|$)", line)
                if m:
                    reported.add(m.group(2))
                    counts["PASS FAIL SKIP".split().index(m.group(1))] += 1
                    print(line, flush=True)
                elif line.startswith("     | "):
                    print(line, flush=True)
                elif line.startswith("ABORT "):
                    abort = line[6:]
                    print("     | L1: " + abort, flush=True)
                elif line == "DONE":
                    done = True
                elif line == "BOOTED":
                    booted = True
                    print("realkernel: L1 booted in %.0f s" %
                          (time.monotonic() - t0), file=sys.stderr)
            if done:
                break
            if l1.poll() is not None:
                abort = abort or "L1 exited (status %d) before the end" % l1.returncode
                break
            if not booted and time.monotonic() > t0 + BOOT_TIMEOUT:
                abort = "L1 did not boot within %d s" % BOOT_TIMEOUT
                break
            if time.monotonic() > deadline:
                abort = abort or "L1 timed out after %d s" % TIMEOUT
                break
            time.sleep(0.2)
    finally:
        kill_l1()
    for n in names:
        if n not in reported:
            counts[1] += 1
            print("FAIL %s: never reported: %s (see %s)" %
                  (n, abort or "l1.py ended without it", console), flush=True)
    print("realkernel: L1 ran %.0f s; logs in %s" %
          (time.monotonic() - t0, logdir), file=sys.stderr)
    with open(counts_file, "w") as f:
        f.write("%d %d %d\n" % tuple(counts))


if __name__ == "__main__":
    main()
