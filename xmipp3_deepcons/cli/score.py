"""Score particle metadata with a trained model (what the original `--mode score` did).

example:
  xmipp_deep_consensus score --model model/ -i particles.xmd -o scored.xmd

Writes a copy of the input metadata with the score (mean P(particle) of the ensemble) in the
zScoreDeepLearning1 column. With --test-positives and --test-negatives it also reports accuracy,
ROC-AUC and the best-MCC threshold on those labelled sets, into the log and testPredictions.txt.
"""
import os

import numpy as np

from ..constants import DEFAULT_VIEWS, SCORE_LABEL
from ..errors import InputError
from . import common


def add_args(parser):
    parser.add_argument("--model", required=True, metavar="DIR")
    parser.add_argument("-i", "--input", required=True, metavar="XMD")
    parser.add_argument("-o", "--output", required=True, metavar="XMD")
    parser.add_argument("--test-positives", metavar="XMD")
    parser.add_argument("--test-negatives", metavar="XMD")
    common.add_compute_args(parser)
    common.add_views_arg(parser, DEFAULT_VIEWS)


def validate(args):
    """Every option and file, before TensorFlow starts (see ``train.validate``)."""
    from .. import checks
    for name, path in (("-i", args.input), ("--test-positives", args.test_positives),
                       ("--test-negatives", args.test_negatives)):
        if path and os.path.exists(args.output) and os.path.samefile(path, args.output):
            raise InputError(f"-o {args.output} is the {name} file: give another output "
                             "file, inputs are never overwritten")
    if bool(args.test_positives) != bool(args.test_negatives):
        given, missing = (("--test-positives", "--test-negatives") if args.test_positives
                          else ("--test-negatives", "--test-positives"))
        raise InputError(f"{given} needs {missing} too: the test measures how well the model "
                         "tells the two apart; give both, or neither")
    for name, path in (("-i", args.input), ("--test-positives", args.test_positives),
                       ("--test-negatives", args.test_negatives)):
        if path and not os.path.isfile(path):
            raise InputError(f"{name} {path}: no such file")
    checks.check_integer("--threads", args.threads, minimum=0)
    checks.check_gpu(args.gpu)
    from ..resources import verify_model_folder
    if not os.path.isdir(args.model):
        raise InputError(f"--model {args.model}: no such folder; give a trained model's folder")
    verify_model_folder(args.model)


def main(args):
    validate(args)
    from ..core.ensemble import Ensemble, evaluate_scores
    from ..io.metadata import load_images, read_particles_xmd, write_particles_xmd
    out_dir = os.path.dirname(os.path.abspath(args.output))
    logger = common.setup_logging(os.path.join(out_dir, "score.log"))
    common.set_compute(args.threads, args.gpu)
    columns = read_particles_xmd(args.input)      # bad files are refused before TensorFlow
    images = load_images(args.input)
    tests = ([load_images(args.test_positives), load_images(args.test_negatives)]
             if args.test_positives else None)
    ensemble = Ensemble.load(args.model, args.views)
    columns[SCORE_LABEL] = ensemble.score(images)
    write_particles_xmd(args.output, columns)
    logger.info(f"scored {len(columns[SCORE_LABEL])} particles into {args.output}")
    if tests:
        pos, neg = (ensemble.score(boxes) for boxes in tests)
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        scores = np.r_[pos, neg]
        for key, value in evaluate_scores(labels, scores).items():
            logger.info(f"test {key}: {value:.4f}")
        np.savetxt(os.path.join(out_dir, "testPredictions.txt"), np.c_[labels, scores],
                   fmt=["%d", "%.6f"], header="label score")
    return 0
