"""Train a Deep Consensus ensemble on particle metadata (what the original `--mode train` did).

example:
  xmipp_deep_consensus train --positives good.xmd --negatives noise.xmd:1 \\
      --negatives junk.xmd:-1 -o model/

Each --positives/--negatives is an Xmipp .xmd of 128-px particle images, optionally followed by
:WEIGHT (how often its images are drawn relative to the others of the same class; -1 = automatic,
so that a small set counts as much as the large ones). --model continues from a trained model.
"""
import os

from ..constants import DEFAULT_MODELS
from ..errors import InputError
from . import common


def add_args(parser):
    parser.add_argument("--positives", action="append", required=True, metavar="XMD[:WEIGHT]")
    parser.add_argument("--negatives", action="append", required=True, metavar="XMD[:WEIGHT]")
    parser.add_argument("--model", metavar="DIR", help="continue training this model")
    common.add_training_args(parser)
    parser.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")


def parse_weighted(spec):
    path, _, weight = spec.rpartition(":")
    if path and weight.lstrip("-").isdigit():
        return path, int(weight)
    return spec, 1


def load_groups(specs, option):
    from ..io.metadata import load_images
    groups = []
    for spec in specs:
        path, weight = parse_weighted(spec)
        if not os.path.exists(path):
            raise InputError(f"{option} {path}: no such file")
        groups.append((load_images(path), weight))
    return groups


def validate(args):
    """Every option and file, before TensorFlow starts (its start-up takes seconds and prints
    lines that would bury the one line of a refusal)."""
    from .. import checks
    from ..run.request import NETWORK_TRAINING, check_network_training
    check_network_training({name: getattr(args, name) for name in NETWORK_TRAINING})
    checks.check_integer("--threads", args.threads, minimum=0)
    args.seed = checks.check_seed(args.seed)
    checks.check_gpu(args.gpu)
    for option, specs in (("--positives", args.positives), ("--negatives", args.negatives)):
        for spec in specs:
            path = parse_weighted(spec)[0]
            if not os.path.isfile(path):
                raise InputError(f"{option} {path}: no such file")
    if args.model:
        from ..resources import verify_model_folder
        if not os.path.isdir(args.model):
            raise InputError(f"--model {args.model}: no such folder; give a trained model's "
                             "folder to continue training")
        verify_model_folder(args.model)
    inputs = [("--positives", parse_weighted(s)[0]) for s in args.positives] + [
        ("--negatives", parse_weighted(s)[0]) for s in args.negatives] + [("--model", args.model)]
    checks.check_output_folder(args.output, inputs)


def main(args):
    validate(args)
    positives = load_groups(args.positives, "--positives")
    negatives = load_groups(args.negatives, "--negatives")
    from ..constants import MIN_POSITIVES
    n_positives = sum(len(boxes) for boxes, _ in positives)
    if n_positives < MIN_POSITIVES:   # refused here, before TensorFlow starts
        raise InputError(f"--positives: {n_positives} particles, at least {MIN_POSITIVES} are "
                         "needed to train; add particles")
    logger = common.setup_logging(os.path.join(args.output, "train.log"))
    common.set_compute(args.threads, args.gpu)
    seed = common.resolve_seed(args.seed, logger)
    from ..core.training import train_ensemble
    models = args.models if args.models is not None else DEFAULT_MODELS
    report = train_ensemble(positives, negatives, args.output, n_models=models,
                            epochs=args.epochs, min_batches=args.min_batches,
                            learning_rate=args.learning_rate, l2=args.l2,
                            auto_stop=args.auto_stop, band=args.network_size, seed=seed,
                            init_model_dir=args.model, log=logger.info)
    logger.info(f"mean validation accuracy {report['mean_val_accuracy']:.4f}, model in "
                f"{args.output}")
    return 0
