"""What both screening benchmarks share: run `screen`, score its output against references,
print the tables, and the ablation (one row per setting).

A prepared folder holds micrographs/<mic>.mrc, coords/<picker>/<mic>.pos and truth/<mic>.csv
(x,y reference centres in the micrographs' pixels, x = column, y = row).
"""
import glob
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xmipp3_deepcons.core.consensus import coordinate_consensus  # noqa: E402
from xmipp3_deepcons.core.metrics import (match_to_reference, precision_recall_f1,  # noqa: E402
                                          ranking_quality)
from xmipp3_deepcons.io.coordinates import read_coordinates  # noqa: E402

ABLATION = (  # label, extra screen options
    ("the original's training and outputs (trains)",
     ["--classic", "--no-unlabeled-negatives", "--min-batches", "0", "--epochs", "5"]),
    ("defaults' model, `--classic` outputs (one view)", ["--classic"]),
    ("+ duplicates merged (`--no-picker-evidence --views 1`)",
     ["--no-picker-evidence", "--views", "1"]),
    ("+ who picked (`--views 1`)", ["--views", "1"]),
    ("+ 4 mirror views: defaults", []),
    ("defaults + pickers' figures of merit (`--picker-evidence ranks`)",
     ["--picker-evidence", "ranks"]),
    ("defaults + `--threshold auto`", ["--threshold", "auto"]),
    ("defaults + `--views 8`", ["--views", "8"]),
    ("defaults without unlabeled negatives (trains)", ["--no-unlabeled-negatives"]),
    ("defaults + `--self-training 1` (trains)", ["--self-training", "1"]),
    ("defaults + `--precompiled-negatives` (trains)", ["--precompiled-negatives"]),
)
OUTPUT_ONLY = {"--threshold", "--dedupe-radius", "--classic", "--no-picker-evidence",
               "--picker-evidence", "--views"}   # --views scores again, without training


def run_screen(prepared, out, extra, pickers, box, env=None):
    """`screen` on the prepared folder's micrographs and pickers; returns its wall time.
    ``env``: the environment to run it in (another checkout's code on PYTHONPATH)."""
    cmd = [sys.executable, "-m", "xmipp3_deepcons", "screen",
           "--micrographs", os.path.join(prepared, "micrographs", "*.mrc"),
           "--box-size", str(box), "-o", out] + list(extra)
    for picker in pickers:
        cmd += ["--coordinates", os.path.join(prepared, "coords", picker)]
    started = time.time()
    subprocess.run(cmd, check=True, env=env)
    return time.time() - started


def evaluate(prepared, screened, pickers, box, match_radius, consensus_radius=0.1):
    """Matched, picks and truth counts per input (pickers, union, vote, Deep Consensus), and
    the ranking quality of the union's candidates by votes and by screen score."""
    rows, labels, votes_all, scores_all = {}, [], [], []
    candidates = np.load(os.path.join(screened, "candidates.npz"))
    mic_names = np.array([os.path.splitext(os.path.basename(m))[0]
                          for m in candidates["micrograph"]])
    for mic in sorted(glob.glob(os.path.join(prepared, "micrographs", "*.mrc"))):
        stem = os.path.splitext(os.path.basename(mic))[0]
        truth = np.loadtxt(os.path.join(prepared, "truth", stem + ".csv"), delimiter=",",
                           skiprows=1, ndmin=2)
        picks = [read_coordinates(os.path.join(prepared, "coords", p, stem + ".pos")).xy
                 for p in pickers]
        vote = coordinate_consensus(picks, consensus_radius * box)
        kept = read_coordinates(os.path.join(screened, "coordinates", stem + ".pos")).xy
        sets = list(zip(pickers, picks))
        sets += [("union", vote.xy), (f"2-of-{len(pickers)} vote", vote.xy[vote.votes >= 2]),
                 ("Deep Consensus", kept)]
        for name, xy in sets:
            total = rows.setdefault(name, [0, 0, 0])
            total[0] += int(match_to_reference(xy, truth, match_radius).sum())
            total[1] += len(xy)
            total[2] += len(truth)
        mine = mic_names == stem
        labels.append(match_to_reference(candidates["xy"][mine], truth, match_radius))
        votes_all.append(candidates["votes"][mine])
        # A merged duplicate is never kept, whatever the threshold: it ranks below every kept one.
        scores_all.append(np.where(candidates["duplicate"][mine], candidates["score"][mine] - 1,
                                   candidates["score"][mine]))
    labels, votes_all, scores_all = map(np.concatenate, (labels, votes_all, scores_all))
    return rows, ranking_quality(labels, votes_all), ranking_quality(labels, scores_all)


def timed_screen(prepared, screened, extra, pickers, box, reuse):
    """Run screen; with ``reuse`` and a finished run there, report the time of that run (this
    call only re-applies output options), else store this call's time."""
    timing = screened.rstrip("/") + "_seconds.txt"
    if reuse and os.path.exists(timing):
        run_screen(prepared, screened, extra, pickers, box)
        return float(open(timing).read())
    seconds = run_screen(prepared, screened, extra, pickers, box)
    with open(timing, "w") as f:
        f.write(f"{seconds:.1f}\n")
    return seconds


# ----------------------------------------------------------------------------- ablation

def trains(options):
    """Whether screen options change the trained model (else they re-apply to a finished run)."""
    return any(o.startswith("--") and o not in OUTPUT_ONLY for o in options)


def slug(label):
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def ablation(prepared, out, extra, pickers, box, match_radius):
    """Print one row per ABLATION setting as it finishes: kept, precision, recall, F1, ROC-AUC
    and the wall time of that call."""
    print("| setting | kept | precision | recall | F1 | ROC-AUC | screen s |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for label, options in ABLATION:
        screened = os.path.join(out, "screen_" + slug(label) if trains(options) else "screen")
        seconds = run_screen(prepared, screened, extra + options, pickers, box)
        rows, _, score_rank = evaluate(prepared, screened, pickers, box, match_radius)
        p, r, f = precision_recall_f1(*rows["Deep Consensus"])
        print(f"| {label} | {rows['Deep Consensus'][1]} | {p:.3f} | {r:.3f} | {f:.3f} "
              f"| {score_rank[0]:.3f} | {seconds:.0f} |", flush=True)
    print("\nscreen s: this call's wall time. Output-only settings share screen/, trained by "
          "the first call; a call that finds a finished run in its folder (those, or any "
          "rerun) only re-applies the output options.")


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


def add_arguments(parser):
    """The options both benchmarks take."""
    parser.add_argument("--label", default="Deep Consensus (defaults)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the trained model and scores of a finished run in --out "
                             "(output options such as --classic still apply)")
    parser.add_argument("--ablation", action="store_true",
                        help="run every setting of ABLATION, one row each")
    parser.add_argument("extra", nargs="*", help="options passed to screen (after --)")


def run(args, prepared, pickers, box, match_radius):
    """The ablation, or one `screen` run and its table, as the options ask."""
    if args.ablation:
        ablation(prepared, args.out, args.extra, pickers, box, match_radius)
        return
    screened = os.path.join(args.out, "screen")
    seconds = timed_screen(prepared, screened, args.extra, pickers, box, args.reuse)
    print(table(*evaluate(prepared, screened, pickers, box, match_radius), seconds, args.label))

