"""Running on a Slurm cluster: a real one-node Slurm (tests/slurm_cluster.py), plain sbatch jobs
and job arrays, and Scipion protocols sent through it with the hosts.conf that
``xmipp3_deepcons.cluster`` writes. Deep Consensus itself: scripts/slurm_array.sh on generated
data against one `screen`, and the protocol (one Slurm job; each stage a Slurm job, from the
plugin's workflow template) against the same protocol run locally (3.5-5 minutes in all).

The Scipion tests point the session's hosts.conf (SCIPION_HOSTS, written by conftest.py) at the
cluster for their duration and put the original back afterwards; protocols that do not ask for
the queue are unaffected by it.

Everything that needs Slurm skips, saying why, where it cannot run (not root, or Slurm neither
installed nor installable with apt-get).
"""
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)
from xmipp3_deepcons.cluster import slurm_host_section, write_slurm_hosts_conf
from xmipp3_deepcons.run.folder import RunFolder


def _script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/bash\n" + body)
    return str(path)


def _read(path):
    with open(path) as f:
        return f.read()


# ------------------------------------------------------------------------ plain Slurm
@pytest.mark.slow
def test_sbatch_wait_runs_a_script_and_writes_its_output(slurm_cluster, tmp_path):
    assert slurm_cluster.node_state() == "idle" and 0 < slurm_cluster.startup_seconds < 60
    out = tmp_path / "hello.out"
    script = _script(tmp_path / "hello.sh",
                     'echo "job $SLURM_JOB_ID on $SLURMD_NODENAME in $SLURM_JOB_PARTITION"\n'
                     'echo "answer $((6 * 7))"\n')
    job = slurm_cluster.sbatch("--wait", "--output=%s" % out, script, cwd=str(tmp_path))
    assert _read(out).splitlines() == ["job %d on %s in %s" % (job, slurm_cluster.node,
                                                                 slurm_cluster.partition),
                                       "answer 42"]
    (record,) = slurm_cluster.jobs(job)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0")


@pytest.mark.slow
def test_sbatch_wait_returns_the_exit_code_of_a_failed_job(slurm_cluster, tmp_path):
    script = _script(tmp_path / "fail.sh", "echo failing >&2\nexit 3\n")
    done = slurm_cluster.run("sbatch", "--parsable", "--wait", "--output=%s" % (tmp_path / "o"),
                             "--error=%s" % (tmp_path / "e"), script, check=False)
    assert done.returncode == 3
    (record,) = slurm_cluster.jobs(int(done.stdout.split(";")[0]))
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "3:0")
    assert _read(tmp_path / "e").strip() == "failing"


@pytest.mark.slow
def test_job_array_runs_every_task(slurm_cluster, tmp_path):
    script = _script(tmp_path / "array.sh",
                     'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT, '
                     'array $SLURM_ARRAY_JOB_ID"\n')
    job = slurm_cluster.sbatch("--wait", "--array=1-2", "--output=%s" % (tmp_path / "task_%a.out"),
                               script)
    for task in (1, 2):
        assert _read(tmp_path / ("task_%d.out" % task)).strip() == \
            "task %d of 2, array %d" % (task, job)
    records = slurm_cluster.jobs(job)
    assert sorted(r["ArrayTaskId"] for r in records) == ["1", "2"]
    assert {r["JobState"] for r in records} == {"COMPLETED"}


@pytest.mark.slow
def test_dependency_afterok_orders_jobs(slurm_cluster, tmp_path):
    """What scripts/slurm_array.sh relies on: a job held until an array has succeeded."""
    log = tmp_path / "order.txt"
    first = slurm_cluster.sbatch("--array=1-2", "--output=/dev/null",
                                 "--wrap", "sleep 2; echo array $SLURM_ARRAY_TASK_ID >> %s" % log)
    second = slurm_cluster.sbatch("--output=/dev/null", "--dependency=afterok:%d" % first,
                                  "--wrap", "echo after >> %s" % log)
    slurm_cluster.wait(second, timeout=120)
    lines = _read(log).splitlines()
    assert sorted(lines[:2]) == ["array 1", "array 2"] and lines[2:] == ["after"]


# ------------------------------------------------------------------------ scripts/slurm_array.sh
ARRAY_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "scripts", "slurm_array.sh")


