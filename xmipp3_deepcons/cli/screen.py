"""Screen the picks of several pickers: train on their agreement, score every candidate.

example:
  xmipp_deep_consensus screen --micrographs 'mics/*.mrc' \\
      --coordinates crYOLO/ --coordinates topaz/ --coordinates deepPicker/ \\
      --box-size 180 -o screened/

Each --coordinates folder is one picker and holds one .pos, .star or .box file per micrograph,
named after the micrograph's file stem. Writes OUTDIR/coordinates.star (the kept particles, with
the score as _rlnAutopickFigureOfMerit), OUTDIR/candidates.star (every candidate with its score
and votes, to re-threshold without re-running), OUTDIR/coordinates/<mic>.pos, the trained model,
score_histogram.png, training_curves.png and screen.log. Stopped runs continue where they were
when run again with the same -o.
"""
import argparse
import glob
import json
import os
import time

import numpy as np

from ..constants import (DEFAULT_DEDUPE_RADIUS, DEFAULT_MAX_VAL_ACC, DEFAULT_RADIUS,
                         DEFAULT_THRESHOLD, DEFAULT_TRAIN_SIZE, MIN_POSITIVES,
                         SELF_TRAINING_MIN_ACCEPTED, SELF_TRAINING_NEGATIVE,
                         SELF_TRAINING_POSITIVE, DEFAULT_VIEWS)
from ..errors import InputError
from . import common

EVIDENCE_MODES = ("ranks", "votes", "none")


