"""Deep Consensus on 4 real EMPIAR-10017 micrographs with three real pickers, against references.

usage: python benchmarks/empiar10017.py [--data ../shared/data/empiar10017] [--out bench_out]
                                        [--label NAME] [-- extra screen options]

Prepares the data (MRC + .pos), runs `xmipp_deep_consensus screen` with the default parameters
(plus any options after --), and prints a Markdown table: precision, recall and F1 (match radius
54 px) of each picker, of the union, of the 2-of-3 vote and of the screened particles, with the
ROC-AUC and average precision of the ranking of the union's candidates (vote count vs score),
and the wall time of `screen`.
"""
import argparse
import glob
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xmipp3_deepcons.core.consensus import coordinate_consensus  # noqa: E402
from xmipp3_deepcons.core.metrics import (match_to_reference, precision_recall_f1,  # noqa: E402
                                          ranking_quality)
from xmipp3_deepcons.io.coordinates import read_coordinates  # noqa: E402

PICKERS = ("crYOLO", "topaz", "deepPicker")
BOX, MATCH_RADIUS = 180, 54


def prepare(data, folder):
    if not glob.glob(os.path.join(folder, "micrographs", "*.mrc")):
        subprocess.run([sys.executable, os.path.join(data, "prepare.py"), folder], check=True)
    return folder


def run_screen(prepared, out, extra):
    cmd = [sys.executable, "-m", "xmipp3_deepcons", "screen",
           "--micrographs", os.path.join(prepared, "micrographs", "*.mrc"),
           "--box-size", str(BOX), "-o", out] + extra
    for picker in PICKERS:
        cmd += ["--coordinates", os.path.join(prepared, "coords", picker)]
    started = time.time()
    subprocess.run(cmd, check=True)
    return time.time() - started


def truth_of(prepared, stem):
    return np.loadtxt(os.path.join(prepared, "truth", stem + ".csv"), delimiter=",", skiprows=1)


def evaluate(prepared, screened):
    rows, labels, votes_all, scores_all = {}, [], [], []
    candidates = np.load(os.path.join(screened, "candidates.npz"))
    mic_names = np.array([os.path.splitext(os.path.basename(m))[0] for m in candidates["micrograph"]])
    for mic in sorted(glob.glob(os.path.join(prepared, "micrographs", "*.mrc"))):
        stem = os.path.splitext(os.path.basename(mic))[0]
        truth = truth_of(prepared, stem)
        picks = [read_coordinates(os.path.join(prepared, "coords", p, stem + ".pos")).xy for p in PICKERS]
        vote = coordinate_consensus(picks, 0.1 * BOX)
        kept = read_coordinates(os.path.join(screened, "coordinates", stem + ".pos")).xy
        sets = [(p, xy) for p, xy in zip(PICKERS, picks)]
        sets += [("union", vote.xy), ("2-of-3 vote", vote.xy[vote.votes >= 2]), ("Deep Consensus", kept)]
        for name, xy in sets:
            total = rows.setdefault(name, [0, 0, 0])
            total[0] += int(match_to_reference(xy, truth, MATCH_RADIUS).sum())
            total[1] += len(xy)
            total[2] += len(truth)
        mine = mic_names == stem
        labels.append(match_to_reference(candidates["xy"][mine], truth, MATCH_RADIUS))
        votes_all.append(candidates["votes"][mine])
        # A merged duplicate is never kept, whatever the threshold: it ranks below every kept one.
        scores_all.append(np.where(candidates["duplicate"][mine], candidates["score"][mine] - 1,
                                   candidates["score"][mine]))
    labels, votes_all, scores_all = map(np.concatenate, (labels, votes_all, scores_all))
    return rows, ranking_quality(labels, votes_all), ranking_quality(labels, scores_all)


def table(rows, vote_rank, score_rank, seconds, label):
    lines = ["| input | picks | precision | recall | F1 | ROC-AUC | AP |",
             "|---|---|---|---|---|---|---|"]
    for name, (matched, n, n_truth) in rows.items():
        p, r, f = precision_recall_f1(matched, n, n_truth)
        rank = {"union": vote_rank, "Deep Consensus": score_rank}.get(name)
        extra = f"{rank[0]:.3f} | {rank[1]:.3f}" if rank else " | "
        shown = f"{label}" if name == "Deep Consensus" else name
        lines.append(f"| {shown} | {n} | {p:.3f} | {r:.3f} | {f:.3f} | {extra} |")
    lines.append(f"\nROC-AUC/AP: union row = the union's candidates ranked by vote count; screen "
                 f"row = ranked by score, merged duplicates last. `screen` wall time: {seconds:.0f} s.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "empiar10017"))
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--label", default="Deep Consensus (defaults)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the trained model and scores of a finished run in --out "
                             "(output options such as --classic still apply)")
    parser.add_argument("extra", nargs="*", help="options passed to screen (after --)")
    args = parser.parse_args()
    prepared = prepare(os.path.abspath(args.data), os.path.join(args.out, "empiar10017"))
    screened = os.path.join(args.out, "screen")
    timing = os.path.join(args.out, "screen_seconds.txt")
    if args.reuse and os.path.exists(timing):
        run_screen(prepared, screened, args.extra)  # resumes: only the output step runs again
        seconds = float(open(timing).read())
    else:
        seconds = run_screen(prepared, screened, args.extra)
        with open(timing, "w") as f:
            f.write(f"{seconds:.1f}\n")
    print(table(*evaluate(prepared, screened), seconds, args.label))


if __name__ == "__main__":
    main()
