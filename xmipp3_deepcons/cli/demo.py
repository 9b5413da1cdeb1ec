"""Run `screen` on a generated dataset with exact truth, and show what it kept.

example:
  xmipp_deep_consensus demo -o demo_run

Writes the synthetic micrographs and three pickers' coordinates to OUTDIR/data, screens them
with the default parameters into OUTDIR/screen, and prints precision, recall and F1 of each
picker, of the 2-of-3 vote and of Deep Consensus against the planted particles.
"""
import glob
import os

import numpy as np


def add_args(parser):
    parser.add_argument("-o", "--output", default="demo_run", metavar="OUTDIR")
    parser.add_argument("--micrographs", type=int, default=6, help="how many to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)


def main(args):
    from .. import synthetic
    from . import screen
    data = os.path.join(args.output, "data")
    if not glob.glob(os.path.join(data, "micrographs", "*.mrc")):
        synthetic.make_dataset(data, n_micrographs=args.micrographs, seed=args.seed)
    pickers = [os.path.join(data, "coords", name) for name, *_ in synthetic.PICKERS]
    argv = ["--micrographs", os.path.join(data, "micrographs", "*.mrc"), "--box-size", "128",
            "--seed", str(args.seed), "--threads", str(args.threads),
            "-o", os.path.join(args.output, "screen")]
    for folder in pickers:
        argv += ["--coordinates", folder]
    parser = _screen_parser()
    screen.main(parser.parse_args(argv))
    print(report(data, kept_coordinates(os.path.join(args.output, "screen", "coordinates")),
                 pickers))
    return 0


def _screen_parser():
    import argparse
    from . import screen
    parser = argparse.ArgumentParser()
    screen.add_args(parser)
    return parser


def kept_coordinates(folder):
    """{micrograph stem: kept centres} from the per-micrograph .pos files of a screen run."""
    from ..io.coordinates import read_coordinates
    return {os.path.splitext(name)[0]: read_coordinates(os.path.join(folder, name)).xy
            for name in os.listdir(folder) if name.endswith(".pos")}


def report(data, kept_by_stem, pickers, box=128, radius=0.25 * 128, label="Deep Consensus"):
    """Markdown table of each input, their 2-of-3 vote and the kept particles ({stem: centres})
    against the references in data/truth; a pick within ``radius`` px of one is a match."""
    from ..core.consensus import coordinate_consensus
    from ..core.metrics import match_to_reference, precision_recall_f1
    from ..io.coordinates import find_coordinate_file, read_coordinates
    rows = {}
    for micrograph in sorted(glob.glob(os.path.join(data, "micrographs", "*.mrc"))):
        stem = os.path.splitext(os.path.basename(micrograph))[0]
        truth = np.loadtxt(os.path.join(data, "truth", stem + ".csv"), delimiter=",", skiprows=1,
                           ndmin=2)
        picks = [read_coordinates(find_coordinate_file(p, stem)).xy for p in pickers]
        votes = coordinate_consensus(picks, 0.1 * box)
        kept = np.asarray(kept_by_stem.get(stem, []), dtype=float).reshape(-1, 2)
        sets = [(os.path.basename(p), xy) for p, xy in zip(pickers, picks)]
        sets += [("2-of-3 vote", votes.xy[votes.votes >= 2]), (label, kept)]
        for name, xy in sets:
            total = rows.setdefault(name, [0, 0, 0])
            total[0] += int(match_to_reference(xy, truth, radius).sum())
            total[1] += len(xy)
            total[2] += len(truth)
    lines = ["| input | picks | precision | recall | F1 |", "|---|---|---|---|---|"]
    for name, (matched, n, n_truth) in rows.items():
        p, r, f = precision_recall_f1(matched, n, n_truth)
        lines.append(f"| {name} | {n} | {p:.3f} | {r:.3f} | {f:.3f} |")
    return "\n".join(lines)