def add_args(parser):
    g = parser.add_argument_group("inputs")
    g.add_argument("--micrographs", required=True, nargs="+", metavar="GLOB",
                   help="micrograph files (quote the pattern): .mrc, .tif or .jpg/.png")
    g.add_argument("--coordinates", required=True, action="append", metavar="DIR",
                   help="one picker's coordinate folder; give once per picker")
    g.add_argument("--box-size", type=int, required=True,
                   help="particle box in micrograph pixels (at least 128)")
    g.add_argument("--sampling", type=float,
                   help="pixel size of the micrographs in Å (default: from the MRC header)")
    g.add_argument("--picker-sampling", type=float, nargs="+", metavar="A",
                   help="pixel size the coordinates of each picker refer to, in --coordinates "
                        "order, when some picker worked on binned micrographs")
    g.add_argument("--micrographs-inverted", action="store_true",
                   help="the micrographs already show particles white (skip contrast inversion)")
    g.add_argument("--ctf", metavar="STAR",
                   help="RELION micrographs_ctf.star: phase-flip the micrographs with these CTFs")
    g = parser.add_argument_group("consensus and output")
    g.add_argument("--radius", type=float, default=DEFAULT_RADIUS,
                   help="picks closer than this fraction of the box are the same particle "
                        "(default %(default)s)")
    g.add_argument("--min-votes", type=int, default=2,
                   help="pickers that must agree for a candidate to be a training positive "
                        "(default %(default)s)")
    g.add_argument("--dedupe-radius", type=float, default=DEFAULT_DEDUPE_RADIUS,
                   help="kept candidates closer than this fraction of the box are one particle; "
                        "the best scored is kept; 0 turns it off (default %(default)s)")
    g.add_argument("--threshold", type=threshold_value, default=DEFAULT_THRESHOLD,
                   help="keep candidates scoring above this; -1 keeps all; 'auto' takes the "
                        "valley of the score histogram (default %(default)s)")
    g.add_argument("--picker-evidence", choices=EVIDENCE_MODES, default="votes",
                   help="what the score combines with the network's: who picked each "
                        "candidate ('votes', the default), that and each picker's figure of "
                        "merit as a rank within the picker ('ranks'), or nothing ('none')")
    g.add_argument("--no-picker-evidence", dest="picker_evidence", action="store_const",
                   const="none", help="the same as --picker-evidence none")
    g.add_argument("--classic", action="store_true",
                   help="the original method: network score of one view alone, no duplicate "
                        "merging")
    common.add_views_arg(g, None)
    g = parser.add_argument_group("model")
    g.add_argument("--model", metavar="DIR",
                   help="start from this trained model folder (continue training, or score "
                        "with it alone with --skip-training); 'pretrained' takes the model "
                        "shipped with the package for this run's phase flipping (--ctf or not) "
                        "and size (--network-size, else from --train-size)")
    g.add_argument("--skip-training", action="store_true",
                   help="score with --model as it is; one coordinate set is then enough")
    g.add_argument("--precompiled-negatives", action="store_true",
                   help="add the package's precompiled negatives (junk and background boxes) "
                        "to the training negatives, weighted as the run's own (the Scipion "
                        "form's 'Precompiled' additional data)")
    g.add_argument("--unlabeled-negatives", action=argparse.BooleanOptionalAction,
                   default=True,
                   help="train also against the candidates fewer than --min-votes pickers "
                        "found, as negatives weighted like the background ones: unlabeled, but "
                        "mostly junk, and harder than empty background (default: on; "
                        "--no-unlabeled-negatives trains as the original)")
    g.add_argument("--self-training", type=int, default=0, metavar="ROUNDS",
                   help="after scoring, retrain on the run's own confident answers (score >= "
                        f"{SELF_TRAINING_POSITIVE}: positives, <= {SELF_TRAINING_NEGATIVE}: "
                        "negatives, beside the background) and score again, ROUNDS times; a "
                        f"round needs {SELF_TRAINING_MIN_ACCEPTED} confident acceptances, with "
                        "fewer it keeps the model (default %(default)s)")
    g.add_argument("--train-size", type=int, default=DEFAULT_TRAIN_SIZE,
                   help="train on at most this many positives, -1 for all (default %(default)s)")
    g.add_argument("--training-batch", type=int, default=0, metavar="N",
                   help="train in passes of N micrographs, each continuing the last, as the "
                        "original did in streaming (default: one pass over all micrographs)")
    g.add_argument("--max-val-acc", type=float, default=DEFAULT_MAX_VAL_ACC,
                   help="with --training-batch: stop training once the ensemble's mean "
                        "validation accuracy is above this (default %(default)s)")
    common.add_training_args(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR")


def main(args):
    from ..core import pipeline
    os.makedirs(args.output, exist_ok=True)
    logger = common.setup_logging(os.path.join(args.output, "screen.log"))
    common.set_threads(args.threads)
    started = time.time()
    validate(args)
    args.model_arg = args.model
    args.model = resolve_model(args, logger)
    work = pipeline.WorkFolder(os.path.join(args.output, "work"), args.views)
    # A continued run keeps the seed it started with, also when none was given.
    seed = common.resolve_seed(args.seed if args.seed is not None else
                               work.stored_settings().get("seed"), logger)

    micrographs = find_micrographs(args.micrographs)
    pickers = [picker_files(folder) for folder in args.coordinates]
    labels = [f"--coordinates {folder}" for folder in args.coordinates]
    inputs = match_inputs(micrographs, pickers, labels, picker_scales(args), logger)

    settings = pipeline.ScreenSettings(
        box_size=args.box_size, radius=args.radius, min_votes=args.min_votes,
        inverted=args.micrographs_inverted, ctf=read_ctf(args), pixel_size=pixel_size(args, micrographs),
        train_size=args.train_size, seed=seed)
    settings.factor  # validates the box size before any work
    work.check_settings(run_settings(args, settings))
    logger.info(f"{len(inputs)} micrographs, {len(pickers)} pickers, box {args.box_size} px "
                f"(downsampled by {settings.factor:.3f} to 128 px)")

    for i, mic in enumerate(inputs, 1):
        table = pipeline.prepare_micrograph(mic, settings, work, labels)
        votes = np.bincount(table["votes"], minlength=len(pickers) + 1)[1:]
        logger.info(f"prepared {i}/{len(inputs)} {mic.stem}: {len(table['votes'])} candidates "
                    f"(by votes {' '.join(map(str, votes))}), {len(table['negatives'])} negatives")
    stems = [mic.stem for mic in inputs]

    model_dir = args.model if args.skip_training else train(args, settings, work, stems, logger)
    score_all(work, stems, model_dir, logger)
    for number in range(1, args.self_training + 1):
        model_dir = self_training_round(args, settings, work, inputs, number, model_dir, logger)
        score_all(work.for_round(number), stems, model_dir, logger)

    summary = write_outputs(args, work.for_round(args.self_training), inputs, logger)
    logger.info(f"kept {summary['kept']} of {summary['candidates']} candidates above "
                f"{summary['threshold']:g} ({summary['duplicates']} duplicates merged) in "
                f"{time.time() - started:.0f} s")
    return 0


def score_all(work, stems, model_dir, logger):
    from ..core import pipeline
    ensemble = load_ensemble(model_dir, work.views)
    views = f"{work.views} view" + ("s" if work.views > 1 else "")
    for i, stem in enumerate(stems, 1):
        scores = pipeline.score_micrograph(work, stem, ensemble)
        logger.info(f"scored {i}/{len(stems)} {stem} ({views} each): {len(scores)} "
                    f"candidates, {int((scores > 0.5).sum())} with network score above 0.5")


def self_training_round(args, settings, work, inputs, number, model_dir, logger):
    """Continue the model on the previous round's confident answers; returns the new model.

    Confident acceptances of the network (duplicates merged) become the positives, whoever
    picked them; confident rejections join the background as negatives. The network's own
    scores, not the combined ones: labels learnt from the pickers' evidence would count that
    evidence twice once combined with it again (measured on EMPIAR-10017, one network: F1
    0.861 -> 0.825).
    """
    from ..core.pipeline import self_training_boxes
    from ..core.training import train_ensemble
    round_dir = os.path.join(args.output, f"model_round{number}")
    if os.path.exists(os.path.join(round_dir, "manifest.json")):
        logger.info(f"self-training round {number} already trained in {round_dir}")
        return round_dir
    previous = work.for_round(number - 1)
    stems = [mic.stem for mic in inputs]
    positives, negatives, background = self_training_boxes(
        work, [(s, previous.load_scores(s)) for s in stems], args.dedupe_radius * args.box_size)
    if 0 <= args.train_size < len(positives):
        pick = np.random.default_rng([settings.seed, number]).choice(len(positives),
                                                                    args.train_size, False)
        positives = positives[np.sort(pick)]
    if len(positives) < SELF_TRAINING_MIN_ACCEPTED:
        logger.info(f"self-training round {number}: only {len(positives)} confident "
                    f"acceptances (< {SELF_TRAINING_MIN_ACCEPTED}), keeping the previous model")
        return model_dir
    logger.info(f"self-training round {number}: {len(positives)} confident acceptances, "
                f"{len(negatives)} confident rejections and {len(background)} background boxes")
    train_ensemble([(positives, 1)], [(background, 1), (negatives, 1)], round_dir,
                   n_models=args.models, epochs=args.epochs, min_batches=args.min_batches,
                   learning_rate=args.learning_rate, l2=args.l2, auto_stop=args.auto_stop,
                   seed=settings.seed + 1000 * number,
                   init_model_dir=model_dir, log=logger.info, metadata=model_metadata(settings),
                   min_positives=SELF_TRAINING_MIN_ACCEPTED)
    return round_dir


def run_settings(args, settings):
    """What the work folder and the model depend on (output-only options are free to change)."""
    return {"micrographs": args.micrographs, "coordinates": args.coordinates,
            "box_size": args.box_size, "radius": args.radius, "min_votes": args.min_votes,
            "inverted": args.micrographs_inverted, "ctf": args.ctf, "seed": settings.seed,
            "picker_sampling": args.picker_sampling, "model": args.model_arg,
            "precompiled_negatives": args.precompiled_negatives,
            "unlabeled_negatives": args.unlabeled_negatives, "self_training": args.self_training,
            "skip_training": args.skip_training, "train_size": args.train_size,
            "training_batch": args.training_batch, "max_val_acc": args.max_val_acc,
            "epochs": args.epochs, "min_batches": args.min_batches, "models": args.models,
            "learning_rate": args.learning_rate, "l2": args.l2, "auto_stop": args.auto_stop,
            "network_size": args.network_size}


def resolve_model(args, logger):
    """The model folder --model names: a trained model's folder, or 'pretrained' for the shipped
    one of this run's preprocessing and size. Refused when it was trained with the other
    phase-flip setting. A pretrained model to train further becomes --models copies."""
    from .. import resources
    if not args.model:
        return None
    phase_flip = args.ctf is not None
    model = args.model
    if (model == resources.PRETRAINED
            and not os.path.isfile(os.path.join(model, "manifest.json"))):
        size = resources.pretrained_size(args.train_size, args.network_size)
        model = resources.pretrained_model(phase_flip, size)
        if model is None:
            raise InputError(f"--model pretrained: no pretrained {size} model for "
                             f"{'phase-flipped' if phase_flip else 'unflipped'} micrographs is "
                             f"installed in {resources.models_dir()}; regenerate them with "
                             "scripts/train_shipped_models.py or set $DEEPCONS_MODELS")
        logger.info(f"pretrained model: {model}")
        resources.check_phase_flip(model, phase_flip)
        if not args.skip_training and args.models > 1:
            model = resources.replicate_model(model, os.path.join(args.output, "pretrained_start"),
                                              args.models)
        return model
    if not os.path.isdir(model):
        raise InputError(f"--model {model}: no such folder (give a trained model's folder, or "
                         "'pretrained')")
    resources.check_phase_flip(model, phase_flip, "Run with the preprocessing the model was "
                               "trained with (--ctf or not), or use another model, e.g. "
                               "--model pretrained, which matches this run.")
    return model


def threshold_value(text):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'")


def validate(args):
    if args.classic:
        args.picker_evidence, args.dedupe_radius = "none", 0.0
    if args.views is None:
        args.views = 1 if args.classic else DEFAULT_VIEWS
    if args.skip_training and not args.model:
        raise InputError("--skip-training needs --model DIR: a trained model to score with")
    if len(args.coordinates) < 2 and not args.skip_training:
        raise InputError("training needs at least two coordinate sets (--coordinates given "
                         f"{len(args.coordinates)} time); add another picker, or score with an "
                         "existing model: --model DIR --skip-training")
    if args.picker_sampling and len(args.picker_sampling) != len(args.coordinates):
        raise InputError(f"--picker-sampling needs one value per --coordinates "
                         f"({len(args.coordinates)}), got {len(args.picker_sampling)}")
    if not 0 < args.radius < 1:
        raise InputError(f"--radius {args.radius} must be a fraction of the box between 0 and 1")
    if args.min_votes < 1 or (args.min_votes > max(len(args.coordinates), 1)
                              and not args.skip_training):   # it picks training positives
        raise InputError(f"--min-votes {args.min_votes} must be between 1 and the number of "
                         f"pickers ({len(args.coordinates)})")
    if args.self_training < 0:
        raise InputError(f"--self-training {args.self_training} must be 0 (off) or a number "
                         "of rounds")
    if args.self_training and args.skip_training:
        raise InputError("--self-training retrains the model: leave out --skip-training")
    if args.models < 1:
        raise InputError(f"--models {args.models} must be at least 1")
    if args.min_batches < 0:
        raise InputError(f"--min-batches {args.min_batches} must be 0 (off) or positive")
    if args.epochs <= 0:
        raise InputError(f"--epochs {args.epochs} must be positive")


def find_micrographs(patterns):
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern)} |
                   {p for p in patterns if os.path.isfile(p)})
    if not paths:
        raise InputError(f"--micrographs {' '.join(patterns)}: no file matches; quote the "
                         "pattern and check the folder")
    stems = [stem_of(p) for p in paths]
    repeated = {s for s in stems if stems.count(s) > 1}
    if repeated:
        raise InputError(f"--micrographs: several files share the name {sorted(repeated)[0]}; "
                         "coordinates are matched by file name, so names must be unique")
    return paths


