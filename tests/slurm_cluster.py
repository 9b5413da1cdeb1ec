"""A real single-node Slurm for the tests, in a temporary folder.

``SlurmCluster`` writes a ``slurm.conf`` that names this host with its cores and memory, a munge
key, and starts a private ``munged`` (its own socket, so a system munged is left alone),
``slurmctld`` and ``slurmd``, all in the foreground as children of this process, then waits until
``sinfo`` shows the node idle and runs one short job (see ``start``). ``stop()`` cancels what is
still queued, ends the three daemons (and any job step they left), and removes the folder.
Client commands find the cluster through ``SLURM_CONF`` (``cluster.env``, ``cluster.run``).

It needs root (slurmd starts the jobs). Debian's ``slurm-wlm`` and ``munge`` are installed with
apt-get when missing; where that cannot be done (not root, no apt-get, no packages),
``ensure_slurm()`` raises ``SlurmUnavailable`` and the fixture skips with the reason.

The pids of each started cluster (and of the process that started it) are kept in
``$TMPDIR/deepcons-slurm-<uid>.pids`` until it is stopped, so that a run killed before its
clean-up does not leave daemons behind: ``start()`` ends those of clusters whose starting process
is gone (only processes whose command line names that cluster's folder, and the jobs they left).
The daemons listen on free ports chosen at start, so another Slurm running here (a system one,
or another test session's) is no obstacle.

Run on its own, it starts a cluster, prints how long that took and ``sinfo``, and stops it::

    .venv/bin/python tests/slurm_cluster.py [--hold SECONDS]
"""
import atexit
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PACKAGES = ("slurm-wlm", "munge")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
DAEMONS = ("munged", "slurmctld", "slurmd")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
REGISTRY = os.path.join(tempfile.gettempdir(), "deepcons-slurm-%d.pids" % os.getuid())
FOLDER_PREFIX = "deepcons-slurm-"
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                   "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}


class SlurmUnavailable(Exception):
    """Slurm cannot run here; the message says why (the tests skip with it)."""


def _which(program):
    return shutil.which(program, path=os.environ.get("PATH", "") + os.pathsep + SBIN_PATH)


def missing_programs():
    return [p for p in CLIENTS + DAEMONS + ("munge",) if _which(p) is None]


