#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Structure-aware fuzzer of the migration destination's VFIO section
# parser (hw/vfio/migration.c and vfio-sim-pci's config state), against
# the series' QEMU.  Seeds are streams the series itself produced
# (seeds.py); each case is one mutation (mutate.py) played into a fresh
# destination QEMU (runner.py) and held against the oracle (model.py).
# Every run first loads each seed unmutated and replays the saved
# regressions (regressions/NAME.bin and NAME.json).
#
# usage: fuzz.py [--cases N | --seconds S] [--seed N] [--binary PATH]
#                [--workers N] [--timeout S] [--tally FILE] [--quick]
#                [--self-test] [--replay FILE.bin [--gdb]] [--recapture]
#                [--capture-seeds DIR] [--no-save]
#
# Prints one line per finding, a summary, one PASS line per mutation
# class (FAIL lines for findings) and "N passed, N failed, N skipped";
# exits non-zero on any failure.  --tally FILE adds the counts to FILE
# ("passed failed skipped").

import argparse
import hashlib
import json
import os
import random
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True      # no __pycache__ in the tree

import model  # noqa: E402
import mutate  # noqa: E402
import runner  # noqa: E402
import seeds  # noqa: E402
import stream  # noqa: E402
import vm  # noqa: E402

TOP = os.path.dirname(os.path.dirname(HERE))
OBJ = os.environ.get("SERIES_OBJ", os.path.join(TOP, "build", "obj"))
DEFAULT_BINARY = os.path.join(OBJ, "qemu-system-x86_64")
CACHE = os.environ.get("QEMU_SERIES_CACHE", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
    "qemu-vfio-series"))
SEED_DIR = os.path.join(HERE, "seeds")
REGRESSION_DIR = os.path.join(HERE, "regressions")

DEFAULT_SECONDS = 285       # plus start-up, seeds and regressions: ~5 min
QUICK_CASES = 300
QUICK_SEED = 1


def log(msg):
    print(msg, flush=True)


def note(msg):
    print("==> " + msg, file=sys.stderr, flush=True)


class Seeds:
    """The seeds in use: their bytes, descriptions, models, mutators."""

    def __init__(self, loaded, where):
        self.where = where
        self.families = sorted(loaded)
        self.data = {f: loaded[f][0] for f in loaded}
        self.meta = {f: loaded[f][1] for f in loaded}
        self.ctx = {f: model.Context(self.meta[f], self.data[f])
                    for f in loaded}
        self.mut = {f: mutate.Mutator(stream.parse(self.data[f]),
                                      self.meta[f]) for f in loaded}


def seed_check(binary, sd, timeout):
    """Each seed, unmutated, must be predicted and load as a valid
    stream.  Returns [(family, ok, detail)]."""
    out = []
    for f in sd.families:
        v = model.predict(sd.ctx[f], sd.data[f])
        if v.outcome != "load":
            out.append((f, False, "the model does not load it: %s" %
                        v.summary()))
            continue
        src = sd.meta[f]["registers"]
        bad = [d for d, r in src.items()
               if v.devices[d].get("digest") != r["digest"]]
        if bad:
            out.append((f, False, "model digest differs from the "
                        "source's for %s" % ", ".join(bad)))
            continue
        res = runner.run_case(runner.Dest(binary, sd.meta[f]), sd.data[f],
                              v, timeout)
        if vm.stopping():
            raise vm.Stopped()
        out.append((f, res.outcome == runner.LOADED,
                    "%s %s" % (res.outcome, res.detail)))
    return out


def get_seeds(binary, recapture, timeout):
    """In-tree seeds if they load on BINARY, else the cache's for this
    binary, captured if need be."""
    key = seeds.binary_key(binary)
    cache_dir = os.path.join(CACHE, "fuzz", key, "seeds")
    tried = []
    if not recapture:
        for where in (SEED_DIR, cache_dir):
            loaded = seeds.load(where)
            if loaded is None:
                continue
            try:
                sd = Seeds(loaded, where)
            except stream.ParseError as e:
                tried.append((where, [("all", False, str(e))]))
                continue
            checks = seed_check(binary, sd, timeout)
            if all(ok for _, ok, _ in checks):
                return sd, checks
            tried.append((where, [c for c in checks if not c[1]]))
    for where, bad in tried:
        note("seeds in %s do not load here (%s): capturing new ones" %
             (where, "; ".join("%s: %s" % (f, d) for f, _, d in bad)))
    note("capturing seeds into %s" % cache_dir)
    try:
        seeds.capture_all(binary, cache_dir, log=note)
        sd = Seeds(seeds.load(cache_dir), cache_dir)
    except (vm.VmError, EOFError, OSError, stream.ParseError) as e:
        return None, [("capture", False, "%s: %s" % (type(e).__name__, e))]
    return sd, seed_check(binary, sd, timeout)


