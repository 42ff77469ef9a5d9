# SPDX-License-Identifier: GPL-2.0-or-later
"""Two private libvirt daemons on one machine, for the series' libvirt tests.

Each daemon runs in its own mount namespace (unshare -m), where private
directories are bind-mounted over libvirt's fixed system paths (/etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt): a
privileged libvirtd 9.0 has no options to move them.  Each has its own
host_uuid, since libvirt refuses to migrate to a host with its own UUID.
Clients reach a daemon through its socket, which the bind mount also shows
outside the namespace.  The daemons, and the QEMUs they start, are ended by
PID (never by name); a system libvirtd, if any, is neither used nor touched.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
OBJ = os.environ.get("SERIES_OBJ", os.path.join(TOP, "build", "obj"))
QEMU = os.path.join(OBJ, "qemu-system-x86_64")
LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "/usr/bin/virsh"

SIM_MAGIC = 0x4d49532d4f494656      # BAR0 0x00, "VFIO-SIM"
REG_DIGEST = 0x08
REG_DEVICE_STATE = 0x10
VFIO_DEVICE_STATE_RUNNING = 2

# libvirt's fixed system paths that get a private copy per daemon
MOUNTS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}

LIBVIRTD_CONF = """\
# Private daemon of the series' libvirt tests.
host_uuid = "{uuid}"
# Only root on this machine talks to it, through its private socket.
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# QEMU runs as root without confinement: the tests run as root on a
# throw-away host, the emulator is a build tree binary, and the QEMU
# processes must not be shaped by the host's cgroup layout.
#   user/group root, dynamic_ownership 0, remember_owner 0: no chown of
#       files nor owner xattrs left on them;
#   security_driver none: no SELinux/AppArmor labelling of the build tree;
#   cgroup_controllers []: no cgroup placement (the host may not delegate
#       cgroups, and the other rigs of this machine are not disturbed);
#   namespaces []: QEMU keeps the host /dev (no private /dev to populate);
#   stdio_handler file: QEMU's log goes to a file, no virtlogd needed;
#   migration_port_min/max: each daemon its own port range.  libvirt
#       refuses a loopback migration_address/migration_host here, so the
#       tests give virsh migrate --listen-address and --migrateuri.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_port_min = {port_min}
migration_port_max = {port_max}
"""


class RigError(Exception):
    pass


def wait_until(predicate, timeout, what, interval=0.1):
    """Poll PREDICATE until it returns a true value, at most TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RigError("timed out after %gs waiting for %s" %
                           (timeout, what))
        time.sleep(interval)


