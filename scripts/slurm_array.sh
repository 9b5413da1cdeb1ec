#!/bin/bash
# Deep Consensus on a Slurm cluster from the command line.
#
# Runs `init` here (it checks the inputs and writes RUN/run.json, in seconds), then submits
#   prepare  a job array of N tasks, task i: --shard i/N  (preprocessing + consensus)
#   fit      one job, after every prepare task succeeded  (training; give it a GPU, see FIT_SBATCH)
#   predict  a job array of N tasks, after fit             (network scores)
#   finish   one job, after every predict task             (coordinates.star, candidates, plots)
# chained with --dependency=afterok; if a job fails, the jobs after it are cancelled
# (--kill-on-invalid-dep). The job ids are written to RUN/slurm/jobs.txt (prepare, fit, predict,
# finish), each job's output to RUN/slurm/<stage>-<job>[_<task>].out.
#
# Usage:
#   scripts/slurm_array.sh RUN [options of `xmipp_deep_consensus screen`, less -o]
# e.g.
#   N=8 THREADS=4 FIT_SBATCH="--gres=gpu:1 --partition=gpu" scripts/slurm_array.sh run1 \
#       --micrographs 'mics/*.mrc' --coordinates crYOLO/ --coordinates topaz/ --box-size 180
#
# Large runs (more micrographs than --train-size positives need): add --training-batch B, B
# micrographs holding a little more than --train-size positives (e.g. 40 for 20000 at 600 per
# micrograph). Without it the one training pass takes every micrograph: fit then holds their
# unlabeled candidates in memory and scores every micrograph itself (docs/cluster.md).
#
# After a failure, run the same command again: init continues the run folder (it refuses other
# training settings), and every stage skips what is already on disk.
#
# Settings (environment variables):
#   DEEPCONS       the xmipp_deep_consensus executable (default: the one on PATH, made absolute)
#   N              micrograph shards = tasks of the prepare and predict arrays (default 4)
#   THREADS        CPUs of each job, passed to the stages as --threads (default 4)
#   INIT_OPTIONS   more init options as one shell-quoted string, e.g. "--micrographs 'm/*.mrc'"
#   PARTITION      partition of every job (default: the cluster's default)
#   TIME           time limit of each job (default 24:00:00)
#   MEMORY         memory of each job (default 16G)
#   SBATCH_EXTRA   more sbatch options for every job, e.g. "--account=cryoem --qos=normal"
#   FIT_SBATCH     more sbatch options for fit only; for a GPU: FIT_SBATCH="--gres=gpu:1"
#   MAX_PARALLEL   at most this many array tasks at once (default: no limit)
#   LOGS           folder of the jobs' output (default RUN/slurm)
#   WAIT           1: stay until finish has ended; exit 0 only if it completed (tests, scripts)
#   POLL           seconds between checks while waiting (default 2)
#   SBATCH         the submit command (default sbatch)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then usage; exit 2; fi

RUN=$1; shift
N=${N:-4}
THREADS=${THREADS:-4}
TIME=${TIME:-24:00:00}
MEMORY=${MEMORY:-16G}
SBATCH=${SBATCH:-sbatch}
LOGS=${LOGS:-$RUN/slurm}
DEEPCONS=${DEEPCONS:-$(command -v xmipp_deep_consensus || true)}
# A GPU for training (uncomment, or set FIT_SBATCH when calling):
# FIT_SBATCH=${FIT_SBATCH:-"--gres=gpu:1"}
FIT_SBATCH=${FIT_SBATCH:-}

if [ -z "$DEEPCONS" ] || ! [ -x "$DEEPCONS" ]; then
    echo "slurm_array.sh: no xmipp_deep_consensus executable (set DEEPCONS)" >&2; exit 2