def stem_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def picker_files(folder):
    """Coordinate files of one picker folder, by micrograph stem."""
    if not os.path.isdir(folder):
        raise InputError(f"--coordinates {folder}: no such folder")
    from ..io.coordinates import EXTENSIONS, find_coordinate_file
    stems = {os.path.splitext(name)[0] for name in os.listdir(folder)
             if os.path.splitext(name)[1] in EXTENSIONS}
    files = {stem: find_coordinate_file(folder, stem) for stem in sorted(stems)}
    if not files:
        raise InputError(f"--coordinates {folder}: no .pos, .star or .box files in the folder")
    return files


def picker_scales(args):
    if not args.picker_sampling:
        return [1.0] * len(args.coordinates)
    reference = args.sampling or args.picker_sampling[0]
    return [s / reference for s in args.picker_sampling]


def match_inputs(micrographs, pickers, labels, scales, logger):
    from ..core.pipeline import MicrographInput
    from ..io.coordinates import Coordinates, read_coordinates
    stems = {stem_of(p): p for p in micrographs}
    for files, label in zip(pickers, labels):
        matched = set(files) & set(stems)
        if not matched:
            example = next(iter(files))
            raise InputError(f"{label}: none of its {len(files)} coordinate files matches a "
                             f"micrograph name (e.g. {example} vs {next(iter(stems))}); files "
                             f"must be named after the micrographs")
        if len(matched) < len(files):
            logger.info(f"{label}: {len(files) - len(matched)} coordinate files match no "
                        "micrograph and are ignored")
    inputs = []
    for stem, path in stems.items():
        picks = []
        for files, scale in zip(pickers, scales):
            c = read_coordinates(files[stem]) if stem in files else Coordinates.empty()
            picks.append(Coordinates(xy=c.xy * scale, score=c.score) if scale != 1 else c)
        if sum(len(p) for p in picks) == 0:
            logger.info(f"{stem}: no picks from any picker, skipped")
            continue
        inputs.append(MicrographInput(stem=stem, path=path, picks=picks))
    return inputs


