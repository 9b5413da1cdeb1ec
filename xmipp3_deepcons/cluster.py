"""Scipion's ``hosts.conf`` for a Slurm cluster (see docs/cluster.md).

pyworkflow reads one section per host (``localhost`` is the one protocols run from). A queue
system is on when the section has a ``NAME``; pyworkflow then fills ``SUBMIT_TEMPLATE`` with
Python ``%`` formatting (written ``%_(VAR)s`` in the file, ``%%`` for a literal ``%``), writes it
to ``Runs/<run>/logs/<id>.job``, and runs ``SUBMIT_COMMAND``, taking the first number of its
output as the job id. ``CHECK_COMMAND`` is polled until its output is empty or matches
``JOB_DONE_REGEX``. ``QUEUES`` is a JSON object: a partition name to the list of the
parameters the form's queue dialog asks for, each ``[VAR, default, label, help]``; the chosen
values (strings) are available to the template, and ``QUEUES_DEFAULT`` gives values to the
variables the dialog did not set. ``QUEUE_FOR_JOBS`` = ``Y`` keeps the protocol on this machine
and submits each of its ``runJob`` commands as a job.

Variables pyworkflow always provides: JOB_NAME, JOB_QUEUE (the partition), JOB_NODES (MPI
processes), JOB_THREADS, JOB_CORES, JOB_HOURS (72), GPU_COUNT (how many GPU ids the form lists,
even when its 'Use GPU' is No; a queue parameter of that name replaces it), JOB_SCRIPT,
JOB_LOGS (the script's path without ``.job``), JOB_NODEFILE, JOB_COMMAND, SCIPION_PROJECT,
SCIPION_PROTOCOL, PLUGIN_MODULE.
"""
import json
import os

#: one [variable, default, label, help] per field of the queue dialog
SLURM_QUEUE_PARAMS = [
    ["JOB_TIME", "24", "Time limit (hours)",
     "Wall-clock limit of each job; Slurm ends the job when it is reached."],
    ["JOB_MEMORY", "8192", "Memory (MB)",
     "Memory of each job (--mem); the job is ended if it uses more."],
    ["QUEUE_FOR_JOBS", "N", "Use queue for jobs",
     "N: the whole protocol runs as one job. Y: the protocol runs here and each of its "
     "heavy steps (runJob) is sent as its own job, with the resources above."],
]

#: the extra field of a partition without GPUs: a queue parameter overrides pyworkflow's own
#: GPU_COUNT (the number of GPU ids in the form, counted even when 'Use GPU' is No), so jobs
#: there ask for --gres=gpu:0, which Slurm accepts anywhere, instead of a GPU it refuses
SLURM_NO_GPU_PARAM = [
    "GPU_COUNT", "0", "GPUs per job",
    "This partition has no GPUs: each job asks for 0 (--gres=gpu:0) whatever the form's GPU "
    "IDs say. Set 'Use GPU' to No in the form, so that the programs use the CPU."]

#: values for the template's variables when a protocol was launched without them
SLURM_QUEUES_DEFAULT = {"JOB_TIME": "24", "JOB_MEMORY": "8192"}

SLURM_SUBMIT_TEMPLATE = """#!/bin/bash
#SBATCH --job-name=scipion%(JOB_NAME)s
#SBATCH --partition=%(JOB_QUEUE)s
#SBATCH --output=%(JOB_LOGS)s.out
#SBATCH --error=%(JOB_LOGS)s.err
#SBATCH --ntasks=%(JOB_NODES)s
#SBATCH --cpus-per-task=%(JOB_THREADS)s
#SBATCH --mem=%(JOB_MEMORY)s
#SBATCH --time=%(JOB_TIME)s:00:00
#SBATCH --gres=gpu:%(GPU_COUNT)s
#SBATCH --export=ALL
{extra}echo "Scipion %(SCIPION_PROTOCOL)s: Slurm job $SLURM_JOB_ID on $(hostname) in $(pwd), \
$SLURM_CPUS_PER_TASK CPUs, GPUs ${{CUDA_VISIBLE_DEVICES:-none}}"
%(JOB_COMMAND)s"""

#: a job is done when squeue no longer lists it, or lists it in a final state
SLURM_JOB_DONE_REGEX = ("(COMPLETED|FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|BOOT_FAIL|"
                        "DEADLINE|PREEMPTED)")


def slurm_host_section(host="localhost", partitions=("debug",), params=None, defaults=None,
                       command_prefix="", extra_lines=(), mandatory=0, cpu_partitions=(),
                       parallel_command="mpirun -np %(JOB_NODES)d --map-by node %(COMMAND)s"):
    """The text of one hosts.conf section that submits to Slurm.

    partitions: the Slurm partitions offered in the queue dialog (each with ``params``, by
    default SLURM_QUEUE_PARAMS); cpu_partitions: those of them without GPUs (added to
    ``partitions`` if missing), whose dialog also has SLURM_NO_GPU_PARAM, so that their jobs
    ask for no GPU whatever the form's GPU ids; command_prefix: put before sbatch, squeue and
    scancel (e.g. ``SLURM_CONF=/path/slurm.conf `` for a cluster whose configuration is not
    the default); extra_lines: shell lines for the job script before the command (e.g.
    ``module load cuda``); mandatory: 0 never forces the queue, N forces it from N cores on
    (the GUI's check)."""
    params = SLURM_QUEUE_PARAMS if params is None else params
    defaults = dict(SLURM_QUEUES_DEFAULT, **(defaults or {}))
    extra = "".join(line + "\n" for line in extra_lines)
    template = SLURM_SUBMIT_TEMPLATE.format(extra=extra)
    names = list(partitions) + [p for p in cpu_partitions if p not in partitions]
    queues = {name: list(params) + ([SLURM_NO_GPU_PARAM] if name in cpu_partitions else [])
              for name in names}

    def conf(text):
        # the file writes %(VAR)s as %_(VAR)s; indent continuation lines of multi-line values
        return text.replace("%(", "%_(").replace("\n", "\n    ")

    lines = [
        "[%s]" % host,
        "PARALLEL_COMMAND = %s" % conf(parallel_command),
        "NAME = SLURM",
        "MANDATORY = %d" % mandatory,
        "SUBMIT_COMMAND = %ssbatch %s" % (command_prefix, conf("%(JOB_SCRIPT)s")),
        "CANCEL_COMMAND = %sscancel %s" % (command_prefix, conf("%(JOB_ID)s")),
        "CHECK_COMMAND = %ssqueue -h -j %s -o %%%%T" % (command_prefix, conf("%(JOB_ID)s")),
        "JOB_DONE_REGEX = %s" % SLURM_JOB_DONE_REGEX,
        "SUBMIT_TEMPLATE = %s" % conf(template),
        "QUEUES = %s" % json.dumps(queues),
        "QUEUES_DEFAULT = %s" % json.dumps(defaults),
    ]
    for line in template.splitlines():
        if line.lstrip().startswith("##"):
            raise ValueError("a line of the job script may not start with '##' (pyworkflow "
                             "turns it into '#'): %r" % line)
    return "\n".join(lines) + "\n"


def write_slurm_hosts_conf(path, **kwargs):
    """Write a hosts.conf whose only section (``localhost`` unless ``host=``) submits to Slurm;
    arguments as slurm_host_section. Returns the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        f.write(slurm_host_section(**kwargs))
    return path
