"""Deep Consensus on 4 real EMPIAR-10017 micrographs with three real pickers, against references.

usage: python benchmarks/empiar10017.py [--data ../shared/data/empiar10017] [--out bench_out]
                                        [--label NAME] [--reuse] [--ablation]
                                        [--pickers crYOLO,topaz]
                                        [-- extra screen options]

Prepares the data (MRC + .pos), runs `xmipp_deep_consensus screen` with the default parameters
(plus any options after --), and prints a Markdown table: precision, recall and F1 (match radius
54 px) of each picker, of the union, of the 2-of-3 vote and of the screened particles, with the
ROC-AUC and average precision of the ranking of the union's candidates (vote count vs score),
and the wall time of `screen`. --ablation runs every setting of screen_benchmark.ABLATION
instead, one row each.
"""
import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from screen_benchmark import add_arguments, run  # noqa: E402

PICKERS = ("crYOLO", "topaz", "deepPicker")
BOX, MATCH_RADIUS = 180, 54


def prepare(data, folder):
    if not glob.glob(os.path.join(folder, "micrographs", "*.mrc")):
        subprocess.run([sys.executable, os.path.join(data, "prepare.py"), folder], check=True)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--pickers", default=",".join(PICKERS),
                        help="comma-separated subset of the pickers to screen with")
    add_arguments(parser)
    args = parser.parse_args()
    prepared = prepare(os.path.abspath(args.data), os.path.join(args.out, "empiar10017"))
    run(args, prepared, args.pickers.split(","), BOX, MATCH_RADIUS)


if __name__ == "__main__":
    main()
