#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Helpers of run.sh (make check-sanitizers).
#
#   reports.py paths [--only P,...]   test paths on stdin (a qtest's -l):
#                                     the ones to run, one -p each
#   reports.py scan RUN TREE OBJ      every sanitizer report under RUN:
#                                     print each distinct finding with its
#                                     tests, first lines and top frames;
#                                     exit 1 if there is any
#
# A report is an asan.* file (ASan and LSan, through log_path) with more in
# it than the NOTICES below, or a UBSan report cut out of a stderr.* copy
# (wrap.sh) into ubsan.*.
# Frames in build/qemu are given relative to it and blamed: "base 7.2"
# (up to the tag base), "series SHA: subject" (a commit after it) or
# "uncommitted" (git blame of the tree as it is now, which may differ from
# the tree that was built).

import os
import re
import subprocess
import sys
import time

FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ in (\S+)(?: (.*))?$")
LOC = re.compile(r"^(.*?):(\d+)(?::\d+)?$")
UBSAN_START = re.compile(r"(\S+?:\d+:\d+: runtime error: .*)$")
ASAN_START = re.compile(r"==\d+==ERROR: (AddressSanitizer|LeakSanitizer)")
LEAK = re.compile(r"^(Direct|Indirect) leak of \d+ byte")
TOP_FRAMES = 8
# Not reports: ASan's swapcontext interceptor prints this once in every
# process that calls swapcontext, with no option to silence it.  QEMU's
# coroutines (util/coroutine-ucontext.c) do, and annotate every stack
# switch for ASan (CONFIG_ASAN_IFACE_FIBER), which is what it warns about.
NOTICES = [
    re.compile(r"^==[^=]*==\d+==WARNING: ASan doesn't fully support "
               r"makecontext/swapcontext functions"),
]


def cmd_paths(argv):
    only = []
    if argv[:1] == ["--only"]:
        only = [o.rstrip("/") for o in argv[1].split(",") if o]
    paths = [l.strip() for l in sys.stdin if l.startswith("/")]
    if only:
        paths = [p for p in paths
                 if any(p == o or p.startswith(o + "/") for o in only)]
    # glib's -p P also runs every test under P/: run those through P only
    kept = []
    for p in sorted(set(paths)):
        if not any(p.startswith(k + "/") for k in kept):
            kept.append(p)
    print("\n".join(kept))


def wait_writers(run, timeout=30):
    """Wait (bounded) until no process holds a file under RUN open: a tee
    of wrap.sh may still be copying the last QEMU's stderr."""
    run = os.path.realpath(run) + "/"
    deadline = time.monotonic() + timeout
    while True:
        busy = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            fddir = "/proc/%s/fd" % pid
            try:
                fds = os.listdir(fddir)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(os.path.join(fddir, fd)).startswith(run):
                        busy = True
                        break
                except OSError:
                    pass
            if busy:
                break
        if not busy:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def cut_blocks(lines, start, is_asan):
    """Sanitizer reports inside a stderr copy, as lists of lines."""
    blocks = []
    i = 0
    while i < len(lines):
        m = start.search(lines[i])
        if not m:
            i += 1
            continue
        block = [m.group(1) if not is_asan else lines[i]]
        i += 1
        while i < len(lines) and len(block) < 200:
            block.append(lines[i])
            i += 1
            if block[-1].startswith("SUMMARY:"):
                break
        blocks.append(block)
    return blocks


def extract_from_stderr(d, files):
    """Write the UBSan (and any stray ASan) reports found in the stderr
    copies of directory D as ubsan.NAME.PID files.  A QEMU's unhidden
    stderr also reaches the test binary's, so a block that a QEMU copy
    already holds is not taken again from the test binary's."""
    seen = set()
    copies = sorted(files, key=lambda f: 0 if ".qemu-system-" in f else 1)
    for f in copies:
        with open(os.path.join(d, f), errors="replace") as fh:
            lines = fh.read().splitlines()
        blocks = cut_blocks(lines, UBSAN_START, False) + \
            cut_blocks(lines, ASAN_START, True)
        out = []
        for b in blocks:
            key = "\n".join(b)
            if key in seen:
                continue
            seen.add(key)
            out.append(key)
        if out:
            target = os.path.join(d, "ubsan" + f[len("stderr"):])
            with open(target, "w") as fh:
                fh.write("\n\n".join(out) + "\n")