def _run_array_script(cluster, tmp_path, fail_at=""):
    """scripts/slurm_array.sh with a stand-in for xmipp_deep_consensus that records each call
    (stage, arguments, array task, job) and fails on the call that contains ``fail_at``."""
    calls = tmp_path / "calls.txt"
    fake = _script(tmp_path / "fake_deepcons",
                   'echo "$* | task=${SLURM_ARRAY_TASK_ID:-none} job=${SLURM_JOB_ID:-none}" >> %s\n'
                   'if [ -n "$FAIL_AT" ] && [[ "$*" == *"$FAIL_AT"* ]]; then exit 7; fi\n'
                   % calls)
    os.chmod(fake, 0o755)
    run = tmp_path / "run"
    env = dict(cluster.env, DEEPCONS=fake, N="2", THREADS="1", MEMORY="256M", TIME="0:10:00",
               WAIT="1", FAIL_AT=fail_at, PARTITION=cluster.partition,
               INIT_OPTIONS="--coordinates 'picker B/' --seed 3", SBATCH_EXTRA="--nice=5",
               FIT_SBATCH="--comment=fit-only")
    done = subprocess.run(["bash", ARRAY_SCRIPT, str(run), "--micrographs", "mics/*.mrc",
                           "--box-size", "64"], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    lines = _read(calls).splitlines() if calls.exists() else []
    jobs = [int(j) for j in _read(run / "slurm" / "jobs.txt").split()]
    return done, lines, run, jobs


@pytest.mark.slow
def test_array_script_chains_the_stages(slurm_cluster, tmp_path):
    done, calls, run, jobs = _run_array_script(slurm_cluster, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run = str(run)
    # init ran here, with the arguments and INIT_OPTIONS as given (quotes kept, no globbing)
    assert calls[0] == ("init --micrographs mics/*.mrc --box-size 64 --coordinates picker B/ "
                        "--seed 3 -o %s | task=none job=none" % run)
    stages = [line.split()[0] for line in calls[1:]]
    assert stages == ["prepare"] * 2 + ["fit"] + ["predict"] * 2 + ["finish"], calls
    for stage, lines in (("prepare", calls[1:3]), ("predict", calls[4:6])):
        assert sorted(line.split(" | ")[0] for line in lines) == [
            "%s %s --shard %d/2 --threads 1" % (stage, run, i) for i in (1, 2)]
        assert sorted(line.split("task=")[1].split()[0] for line in lines) == ["1", "2"]
    assert calls[3].startswith("fit %s --threads 1 | task=none job=%d" % (run, jobs[1]))
    assert calls[6].startswith("finish %s | task=none job=%d" % (run, jobs[3]))
    assert len(jobs) == 4
    for job in jobs:
        for record in slurm_cluster.jobs(job):
            assert record["JobState"] == "COMPLETED"
            assert (record["Nice"], record["TimeLimit"], record["MinMemoryNode"],
                    record["NumCPUs"], record["Partition"]) == ("5", "00:10:00", "256M", "1",
                                                                slurm_cluster.partition)
            assert os.path.realpath(record["WorkDir"]) == os.path.realpath(run)
            assert record.get("Comment") == ("fit-only" if job == jobs[1] else None)
    assert os.path.exists(os.path.join(run, "slurm", "finish-%d.out" % jobs[3]))


@pytest.mark.slow
def test_array_script_stops_the_chain_when_a_shard_fails(slurm_cluster, tmp_path):
    done, calls, run, jobs = _run_array_script(slurm_cluster, tmp_path,
                                               fail_at="--shard 2/2")
    assert done.returncode != 0
    assert "did not succeed" in done.stderr
    assert [line.split()[0] for line in calls] == ["init", "prepare", "prepare"]
    prepare, fit, predict, finish = jobs
    states = {r["ArrayTaskId"]: (r["JobState"], r["ExitCode"])
              for r in slurm_cluster.jobs(prepare)}
    assert states == {"1": ("COMPLETED", "0:0"), "2": ("FAILED", "7:0")}
    for job in (fit, predict, finish):        # never ran: cancelled for their dependency
        assert {r["JobState"] for r in slurm_cluster.jobs(job)} == {"CANCELLED"}


# ------------------------------------------------------------------------ hosts.conf
def test_slurm_hosts_conf_loads_in_pyworkflow(tmp_path):
    from pyworkflow.protocol.hosts import HostConfig
    path = write_slurm_hosts_conf(str(tmp_path / "hosts.conf"), partitions=("cpu", "gpu"),
                                  extra_lines=["module load cuda"])
    host = HostConfig.load(path)["localhost"]
    queue = host.getQueueSystem()
    assert queue.hasName() and queue.getName() == "SLURM"
    assert list(queue.getQueues()) == ["cpu", "gpu"]
    assert [p[0] for p in queue.getQueues()["gpu"]] == ["JOB_TIME", "JOB_MEMORY",
                                                         "QUEUE_FOR_JOBS"]
    assert host.getSubmitCommand() % {"JOB_SCRIPT": "/r/logs/7.job"} == "sbatch /r/logs/7.job"
    assert host.getCheckCommand() % {"JOB_ID": 12} == "squeue -h -j 12 -o %T"
    assert host.getCancelCommand() % {"JOB_ID": 12} == "scancel 12"
    values = dict(host.getQueuesDefault(), JOB_NAME="7", JOB_QUEUE="gpu", JOB_LOGS="/r/logs/7",
                  JOB_NODES=1, JOB_THREADS=4, GPU_COUNT=1, SCIPION_PROTOCOL="Run7",
                  JOB_COMMAND="python3 run.py", JOB_TIME="2")
    script = host.getSubmitTemplate() % values
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash" and lines[-1] == "python3 run.py"
    for expected in ("#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=4",
                     "#SBATCH --gres=gpu:1", "#SBATCH --time=2:00:00", "#SBATCH --mem=8192",
                     "#SBATCH --output=/r/logs/7.out", "module load cuda"):
        assert expected in lines
    with pytest.raises(ValueError):
        slurm_host_section(extra_lines=["##SBATCH --exclusive"])


def test_slurm_hosts_conf_partitions_without_gpus(tmp_path):
    """A partition declared without GPUs has a 'GPUs per job' field (GPU_COUNT, 0) in its
    queue dialog; the protocol's queue parameters replace pyworkflow's own GPU_COUNT (the form's
    GPU id count), so the job asks for --gres=gpu:0."""
    from pyworkflow.protocol.hosts import HostConfig
    path = write_slurm_hosts_conf(str(tmp_path / "hosts.conf"), partitions=("gpu",),
                                  cpu_partitions=("cpu",))
    queues = HostConfig.load(path)["localhost"].getQueueSystem().getQueues()
    assert list(queues) == ["gpu", "cpu"]
    assert [p[0] for p in queues["gpu"]] == ["JOB_TIME", "JOB_MEMORY", "QUEUE_FOR_JOBS"]
    assert [p[:2] for p in queues["cpu"]][-1] == ["GPU_COUNT", "0"]
    # what Protocol.getSubmitDict does: its own values, then the dialog's over them
    submit = dict({"GPU_COUNT": 1}, **{p[0]: p[1] for p in queues["cpu"]})
    assert "--gres=gpu:0" in HostConfig.load(path)["localhost"].getSubmitTemplate() % dict(
        submit, JOB_NAME="1", JOB_QUEUE="cpu", JOB_LOGS="/r/1", JOB_NODES=1, JOB_THREADS=1,
        SCIPION_PROTOCOL="Run1", JOB_COMMAND="true")


# ------------------------------------------------------------------------ Scipion
class ScipionOnSlurm:
    """A project whose hosts.conf submits to the test cluster."""

    def __init__(self, cluster, project):
        self.cluster = cluster
        self.project = project

    def queue_params(self, queue_for_jobs, memory_mb=1024):
        """What the form's queue dialog stores (protocol.setQueueParams, '_queueParams' of a
        workflow file): every field of the partition, the defaults but for these."""
        from pyworkflow.protocol.hosts import HostConfig
        host = HostConfig.load(os.environ["SCIPION_HOSTS"])["localhost"]
        fields = host.getQueueSystem().getQueues()[self.cluster.partition]
        values = {field[0]: field[1] for field in fields}
        values.update({"JOB_TIME": "1", "JOB_MEMORY": str(memory_mb),
                       "QUEUE_FOR_JOBS": "Y" if queue_for_jobs else "N"})
        return [self.cluster.partition, values]

    def launch(self, prot, queue_for_jobs, wait, memory_mb=1024):
        prot._useQueue.set(True)
        prot.setQueueParams(self.queue_params(queue_for_jobs, memory_mb))
        self.project.launchProtocol(prot, wait=wait)
        return prot

    def path(self, *parts):
        return os.path.join(self.project.getPath(), *parts)

    def job_records(self, prot):
        """Completion records of the Slurm jobs of one protocol (named scipion<id>...)."""
        name = "scipion%d" % prot.getObjId()
        return [r for r in self.cluster.completed()
                if r.get("Name") == name or r.get("Name", "").startswith(name + "-")]


@pytest.fixture(scope="module")
def scipion_slurm(slurm_cluster):
    hosts = os.environ["SCIPION_HOSTS"]
    original = _read(hosts) if os.path.exists(hosts) else None
    cwd = os.getcwd()
    # the commands name the cluster's configuration, so nothing depends on SLURM_CONF being
    # exported; the job script keeps a copy of its environment next to its log
    # the test cluster has no GPUs: its partition is declared so (GPU_COUNT 0 in the dialog)
    write_slurm_hosts_conf(hosts, partitions=(), cpu_partitions=(slurm_cluster.partition,),
                           command_prefix="SLURM_CONF=%s " % slurm_cluster.conf,
                           extra_lines=["env | sort > %(JOB_LOGS)s.env"])
    try:
        from pyworkflow.project import Manager
        project = Manager().createProject("slurm_%s" % secrets.token_hex(3))
        os.chdir(project.getPath())       # pyworkflow's paths are relative to the project
        yield ScipionOnSlurm(slurm_cluster, project)
    finally:
        os.chdir(cwd)
        if original is None:
            os.remove(hosts)
        else:
            with open(hosts, "w") as f:
                f.write(original)


def _environment(path):
    env = {}
    for line in _read(path).splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def _mrc(path, data):
    import mrcfile
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = 1.5


def _wait_protocol(scipion, prot, timeout):
    import time
    end = time.time() + timeout
    while time.time() < end:
        scipion.project._updateProtocol(prot)
        if not prot.isActive():
            return prot
        time.sleep(1)
    raise TimeoutError("%s still %s after %.0f s" % (prot.getRunName(), prot.getStatus(),
                                                     timeout))


@pytest.mark.slow
def test_scipion_protocol_runs_as_one_slurm_job(scipion_slurm, tmp_path):
    """'Use queue' = Yes, 'Use queue for jobs' = N: the test process only submits; the whole
    protocol (pw_protocol_run.py) runs in the Slurm job and writes the project."""
    from pwem.protocols import ProtImportMicrographs
    rng = np.random.default_rng(5)
    for i in range(3):
        _mrc(tmp_path / ("mic_%d.mrc" % i), rng.normal(size=(64, 64)))
    prot = scipion_slurm.project.newProtocol(
        ProtImportMicrographs, filesPath=str(tmp_path), filesPattern="mic_*.mrc",
        samplingRate=1.5, voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1)
    scipion_slurm.launch(prot, queue_for_jobs=False, wait=False)
    jobs = [int(j) for j in prot.getJobIds()]
    assert len(jobs) == 1, "the protocol was not submitted: %s" % prot.getErrorMessage()
    (record,) = scipion_slurm.cluster.wait(jobs[0], timeout=240)
    logs = scipion_slurm.path(prot._getLogsPath(str(prot.getObjId())))
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), \
        _read(logs + ".err")[-2000:]
    assert record["Name"] == "scipion%d" % prot.getObjId()
    _wait_protocol(scipion_slurm, prot, timeout=60)
    assert prot.isFinished(), prot.getErrorMessage()
    assert prot.outputMicrographs.getSize() == 3
    # the job script pyworkflow wrote, the job's own output, the environment it ran in
    script = _read(logs + ".job")
    assert "#SBATCH --partition=%s" % scipion_slurm.cluster.partition in script
    assert "pw_protocol_run.py" in script.strip().splitlines()[-1]
    assert "Slurm job %d on %s" % (jobs[0], scipion_slurm.cluster.node) in _read(logs + ".out")
    env = _environment(logs + ".env")
    assert env["SLURM_JOB_ID"] == str(jobs[0])
    for name in ("SCIPION_DOMAIN", "SCIPION_HOSTS", "SCIPION_USER_DATA", "SCIPION_PYTHON"):
        assert env.get(name) == os.environ[name], name     # sbatch exported them


def _bz2_movies(folder, n=2):
    import bz2
    rng = np.random.default_rng(7)
    for i in range(n):
        plain = os.path.join(folder, "movie_%d.mrcs" % i)
        _mrc(plain, rng.normal(size=(3, 48, 48)))
        with open(plain, "rb") as f, open(plain + ".bz2", "wb") as g:
            g.write(bz2.compress(f.read()))
        os.remove(plain)


@pytest.mark.slow
def test_scipion_runjob_steps_go_to_slurm_one_by_one(scipion_slurm, tmp_path):
    """'Use queue for jobs' = Y: the protocol runs here and each runJob becomes a Slurm job.
    Importing bz2 movies makes exactly one runJob call (``bzip2 -d`` of the first movie, in the
    run's tmp/ folder, to read its size)."""
    from pwem.protocols import ProtImportMovies
    _bz2_movies(str(tmp_path))
    prot = scipion_slurm.project.newProtocol(
        ProtImportMovies, filesPath=str(tmp_path), filesPattern="movie_*.mrcs.bz2",
        samplingRate=1.5, voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1,
        dosePerFrame=1.0)
    scipion_slurm.launch(prot, queue_for_jobs=True, wait=True)
    _wait_protocol(scipion_slurm, prot, timeout=60)
    assert prot.isFinished(), prot.getErrorMessage()
    assert prot.outputMovies.getSize() == 2
    # read from the file the job decompressed (tmp/ is emptied when the protocol ends)
    assert prot.outputMovies.getDim() == (48, 48, 3)
    assert not list(prot.getJobIds())              # removed once the job is done
    (record,) = scipion_slurm.job_records(prot)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0")
    # named <protocol id>-<step id>-<n-th job of the step>; runs where runJob's cwd said
    assert record["Name"].startswith("scipion%d-" % prot.getObjId())
    tmp = scipion_slurm.path(prot._getTmpPath())
    assert os.path.realpath(record["WorkDir"]) == os.path.realpath(tmp)
    logs = scipion_slurm.path(prot._getLogsPath(record["Name"][len("scipion"):]))
    assert _read(logs + ".job").strip().splitlines()[-1].endswith('bzip2 -d -f movie_0.mrcs.bz2')
    env = _environment(logs + ".env")
    assert env["SLURM_JOB_ID"] == record["JobId"]
    assert env["PATH"] == os.environ["PATH"]           # the submitting process's environment
    assert env.get("SCIPION_DOMAIN") == "pwem"


@pytest.mark.slow
def test_scipion_queue_for_jobs_ignores_a_failed_job(scipion_slurm, tmp_path, monkeypatch):
    """pyworkflow (3.11) polls CHECK_COMMAND until the job is gone and never looks at its exit
    code: a runJob step whose Slurm job FAILED still counts as done. A protocol that sends its
    work through runJob must check what the job was to write. If this test fails, pyworkflow
    has started to propagate failures: update docs/cluster.md.

    pwem's stress test protocol runs ``stress-ng`` through runJob; a stand-in found first on
    PATH (which the protocol and then its job inherit) records its arguments and fails."""
    from pwem.protocols import ProtStress
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    _script(bin_dir / "stress-ng", 'echo "$SLURM_JOB_ID $*" >> %s\nexit 5\n' % calls)
    os.chmod(bin_dir / "stress-ng", 0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ["PATH"]))
    prot = scipion_slurm.project.newProtocol(ProtStress, noCpu=1, timeout=1)
    scipion_slurm.launch(prot, queue_for_jobs=True, wait=True)
    _wait_protocol(scipion_slurm, prot, timeout=60)
    (record,) = scipion_slurm.job_records(prot)
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "5:0")
    job_id, args = _read(calls).split(" ", 1)
    assert job_id == record["JobId"] and "--cpu 1" in args and "--timeout 1s" in args
    assert prot.isFinished(), "pyworkflow now fails the step: %s" % prot.getErrorMessage()