def schedule(sd, seed, n):
    """The (family, class, k) of cases 0..n-1: deterministic for SEED."""
    rng = random.Random("schedule:%d" % seed)
    counters = {}
    out = []
    classes = {f: ([c for c, _ in sd.mut[f].classes()],
                   [w for _, w in sd.mut[f].classes()])
               for f in sd.families}
    for i in range(n):
        fam = sd.families[i % len(sd.families)]
        cls = rng.choices(*classes[fam])[0]
        k = counters.get((fam, cls), 0)
        counters[(fam, cls)] = k + 1
        out.append((fam, cls, k))
    return out


def make_case(sd, seed, i, entry):
    fam, cls, k = entry
    rng = random.Random("case:%d:%d" % (seed, i))
    data, desc = sd.mut[fam].mutate(rng, cls, k)
    return data, desc


class Run:
    """Counts and findings of the fuzzing phase, shared by workers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = {}
        self.per_class = {}         # class -> [cases, findings]
        self.findings = []          # (index, family, class, desc, result)
        self.unpredicted = 0
        self.done = 0
        self.saved = known_signatures()
        self.harness_errors = []
        self.section_only = []      # VFIO refusals naming the section only
        self.binary_changed = None      # the case index it was noticed at

    def add(self, i, fam, cls, desc, verdict, res):
        if vm.stopping():
            return      # its QEMU was killed under it
        with self.lock:
            self.done += 1
            self.outcomes[res.outcome] = self.outcomes.get(res.outcome,
                                                           0) + 1
            pc = self.per_class.setdefault(cls, [0, 0])
            pc[0] += 1
            if verdict.outcome == "unknown":
                self.unpredicted += 1
            if res.section_only:
                self.section_only.append((i, fam, cls, desc, res))
            if res.outcome == runner.HARNESS_ERROR:
                self.harness_errors.append((i, res))
            elif res.finding:
                pc[1] += 1
                self.findings.append((i, fam, cls, desc, verdict, res))


def worker(wid, nworkers, binary, sd, sched, seed, run, deadline,
           timeout, stop, binary_id):
    """Cases wid, wid + nworkers, ...: the destination of the next one
    starts while this one runs."""
    idxs = range(wid, len(sched), nworkers)
    pending = None
    try:
        for pos, i in enumerate(idxs):
            if stop.is_set() or vm.stopping() or \
                    time.monotonic() > deadline:
                break
            if vm.binary_id(binary) != binary_id:
                # Rebuilt under us: what follows would test another QEMU
                with run.lock:
                    if run.binary_changed is None:
                        run.binary_changed = i
                stop.set()
                break
            fam = sched[i][0]
            dest = pending or runner.Dest(binary, sd.meta[fam])
            pending = None
            if pos + 1 < len(idxs) and time.monotonic() < deadline:
                pending = runner.Dest(binary,
                                      sd.meta[sched[idxs[pos + 1]][0]])
            data, desc = make_case(sd, seed, i, sched[i])
            verdict = model.predict(sd.ctx[fam], data)
            res = runner.run_case(dest, data, verdict, timeout)
            run.add(i, fam, sched[i][1], desc, verdict, res)
    except vm.Stopped:
        pass
    finally:
        if pending:
            pending.kill()


def signature(res):
    """Findings alike: the same outcome and detail, numbers aside."""
    return "%s: %s" % (res.outcome, re.sub(r"0x[0-9a-f]+|\d+", "#",
                                            res.detail))


def known_signatures():
    """Signatures of the saved regressions: one input per kind is
    enough."""
    out = set()
    if os.path.isdir(REGRESSION_DIR):
        for fn in os.listdir(REGRESSION_DIR):
            if fn.endswith(".json"):
                try:
                    with open(os.path.join(REGRESSION_DIR, fn)) as f:
                        out.add(json.load(f).get("signature"))
                except (OSError, ValueError):
                    pass
    return out


def save_regression(name, fam, data, desc, verdict, res, extra):
    os.makedirs(REGRESSION_DIR, exist_ok=True)
    path = os.path.join(REGRESSION_DIR, name)
    if os.path.exists(path + ".bin"):
        return False
    with open(path + ".bin", "wb") as f:
        f.write(data)
    doc = {
        "family": fam,
        "mutation": desc,
        "expected": expected_text(verdict),
        "signature": signature(res),
        "observed": {"outcome": res.outcome, "detail": res.detail,
                     "stderr": res.stderr.strip().splitlines()[-12:]},
    }
    doc.update(extra)
    if res.backtrace:
        doc["observed"]["backtrace"] = res.backtrace.splitlines()[:80]
    with open(path + ".json", "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    return True


def expected_text(verdict):
    missing = [d for d, st in verdict.devices.items()
               if st["state"] == "RESUMING"]
    if verdict.outcome == "load" and missing:
        return ("refused, naming %s: the stream has no config state for "
                "it, so it would stay RESUMING with its data never checked "
                "(the device leaves RESUMING at DEV_CONFIG_STATE, and a "
                "device that refuses its data fails the incoming migration, "
                "not the first VM start)" % ", ".join(missing))
    if verdict.outcome == "load":
        return ("loads: migration completes, every device STOP with the "
                "loaded state, RUNNING after cont")
    if verdict.outcome == "refuse":
        return ("refused: the destination exits with a message %s (%s)" %
                ("naming device %s" % verdict.dev if verdict.zone == "vfio"
                 else "from QEMU's loader", verdict.reason))
    return ("refused with a message, or loaded with every device STOP "
            "(not predicted: %s)" % verdict.why_unknown)


def replay_regressions(binary, sd, timeout, only=None):
    """Every saved regression, replayed: [(name, ok, detail)]."""
    out = []
    if not os.path.isdir(REGRESSION_DIR):
        return out
    for fn in sorted(os.listdir(REGRESSION_DIR)):
        if not fn.endswith(".bin"):
            continue
        name = fn[:-4]
        path = os.path.join(REGRESSION_DIR, fn)
        if only and os.path.abspath(path) != os.path.abspath(only):
            continue
        try:
            with open(path[:-4] + ".json") as f:
                doc = json.load(f)
            with open(path, "rb") as f:
                data = f.read()
        except (OSError, ValueError) as e:
            out.append((name, False, "unreadable: %s" % e, None))
            continue
        fam = doc.get("family")
        if fam not in sd.meta:
            out.append((name, False, "no seed family %r" % fam, None))
            continue
        verdict = model.predict(sd.ctx[fam], data)
        res = runner.run_case(runner.Dest(binary, sd.meta[fam]), data,
                              verdict, timeout)
        if vm.stopping():
            raise vm.Stopped()
        out.append((name, res.outcome in runner.OK_OUTCOMES,
                    "%s: %s" % (res.outcome, res.detail), res))
    return out


def finding_line(i, fam, cls, desc, res):
    return "FINDING case %d [%s/%s] %s: %s -- %s" % (
        i, fam, cls, res.outcome, res.detail, desc)


def stderr_tail(text, n=6):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return ["     | " + ln for ln in lines[-n:]]


def self_test(binary, sd, timeout):
    """The harness must report what is wrong: a wrong expectation, a
    crash, a hang, a refused valid stream.  [(name, ok, detail)]"""
    out = []
    fam = "stopcopy" if "stopcopy" in sd.meta else sd.families[0]
    data, meta = sd.data[fam], sd.meta[fam]
    good = model.predict(sd.ctx[fam], data)

    # 1. A valid stream, but a digest one off from what loads
    wrong = model.predict(sd.ctx[fam], data)
    dev = meta["devices"][0]["id"]
    wrong.devices[dev]["digest"] ^= 1
    res = runner.run_case(runner.Dest(binary, meta), data, wrong, timeout)
    out.append(("wrong expectation is reported", res.outcome ==
                "bad-state", "%s: %s" % (res.outcome, res.detail)))

    # 2. A destination that aborts: its device refuses RESUMING -> STOP
    # and its reset fails, so QEMU stops with hw_error()
    crash = json.loads(json.dumps(meta))
    crash["devices"][0]["opts"] += ",fail-arc=RESUMING>STOP,fail-reset=on"
    res = runner.run_case(runner.Dest(binary, crash), data, good, timeout)
    out.append(("crash is reported", res.outcome == "crash",
                "%s: %s" % (res.outcome, res.detail)))

    # 3. A stream that stops before its end, the socket left open
    cut = data[:len(data) // 2]
    dest = runner.Dest(binary, meta)
    res = hang_case(dest, cut, good, min(timeout, 3.0))
    out.append(("hang is reported", res.outcome == "hang",
                "%s: %s (%d lines of backtrace)" % (
                    res.outcome, res.detail,
                    len(res.backtrace.splitlines()))))

    # 4. A truncated stream the (deliberately wrong) oracle calls valid
    res = runner.run_case(runner.Dest(binary, meta), cut, good, timeout)
    out.append(("refusal of a 'valid' stream is reported",
                res.outcome == "refused-valid",
                "%s: %s" % (res.outcome, res.detail)))

    # 5. A refusal without the device's name, and a sanitizer report:
    # the classifier, on made-up stderr
    ok = (not runner.names_device("load of migration failed: Invalid "
                                  "argument", meta) and
          runner.names_device("%s: Unknown tag 0x1" % dev, meta) and
          runner.crash_or_sanitizer(0, "==1==ERROR: AddressSanitizer: "
                                    "heap-use-after-free").outcome ==
          "sanitizer" and
          runner.crash_or_sanitizer(0, "x.c:1:2: runtime error: shift")
          .outcome == "sanitizer" and
          runner.crash_or_sanitizer(-11, "").outcome == "crash")
    out.append(("messages without the device, sanitizer reports",
                ok, "classifier"))
    return out


def hang_case(dest, data, verdict, timeout):
    """Like run_case, but the socket stays open: QEMU waits for more."""
    q = dest.q
    dl = time.monotonic() + timeout
    dest.ready(dl)
    q.pairs[0].sendall(data)
    try:
        q.qmp.wait_event(lambda e: e["event"] == "MIGRATION" and
                         e["data"]["status"] in ("completed", "failed"), dl)
    except vm.Timeout:
        return runner.hang(dest, "no migration outcome after %g s" %
                           timeout)
    except EOFError:
        pass
    dest.kill()
    return runner.Result("no-hang", "QEMU ended")


def main():
    ap = argparse.ArgumentParser(
        description="Fuzz the migration destination's VFIO section parser "
        "(see scripts/fuzz/README.md).")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--cases", type=int, help="run N cases")
    g.add_argument("--seconds", type=float,
                   help="fuzz for S seconds (default %d)" % DEFAULT_SECONDS)
    ap.add_argument("--seed", type=int, default=QUICK_SEED,
                    help="the run's seed (default %d)" % QUICK_SEED)
    ap.add_argument("--binary", default=DEFAULT_BINARY,
                    help="default %s" % DEFAULT_BINARY)
    ap.add_argument("--workers", type=int, default=3,
                    help="cases at a time (default 3, for 2 cores)")
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="seconds a case may take (default 20)")
    ap.add_argument("--tally", metavar="FILE",
                    help="add the counts to FILE (\"passed failed "
                    "skipped\")")
    ap.add_argument("--quick", action="store_true",
                    help="the fixed slice for make check: %d cases, seed "
                    "%d" % (QUICK_CASES, QUICK_SEED))
    ap.add_argument("--self-test", action="store_true",
                    help="check that the harness reports failures")
    ap.add_argument("--replay", help="run one saved input (FILE.bin)")
    ap.add_argument("--gdb", action="store_true",
                    help="with --replay: QEMU under gdb, backtrace shown")
    ap.add_argument("--recapture", action="store_true",
                    help="capture new seeds into the cache")
    ap.add_argument("--capture-seeds", metavar="DIR",
                    help="capture seeds into DIR and exit")
    ap.add_argument("--no-save", action="store_true",
                    help="do not save findings as regressions")
    args = ap.parse_args()

    signo = vm.install_cleanup()
    try:
        rc = run_main(args)
    except vm.Stopped:
        rc = None
    finally:
        vm.kill_all()
    if vm.stopping():
        log("interrupted (signal %d): every QEMU ended" % signo())
        return 128 + signo()
    return rc


def finish(args, passed, failed, skipped):
    log("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if args.tally:
        p = f = s = 0
        try:
            with open(args.tally) as fh:
                p, f, s = (int(x) for x in fh.read().split())
        except (OSError, ValueError):
            pass
        with open(args.tally, "w") as fh:
            fh.write("%d %d %d\n" % (p + passed, f + failed, s + skipped))
    return 0 if failed == 0 else 1


def run_main(args):
    t_start = time.monotonic()
    bin_id = vm.binary_id(args.binary)
    passed = failed = skipped = 0
    if not os.access(args.binary, os.X_OK):
        log("SKIP fuzz: no QEMU binary at %s" % args.binary)
        return finish(args, 0, 0, 1)
    if args.capture_seeds:
        seeds.capture_all(args.binary, args.capture_seeds, log=log)
        return 0

    note("seeds")
    sd, checks = get_seeds(args.binary, args.recapture, args.timeout)
    if sd is None:
        log("FAIL seeds: %s" % checks[0][2])
        return finish(args, passed, failed + 1, skipped)
    note("seeds from %s (%.1f s)" % (sd.where, time.monotonic() - t_start))
    for f, ok, detail in checks:
        log("%s seed %s loads unmutated (%d bytes)%s" % (
            "PASS" if ok else "FAIL", f, len(sd.data[f]),
            "" if ok else ": " + detail))
        passed += ok
        failed += not ok

    if args.replay:
        if args.gdb:
            return replay_gdb(args, sd)
        rows = replay_regressions(args.binary, sd, args.timeout,
                                  only=args.replay)
        for name, ok, detail, res in rows:
            log("%s replay %s: %s" % ("PASS" if ok else "FAIL", name,
                                      detail))
            if res is not None:
                for ln in stderr_tail(res.stderr, 20):
                    log(ln)
            passed += ok
            failed += not ok
        return finish(args, passed, failed, skipped)

    if args.self_test:
        for name, ok, detail in self_test(args.binary, sd, args.timeout):
            log("%s self-test: %s (%s)" % ("PASS" if ok else "FAIL", name,
                                           detail))
            passed += ok
            failed += not ok
        return finish(args, passed, failed, skipped)

    t0 = time.monotonic()
    rows = replay_regressions(args.binary, sd, args.timeout)
    for name, ok, detail, res in rows:
        log("%s regression %s: %s" % ("PASS" if ok else "FAIL", name,
                                      detail))
        if not ok and res is not None:
            for ln in stderr_tail(res.stderr):
                log(ln)
        passed += ok
        failed += not ok
    if rows:
        note("%d regressions replayed (%.1f s)" %
             (len(rows), time.monotonic() - t0))

    if args.quick:
        ncases, seconds = QUICK_CASES, None
        args.seed = QUICK_SEED if args.seed is None else args.seed
    elif args.cases is not None:
        ncases, seconds = args.cases, None
    else:
        seconds = args.seconds if args.seconds is not None else \
            DEFAULT_SECONDS
        ncases = None
    # Timed: more cases than can run (dozens a second at best)
    sched = schedule(sd, args.seed, ncases if seconds is None
                     else int(max(20000, seconds * 100)))
    deadline = time.monotonic() + seconds if seconds else float("inf")
    note("fuzzing: %s, seed %d, %d workers" % (
        "%d cases" % ncases if seconds is None else "%g s" % seconds,
        args.seed, args.workers))

    run = Run()
    stop = threading.Event()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True, args=(
        w, args.workers, args.binary, sd, sched, args.seed, run, deadline,
        args.timeout, stop, bin_id)) for w in range(args.workers)]
    for t in threads:
        t.start()
    last = t0
    for t in threads:
        while t.is_alive():
            t.join(timeout=5)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                note("%d cases, %.1f/s" % (run.done,
                                            run.done / (last - t0)))
    elapsed = time.monotonic() - t0
    if vm.stopping():
        raise vm.Stopped()

    # Findings: one line each; the first of each kind saved
    kinds = {}
    for i, fam, cls, desc, verdict, res in sorted(run.findings,
                                                  key=lambda x: x[0]):
        log(finding_line(i, fam, cls, desc, res))
        for ln in stderr_tail(res.stderr, 4):
            log(ln)
        sig = signature(res)
        kinds.setdefault(cls, {}).setdefault(sig, 0)
        kinds[cls][sig] += 1
        if sig in run.saved or args.no_save:
            continue
        run.saved.add(sig)
        data, _ = make_case(sd, args.seed, i, sched[i])
        name = "%s-%s-%s-%s" % (res.outcome, fam, cls,
                                hashlib.sha256(data).hexdigest()[:10])
        if save_regression(name, fam, data, desc, verdict, res, {
                "seed": args.seed, "case": i, "class": cls,
                "seed_binary_key": sd.meta[fam].get("binary_key")}):
            log("     saved as regressions/%s.bin" % name)

    log("")
    log("fuzz summary: %d cases in %.1f s, %.2f cases/s, %d workers, "
        "seed %d" % (run.done, elapsed, run.done / max(elapsed, 1e-9),
                     args.workers, args.seed))
    o = run.outcomes
    nfind = sum(v for k, v in o.items() if k not in runner.OK_OUTCOMES)
    log("  refused by VFIO with message: %d" % o.get(runner.REFUSED_VFIO,
                                                       0))
    if run.section_only:
        why = {}
        for _, _, _, _, res in run.section_only:
            why[res.detail] = why.get(res.detail, 0) + 1
        log("    of which %d name the device's section id string, not the "
            "device: %s" % (len(run.section_only), ", ".join(
                "%s (%d)" % kv for kv in sorted(why.items()))))
    log("  refused by core:              %d" % o.get(runner.REFUSED_CORE,
                                                       0))
    log("  loaded valid:                 %d" % o.get(runner.LOADED, 0))
    log("  findings:                     %d%s" % (nfind, "".join(
        " %s=%d" % (k, v) for k, v in sorted(o.items())
        if k not in runner.OK_OUTCOMES)))
    log("  (the oracle could not predict %d of them; generic checks only)"
        % run.unpredicted)
    if run.harness_errors:
        log("  cases that could not run:     %d (first: case %d: %s)" % (
            len(run.harness_errors), run.harness_errors[0][0],
            run.harness_errors[0][1].detail))
    log("  total time %.1f s" % (time.monotonic() - t_start))

    if run.binary_changed is not None:
        log("SKIP fuzz: %s changed during the run (rebuilt?), noticed at "
            "case %d: re-run" % (args.binary, run.binary_changed))
        skipped += 1
    elif run.harness_errors:
        log("FAIL fuzz harness: %d case(s) could not run: %s" % (
            len(run.harness_errors), run.harness_errors[0][1].detail))
        for ln in stderr_tail(run.harness_errors[0][1].stderr):
            log(ln)
        failed += 1
    for cls, _ in mutate.Mutator.CLASSES:
        cases, finds = run.per_class.get(cls, [0, 0])
        if not cases:
            log("SKIP mutation class %s: no case ran" % cls)
            skipped += 1
        elif not finds:
            log("PASS mutation class %s (%d cases)" % (cls, cases))
            passed += 1
        else:
            log("FAIL mutation class %s: %d finding(s) in %d cases: %s" % (
                cls, finds, cases, "; ".join(
                    "%s (%d)" % kv for kv in sorted(kinds[cls].items()))))
            failed += 1
    return finish(args, passed, failed, skipped)


def replay_gdb(args, sd):
    """One input, QEMU under gdb: its output includes the backtrace."""
    with open(args.replay[:-4] + ".json") as f:
        fam = json.load(f)["family"]
    with open(args.replay, "rb") as f:
        data = f.read()
    verdict = model.predict(sd.ctx[fam], data)
    dest = runner.Dest(args.binary, sd.meta[fam], gdb=True)
    res = runner.run_case(dest, data, verdict, args.timeout * 3)
    log("%s: %s" % (res.outcome, res.detail))
    log(res.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
