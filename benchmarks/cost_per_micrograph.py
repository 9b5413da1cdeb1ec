"""What `screen` and `predict` cost per micrograph, before and after, side by side in one run,
on EMPIAR-10017 (4 micrographs, 3 real pickers) and on the demo dataset.

usage: python benchmarks/cost_per_micrograph.py [--out bench_out/cost] [--datasets empiar,demo]
                                                [--data ../shared/data/empiar10017]
                                                [--before CHECKOUT] [--pickers weak2]
                                                [--predict-only] [-- extra screen options]

Before is another checkout's code (--before: its root, e.g. `git worktree add /tmp/base
953ff8d`; run with this checkout's Python environment, the other's package first on
PYTHONPATH), after is this checkout; without --before, before is this checkout with
--full-scoring (whole scoring) and after its default (the scoring cascade).

For each dataset it
1. runs the default `screen` twice from scratch, before and after (the order alternates
   between datasets so that the machine's drift falls on both), and times them;
2. scores every micrograph again with each run's own model and evidence (its scores and looks
   removed; `predict` as a shard job runs it), timed: the cost of `predict` per micrograph;
3. counts the network evaluations per candidate (the run's networks, the shipped one) and scores
   the kept particles against the truth: precision, recall, F1, and the ROC-AUC of the
   candidates ranked by score (screen_benchmark.evaluate);
and measures the machine's float32 matrix product (GFLOP/s) and its load average at the start
and the end, so that every time is also given normalised to 200 GFLOP/s (time x measured /
200). --predict-only reuses finished runs in --out (step 2 and 3 only).
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from screen_benchmark import evaluate, run_screen  # noqa: E402
from xmipp3_deepcons.core.metrics import precision_recall_f1  # noqa: E402

NORMAL_GFLOPS = 200.0


def matmul_gflops(n=2048, repeats=5):
    """This machine's float32 matrix product now (best of ``repeats``)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def empiar(args):
    from empiar10017 import BOX, MATCH_RADIUS, PICKERS, WEAK_SETS, prepare
    folder = prepare(args.data, os.path.join(args.out, "empiar10017", "data"))
    pickers = (WEAK_SETS.get(args.pickers, args.pickers).split(",") if args.pickers
               else list(PICKERS))
    return folder, pickers, BOX, MATCH_RADIUS


def demo(args):
    """The demo's dataset (6 generated micrographs, seed 0) laid out as the benchmarks read."""
    from xmipp3_deepcons import synthetic
    root = os.path.join(args.out, "demo")
    data, folder = os.path.join(root, "generated"), os.path.join(root, "data")
    if not glob.glob(os.path.join(data, "micrographs", "*.mrc")):
        synthetic.make_dataset(data, n_micrographs=6, seed=0)
    synthetic.write_pos_folders(data)
    os.makedirs(folder, exist_ok=True)
    for name, source in (("micrographs", "micrographs"), ("coords", "pos"),
                         ("truth", "truth")):
        link = os.path.join(folder, name)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(data, source)), link)
    return folder, [name for name, *_ in synthetic.PICKERS], 128, 0.25 * 128


DATASETS = {"empiar": empiar, "demo": demo}


def evaluations(run_dir, full):
    """Network evaluations per candidate: (the run's networks, the shipped network)."""
    from xmipp3_deepcons.run import cascade
    from xmipp3_deepcons.run.folder import REFERENCE, RunFolder
    run = RunFolder(run_dir)
    settings = run.settings()
    models = cascade.Models(run, settings)
    counts = {}
    for source in models.sources():
        if full:
            ensemble = models[source]
            counts[source] = float(ensemble.n_models * ensemble.views)
            continue
        spent = [cascade.Looks(run, stem, models) for stem in run.stems()]
        total = sum(looks.evaluations(source) * looks.n for looks in spent)
        counts[source] = total / max(1, sum(looks.n for looks in spent))
    return counts.get(cascade.NETWORK, 0.0), counts.get(REFERENCE, 0.0)


def timed_predict(run_dir, stems=None, env=None):
    """`predict` of these micrographs (all by default) again from nothing but the model and
    the evidence, as a job: its wall time."""
    for folder in glob.glob(os.path.join(run_dir, "work", "scores*")) + \
            glob.glob(os.path.join(run_dir, "work", "cascade*")):
        shutil.rmtree(folder)
    started = time.time()
    subprocess.run([sys.executable, "-m", "xmipp3_deepcons", "predict", run_dir]
                   + (["--micrographs"] + stems if stems else []), check=True,
                   stdout=subprocess.DEVNULL, env=env)
    return time.time() - started


def predict_cost(run_dir, env=None):
    """(seconds per micrograph once started: the job on all minus the job on one, over the
    others; the job on all)."""
    from xmipp3_deepcons.run.folder import RunFolder
    stems = RunFolder(run_dir).stems()
    one = timed_predict(run_dir, stems[:1], env)
    every = timed_predict(run_dir, None, env)
    return (every - one) / max(1, len(stems) - 1), every