# ------------------------------------------------------------------------ Deep Consensus: array
SCREEN_OPTIONS = ["--box-size", "128", "--models", "1", "--network-size", "small", "--seed", "0",
                  "--min-batches", "50", "--epochs", "1", "--threads", "2"]


def _deepcons_executable(folder, name="xmipp_deep_consensus", before=""):
    """An ``xmipp_deep_consensus`` for the jobs: this interpreter, with this package (after the
    shell lines ``before``)."""
    path = _script(os.path.join(str(folder), name), before + 'exec %s -m xmipp3_deepcons "$@"\n'
                   % shlex.quote(sys.executable))
    os.chmod(path, 0o755)
    return path


def _star_rows(path):
    """[(micrograph, x, y) as written, figure of merit] of a coordinates.star."""
    rows = []
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 4 and not line.startswith(("_", "#", "data_", "loop_")):
            rows.append((tuple(parts[:3]), float(parts[3])))
    return rows


def _submit_array(cluster, run, inputs, deepcons):
    """scripts/slurm_array.sh RUN INPUTS with 2 shards, waiting; returns (the script's
    CompletedProcess, its job ids, {stage: {array task or None: the job's output}})."""
    env = dict(cluster.env, DEEPCONS=deepcons, N="2", THREADS="2", MEMORY="4G",
               TIME="0:30:00", WAIT="1", POLL="1", PARTITION=cluster.partition)
    done = subprocess.run(["bash", ARRAY_SCRIPT, str(run)] + inputs, env=env,
                          capture_output=True, text=True, timeout=600)
    jobs = [int(j) for j in _read(run / "slurm" / "jobs.txt").split()]
    outputs = {}
    for stage, job in zip(("prepare", "fit", "predict", "finish"), jobs):
        for name in os.listdir(run / "slurm"):
            found = re.fullmatch(r"%s-%d(?:_(\d+))?\.out" % (stage, job), name)
            if found:
                outputs.setdefault(stage, {})[found.group(1)] = _read(run / "slurm" / name)
    return done, jobs, outputs