def read_ctf(args):
    if not args.ctf:
        return None
    from ..core.ctf import read_ctf_star
    return read_ctf_star(args.ctf)


def pixel_size(args, micrographs):
    if args.sampling:
        return args.sampling
    from ..io.images import read_pixel_size
    size = read_pixel_size(micrographs[0])
    if args.ctf and not size:
        raise InputError("--ctf needs the pixel size: give --sampling (Å/px), the micrograph "
                         "header has none")
    return size


def train(args, settings, work, stems, logger):
    """Train in passes over batches of micrographs, as the original did in streaming: each pass
    continues the previous model on new micrographs, until the positives used reach
    --train-size or the mean validation accuracy exceeds --max-val-acc. Without
    --training-batch a single pass sees every micrograph."""
    import shutil
    from ..core.pipeline import collect_training_boxes
    from ..core.training import train_ensemble
    model_dir = os.path.join(args.output, "model")
    if os.path.exists(os.path.join(model_dir, "manifest.json")):
        logger.info(f"model already trained in {model_dir}, reusing it")
        return model_dir
    per_pass = args.training_batch or len(stems)
    batches = [stems[i:i + per_pass] for i in range(0, len(stems), per_pass)]
    init, used = args.model, 0
    for number, batch in enumerate(batches, 1):
        limit = args.train_size - used if args.train_size >= 0 else -1
        positives, negatives = collect_training_boxes(work, batch, args.min_votes, limit,
                                                      settings.seed)
        if len(positives) < MIN_POSITIVES:
            if init != args.model:   # a later pass too small to train on: keep what we have
                logger.info(f"pass {number}: only {len(positives)} positives, training ends")
                break
            raise InputError(f"too few positives to train: {len(positives)} candidates have at "
                             f"least {args.min_votes} votes, {MIN_POSITIVES} are needed; add "
                             "micrographs, raise --training-batch, lower --min-votes or use "
                             "--model DIR --skip-training")
        pass_dir = model_dir if len(batches) == 1 else os.path.join(args.output, f"model_pass{number}")
        done = os.path.join(pass_dir, "manifest.json")
        if os.path.exists(done):   # a pass finished before the run was stopped
            with open(done) as f:
                manifest = json.load(f)
        else:
            logger.info(f"training pass {number}/{len(batches)} on {len(batch)} micrographs: "
                        f"{len(positives)} positives and {len(negatives)} negatives")
            negative_groups = ([(negatives, 1)] + precompiled_negatives(args, settings, logger)
                               + unlabeled_negatives(args, work, batch, logger))
            manifest = train_ensemble(
                [(positives, 1)], negative_groups, pass_dir, n_models=args.models,
                epochs=args.epochs, min_batches=args.min_batches,
                learning_rate=args.learning_rate, l2=args.l2,
                auto_stop=args.auto_stop, band=args.network_size,
                seed=settings.seed + number - 1, init_model_dir=init, log=logger.info,
                metadata=model_metadata(settings))
        init, used = pass_dir, used + len(positives)
        accuracy = manifest["mean_val_accuracy"]
        if accuracy > args.max_val_acc or 0 <= args.train_size <= used:
            logger.info(f"training done after pass {number}: mean validation accuracy "
                        f"{accuracy:.4f}, {used} positives used")
            break
    if init != model_dir:
        shutil.copytree(init, model_dir, dirs_exist_ok=True)
    return model_dir