def _die_with_parent():
    """In the child: SIGTERM when the test process dies (even by SIGKILL),
    so that no daemon outlives it; kept across the execs of unshare."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def kill_pid(pid, grace=10.0):
    """SIGTERM PID, then SIGKILL it if it is still there after GRACE s."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            # Reap it when it is our child, else just look whether it went.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not pid_alive(pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def snapshot_qemu(dest_dir, src=QEMU, wait=120):
    """Copy the series' QEMU into DEST_DIR and check that the copy runs.

    The build may be replaced while the tests run (fixes land in parallel):
    both daemons use one copy, so source and destination run the same
    binary.  While the linker rewrites it the file is missing, not yet
    executable or incomplete: retry for at most WAIT s.
    Returns (path, reason): path None when there is no usable binary.
    """
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, "qemu-system-x86_64")
    last = "no binary at %s" % src
    deadline = time.monotonic() + wait
    while True:
        try:
            if not os.access(src, os.X_OK):
                raise OSError("%s is missing or not executable" % src)
            shutil.copy2(src, dest + ".tmp")
            os.rename(dest + ".tmp", dest)
            out = subprocess.run([dest, "-version"], capture_output=True,
                                 text=True, timeout=20)
            if out.returncode == 0:
                return dest, None
            last = "%s -version failed: %s" % (src, out.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as e:
            last = str(e)
        if time.monotonic() > deadline:
            return None, last
        time.sleep(2)


class Daemon:
    """One libvirtd in its own mount namespace, with its own directories."""

    def __init__(self, name, root, port_min):
        self.name = name
        self.root = os.path.join(root, name)
        self.port_min = port_min
        self.proc = None
        self.uuid = str(uuid.uuid4())
        self.sock = os.path.join(self.root, "run", "libvirt-sock")
        self.uri = "qemu+unix:///system?socket=%s" % self.sock
        self.log = os.path.join(self.root, "log", "libvirtd.log")

    def start(self, timeout=60):
        for sub in MOUNTS:
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        etc = os.path.join(self.root, "etc")
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write(LIBVIRTD_CONF.format(uuid=self.uuid))
        with open(os.path.join(etc, "qemu.conf"), "w") as f:
            f.write(QEMU_CONF.format(port_min=self.port_min,
                                     port_max=self.port_min + 15))
        binds = [(os.path.join(self.root, sub), path)
                 for sub, path in MOUNTS.items()]
        binds += self.account_files()
        binds = " && ".join("mount --bind %s %s" % b for b in binds)
        # The shell execs libvirtd, so the PID we hold is the daemon's.
        script = "%s && exec %s -p /run/libvirt/libvirtd.pid" % (binds,
                                                                  LIBVIRTD)
        out = open(os.path.join(self.root, "libvirtd.out"), "w")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private",
             "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        out.close()

        def up():
            if self.proc.poll() is not None:
                raise RigError("libvirtd %s exited with status %d: %s" %
                               (self.name, self.proc.returncode,
                                self.tail()))
            if not os.path.exists(self.sock):
                return False
            r = self.virsh("uri", timeout=10, check=False)
            return r.returncode == 0
        wait_until(up, timeout, "libvirtd %s to answer" % self.name, 0.1)

    def account_files(self):
        """Private /etc/passwd and /etc/group that know libvirt's accounts.

        A privileged libvirtd looks up its built-in QEMU user and group
        (libvirt-qemu) before it reads qemu.conf, and fails when they do
        not exist.  They come with libvirt-daemon-system, which also starts
        system services; rather than add accounts to the host, the
        daemon's namespace sees copies of the files that have them.
        """
        out = []
        for name, line in (("passwd", "libvirt-qemu:x:64055:64055:"
                            "Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin"),
                           ("group", "libvirt-qemu:x:64055:")):
            with open("/etc/" + name) as f:
                text = f.read()
            if not re.search(r"^libvirt-qemu:", text, re.M):
                if text and not text.endswith("\n"):
                    text += "\n"
                text += line + "\n"
            path = os.path.join(self.root, name)
            with open(path, "w") as f:
                f.write(text)
            out.append((path, "/etc/" + name))
        return out

    def tail(self, n=8):
        text = ""
        for path in (os.path.join(self.root, "libvirtd.out"), self.log):
            try:
                with open(path) as f:
                    text += f.read()
            except OSError:
                pass
        return " | ".join(text.strip().splitlines()[-n:])

    def virsh(self, *args, timeout=60, check=True):
        """Run virsh against this daemon; a CompletedProcess."""
        try:
            r = subprocess.run([VIRSH, "-q", "-c", self.uri] + list(args),
                               stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RigError("%s: virsh %s: no answer in %ds" %
                           (self.name, " ".join(args[:2]), timeout))
        if check and r.returncode != 0:
            raise RigError("%s: virsh %s failed: %s" %
                           (self.name, " ".join(args[:2]),
                            (r.stderr or r.stdout).strip()))
        return r

    def domains(self):
        r = self.virsh("list", "--all", "--name", check=False, timeout=20)
        return [d for d in r.stdout.split() if d]

    def has_domain(self, dom):
        return dom in self.domains()

    def state(self, dom):
        r = self.virsh("domstate", dom, check=False, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else None

    def destroy_all(self):
        for dom in self.domains():
            self.virsh("destroy", dom, check=False, timeout=30)

    def qmp(self, dom, command, **args):
        cmd = {"execute": command}
        if args:
            cmd["arguments"] = args
        r = self.virsh("qemu-monitor-command", dom, json.dumps(cmd),
                       timeout=30)
        reply = json.loads(r.stdout)
        if "error" in reply:
            raise RigError("%s: %s: %s" % (self.name, command,
                                           reply["error"].get("desc")))
        return reply["return"]

    def hmp(self, dom, line):
        return self.virsh("qemu-monitor-command", dom, "--hmp", line,
                          timeout=30).stdout

    def qemu_pids(self):
        """PIDs of the QEMUs this daemon started (its own pid files)."""
        pids = []
        rundir = os.path.join(self.root, "run", "qemu")
        try:
            names = os.listdir(rundir)
        except OSError:
            return pids
        for n in names:
            if n.endswith(".pid"):
                try:
                    with open(os.path.join(rundir, n)) as f:
                        pids.append(int(f.read().strip()))
                except (OSError, ValueError):
                    pass
        return pids

    def stop(self):
        """Destroy its domains, end the daemon, then any QEMU left."""
        pids = self.qemu_pids()
        if self.proc and self.proc.poll() is None:
            try:
                self.destroy_all()
            except RigError:
                pass
            pids += self.qemu_pids()
            kill_pid(self.proc.pid)
        for pid in set(pids):
            kill_pid(pid, grace=5)
        self.proc = None


class Rig:
    """The two daemons of one test run, and their common QEMU copy."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.created_mountpoints = []
        self.src = Daemon("src", workdir, 49400)
        self.dst = Daemon("dst", workdir, 49420)
        self.emulator = None

    def start(self):
        self.emulator, reason = snapshot_qemu(os.path.join(self.workdir,
                                                           "bin"))
        if not self.emulator:
            raise RigError(reason)
        # The bind mounts need their mount points; make the missing ones,
        # and remove them again at the end if they are still empty.
        for path in MOUNTS.values():
            if not os.path.isdir(path):
                os.makedirs(path)
                self.created_mountpoints.append(path)
        self.src.start()
        self.dst.start()
        # Each daemon probes an emulator the first time a domain uses it
        # (some seconds under TCG); let both probe at once, now.
        virt = "kvm" if kvm_usable() else "qemu"
        probes = [subprocess.Popen(
            [VIRSH, "-q", "-c", d.uri, "domcapabilities", "--emulatorbin",
             self.emulator, "--arch", "x86_64", "--machine", "q35",
             "--virttype", virt], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for d in (self.src, self.dst)]
        for d, p in zip((self.src, self.dst), probes):
            try:
                _, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                kill_pid(p.pid)
                raise RigError("%s: no answer to domcapabilities" % d.name)
            if p.returncode != 0:
                raise RigError("%s: libvirt cannot use %s: %s" %
                               (d.name, self.emulator, err.strip()))

    def stop(self):
        for d in (self.dst, self.src):
            try:
                d.stop()
            except Exception:       # keep on cleaning up the other one
                pass
        for path in reversed(self.created_mountpoints):
            try:
                os.rmdir(path)
            except OSError:
                pass
        self.created_mountpoints = []


def domain_xml(name, emulator, device, ram_mib=128, kvm=True, dom_uuid=None):
    """A small q35 domain with no disk, no NIC, and a vfio-sim-pci.

    The sim device goes through <qemu:commandline>, at a pcie.0 slot that
    libvirt leaves free; USB and the balloon are turned off so that libvirt
    adds nothing it would have to migrate besides the sim.
    """
    return """\
<domain type='{type}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{ram}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='{device}'/>
  </qemu:commandline>
</domain>
""".format(type="kvm" if kvm else "qemu", name=name,
           uuid=dom_uuid or str(uuid.uuid4()), ram=ram_mib,
           emulator=emulator, device=device)


def sim_device(**props):
    """The -device argument of a vfio-sim-pci named sim0 at pcie.0 slot 5."""
    spec = "vfio-sim-pci,id=sim0,bus=pcie.0,addr=0x5"
    for k, v in props.items():
        spec += ",%s=%s" % (k.replace("_", "-"), v)
    return spec


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def sim_bar0(daemon, dom, timeout=30):
    """BAR0 of sim0 from query-pci, once the guest firmware assigned it."""
    def address():
        for bus in daemon.qmp(dom, "query-pci"):
            for dev in bus["devices"]:
                if dev.get("qdev_id") == "sim0":
                    for region in dev["regions"]:
                        if region["bar"] == 0:
                            a = region["address"]
                            return a if 0 < a < (1 << 64) - 1 else None
                    raise RigError("%s: sim0 has no BAR0" % daemon.name)
        raise RigError("%s/%s: no sim0 in query-pci" % (daemon.name, dom))
    return wait_until(address, timeout, "%s/%s: the guest to assign BAR0 of "
                      "sim0" % (daemon.name, dom), interval=0.1)


def read_reg(daemon, dom, bar, reg):
    out = daemon.hmp(dom, "xp /1gx 0x%x" % (bar + reg))
    m = re.search(r":\s*(0x[0-9a-fA-F]+)", out)
    if not m:
        raise RigError("%s/%s: unexpected xp output: %r" %
                       (daemon.name, dom, out))
    return int(m.group(1), 16)


def sim_digest(daemon, dom):
    """The sim's state digest, read as the demo does (magic, then digest)."""
    bar = sim_bar0(daemon, dom)
    magic = read_reg(daemon, dom, bar, 0)
    if magic != SIM_MAGIC:
        raise RigError("%s/%s: no vfio-sim-pci registers at 0x%x (0x%x)" %
                       (daemon.name, dom, bar, magic))
    return read_reg(daemon, dom, bar, REG_DIGEST)


def sim_state(daemon, dom):
    """The sim's own DEVICE_STATE register (enum vfio_device_mig_state)."""
    return read_reg(daemon, dom, sim_bar0(daemon, dom), REG_DEVICE_STATE)