def _prepared(text):
    return re.findall(r"prepared \d+/\d+ (\S+):", text)


@pytest.mark.slow
def test_array_script_continues_and_gives_the_particles_of_one_screen(slurm_cluster, tmp_path):
    """scripts/slurm_array.sh with 2 shards (prepare and predict as 2-task arrays, fit and
    finish as jobs) on generated data. The first submission's second prepare task dies after
    its first micrograph: the chain stops. The same command again continues: only the two
    micrographs not yet prepared are prepared. The result is the candidates, scores and kept
    particles of one `screen` with the same options."""
    from xmipp3_deepcons import synthetic
    data = tmp_path / "data"
    synthetic.make_dataset(str(data), n_micrographs=6, seed=0)
    inputs = ["--micrographs", str(data / "micrographs" / "*.mrc")]
    for picker in sorted(os.listdir(data / "coords")):
        inputs += ["--coordinates", str(data / "coords" / picker)]
    inputs += SCREEN_OPTIONS
    deepcons = _deepcons_executable(tmp_path)
    # shard 2/2 is mic_001, mic_003, mic_005: this one prepares mic_001, then fails
    dies = _deepcons_executable(
        tmp_path, "dies_in_shard_2", 'if [ "$1" = prepare ] && [[ "$*" == *"--shard 2/2"* ]]; '
        'then\n    %s prepare "$2" --micrographs mic_001 --threads 2\n    exit 9\nfi\n'
        % shlex.quote(deepcons))
    run = tmp_path / "array"

    started = time.time()
    done, jobs, outputs = _submit_array(slurm_cluster, run, inputs, dies)
    assert done.returncode == 1 and "did not succeed" in done.stderr, done.stdout + done.stderr
    states = {r["ArrayTaskId"]: (r["JobState"], r["ExitCode"])
              for r in slurm_cluster.jobs(jobs[0])}
    assert states == {"1": ("COMPLETED", "0:0"), "2": ("FAILED", "9:0")}
    for job in jobs[1:]:
        assert {r["JobState"] for r in slurm_cluster.jobs(job)} == {"CANCELLED"}
    assert sorted(_prepared(outputs["prepare"]["1"])) == ["mic_000", "mic_002", "mic_004"]
    assert _prepared(outputs["prepare"]["2"]) == ["mic_001"]

    done, jobs, outputs = _submit_array(slurm_cluster, run, inputs, deepcons)
    array_seconds = time.time() - started
    assert done.returncode == 0, (done.stdout + done.stderr + "".join(
        "--- %s %s\n%s" % (stage, task, text) for stage, tasks in sorted(outputs.items())
        for task, text in sorted(tasks.items(), key=str)))
    records = [r for job in jobs for r in slurm_cluster.jobs(job)]
    assert len(records) == 6                  # 2 prepare tasks, fit, 2 predict tasks, finish
    assert {(r["JobState"], r["ExitCode"]) for r in records} == {("COMPLETED", "0:0")}
    assert _prepared(outputs["prepare"]["1"]) == []        # nothing left in shard 1
    assert sorted(_prepared(outputs["prepare"]["2"])) == ["mic_003", "mic_005"]

    one = tmp_path / "one"
    started = time.time()
    done = subprocess.run([deepcons, "screen"] + inputs + ["-o", str(one)],
                          capture_output=True, text=True, timeout=600)
    screen_seconds = time.time() - started
    assert done.returncode == 0, done.stderr[-3000:]
    print("array script (twice) %.0f s, one screen %.0f s" % (array_seconds, screen_seconds))

    mine, theirs = np.load(run / "candidates.npz"), np.load(one / "candidates.npz")
    assert len(theirs["xy"]) > 500 and 0 < theirs["kept"].sum() < len(theirs["kept"])
    # the default evidence: the shards scored every micrograph with the shipped network too
    from protocol_helpers import scored_by_the_shipped_network
    sharded = RunFolder(str(run))
    assert sharded.settings().picker_evidence == "anchored"
    assert scored_by_the_shipped_network(sharded)
    for key in ("micrograph", "xy", "votes", "duplicate", "kept"):
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    for key in ("score", "network_score"):
        np.testing.assert_allclose(mine[key], theirs[key], atol=1e-5, err_msg=key)
    rows, expected = _star_rows(run / "coordinates.star"), _star_rows(one / "coordinates.star")
    assert len(expected) == theirs["kept"].sum()
    assert [r[0] for r in rows] == [r[0] for r in expected]
    np.testing.assert_allclose([r[1] for r in rows], [r[1] for r in expected], atol=1.1e-5)