class Blamer:
    def __init__(self, tree, obj):
        self.tree = os.path.realpath(tree)
        self.obj = os.path.realpath(obj)
        self.cache = {}

    def rel(self, path):
        """PATH relative to build/qemu, or None when outside it."""
        p = path if os.path.isabs(path) else os.path.join(self.obj, path)
        p = os.path.normpath(p)
        if p.startswith(self.tree + "/"):
            return p[len(self.tree) + 1:]
        return None

    def blame(self, rel, line):
        key = (rel, line)
        if key in self.cache:
            return self.cache[key]
        r = subprocess.run(["git", "-C", self.tree, "blame", "--porcelain",
                            "-L", "%s,%s" % (line, line), "--", rel],
                           capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout:
            what = "no blame"
        else:
            sha = r.stdout.split()[0]
            summary = next((l[8:] for l in r.stdout.splitlines()
                            if l.startswith("summary ")), "")
            if set(sha) == {"0"}:
                what = "uncommitted"
            elif subprocess.run(["git", "-C", self.tree, "merge-base",
                                 "--is-ancestor", sha, "base"]).returncode == 0:
                what = "base 7.2"
            else:
                what = "series %s: %s" % (sha[:12], summary)
        self.cache[key] = what
        return what


def read_frames(lines, i):
    frames = []
    while i < len(lines) and FRAME.match(lines[i]):
        m = FRAME.match(lines[i])
        frames.append((m.group(2), (m.group(3) or "").strip()))
        i += 1
    return frames, i


def parse_report(text):
    """Findings of one report file: (headline lines, frames, more) each,
    frames as (func, location) of the first stack, more the other stacks
    of an ASan error ("freed by thread T0 here:", ...) as (title, frames)."""
    findings = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        l = lines[i]
        head = None
        if UBSAN_START.search(l):
            head = [UBSAN_START.search(l).group(1)]
        elif LEAK.match(l):
            head = [l.rstrip(":")]
        elif ASAN_START.search(l) and "detected memory leaks" not in l:
            head = [l.split("ERROR: ", 1)[1]]
            if i + 1 < len(lines) and not FRAME.match(lines[i + 1]) \
                    and lines[i + 1].strip():
                head.append(lines[i + 1].strip())
        elif "AddressSanitizer:DEADLYSIGNAL" in l:
            i += 1
            continue
        if head is None:
            i += 1
            continue
        i += 1
        while i < len(lines) and not FRAME.match(lines[i]):
            if (UBSAN_START.search(lines[i]) or LEAK.match(lines[i])
                    or lines[i].startswith("SUMMARY:")):
                break
            i += 1
        frames, i = read_frames(lines, i)
        more = []
        if ASAN_START.search(l):
            while i < len(lines) and not lines[i].startswith("SUMMARY:"):
                if lines[i].endswith(" here:"):
                    title = lines[i]
                    stack, i = read_frames(lines, i + 1)
                    more.append((title, stack))
                else:
                    i += 1
        findings.append((head, frames, more))
    if not findings and text.strip():
        findings.append(([lines[0] if lines else "(empty)"], [], []))
    return findings


def show_frames(frames, blamer):
    """Top frames, paths in build/qemu made relative and blamed."""
    out = []
    for n, (func, loc) in enumerate(frames[:TOP_FRAMES]):
        m = LOC.match(loc)
        where = loc
        rel = None
        if m:
            rel = blamer.rel(m.group(1))
            if rel:
                where = "%s:%s" % (rel, m.group(2))
            elif "libsanitizer" in m.group(1):
                where = "(sanitizer runtime)"
        line = "#%d %s %s" % (n, func, where)
        if rel:
            line += "   [%s]" % blamer.blame(rel, m.group(2))
        out.append(line)
    if len(frames) > TOP_FRAMES:
        out.append("... %d more frame(s)" % (len(frames) - TOP_FRAMES))
    return out


def cmd_scan(run, tree, obj):
    if not wait_writers(run):
        print("note: a process still writes under %s; scanning anyway" % run)
    blamer = Blamer(tree, obj)
    groups = {}     # signature -> [head, frames, more, [(test, file)]]
    order = []
    nfiles = 0
    for d, _, files in sorted(os.walk(run)):
        extract_from_stderr(d, [f for f in files if f.startswith("stderr.")])
        files = sorted(os.listdir(d))
        for f in files:
            if not (f.startswith("asan.") or f.startswith("ubsan.")):
                continue
            path = os.path.join(d, f)
            with open(path, errors="replace") as fh:
                text = "\n".join(l for l in fh.read().splitlines()
                                 if not any(n.match(l) for n in NOTICES))
            if not text.strip():
                continue
            nfiles += 1
            test = os.path.relpath(d, run)
            for head, frames, more in parse_report(text):
                sig = (re.sub(r"\d+ (byte|object)", r"N \1",
                              re.sub(r"0x[0-9a-f]+", "ADDR", head[0])),
                       tuple(fr for fr in frames[:TOP_FRAMES]))
                if sig not in groups:
                    groups[sig] = [head, frames, more, []]
                    order.append(sig)
                groups[sig][3].append((test, os.path.relpath(path, run)))
    lines = []
    for n, sig in enumerate(order, 1):
        head, frames, more, where = groups[sig]
        tests = sorted(set(t for t, _ in where))
        lines.append("finding %d: %s" % (n, head[0]))
        for h in head[1:]:
            lines.append("    " + h)
        shown = show_frames(frames, blamer)
        lines += ["    " + s for s in shown]
        for title, stack in more:
            lines.append("  " + title)
            shown = show_frames(stack, blamer)
            lines += ["    " + s for s in shown]
        lines.append("    in %d report(s), %d test(s): %s%s" % (
            len(where), len(tests), ", ".join(tests[:6]),
            " and %d more" % (len(tests) - 6) if len(tests) > 6 else ""))
        for _, f in where[:3]:
            lines.append("    report: %s" % f)
        if len(where) > 3:
            lines.append("    ... %d more report(s): findings.txt" %
                         (len(where) - 3))
    with open(os.path.join(run, "findings.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n\nevery report, by finding:\n")
        for sig in order:
            for _, f in groups[sig][3]:
                fh.write("%s\n" % f)
    print("%d report file(s), %d distinct finding(s)" % (nfiles, len(order)))
    for l in lines:
        print(l)
    return 1 if nfiles else 0


def main():
    if sys.argv[1:2] == ["paths"]:
        cmd_paths(sys.argv[2:])
        return 0
    if sys.argv[1:2] == ["scan"] and len(sys.argv) == 5:
        return cmd_scan(*sys.argv[2:5])
    sys.exit("usage: reports.py paths [--only P,...] | scan RUN TREE OBJ")


if __name__ == "__main__":
    sys.exit(main())