def modes(args):
    """(label, extra screen options, environment, folder name) of before and after."""
    if not args.before:
        return [("before (--full-scoring)", ["--full-scoring"], None, "full"),
                ("after (cascade)", [], None, "cascade")]
    root = os.path.abspath(args.before)
    if not os.path.isdir(os.path.join(root, "xmipp3_deepcons")):
        sys.exit(f"--before {args.before}: not a checkout of xmipp3_deepcons (no "
                 "xmipp3_deepcons/ folder in it); give the root of one")
    # PYTHONSAFEPATH: `python -m` would otherwise put the working folder (this checkout,
    # when run from its root) before PYTHONPATH
    env = dict(os.environ, PYTHONSAFEPATH="1", PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    check = subprocess.run([sys.executable, "-c", "import xmipp3_deepcons; "
                            "print(xmipp3_deepcons.__file__)"], env=env, capture_output=True,
                           text=True).stdout.strip()
    if not check.startswith(os.path.join(root, "")):
        sys.exit(f"--before {args.before}: its code is not the one imported ({check})")
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return [(f"before ({commit})", [], env, "before"), ("after (this checkout)", [], None,
                                                         "after")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("bench_out", "cost"))
    parser.add_argument("--datasets", default="empiar,demo")
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--predict-only", action="store_true")
    parser.add_argument("--before", help="root of the checkout whose code is 'before'")
    parser.add_argument("--pickers", default=None,
                        help="EMPIAR-10017's pickers (as benchmarks/empiar10017.py --pickers)")
    parser.add_argument("extra", nargs="*", help="options passed to screen (after --)")
    args = parser.parse_args()
    if "--seed" not in args.extra:   # both screens train the same networks
        args.extra += ["--seed", "1"]
    gflops, loads = [matmul_gflops()], [os.getloadavg()]
    rows = []
    for turn, name in enumerate(args.datasets.split(",")):
        prepared, pickers, box, radius = DATASETS[name](args)
        n_micrographs = len(glob.glob(os.path.join(prepared, "micrographs", "*.mrc")))
        found = {}
        for label, options, env, folder in modes(args) if turn % 2 == 0 else modes(args)[::-1]:
            screened = os.path.join(args.out, name, folder)
            screen_s = None
            if not args.predict_only:
                shutil.rmtree(screened, ignore_errors=True)
                screen_s = run_screen(prepared, screened, args.extra + options, pickers, box,
                                      env)
            found[label] = (screened, screen_s, "--full-scoring" in options, env)
        for label, (screened, screen_s, full, env) in found.items():   # predict, side by side
            predict_s, job_s = predict_cost(screened, env)
            subprocess.run([sys.executable, "-m", "xmipp3_deepcons", "finish", screened],
                           check=True, stdout=subprocess.DEVNULL, env=env)
            rows_, _, ranking = evaluate(prepared, screened, pickers, box, radius)
            p, r, f1 = precision_recall_f1(*rows_["Deep Consensus"])
            network, reference = evaluations(screened, full)
            candidates = int(np.load(os.path.join(screened, "candidates.npz"))["xy"].shape[0])
            rows.append((name, label, n_micrographs, candidates, network, reference,
                         predict_s, job_s, screen_s, rows_["Deep Consensus"][1], p, r, f1,
                         ranking[0]))
            print(f"{name} {label}: predict {predict_s:.1f} s per micrograph ({job_s:.1f} s "
                  f"the job on all), screen "
                  f"{screen_s if screen_s is None else round(screen_s, 1)} s, F1 {f1:.3f}",
                  flush=True)
    gflops.append(matmul_gflops())
    loads.append(os.getloadavg())
    speed = float(np.mean(gflops))
    scale = speed / NORMAL_GFLOPS
    print(f"\nfloat32 matrix product: {gflops[0]:.0f} GFLOP/s at the start, {gflops[1]:.0f} at "
          f"the end (times normalised to {NORMAL_GFLOPS:.0f} GFLOP/s: x {scale:.2f}); load "
          f"average (1, 5, 15 min) {' '.join(f'{x:.1f}' for x in loads[0])} at the start, "
          f"{' '.join(f'{x:.1f}' for x in loads[1])} at the end, on {os.cpu_count()} cores\n")
    print("| data | scoring | candidates / micrograph | evaluations per candidate: run's "
          "networks, shipped network | predict s / micrograph (normalised) | predict job on "
          "all, s | screen s / micrograph (normalised) | kept | precision | recall | F1 | "
          "ROC-AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, label, n, candidates, network, reference, predict_s, job_s, screen_s, kept, p,
         r, f1, auc) in rows:
        screen = ("-" if screen_s is None
                  else f"{screen_s / n:.1f} ({screen_s / n * scale:.1f})")
        print(f"| {name} | {label} | {candidates / n:.0f} | {network:.2f}, {reference:.2f} | "
              f"{predict_s:.1f} ({predict_s * scale:.1f}) | {job_s:.0f} | {screen} | {kept} | "
              f"{p:.3f} | {r:.3f} | {f1:.3f} | {auc:.3f} |")
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        before = next(r for r in mine if r[1].startswith("before"))
        after = next(r for r in mine if r[1].startswith("after"))
        ratio = (f", screen {before[8] / after[8]:.2f}x" if before[8] and after[8] else "")
        print(f"\n{name}: predict {before[6] / max(after[6], 1e-9):.2f}x faster per micrograph"
              f" (job {before[7] / after[7]:.2f}x){ratio}; F1 {after[12] - before[12]:+.3f}, "
              f"ROC-AUC {after[13] - before[13]:+.3f}")


if __name__ == "__main__":
    main()