# ------------------------------------------------------------------------ Deep Consensus: Scipion
# The protocol's fast settings of tests/test_protocols.py, on the CPU. The form's GPU ids stay
# at their default ("0"): the partition is declared without GPUs, so the jobs ask for none.
# All the micrographs are prepared in one batch and trained on in one pass (extractingBatch and
# trainingBatch 6; 2 and 3 in test_protocols.py): the fewest stage jobs (prepare, fit: the
# pass, fit: the final model, which scores every micrograph for the pickers' evidence, and
# predict), each of which waits for pyworkflow's polling.
DEEPCONS_MICROGRAPHS = 6
# These tests are about the queue: independent witnesses spare every run the shipped network's
# scoring (the default, `anchored`, goes through Slurm shards in the array-script test).
DEEPCONS_FAST = dict(nEpochs=1.0, minBatches=0, nModels=1, toTrainDataSize=1000, randomSeed=11,
                     threshold=0.5, extractingBatch=DEEPCONS_MICROGRAPHS,
                     trainingBatch=DEEPCONS_MICROGRAPHS, numberOfThreads=2, addTrainingData=0,
                     useGpu=False, pickersShareMistakes=False)
DEEPCONS_STAGE = re.compile(r"-m xmipp3_deepcons (prepare|fit|predict|evaluate|finish) ")


