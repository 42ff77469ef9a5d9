#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The series through libvirt: migrate, abort, refuse, save and restore.

Starts two private libvirt daemons (lvrig.py), runs each scenario against
a small q35 domain that carries a vfio-sim-pci (through <qemu:commandline>)
and prints one line per scenario, PASS/FAIL/SKIP, then
"N passed, N failed, N skipped".  Exits non-zero on any failure.  Every
migration uses libvirt's defaults (no raised downtime limit): the device
is shaped so that it converges under QEMU's 300 ms.

The destination's device gets another seed than the source's (virsh
migrate --xml, virsh restore --xml): its own content has another digest,
so a digest that matches the source's proves that the state was moved.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lvrig  # noqa: E402
from lvrig import RigError, wait_until  # noqa: E402

# Pre-copy through a throttled stream: the device's 31 of 32 MiB of
# initial data take ~2.5 s at 12 MiB/s, long enough to watch and abort the
# migration, and the 1 MiB left for the stop-copy phase fits the default
# 300 ms downtime limit at that rate.
PRECOPY = dict(state_size="32M", pre_copy="on", p2p="on",
               initial_size="31M", stream_bandwidth="12M", seed=1)

# A save of this small domain takes seconds; one that has not ended by
# then is stuck (and is described, then aborted).
SAVE_TIMEOUT = 40

verbose = False


class Skip(Exception):
    pass


def info(text):
    if verbose:
        for line in str(text).splitlines():
            print("     | " + line)


def other_seed(xml):
    """The domain XML for the other side: the sim device with seed 2."""
    new, n = re.subn(r"(vfio-sim-pci,[^'<]*),seed=1\b", r"\1,seed=2", xml)
    if n != 1:
        raise RigError("no seed=1 sim device in the domain XML")
    return new


def describe_migration(info):
    """A one-line account of a query-migrate answer, for failure texts."""
    if not info:
        return "no query-migrate answer"
    vfio = info.get("vfio", {})
    devs = ", ".join("%s %s, %d bytes sent" % (d["id"], d["state"],
                                               d["transferred"])
                     for d in vfio.get("x-devices", []))
    return ("query-migrate status %s, RAM %d bytes sent (%s remaining), "
            "VFIO %d bytes sent (%s), expected-downtime %s ms" %
            (info.get("status"), info.get("ram", {}).get("transferred", 0),
             info.get("ram", {}).get("remaining", "?"),
             vfio.get("transferred", 0), devs or "no devices",
             info.get("expected-downtime", "?")))


