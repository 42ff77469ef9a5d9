#!/usr/bin/env python3
# Run one glib test binary in TAP mode, print each result, and add the
# counts to a tally file ("passed failed skipped" on one line).
#
# usage: tap-run.py TALLY TIMEOUT BINARY [-p PATH ...]
#
# A test that the binary announced but never reported (a crash or a
# timeout) counts as failed.  A skip prints its reason.

import os
import re
import signal
import subprocess
import sys

SKIP_HINTS = {
    "postcopy": " (postcopy needs userfaultfd, which this host refuses)",
}


def main():
    tally, timeout, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    name = os.path.basename(binary)
    passed = failed = skipped = 0
    planned = None
    seen = 0
    reported = []
    proc = subprocess.Popen([binary, "--tap", "-k"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out = []

    def on_alarm(signum, frame):
        out.append("# timeout after %ds: killing %s" % (timeout, name))
        os.killpg(proc.pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    for line in proc.stdout:
        line = line.rstrip("\n")
        m = re.match(r"^1\.\.(\d+)", line)
        if m:
            planned = int(m.group(1))
            continue
        m = re.match(r"^(not ok|ok) \d+ (\S+)(.*)$", line)
        if m:
            seen += 1
            status, path, rest = m.groups()
            reported.append(path)
            skip = re.search(r"#\s*SKIP\s*(.*)", rest, re.I)
            if status == "ok" and skip:
                skipped += 1
                print("SKIP %s: %s" % (path, skip.group(1) or "no reason given"))
            elif status == "ok":
                passed += 1
                print("PASS %s" % path)
            else:
                failed += 1
                print("FAIL %s" % path)
                for o in out[-40:]:
                    print("     | " + o)
            out.clear()
            continue
        out.append(line)
    rc = proc.wait()
    signal.alarm(0)
    if planned is not None and seen < planned:
        missing = planned - seen
        failed += missing
        print("FAIL %s: %d test(s) never reported (exit status %d)" % (name, missing, rc))
        for o in out[-40:]:
            print("     | " + o)
    elif planned is None and rc != 0:
        failed += 1
        print("FAIL %s: exited with status %d before running a test" % (name, rc))
        for o in out[-40:]:
            print("     | " + o)
    elif rc != 0:
        # A crash ends the run: the test that was running never reported.
        failed += 1
        print("FAIL %s: exited with status %d after %d result(s)" %
              (name, rc, seen))
        for o in out[-40:]:
            print("     | " + o)

    # glib runs nothing for a -p path that the binary did not register
    # (migration-test registers postcopy only where userfaultfd works).
    wanted = [args[i + 1] for i in range(len(args) - 1) if args[i] == "-p"]
    for w in wanted if rc == 0 else []:
        if not any(r == w or r.startswith(w + "/") for r in reported):
            skipped += 1
            print("SKIP %s: %s registers no such test on this host%s" %
                  (w, name, SKIP_HINTS.get(w.split("/")[3] if w.count("/") > 3
                                           else "", "")))

    p = f = s = 0
    if os.path.exists(tally):
        with open(tally) as t:
            p, f, s = (int(x) for x in t.read().split())
    with open(tally, "w") as t:
        t.write("%d %d %d\n" % (p + passed, f + failed, s + skipped))


if __name__ == "__main__":
    main()