def _new_deep_consensus(project, coordinates, label):
    from pyworkflow.object import Pointer
    from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
    prot = project.newProtocol(XmippProtScreenDeepConsensus, objLabel=label, **DEEPCONS_FAST)
    for source in coordinates:
        prot.inputCoordinates.append(Pointer(source, extended="outputCoordinates"))
    return prot


@pytest.fixture(scope="module")
def deepcons_local(scipion_slurm, tmp_path_factory):
    """Generated micrographs and three pickers imported into the test project, and the Deep
    Consensus protocol run on them here, without the queue: what the queued runs must give."""
    from protocol_helpers import (PICKERS, Launcher, import_coordinates, import_micrographs,
                                  make_data)
    started = time.time()
    data = make_data(str(tmp_path_factory.mktemp("deepcons_data")), DEEPCONS_MICROGRAPHS)
    launcher = Launcher(scipion_slurm.project)
    mics = import_micrographs(launcher, data)
    coordinates = [import_coordinates(launcher, data, mics.outputMicrographs, picker)
                   for picker in PICKERS]
    local = launcher.launchProtocol(_new_deep_consensus(scipion_slurm.project, coordinates,
                                                        "deep consensus, local"))
    print("imports and local Deep Consensus: %.0f s (the protocol %.0f s)"
          % (time.time() - started, local.getElapsedTime().total_seconds()))
    return dict(data=data, micrographs=mics.outputMicrographs, coordinates=coordinates,
                prot=local)


