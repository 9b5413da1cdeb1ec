"""Many small micrographs through `prepare` and `predict` shard jobs on one run folder, as a
cluster or a microscope stream would run them: throughput and peak memory of each job, and
whether memory stays flat as a job's micrographs grow.

usage: python benchmarks/streaming_shards.py [--out bench_out/streaming] [--micrographs 200]
                                             [--size 512] [--shards 2] [--full-scoring]

It generates the micrographs once (xmipp3_deepcons/synthetic.py: SIZE x SIZE px, a dozen
particles and a few junk each, three pickers), `init`s a run that scores with the shipped small
network (no training; the pickers' evidence fitted on the first 10 micrographs), runs `prepare`
in --shards jobs, `fit` (the evidence and the cascade's margins), then `predict` as jobs of
growing size (the first 10 % of the micrographs, then the next 30 %, then the rest), each a new
process as a job array's task is. Peak memory is each job's own (its resident set's high-water
mark, from wait4). A benchmark, not a test: the default run takes a few minutes.
"""
import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def job(argv):
    """Run one stage job: (wall seconds, peak resident MB)."""
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "xmipp3_deepcons"] + argv,
                               stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(argv[:2])} failed with status {process.returncode}")
    return time.time() - started, usage.ru_maxrss / 1024.0   # Linux: kB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("bench_out", "streaming"))
    parser.add_argument("--micrographs", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--full-scoring", action="store_true")
    args = parser.parse_args()
    from xmipp3_deepcons import synthetic
    from xmipp3_deepcons.run.folder import RunFolder
    data = os.path.join(args.out, f"data_{args.micrographs}x{args.size}")
    if len(glob.glob(os.path.join(data, "micrographs", "*.mrc"))) != args.micrographs:
        synthetic.make_dataset(data, n_micrographs=args.micrographs, seed=11,
                               shape=(args.size, args.size), n_particles=12, n_junk=3)
    run_dir = os.path.join(args.out, "run" + ("_full" if args.full_scoring else ""))
    init = ["init", "--micrographs", os.path.join(data, "micrographs", "*.mrc"),
            "--box-size", "128", "--seed", "1", "-o", run_dir, "--model", "pretrained",
            "--network-size", "small", "--skip-training", "--training-batch", "10"]
    init += ["--full-scoring"] if args.full_scoring else []
    for name, *_ in synthetic.PICKERS:
        init += ["--coordinates", os.path.join(data, "coords", name)]
    job(init)
    rows = []
    for i in range(1, args.shards + 1):
        seconds, peak = job(["prepare", run_dir, "--shard", f"{i}/{args.shards}"])
        rows.append((f"prepare shard {i}/{args.shards}", -(-args.micrographs // args.shards),
                     seconds, peak))
    seconds, peak = job(["fit", run_dir])
    rows.append(("fit (evidence on 10 micrographs, margins)", 10, seconds, peak))
    stems = RunFolder(run_dir).stems()
    cuts = [0, max(1, len(stems) // 10), max(2, 4 * len(stems) // 10), len(stems)]
    log_file = os.path.join(run_dir, "screen.log")
    steady = []
    for start, end in zip(cuts[:-1], cuts[1:]):
        before = os.path.getsize(log_file)
        seconds, peak = job(["predict", run_dir, "--micrographs"] + stems[start:end])
        rows.append((f"predict micrographs {start + 1}-{end}", end - start, seconds, peak))
        with open(log_file) as f:
            f.seek(before)
            steady.append(scoring_seconds(f.read()))
    seconds, peak = job(["finish", run_dir])
    rows.append(("finish (outputs of all)", len(stems), seconds, peak))
    candidates = sum(len(RunFolder(run_dir).candidates(s)["xy"]) for s in stems)
    print(f"{len(stems)} micrographs of {args.size}x{args.size} px, {candidates} candidates, "
          f"{'whole' if args.full_scoring else 'cascade'} scoring\n")
    print("| job | micrographs | wall s | micrographs / s | peak memory MB |")
    print("|---|---|---|---|---|")
    for label, n, seconds, peak in rows:
        print(f"| {label} | {n} | {seconds:.1f} | {n / seconds:.2f} | {peak:.0f} |")
    predicts = [r for r in rows if r[0].startswith("predict")]
    smallest, largest = predicts[0], predicts[-1]
    each = [f"{s:.2f}" if s is not None else "-" for s in steady]
    print(f"\npredict once started (from the log's 'scored' lines, 1 s resolution): "
          f"{' / '.join(each)} s per micrograph in the jobs above; peak memory "
          f"{smallest[3]:.0f} MB with {smallest[1]} micrographs, {largest[3]:.0f} MB with "
          f"{largest[1]} (ratio {largest[3] / smallest[3]:.2f})")


def scoring_seconds(log_text):
    """Seconds per micrograph between a job's first and last 'scored i/N' lines."""
    import re
    stamps = [sum(int(v) * f for v, f in zip(m.group(1).split(":"), (3600, 60, 1)))
              for m in re.finditer(r"^(\d\d:\d\d:\d\d) scored \d+/\d+", log_text, re.M)]
    if len(stamps) < 2:
        return None
    return ((stamps[-1] - stamps[0]) % 86400) / (len(stamps) - 1)


if __name__ == "__main__":
    main()