class Suite:
    def __init__(self, rig, workdir, kvm):
        self.rig = rig
        self.src = rig.src
        self.dst = rig.dst
        self.workdir = workdir
        self.kvm = kvm
        self.jobinfo = None         # what scenario 1 saw, for scenario 2

    # -- helpers -------------------------------------------------------

    def create(self, name, **props):
        path = os.path.join(self.workdir, name + ".xml")
        with open(path, "w") as f:
            f.write(lvrig.domain_xml(name, self.rig.emulator,
                                     lvrig.sim_device(**props),
                                     kvm=self.kvm))
        self.src.virsh("create", path)
        return name

    def dest_xml(self, dom):
        xml = self.src.virsh("dumpxml", "--migratable", dom).stdout
        path = os.path.join(self.workdir, dom + "-dst.xml")
        with open(path, "w") as f:
            f.write(other_seed(xml))
        return path

    def migrate_cmd(self, dom, *extra, xml=None):
        # libvirt refuses loopback in qemu.conf's migration_address and
        # migration_host, so the loopback address is named here; the port
        # comes from the destination daemon's range.
        cmd = [lvrig.VIRSH, "-c", self.src.uri, "migrate", "--live",
               "--verbose"] + list(extra)
        if xml:
            cmd += ["--xml", xml]
        return cmd + [dom, self.dst.uri,
                      "--migrateuri", "tcp://127.0.0.1",
                      "--listen-address", "127.0.0.1"]

    def migrate(self, dom, *extra, xml=None, timeout=120):
        try:
            return subprocess.run(self.migrate_cmd(dom, *extra, xml=xml),
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RigError("virsh migrate did not end in %ds" % timeout)

    def migrate_bg(self, dom, *extra, xml=None):
        out = open(os.path.join(self.workdir, dom + "-migrate.out"), "w+")
        proc = subprocess.Popen(self.migrate_cmd(dom, *extra, xml=xml),
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        return proc, out

    @staticmethod
    def finish_bg(proc, out, timeout=120):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            lvrig.kill_pid(proc.pid)
            raise RigError("virsh migrate did not end in %ds" % timeout)
        out.seek(0)
        text = out.read()
        out.close()
        return proc.returncode, text

    def vfio_devices(self, daemon, dom):
        return daemon.qmp(dom, "query-migrate").get("vfio", {}).get(
            "x-devices", [])

    def cleanup(self, dom):
        for d in (self.src, self.dst):
            if d.has_domain(dom):
                d.virsh("destroy", dom, check=False, timeout=30)

    def assert_source_kept(self, dom):
        """The source domain runs, with its device RUNNING again."""
        state = self.src.state(dom)
        if state != "running":
            raise RigError("source domain is %s, not running" % state)
        # After a failed or cancelled migration the series moves the
        # device back to RUNNING from a migration-state notifier: poll.
        wait_until(lambda: lvrig.sim_state(self.src, dom) ==
                   lvrig.VFIO_DEVICE_STATE_RUNNING, 15,
                   "the source device to be RUNNING (state register %d)" %
                   lvrig.sim_state(self.src, dom), interval=0.2)
        if self.dst.has_domain(dom):
            raise RigError("the destination still has the domain")

    def qemu_log(self, daemon, dom, n=6):
        path = os.path.join(daemon.root, "log", "qemu", dom + ".log")
        try:
            with open(path) as f:
                lines = [l for l in f.read().splitlines()
                         if not l.startswith(("LC_ALL", "HOME", "-", "/"))]
            return " / ".join(lines[-n:])
        except OSError:
            return "(no log)"

    # -- scenarios -----------------------------------------------------

    def s1_migrate_live(self):
        """virsh migrate --live --verbose; the digest moves with it."""
        dom = self.create("lv-migrate", **PRECOPY)
        try:
            digest = lvrig.sim_digest(self.src, dom)
            xml = self.dest_xml(dom)
            start = time.monotonic()
            proc, out = self.migrate_bg(dom, xml=xml)
            samples = []
            # Watch the job from the source while virsh migrates (this
            # is scenario 2's material): domjobinfo, and the series' own
            # per-device figures from query-migrate.
            deadline = start + 120
            while proc.poll() is None and time.monotonic() < deadline:
                r = self.src.virsh("domjobinfo", dom, check=False,
                                   timeout=20)
                vf = None
                try:
                    vf = self.src.qmp(dom, "query-migrate")
                except RigError:
                    pass
                if r.returncode == 0:
                    samples.append((time.monotonic() - start, r.stdout, vf))
                time.sleep(0.25)
            rc, text = self.finish_bg(proc, out)
            took = time.monotonic() - start
            self.jobinfo = samples
            info("virsh migrate took %.1fs; its output: %s" %
                 (took, " ".join(text.replace("\r", "\n").split())[-200:]))
            if rc != 0:
                raise RigError("virsh migrate failed (%d): %s; qemu: %s" %
                               (rc, text.strip()[-400:],
                                self.qemu_log(self.src, dom)))
            if "100 %" not in text:
                raise RigError("no 100 %% progress in virsh's output: %r" %
                               text[-200:])
            if self.src.has_domain(dom):
                raise RigError("the source still has the domain")
            state = self.dst.state(dom)
            if state != "running":
                raise RigError("destination domain is %s" % state)
            got = lvrig.sim_digest(self.dst, dom)
            if got != digest:
                raise RigError("digest 0x%016x on the destination, "
                               "0x%016x on the source" % (got, digest))
            info("digest 0x%016x on both sides" % digest)
            r = self.dst.virsh("domjobinfo", "--completed", dom, check=False)
            info("destination domjobinfo --completed:\n" + r.stdout.strip())
        finally:
            self.cleanup(dom)

    def s2_domjobinfo(self):
        """domjobinfo shows the migration's progress while it runs."""
        if self.jobinfo is None:
            raise Skip("needs the migration of migrate-live")
        samples = [s for s in self.jobinfo if "Unbounded" in s[1]]
        if len(samples) < 2:
            raise RigError("%d domjobinfo sample(s) of an unbounded job "
                           "during the migration (of %d)" %
                           (len(samples), len(self.jobinfo)))

        def field(text, name):
            m = re.search(r"^%s:\s*(\S+)\s*(\S*)" % re.escape(name), text,
                          re.M)
            return (m.group(1), m.group(2)) if m else None

        def mib(pair):
            if not pair:
                return None
            n = float(pair[0])
            unit = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1,
                    "GiB": 1024}.get(pair[1], 1)
            return n * unit
        elapsed = [int(field(s[1], "Time elapsed")[0]) for s in samples]
        # libvirt shows no data figures until QEMU's migration has begun
        processed = [p for p in (mib(field(s[1], "Data processed"))
                                 for s in samples) if p is not None]
        if elapsed != sorted(elapsed) or elapsed[-1] <= elapsed[0]:
            raise RigError("Time elapsed does not grow: %s" % elapsed)
        if not processed or not max(processed):
            raise RigError("no Data processed above 0 in %d samples" %
                           len(samples))
        vfio_in_libvirt = any("vfio" in s[1].lower() for s in samples)
        vf_states = sorted({d["state"] for s in samples for d in
                            (s[2] or {}).get("vfio", {}).get("x-devices", [])})
        info("%d samples over %.1fs; Time elapsed %d -> %d ms; Data "
             "processed %.1f -> %.1f MiB; VFIO figures in domjobinfo: %s; "
             "the series' query-migrate vfio.devices[] states seen: %s" %
             (len(samples), samples[-1][0] - samples[0][0], elapsed[0],
              elapsed[-1], processed[0], processed[-1],
              "yes" if vfio_in_libvirt else "none", ", ".join(vf_states)))
        mid = samples[len(samples) // 2]
        info("a sample mid-migration:\n" + mid[1].strip())
        info("QEMU's own view then: " + describe_migration(mid[2]))

    def s3_abort_retry(self):
        """domjobabort mid-migration; the source and its device run on."""
        # Twice the pre-copy data of PRECOPY (~5 s): room to see the
        # device precopying and abort it on a busy machine.
        dom = self.create("lv-abort", **dict(PRECOPY, state_size="64M",
                                             initial_size="63M"))
        try:
            digest = lvrig.sim_digest(self.src, dom)
            xml = self.dest_xml(dom)
            proc, out = self.migrate_bg(dom, xml=xml)

            def precopying():
                if proc.poll() is not None:
                    raise RigError("virsh migrate ended before the abort")
                for d in self.vfio_devices(self.src, dom):
                    if d["state"].startswith("pre-copy") and \
                            d["transferred"] > 0:
                        return d
                return None
            try:
                seen = wait_until(precopying, 60,
                                  "the device to send pre-copy data", 0.1)
                info("aborting with the device in %s, %d bytes sent" %
                     (seen["state"], seen["transferred"]))
                self.src.virsh("domjobabort", dom)
            finally:
                rc, text = self.finish_bg(proc, out)
            if rc == 0:
                raise RigError("the migration completed despite the abort")
            info("virsh migrate: " + text.strip().splitlines()[-1])
            self.assert_source_kept(dom)
            mig = self.src.qmp(dom, "query-migrate")
            if mig.get("status") != "cancelled":
                raise RigError("source query-migrate status is %s" %
                               mig.get("status"))
            devs = mig.get("vfio", {}).get("x-devices", [])
            info("source query-migrate after the abort: status %s, "
                 "vfio.x-devices %s" % (mig.get("status"), devs))
            bad = [d for d in devs if d["state"] != "running"]
            if bad:
                raise RigError("query-migrate shows %s" % bad)
            if lvrig.sim_digest(self.src, dom) != digest:
                raise RigError("the abort changed the source's digest")

            r = self.migrate(dom, xml=xml)
            if r.returncode != 0:
                raise RigError("the retry failed: %s; qemu: %s" %
                               ((r.stderr or r.stdout).strip(),
                                self.qemu_log(self.src, dom)))
            if self.src.has_domain(dom):
                raise RigError("after the retry the source still has it")
            if self.dst.state(dom) != "running":
                raise RigError("after the retry the destination is %s" %
                               self.dst.state(dom))
            got = lvrig.sim_digest(self.dst, dom)
            if got != digest:
                raise RigError("retry: digest 0x%016x on the destination, "
                               "0x%016x on the source" % (got, digest))
        finally:
            self.cleanup(dom)

    def s4_disabled_refused(self):
        """enable-migration=off: virsh migrate fails with QEMU's reason."""
        dom = self.create("lv-disabled", state_size="1M",
                          enable_migration="off")
        try:
            lvrig.sim_bar0(self.src, dom)
            r = self.migrate(dom)
            err = (r.stderr + r.stdout).strip()
            info("virsh: " + err)
            if r.returncode == 0:
                raise RigError("the migration went through")
            if "VFIO device sim0" not in err or "disabled" not in err:
                raise RigError("the error does not give the device and "
                               "its reason: %s" % err)
            self.assert_source_kept(dom)
        finally:
            self.cleanup(dom)

    def s5_save_restore(self):
        """virsh save + virsh restore keep the device's digest."""
        dom = self.create("lv-save", **dict(PRECOPY, state_size="16M",
                                            initial_size="15M",
                                            stream_bandwidth=0))
        image = os.path.join(self.workdir, "lv-save.img")
        try:
            digest = lvrig.sim_digest(self.src, dom)
            # libvirt pauses the VM, then migrates it into the file: a few
            # seconds here.  Watch QEMU's side meanwhile, so that a save
            # that never ends fails with what QEMU was doing.
            proc = subprocess.Popen(
                [lvrig.VIRSH, "-c", self.src.uri, "save", dom, image],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
            last = None
            deadline = time.monotonic() + SAVE_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    last = self.src.qmp(dom, "query-migrate")
                except RigError:
                    pass
                time.sleep(0.5)
            if proc.poll() is None:
                self.src.virsh("domjobabort", dom, check=False)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    lvrig.kill_pid(proc.pid)
                raise RigError("virsh save did not end in %ds: %s" %
                               (SAVE_TIMEOUT, describe_migration(last)))
            text = proc.stdout.read().strip()
            if proc.returncode != 0:
                raise RigError("virsh save: %s; qemu: %s" %
                               (text, self.qemu_log(self.src, dom)))
            if self.src.has_domain(dom):
                raise RigError("the domain is still there after save")
            xml = other_seed(self.src.virsh("save-image-dumpxml", image,
                                            "--security-info").stdout)
            alt = os.path.join(self.workdir, "lv-save-restore.xml")
            with open(alt, "w") as f:
                f.write(xml)
            r = self.src.virsh("restore", image, "--xml", alt, timeout=120,
                               check=False)
            if r.returncode != 0:
                raise RigError("virsh restore: %s; qemu: %s" %
                               (r.stderr.strip(), self.qemu_log(self.src,
                                                                dom)))
            state = self.src.state(dom)
            if state != "running":
                raise RigError("restored domain is %s" % state)
            got = lvrig.sim_digest(self.src, dom)
            if got != digest:
                raise RigError("digest 0x%016x after restore, 0x%016x "
                               "before save" % (got, digest))
            info("digest 0x%016x before save and after restore; image "
                 "%.1f MiB" % (digest, os.path.getsize(image) / 2**20))
        finally:
            self.cleanup(dom)
            if os.path.exists(image):
                os.unlink(image)

    def s6_postcopy_refused(self):
        """virsh migrate --postcopy is refused; the source runs on."""
        dom = self.create("lv-postcopy", **PRECOPY)
        try:
            lvrig.sim_bar0(self.src, dom)
            r = self.migrate(dom, "--postcopy")
            err = (r.stderr + r.stdout).strip()
            info("virsh: " + err)
            if r.returncode == 0:
                raise RigError("the postcopy migration went through")
            if "VFIO device sim0" not in err or "postcopy" not in err:
                raise RigError("the error is not the series' refusal: %s" %
                               err)
            self.assert_source_kept(dom)
        finally:
            self.cleanup(dom)

    def s7_timeout_suspend(self):
        """virsh migrate --timeout --timeout-suspend, for a migration that
        cannot converge live: libvirt pauses the source, and the migration
        completes under QEMU's default downtime limit with the device's
        state."""
        # The device makes its 31 MiB of pre-copy data at 4 MiB/s: the
        # switchover bandwidth counts that wait, so the state never fits
        # in 300 ms while the guest runs.
        dom = self.create("lv-suspend", **dict(PRECOPY,
                                               stream_bandwidth="4M"))
        try:
            digest = lvrig.sim_digest(self.src, dom)
            xml = self.dest_xml(dom)
            proc, out = self.migrate_bg(dom, "--timeout", "2",
                                        "--timeout-suspend", xml=xml)
            states = set()
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                states.add(self.src.state(dom))
                time.sleep(0.2)
            rc, text = self.finish_bg(proc, out)
            info("source states seen: %s; virsh migrate: %s" %
                 (", ".join(sorted(str(x) for x in states)),
                  " ".join(text.replace("\r", "\n").split())[-120:]))
            if rc != 0:
                raise RigError("virsh migrate failed (%d): %s; qemu: %s" %
                               (rc, text.strip()[-400:],
                                self.qemu_log(self.src, dom)))
            if "paused" not in states:
                raise RigError("libvirt never paused the source")
            if self.src.has_domain(dom):
                raise RigError("the source still has the domain")
            got = lvrig.sim_digest(self.dst, dom)
            if got != digest:
                raise RigError("digest 0x%016x on the destination, "
                               "0x%016x on the source" % (got, digest))
            info("digest 0x%016x on both sides; destination %s" %
                 (digest, self.dst.state(dom)))
        finally:
            self.cleanup(dom)


SCENARIOS = [
    ("migrate-live", "s1_migrate_live"),
    ("domjobinfo-progress", "s2_domjobinfo"),
    ("domjobabort-retry", "s3_abort_retry"),
    ("migration-disabled-refused", "s4_disabled_refused"),
    ("save-restore", "s5_save_restore"),
    ("postcopy-refused", "s6_postcopy_refused"),
    ("timeout-suspend", "s7_timeout_suspend"),
]


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def on_term(signum, frame):
    # Unwind through the finally blocks, which end what we started.
    raise SystemExit(128 + signum)


def prerequisites():
    """None when the suite can run here, else the reason it cannot."""
    for tool in (lvrig.LIBVIRTD, lvrig.VIRSH):
        if not os.access(tool, os.X_OK):
            return "%s not installed (libvirt-daemon, libvirt-clients)" % tool
    if os.geteuid() != 0:
        return "needs root (private libvirt daemons in mount namespaces)"
    if not shutil.which("unshare"):
        return "no unshare"
    # (a binary being relinked right now is waited for, in lvrig)
    if not os.path.exists(lvrig.QEMU) and \
            not os.path.exists(os.path.join(lvrig.OBJ, "build.ninja")):
        return "the series' QEMU is not built (%s)" % lvrig.QEMU
    return None


def main():
    global verbose
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tally", help="add 'passed failed skipped' to FILE")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print what each scenario saw")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (logs) afterwards")
    ap.add_argument("--timeout", type=int, default=180,
                    help="seconds each scenario may take (default 180)")
    ap.add_argument("only", nargs="*", help="scenario names to run")
    opts = ap.parse_args()
    verbose = opts.verbose
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)
    signal.signal(signal.SIGALRM, on_alarm)

    results = []
    names = [n for n, _ in SCENARIOS if not opts.only or n in opts.only]
    reason = prerequisites()
    workdir = tempfile.mkdtemp(prefix="vfio-libvirt-")
    rig = lvrig.Rig(workdir)
    t0 = time.monotonic()
    failed_setup = None
    try:
        if not reason:
            try:
                rig.start()
                help_out = subprocess.run(
                    [rig.emulator, "-device", "help"], capture_output=True,
                    text=True, timeout=30).stdout
                if "vfio-sim-pci" not in help_out:
                    reason = "this build has no vfio-sim-pci"
            except RigError as e:
                failed_setup = str(e)
        suite = Suite(rig, workdir, lvrig.kvm_usable())
        for name, method in SCENARIOS:
            if name not in names:
                continue
            if reason:
                results.append("skip")
                print("SKIP %s: %s" % (name, reason), flush=True)
                continue
            if failed_setup:
                results.append("fail")
                print("FAIL %s: rig: %s" % (name, failed_setup), flush=True)
                continue
            start = time.monotonic()
            signal.alarm(opts.timeout)
            try:
                getattr(suite, method)()
                signal.alarm(0)
                results.append("pass")
                print("PASS %s" % name, flush=True)
            except Skip as e:
                signal.alarm(0)
                results.append("skip")
                print("SKIP %s: %s" % (name, e), flush=True)
            except Timeout:
                results.append("fail")
                print("FAIL %s: no result in %ds" % (name, opts.timeout),
                      flush=True)
            except (RigError, OSError, ValueError, KeyError) as e:
                signal.alarm(0)
                results.append("fail")
                print("FAIL %s: %s" % (name, e), flush=True)
            if verbose:
                info("(%.1fs)" % (time.monotonic() - start))
    finally:
        signal.alarm(0)
        rig.stop()
        failed = results.count("fail")
        if failed or opts.keep:
            # Keep the logs, not the 50+ MiB copy of QEMU
            shutil.rmtree(os.path.join(workdir, "bin"), ignore_errors=True)
            print("logs: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    p, f, s = (results.count("pass"), results.count("fail"),
               results.count("skip"))
    if verbose:
        info("total %.1fs" % (time.monotonic() - t0))
    print("%d passed, %d failed, %d skipped" % (p, f, s))
    if opts.tally:
        try:
            with open(opts.tally) as fh:
                tp, tf, ts = (int(x) for x in fh.read().split())
        except (OSError, ValueError):
            tp = tf = ts = 0
        with open(opts.tally, "w") as fh:
            fh.write("%d %d %d\n" % (tp + p, tf + f, ts + s))
    return 1 if f else 0


if __name__ == "__main__":
    sys.exit(main())