def _micrograph_names(micrographs):
    return {m.getObjId(): os.path.basename(m.getFileName()) for m in micrographs}


def _assert_same_outputs(prot, reference):
    """Same scored items (micId, x, y) as the reference run, scores within 1e-5."""
    from protocol_helpers import scored_items
    assert prot.isFinished(), prot.getErrorMessage()
    for name in ("outputCoordinates", "outputParticles"):
        mine, theirs = getattr(prot, name), getattr(reference, name)
        assert mine.isStreamClosed()
        items, expected = scored_items(mine), scored_items(theirs)
        assert len(items) == mine.getSize(), "an item was written twice"
        assert 0 < len(expected) and set(items) == set(expected), name
        keys = sorted(expected)
        np.testing.assert_allclose([items[k] for k in keys], [expected[k] for k in keys],
                                   atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_deep_consensus_protocol_as_one_slurm_job(scipion_slurm, deepcons_local):
    """'Use queue' Yes, 'Use queue for jobs' N: the whole protocol, its stage jobs included,
    runs in one Slurm job and gives the particles of the local run."""
    prot = _new_deep_consensus(scipion_slurm.project, deepcons_local["coordinates"],
                               "deep consensus, one Slurm job")
    scipion_slurm.launch(prot, queue_for_jobs=False, wait=False, memory_mb=4096)
    jobs = [int(j) for j in prot.getJobIds()]
    assert len(jobs) == 1, "the protocol was not submitted: %s" % prot.getErrorMessage()
    (record,) = scipion_slurm.cluster.wait(jobs[0], timeout=500)
    logs = scipion_slurm.path(prot._getLogsPath(str(prot.getObjId())))
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), \
        _read(logs + ".err")[-3000:]
    _wait_protocol(scipion_slurm, prot, timeout=60)
    _assert_same_outputs(prot, deepcons_local["prot"])
    assert [r["JobId"] for r in scipion_slurm.job_records(prot)] == [str(jobs[0])]
    # the stages ran as subprocesses of the protocol, inside that job
    stages = DEEPCONS_STAGE.findall(_read(prot.getLogPaths()[0]))
    assert {"prepare", "fit", "predict"} <= set(stages), stages
    assert _environment(logs + ".env")["SLURM_JOB_ID"] == str(jobs[0])
    print("the protocol %.0f s in its Slurm job" % prot.getElapsedTime().total_seconds())
    # all the protocol's threads; no GPU, though the form lists one (see DEEPCONS_FAST)
    script = _read(logs + ".job")
    assert prot.getGpuList() == [0]
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --gres=gpu:0" in script