fi
case "$N" in ''|*[!0-9]*|0) echo "slurm_array.sh: N must be a positive integer" >&2; exit 2;; esac
# the jobs may start in another folder, on another node: absolute paths only
DEEPCONS=$(cd "$(dirname "$DEEPCONS")" && pwd)/$(basename "$DEEPCONS")
mkdir -p "$RUN" "$LOGS"
RUN=$(cd "$RUN" && pwd)
LOGS=$(cd "$LOGS" && pwd)

# init options: the arguments after RUN, then INIT_OPTIONS (quotes kept, globs not expanded)
extra_options=()
eval "extra_options=(${INIT_OPTIONS:-})"
"$DEEPCONS" init "$@" ${extra_options[@]+"${extra_options[@]}"} -o "$RUN"

# the options every job gets (SBATCH_EXTRA and FIT_SBATCH are split on spaces)
read -r -a sbatch_extra <<< "${SBATCH_EXTRA:-}"
read -r -a fit_extra <<< "$FIT_SBATCH"
common=(--parsable --kill-on-invalid-dep=yes --cpus-per-task="$THREADS" --time="$TIME"
        --mem="$MEMORY" --chdir="$RUN")
[ -n "${PARTITION:-}" ] && common+=(--partition="$PARTITION")
common+=(${sbatch_extra[@]+"${sbatch_extra[@]}"})
throttle=${MAX_PARALLEL:+%$MAX_PARALLEL}

q() { printf '%q' "$1"; }
stage="$(q "$DEEPCONS")"
run="$(q "$RUN")"

prepare=$($SBATCH "${common[@]}" --job-name=deepcons-prepare --array="1-$N$throttle" \
    --output="$LOGS/prepare-%A_%a.out" \
    --wrap="$stage prepare $run --shard \$SLURM_ARRAY_TASK_ID/$N --threads $THREADS")
prepare=${prepare%%;*}

fit=$($SBATCH "${common[@]}" ${fit_extra[@]+"${fit_extra[@]}"} --job-name=deepcons-fit \
    --dependency="afterok:$prepare" --output="$LOGS/fit-%j.out" \
    --wrap="$stage fit $run --threads $THREADS")
fit=${fit%%;*}

predict=$($SBATCH "${common[@]}" --job-name=deepcons-predict --array="1-$N$throttle" \
    --dependency="afterok:$fit" --output="$LOGS/predict-%A_%a.out" \
    --wrap="$stage predict $run --shard \$SLURM_ARRAY_TASK_ID/$N --threads $THREADS")
predict=${predict%%;*}

finish_options=("${common[@]}" --job-name=deepcons-finish --dependency="afterok:$predict"
                --output="$LOGS/finish-%j.out")
finish_command="$stage finish $run"
echo "prepare $prepare (array of $N), fit $fit, predict $predict (array of $N); logs in $LOGS"
printf '%s\n' "$prepare" "$fit" "$predict" > "$LOGS/jobs.txt"
finish=$($SBATCH "${finish_options[@]}" --wrap="$finish_command")
finish=${finish%%;*}
echo "$finish" >> "$LOGS/jobs.txt"
if [ "${WAIT:-0}" != 1 ]; then
    echo "finish $finish: when it has ended, the kept particles are in $RUN/coordinates.star"
    exit 0
fi

job_state() {   # from slurmctld while it remembers the job, else from accounting
    local state
    state=$(scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1) || true
    state=${state#JobState=}
    if [ -z "$state" ]; then
        state=$(sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n 1) || true
        state=${state%% *}
    fi
    echo "${state:-UNKNOWN}"
}
while :; do
    state=$(job_state "$finish")
    case "$state" in
        PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|STAGE_OUT)
            sleep "${POLL:-2}";;
        *) break;;
    esac
done
if [ "$state" = COMPLETED ]; then
    echo "finish $finish done: $RUN/coordinates.star"
    exit 0
fi
# a job before it failed (finish was then cancelled), or finish itself failed
echo "finish $finish ended $state: did not succeed; see $LOGS" >&2
exit 1