def precompiled_negatives(args, settings, logger):
    """The shipped negatives for this preprocessing, weight 1 as in the original (each of its
    boxes as likely to be drawn as each of the run's own negatives)."""
    if not args.precompiled_negatives:
        return []
    from .. import resources
    path = resources.negatives_path(settings.ctf is not None)
    if path is None:
        raise InputError(f"--precompiled-negatives: none installed in {resources.models_dir()}")
    boxes = resources.load_negatives(path)
    logger.info(f"precompiled negatives: {len(boxes)} boxes from {path} (weight 1)")
    return [(boxes, 1)]


def unlabeled_negatives(args, work, stems, logger):
    """With --unlabeled-negatives: the candidates too few pickers found, weight 1."""
    if not args.unlabeled_negatives:
        return []
    from ..core.pipeline import unlabeled_boxes
    boxes = unlabeled_boxes(work, stems, args.min_votes)
    logger.info(f"unlabeled candidates as negatives: {len(boxes)} boxes (weight 1)")
    return [(boxes, 1)]


def model_metadata(settings):
    return {"phase_flip": settings.ctf is not None, "inverted_input": settings.inverted,
            "box_size": settings.box_size, "downsample_factor": settings.factor}


def load_ensemble(model_dir, views=1):
    from ..core.ensemble import Ensemble
    return Ensemble.load(model_dir, views)