@pytest.mark.slow
def test_deep_consensus_template_with_each_stage_a_slurm_job(scipion_slurm, deepcons_local,
                                                              tmp_path):
    """The plugin's workflow template (import micrographs, three coordinate imports, Deep
    Consensus), filled in as Scipion's template launcher does, with the Deep Consensus protocol
    set to 'Use queue' Yes, 'Use queue for jobs' Y in the workflow file: the protocol runs here
    and sends each stage command (prepare, fit, predict) to Slurm as its own job; the particles
    are those of the local run."""
    from protocol_helpers import BOX, PICKERS, SAMPLING
    from xmipp3_deepcons.headless import fill_template, run_workflow
    data = deepcons_local["data"]
    values = {"micrographs": os.path.join(data, "micrographs"), "sampling": SAMPLING,
              "threshold": DEEPCONS_FAST["threshold"], "models": DEEPCONS_FAST["nModels"],
              "train_size": DEEPCONS_FAST["toTrainDataSize"]}
    values.update({"box%d" % (i + 1): BOX for i in range(3)})
    values.update({"picker%d" % (i + 1): os.path.join(data, "pos", picker)
                   for i, picker in enumerate(PICKERS)})
    with open(fill_template("deep_consensus_demo", values)) as f:
        workflow = json.load(f)
    (screen,) = [p for p in workflow if p["object.className"] == "XmippProtScreenDeepConsensus"]
    screen.update(DEEPCONS_FAST, _useQueue=True,
                  _queueParams=json.dumps(scipion_slurm.queue_params(True, 4096)))
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow, indent=1))

    done = run_workflow(scipion_slurm.project, str(path), log=lambda message: None)
    protocols = [p for p, _ in done]
    assert [p.getClassName() for p in protocols] == (
        ["ProtImportMicrographs"] + ["ProtImportCoordinates"] * 3
        + ["XmippProtScreenDeepConsensus"])
    prot, reference = protocols[-1], deepcons_local["prot"]
    assert prot.useQueueForSteps() and prot.getGpuList() == [0]
    # the same form as the local run, but for the inputs and the queue
    for name, value in prot.iterDefinitionAttributes():
        if name != "inputCoordinates":
            assert str(value) == str(getattr(reference, name)), name
    # micrograph ids mean the same micrographs in both projects' imports
    assert (_micrograph_names(protocols[0].outputMicrographs)
            == _micrograph_names(deepcons_local["micrographs"]))
    _assert_same_outputs(prot, reference)

    records = scipion_slurm.job_records(prot)
    assert len(records) >= 3, records
    assert {(r["JobState"], r["ExitCode"]) for r in records} == {("COMPLETED", "0:0")}
    stages = []
    for record in records:
        script = _read(scipion_slurm.path(
            prot._getLogsPath(record["Name"][len("scipion"):] + ".job")))
        stages += DEEPCONS_STAGE.findall(script)
        assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --gres=gpu:0" in script
    assert len(stages) == len(records)
    assert {"prepare", "fit", "predict"} <= set(stages), stages
    print("the protocol %.0f s; stage jobs (seconds in Slurm): %s" % (
        prot.getElapsedTime().total_seconds(), ", ".join(
            "%s %s" % (stage, _job_seconds(record)) for stage, record in zip(stages, records))))


def _job_seconds(record):
    from datetime import datetime
    start, end = (datetime.fromisoformat(record.get(k, "")) if record.get(k) else None
                  for k in ("StartTime", "EndTime"))
    return "%.0f" % (end - start).total_seconds() if start and end else "?"