def ensure_slurm(log=print):
    """Install Debian's slurm-wlm and munge when a program is missing; returns the seconds the
    installation took (0 when nothing was missing). Raises SlurmUnavailable when they are missing
    and cannot be installed here."""
    missing = missing_programs()
    if os.geteuid() != 0:
        raise SlurmUnavailable("a private Slurm cluster needs root (slurmd starts jobs as their "
                               "users), this is uid %d%s" % (os.geteuid(), "; Slurm is not "
                               "installed either (missing %s)" % ", ".join(missing)
                               if missing else ""))
    if not missing:
        return 0.0
    what = "Slurm is not installed (missing %s)" % ", ".join(missing)
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(what + " and there is no apt-get to install it")
    started = time.time()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "-o", "Dpkg::Use-Pty=0",
               "--no-install-recommends"] + list(PACKAGES)
    log("installing %s with apt-get ..." % " ".join(PACKAGES))
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:       # stale or absent package lists: update once, then retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0 or missing_programs():
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise SlurmUnavailable(what + "; apt-get install %s failed: %s"
                               % (" ".join(PACKAGES), " | ".join(tail)))
    seconds = time.time() - started
    log("installed %s in %.0f s" % (" ".join(PACKAGES), seconds))
    return seconds


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _end(pid, grace=10.0):
    """SIGTERM, then SIGKILL after ``grace`` seconds; True if the process is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        end = time.time() + wait
        while time.time() < end:
            try:                        # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _alive(pid):
                return True
            time.sleep(0.1)
    return not _alive(pid)


def _cluster_name(folder):
    try:
        with open(os.path.join(folder, "etc", "slurm.conf")) as f:
            found = re.search(r"^ClusterName=(\S+)", f.read(), re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def _processes_using(folder):
    """Pids of the processes a cluster in ``folder`` left: those with an open file or their
    working directory under it (slurmstepd, job scripts), and those whose environment names
    its cluster (what the jobs started, wherever they run)."""
    name = _cluster_name(folder)
    marker = ("SLURM_CLUSTER_NAME=%s" % name).encode() if name else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            links = [os.readlink("/proc/%d/cwd" % pid)]
            links += [os.readlink("/proc/%d/fd/%s" % (pid, fd))
                      for fd in os.listdir("/proc/%d/fd" % pid)]
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if (any(link == folder or link.startswith(folder + os.sep) for link in links)
                or (marker is not None and marker in environ)):
            found.append(pid)
    return found


@contextlib.contextmanager
def _registry_lock():
    """Serialise the registry's read-modify-write between test sessions."""
    with open(REGISTRY + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_registry():
    """[(daemon pid, pid of the process that started it, folder)] of clusters started and not
    (yet) stopped."""
    entries = []
    try:
        with open(REGISTRY) as f:
            for line in f:
                parts = line.split(None, 2)
                if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
                    entries.append((int(parts[0]), int(parts[1]), parts[2].strip()))
    except OSError:
        pass
    return entries


def _write_registry(entries):
    if entries:
        with open(REGISTRY, "w") as f:
            f.writelines("%d %d %s\n" % e for e in entries)
    elif os.path.exists(REGISTRY):
        os.remove(REGISTRY)


def parse_record(line):
    """{key: value} of one ``scontrol show job -o`` line or jobcomp/filetxt record (the job's
    name is under ``Name`` in both)."""
    record = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
    if "JobName" in record:
        record.setdefault("Name", record["JobName"])
    return record


class SlurmCluster:
    """One-node Slurm in ``root`` (a new temporary folder by default). Use as a context
    manager, or call start() and stop()."""

    def __init__(self, root=None, partition="debug", cpus=None, memory_mb=None, log=print):
        self.root = os.path.abspath(root) if root else None
        self.partition = partition
        self.cpus = cpus or os.cpu_count() or 1
        # Slurm refuses a node that has less memory than configured: leave a margin
        self.memory_mb = memory_mb or max(256, int(_memory_mb() * 0.8))
        self.node = socket.gethostname().split(".")[0]
        self.cluster_name = "dc" + secrets.token_hex(3)
        self.log = log
        self.processes = {}
        self.startup_seconds = None
        self._own_root = root is None

    # ---------------------------------------------------------------- paths, environment
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def conf(self):
        return self.path("etc", "slurm.conf")

    @property
    def munge_socket(self):
        return self.path("munge", "munge.socket")

    @property
    def jobcomp(self):
        """Completion record of every finished job (jobcomp/filetxt): state and exit code."""
        return self.path("log", "jobcomp.txt")

    @property
    def env(self):
        """os.environ plus SLURM_CONF: what client commands (sbatch, squeue ...) need."""
        return dict(os.environ, SLURM_CONF=self.conf,
                    PATH=os.environ.get("PATH", "") + os.pathsep + SBIN_PATH)

    def run(self, *args, check=True, timeout=60, **kwargs):
        """Run a client command against this cluster; returns the CompletedProcess."""
        done = subprocess.run(list(args), env=kwargs.pop("env", self.env), capture_output=True,
                              text=True, timeout=timeout, **kwargs)
        if check and done.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (" ".join(args), done.returncode,
                                                         done.stdout, done.stderr))
        return done

    # ---------------------------------------------------------------- set-up
    def _write_files(self):
        for sub in ("etc", "munge", "state", "spool", "log", "run"):
            os.makedirs(self.path(sub), exist_ok=True)
        # munged wants every directory above its socket searchable by all
        os.chmod(self.root, 0o755)
        os.chmod(self.path("munge"), 0o755)
        key = self.path("etc", "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(secrets.token_bytes(1024))
        os.chmod(key, 0o600)
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        lines = [
            "ClusterName=%s" % self.cluster_name,
            "SlurmctldHost=%s(127.0.0.1)" % self.node,
            "SlurmctldPort=%d" % self.ctld_port,
            "SlurmdPort=%d" % self.slurmd_port,
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "AuthInfo=socket=%s" % self.munge_socket,
            "SlurmUser=root",
            "SlurmdUser=root",
            "StateSaveLocation=%s" % self.path("state"),
            "SlurmdSpoolDir=%s" % self.path("spool"),
            "SlurmctldPidFile=%s" % self.path("run", "slurmctld.pid"),
            "SlurmdPidFile=%s" % self.path("run", "slurmd.pid"),
            "SlurmctldLogFile=%s" % self.path("log", "slurmctld.log"),
            "SlurmdLogFile=%s" % self.path("log", "slurmd.log"),
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            # start a job when it is submitted or its dependency is met, not at the next
            # batch scheduling (up to 3 s later by default)
            "SchedulerParameters=batch_sched_delay=0",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            "JobCompLoc=%s" % self.jobcomp,
            "MinJobAge=600",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d RealMemory=%d State=UNKNOWN"
            % (self.node, self.cpus, self.memory_mb),
            "PartitionName=%s Nodes=%s Default=YES MaxTime=INFINITE State=UP"
            % (self.partition, self.node),
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _spawn(self, name, args):
        out = open(self.path("log", name + ".out"), "ab")
        proc = subprocess.Popen([_which(args[0]) or args[0]] + args[1:], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.root, start_new_session=True)
        out.close()
        self.processes[name] = proc
        with _registry_lock():
            _write_registry([e for e in _read_registry() if e[2] != self.root]
                            + [(p.pid, os.getpid(), self.root)
                               for p in self.processes.values()])
        return proc

    def _wait(self, what, condition, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError("%s exited (%d) while waiting for %s\n%s"
                                       % (name, proc.returncode, what, self.logs()))
            if condition():
                return
            time.sleep(0.2)
        raise RuntimeError("timed out after %.0f s waiting for %s\n%s" % (timeout, what,
                                                                          self.logs()))

    def node_state(self):
        done = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", check=False,
                        timeout=20)
        return done.stdout.strip() if done.returncode == 0 else ""

    def start(self, timeout=120):
        """Start munged, slurmctld and slurmd; returns once the node is idle and has run a first
        job. Sets (and returns) ``startup_seconds``, measured from writing the configuration to
        the idle node."""
        cleanup_stale(log=self.log)
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
        else:
            os.makedirs(self.root, exist_ok=True)
            self._end_pidfiles()
        atexit.register(self.stop)
        started = time.time()
        self._write_files()
        self._spawn("munged", ["munged", "--foreground",
                               "--key-file=%s" % self.path("etc", "munge.key"),
                               "--socket=%s" % self.munge_socket,
                               "--pid-file=%s" % self.path("run", "munged.pid"),
                               "--log-file=%s" % self.path("log", "munged.log"),
                               "--seed-file=%s" % self.path("state", "munged.seed")])
        self._wait("munged's socket", lambda: os.path.exists(self.munge_socket), 20)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", self.conf])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping", check=False,
                                                 timeout=20).stdout.count("UP") > 0, timeout)
        self._spawn("slurmd", ["slurmd", "-D", "-f", self.conf])
        self._wait("node %s idle in sinfo" % self.node, lambda: self.node_state() == "idle",
                   timeout)
        self.startup_seconds = time.time() - started
        self.log("Slurm cluster %s up in %.1f s: node %s, %d CPUs, %d MB, partition %s, %s"
                 % (self.cluster_name, self.startup_seconds, self.node, self.cpus,
                    self.memory_mb, self.partition, self.conf))
        # slurmctld starts its first job only at its first scheduling pass, about 3 s after the
        # submission; `sbatch --wait` then finds it pending at its first check (2 s) and checks
        # again 8 s later. A job run here takes that wait once, out of the tests' jobs.
        self.wait(self.sbatch("--job-name=warm-up", "--output=/dev/null", "--wrap", "true"),
                  timeout=timeout)
        return self.startup_seconds

    def _end_pidfiles(self):
        """Daemons of an earlier cluster in the same (given) folder: end them, drop pid files."""
        for name in ("munged", "slurmctld", "slurmd"):
            pidfile = self.path("run", name + ".pid")
            try:
                with open(pidfile) as f:
                    pid = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if name in _cmdline(pid) and self.root in _cmdline(pid):
                self.log("ending stale %s (pid %d) of %s" % (name, pid, self.root))
                _end(pid)
            os.remove(pidfile)
        if os.path.exists(self.munge_socket):
            os.remove(self.munge_socket)

    # ---------------------------------------------------------------- tear-down
    def stop(self):
        """Cancel every job, end the daemons and the job steps they left, remove the folder
        (when it was a temporary one). Safe to call more than once."""
        if not self.processes:
            return
        daemons_up = all(p.poll() is None for p in self.processes.values())
        if daemons_up:
            try:
                ids = self.run("squeue", "-h", "-o", "%i", check=False, timeout=20).stdout.split()
                if ids:
                    self.run("scancel", *sorted(set(i.split("_")[0] for i in ids)), check=False,
                             timeout=20)
                    end = time.time() + 20
                    while time.time() < end and self.run("squeue", "-h", check=False,
                                                         timeout=20).stdout.strip():
                        time.sleep(0.5)
            except (subprocess.SubprocessError, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                if not _end(proc.pid):
                    self.log("could not end %s (pid %d)" % (name, proc.pid))
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for pid in _processes_using(self.root):     # job steps (slurmstepd) and their jobs
            self.log("ending leftover process %d: %s" % (pid, _cmdline(pid)[:120]))
            _end(pid, grace=3)
        self.processes = {}
        with _registry_lock():
            _write_registry([e for e in _read_registry() if e[2] != self.root])
        if self._own_root and self.root and os.path.isdir(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---------------------------------------------------------------- jobs
    def sbatch(self, *args, cwd=None, env=None, timeout=600):
        """Submit with ``sbatch --parsable ARGS``; returns the job id (int). With ``--wait``
        among the args this returns when the job has ended (sbatch's exit code is then the
        job's, so a failed job raises)."""
        done = self.run("sbatch", "--parsable", *args, cwd=cwd, env=env or self.env,
                        timeout=timeout)
        return int(done.stdout.strip().split(";")[0])

    def jobs(self, job_id):
        """Records of a job (one per array task) as {field: value}: from ``scontrol show job``
        while slurmctld remembers it, else from the completion log."""
        done = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        records = [parse_record(line) for line in done.stdout.splitlines() if line.strip()]
        if records:
            return records
        return [r for r in self.completed() if r.get("JobId") == str(job_id)
                or r.get("ArrayJobId") == str(job_id)]

    def completed(self):
        """Every record of the completion log (jobcomp/filetxt), oldest first."""
        try:
            with open(self.jobcomp) as f:
                return [parse_record(line) for line in f if line.strip()]
        except OSError:
            return []

    def wait(self, job_id, timeout=120):
        """Wait until every task of the job is in a final state; returns its records."""
        end = time.time() + timeout
        while True:
            records = self.jobs(job_id)
            if records and all(r.get("JobState") in TERMINAL_STATES for r in records):
                return records
            if time.time() > end:
                raise TimeoutError("job %s not finished after %.0f s: %s\n%s"
                                   % (job_id, timeout, records, self.logs()))
            time.sleep(0.5)

    def logs(self, lines=15):
        """Tails of the daemons' logs, for failure messages."""
        parts = []
        for name in ("munged.out", "slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out"):
            try:
                with open(self.path("log", name), errors="replace") as f:
                    tail = f.read().splitlines()[-lines:]
            except (OSError, TypeError):
                continue
            if tail:
                parts.append("--- %s\n%s" % (name, "\n".join(tail)))
        return "\n".join(parts)


def cleanup_stale(log=print):
    """End the daemons and job processes of clusters whose starting process died without
    stopping them, as the registry lists them, and remove their temporary folders. Clusters of
    processes still alive (another test session) are left alone."""
    with _registry_lock():
        _cleanup_stale(log)


def _cleanup_stale(log):
    entries = _read_registry()
    live = {folder for _, owner, folder in entries if _alive(owner)}
    stale = {folder for _, _, folder in entries} - live
    for pid, _, folder in entries:
        command = _cmdline(pid)
        if folder in stale and _alive(pid) and folder in command and any(
                d in command for d in DAEMONS):
            log("ending stale Slurm daemon %d: %s" % (pid, command[:120]))
            _end(pid)
    for folder in stale:
        if os.path.isdir(folder):
            for pid in _processes_using(folder):
                log("ending stale job process %d: %s" % (pid, _cmdline(pid)[:120]))
                _end(pid, grace=3)
            if os.path.basename(folder).startswith(FOLDER_PREFIX):
                shutil.rmtree(folder, ignore_errors=True)
    _write_registry([e for e in entries if e[2] in live])


try:
    import pytest
except ImportError:          # the module also runs on its own
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def slurm_cluster():
        """A started SlurmCluster for the whole session (skips when Slurm cannot run here)."""
        try:
            ensure_slurm()
        except SlurmUnavailable as e:
            pytest.skip(str(e))
        cluster = SlurmCluster()
        with cluster:
            yield cluster


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", type=float, default=0,
                        help="keep the cluster up this many seconds before stopping it")
    options = parser.parse_args()
    ensure_slurm()
    with SlurmCluster() as c:
        print(c.run("sinfo").stdout, end="")
        if options.hold:
            print("SLURM_CONF=%s; holding %.0f s" % (c.conf, options.hold))
            time.sleep(options.hold)
    print("stopped; registry %s" % ("left: " + open(REGISTRY).read()
                                    if os.path.exists(REGISTRY) else "empty"))
