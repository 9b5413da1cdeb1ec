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
from xmipp3_deepcons.io.coordinates import read_coordinates, write_pos  # noqa: E402

PICKERS = ("crYOLO", "topaz", "deepPicker")
# Pickers run here with a user's settings (shared data README): RELION LoG, Topaz general model.
WEAK_SETS = {"weak3": "relionLoG,topazGeneral,deepPicker", "weak2": "relionLoG,topazGeneral",
             "mixed": "crYOLO,relionLoG,topazGeneral"}
BOX, MATCH_RADIUS = 180, 54


def prepare(data, folder):
    """MRC micrographs, truth, and every picker as coords/<picker>/<mic>.pos: the published
    ones and those run here (RELION LoG, Topaz's general model: coords_here/ as .star)."""
    if not glob.glob(os.path.join(folder, "micrographs", "*.mrc")):
        subprocess.run([sys.executable, os.path.join(data, "prepare.py"), folder], check=True)
    for star in glob.glob(os.path.join(folder, "coords_here", "*", "*.star")):
        picker = os.path.basename(os.path.dirname(star))
        pos = os.path.join(folder, "coords", picker,
                           os.path.splitext(os.path.basename(star))[0] + ".pos")
        if not os.path.exists(pos):
            os.makedirs(os.path.dirname(pos), exist_ok=True)
            picks = read_coordinates(star)
            write_pos(pos, picks.xy, picks.score, score_label="cost")
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--pickers", default=",".join(PICKERS),
                        help="comma-separated pickers to screen with (crYOLO, topaz, "
                             "deepPicker, relionLoG, topazGeneral, topazGeneralAll), or one of "
                             + ", ".join(WEAK_SETS))
    add_arguments(parser)
    args = parser.parse_args()
    prepared = prepare(os.path.abspath(args.data), os.path.join(args.out, "empiar10017"))
    run(args, prepared, WEAK_SETS.get(args.pickers, args.pickers).split(","), BOX, MATCH_RADIUS)


if __name__ == "__main__":
    main()