def final_scores(args, work, inputs, logger):
    """Per micrograph: the network score, and the score the output uses (the network's, or the
    posterior combining it with the pickers' evidence)."""
    from ..core.evidence import combine_evidence, picker_ranks, presence_ranks
    network = [work.load_scores(mic.stem) for mic in inputs]
    if args.picker_evidence == "none":
        return network, network
    tables = [work.load_candidates(mic.stem) for mic in inputs]
    members = np.concatenate([t["members"] for t in tables])
    ranks = (presence_ranks(members) if args.picker_evidence == "votes" else
             picker_ranks(np.concatenate([t["picker_scores"] for t in tables]), members >= 0))
    posterior = combine_evidence(ranks, np.concatenate(network)).astype(np.float32)
    logger.info("combined the network score with who picked each candidate"
                + (" and how confidently" if args.picker_evidence == "ranks" else ""))
    bounds = np.cumsum([0] + [len(s) for s in network])
    return network, [posterior[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def write_outputs(args, work, inputs, logger):
    from .. import plots
    from ..core.consensus import suppress_duplicates
    from ..core.evidence import suggest_threshold
    from ..io.coordinates import write_coordinates_star, write_pos
    network, final = final_scores(args, work, inputs, logger)
    cat = np.concatenate
    suggested = suggest_threshold(cat(final))
    logger.info(f"suggested threshold (valley of the score histogram): {suggested:.3f}")
    threshold = suggested if args.threshold == "auto" else args.threshold
    pos_dir = os.path.join(args.output, "coordinates")
    os.makedirs(pos_dir, exist_ok=True)
    names, xy, votes, unique, kept = [], [], [], [], []
    for mic, scores in zip(inputs, final):
        table = work.load_candidates(mic.stem)
        is_unique = suppress_duplicates(table["xy"], scores, args.dedupe_radius * args.box_size)
        keep = is_unique & ((scores > threshold) if threshold >= 0 else True)
        write_pos(os.path.join(pos_dir, mic.stem + ".pos"), table["xy"][keep], scores[keep])
        names += [mic.path] * len(scores)
        xy.append(table["xy"])
        votes.append(table["votes"])
        unique.append(is_unique)
        kept.append(keep)
    names, xy, votes, unique, kept = np.array(names), cat(xy), cat(votes), cat(unique), cat(kept)
    score = cat(final)
    write_coordinates_star(os.path.join(args.output, "coordinates.star"), names[kept], xy[kept],
                           score[kept])
    write_coordinates_star(os.path.join(args.output, "candidates.star"), names, xy, score)
    np.savez(os.path.join(args.output, "candidates.npz"), micrograph=names, xy=xy, score=score,
             network_score=cat(network), votes=votes, duplicate=~unique, kept=kept,
             threshold=threshold, suggested_threshold=suggested)
    plots.score_histogram(os.path.join(args.output, "score_histogram.png"), score, threshold,
                          votes=votes)
    model_dir = args.model if args.skip_training else os.path.join(args.output, "model")
    plots.training_curves_from_model(os.path.join(args.output, "training_curves.png"), model_dir)
    return {"kept": int(kept.sum()), "candidates": len(score), "duplicates": int((~unique).sum()),
            "threshold": threshold}
