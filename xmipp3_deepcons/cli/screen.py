"""Screen the picks of several pickers: train on their agreement, score every candidate.

example:
  xmipp_deep_consensus screen --micrographs 'mics/*.mrc' \\
      --coordinates crYOLO/ --coordinates topaz/ --coordinates deepPicker/ \\
      --box-size 180 -o screened/

Each --coordinates is one picker's output as the picker wrote it: a folder with one .pos, .star,
.box or .cbox file per micrograph named after the micrograph (a suffix such as _autopick is
fine), a RELION autopick job folder, crYOLO's output folder, or Topaz's extract file; add
:score>T to keep only its picks scoring above T (docs/picker-formats.md). Writes
OUTDIR/coordinates.star (the kept particles, with the score as _rlnAutopickFigureOfMerit),
OUTDIR/candidates.star (every candidate with its score and votes, to re-threshold without
re-running), OUTDIR/coordinates/<mic>.pos, the trained model, score_histogram.png,
training_curves.png and screen.log. Stopped runs continue where they were
when run again with the same -o.
"""
import argparse
import glob
import os
import time
from dataclasses import astuple

from ..constants import (DEFAULT_DEDUPE_RADIUS, DEFAULT_MAX_VAL_ACC, DEFAULT_RADIUS,
                         DEFAULT_THRESHOLD, DEFAULT_TRAIN_SIZE, SELF_TRAINING_MIN_ACCEPTED,
                         SELF_TRAINING_NEGATIVE, SELF_TRAINING_POSITIVE)
from .. import checks
from ..errors import FieldError, InputError
from ..io.picker_outputs import open_picker, parse_picker_spec
from ..io import cryosparc
from ..run import stages
from ..run.folder import RunFolder, write_json
from ..run.outputs import write_outputs
from ..run.request import build
from ..run.settings import EVIDENCE_MODES
from . import common



def add_args(parser):
    g = parser.add_argument_group("inputs")
    g.add_argument("--micrographs", required=True, nargs="+", metavar="GLOB",
                   help="micrograph files (quote the pattern): .mrc, .tif or .jpg/.png")
    g.add_argument("--coordinates", required=True, action="append", metavar="PATH",
                   help="one picker's output as it wrote it: a folder of per-micrograph files, "
                        "a RELION autopick job, crYOLO's output folder or Topaz's extract "
                        "file; PATH:score>T keeps its picks scoring above T; give once per "
                        "picker")
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
    g.add_argument("--picker-evidence", choices=EVIDENCE_MODES,
                   help="what the score combines with the network's: who picked each "
                        "candidate, each picker a witness of its own ('votes'), that and each "
                        "picker's figure of merit as a rank within the picker ('ranks'), who "
                        "picked as one answer, for pickers that share their mistakes "
                        "('patterns'), that and who picked read by the shipped network and its "
                        "score, averaged, for a trained network ('anchored': every candidate is "
                        "also scored by the shipped large network), or nothing ('none'); default: 'patterns' when a shipped "
                        "pretrained network scores without training, 'anchored' otherwise")
    g.add_argument("--no-picker-evidence", dest="picker_evidence", action="store_const",
                   const="none", help="the same as --picker-evidence none")
    g.add_argument("--keep-edge-boxes", action="store_true",
                   help="also train on and keep candidates whose box leaves the micrograph "
                        "(by default they are never positives, never kept: none can be "
                        "extracted whole, and a denoiser's border stripes fool every picker)")
    g.add_argument("--classic", action="store_true",
                   help="the original method: network score of one view alone, no duplicate "
                        "merging")
    common.add_views_arg(g, None)
    g.add_argument("--full-scoring", action="store_true",
                   help="score every candidate with every network in every view (and the "
                        "shipped network's too); by default each gets one network's look in "
                        "one view, and the rest only where the decision is still open "
                        "(docs/cluster.md, 'Re-priced with the scoring cascade')")
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
    common.add_training_args(parser, continues=True)
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR")


def main(args):
    started = time.time()
    run, settings, logger = init_run(args)
    try:
        stems = run.stems()
        stages.prepare(run, stems, settings)
        stages.train(run, settings)
        stages.predict(run, stems, settings)
        summary = write_outputs(run, settings)
        if any(cryosparc.is_cs(c) for c in args.coordinates):   # cryoSPARC picks in, .cs out
            cryosparc.write_kept(run, args.coordinates, run.path("particles.cs"), settings,
                                 summary["threshold"])
    finally:
        run.held.release()
    logger.info(f"kept {summary['kept']} of {summary['candidates']} candidates above "
                f"{summary['threshold']:g} ({summary['duplicates']} duplicates merged) in "
                f"{time.time() - started:.0f} s")
    return 0


def init_run(args, whole_run=True):
    """Check every option and input, then start (or continue) the run folder: its settings,
    the micrographs with their picks, the model to start from. Nothing is written, and nothing
    of a previous run in the folder is touched, before every check passed. The folder is then
    held by this process (``run.held``, released when it ends) so that no other run writes
    into it at the same time. ``whole_run``: the run trains next (``screen``), so picks too
    few to train are refused here; ``init`` alone refuses them only where a run in the folder
    would lose its training."""
    validate(args)
    build(run_request(args, args.sampling)).raise_first()     # every number, before the files
    micrographs = find_micrographs(args.micrographs)
    pickers = [open_picker(spec) for spec in args.coordinates]
    labels = [picker.label for picker in pickers]
    check_distinct_pickers(args.coordinates, pickers)
    shapes = {path: micrograph_shape(path) for path in micrographs}
    checks.check_box_size(args.box_size, shapes[micrographs[0]])
    checks.check_box_in_micrographs(args.box_size, shapes)
    ctf = read_ctf(args)
    size = pixel_size(args, micrographs)
    notes = []    # logged once the run folder (and its log) may be written
    inputs = match_inputs(micrographs, pickers, labels, picker_scales(args), notes, ctf,
                          shapes, args.radius * args.box_size)
    check_same_picks(inputs, labels)
    run = RunFolder(args.output)
    built = build(run_request(args, size), run)
    settings = built.raise_first()
    notes += built.notes
    if built.seed_drawn:
        notes.append(f"seed {settings.seed} (pass --seed {settings.seed} to repeat this run)")
    stored = run.settings() if run.has_settings() else None
    has_training = stored is not None and (os.path.isdir(run.path("training"))
                                           or os.path.isdir(run.model_dir()))
    if not args.skip_training and (whole_run or has_training):
        check_can_train(inputs, settings, has_training, shapes)
    # every check passed: from here on the folder is written
    run.held = run.lock()
    try:
        logger = common.setup_logging(os.path.join(args.output, "screen.log"))
        for note in notes:
            logger.info(note)
        run.write_settings(settings)
        common.set_compute(args.threads, args.gpu)
        write_json(run.path("inputs", "pickers.json"), labels)
        for stem, path, picks, scores in inputs:
            run.write_inputs(stem, picks, scores, None if ctf is None else astuple(ctf[stem]))
        run.replace_ledger([(stem, path, i + 1, os.path.basename(path))
                            for i, (stem, path, _, _) in enumerate(inputs)])
        run.close_inputs()
        stages.start_model(run, settings)
    except BaseException:
        run.held.release()
        raise
    logger.info(f"{len(inputs)} micrographs, {len(pickers)} pickers, box {args.box_size} px "
                f"(downsampled by {settings.factor:.3f} to 128 px)")
    return run, settings, logger


def check_can_train(inputs, settings, has_training, shapes=None):
    """The training positives the picks give (``positive_mask``: --min-votes votes, a box
    inside the micrograph of ``shapes``), counted before any work: a run that cannot train is
    refused before it prepares anything, and a finished run asked to continue with fewer
    micrographs keeps its training and model."""
    from ..core.consensus import coordinate_consensus, merge_radius
    from ..run.boxes import positive_mask
    radius = merge_radius(settings.box_size, settings.radius)
    positives = 0
    for _, path, picks, _ in inputs:
        found = coordinate_consensus(picks, radius)
        table = {"xy": found.xy, "votes": found.votes}
        if (shapes or {}).get(path) is not None:
            table["micrograph_shape"] = shapes[path]
        positives += int(positive_mask(table, settings.min_votes, settings.edge_box).sum())
    where = f" of the {len(inputs)} micrographs"
    try:
        checks.check_training_positives(positives, settings.min_votes, where=where)
    except FieldError as error:
        if has_training:
            raise FieldError(error.field, f"{error.text}. The run already in the folder was "
                                          "left as it was", error.named) from None
        raise


def run_request(args, pixel_size):
    """The request (``run.request``) of the options given: each option once, as typed."""
    return {"box_size": args.box_size, "n_pickers": len(args.coordinates),
            "pixel_size": pixel_size, "radius": args.radius, "min_votes": args.min_votes,
            "inverted": args.micrographs_inverted, "phase_flip": args.ctf is not None,
            "seed": args.seed, "model": args.model, "skip_training": args.skip_training,
            "models": args.models, "network_size": args.network_size, "epochs": args.epochs,
            "min_batches": args.min_batches, "learning_rate": args.learning_rate, "l2": args.l2,
            "auto_stop": args.auto_stop, "train_size": args.train_size,
            "training_batch": args.training_batch, "max_val_acc": args.max_val_acc,
            "precompiled_negatives": args.precompiled_negatives,
            "unlabeled_negatives": args.unlabeled_negatives,
            "self_training": args.self_training, "keep_edge_boxes": args.keep_edge_boxes,
            "views": args.views, "threshold": args.threshold,
            "dedupe_radius": args.dedupe_radius, "picker_evidence": args.picker_evidence,
            "full_scoring": args.full_scoring, "classic": args.classic}


def threshold_value(text):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'")


def validate(args):
    """What only the command line has: its compute options, the pickers' pixel sizes and the
    output folder (the run's own parameters are the request's, ``run.request``)."""
    checks.check_integer("--threads", args.threads, minimum=0)
    checks.check_gpu(args.gpu)
    for value in args.picker_sampling or []:
        checks.check_sampling(value, "--picker-sampling")
    if args.picker_sampling and len(args.picker_sampling) != len(args.coordinates):
        raise InputError(f"--picker-sampling needs one value per --coordinates "
                         f"({len(args.coordinates)}), got {len(args.picker_sampling)}")
    checks.check_output_folder(args.output, {"--micrographs": args.micrographs,
                                             "--coordinates": [parse_picker_spec(c).path
                                                               for c in args.coordinates],
                                             "--ctf": args.ctf, "--model": args.model})


def micrograph_shape(path):
    """A micrograph's (rows, columns) from its header, for the checks of the box and of the
    picks before any work; None when it is unusable (it is then skipped, with its own
    warning, when prepared)."""
    from ..errors import UnusableMicrograph
    from ..io.images import read_micrograph_shape
    if not os.access(path, os.R_OK):
        raise InputError(f"--micrographs {path}: cannot be read (permission denied); make it "
                         "readable, or leave it out")
    try:
        return read_micrograph_shape(path)
    except UnusableMicrograph:
        return None


def find_micrographs(patterns):
    for pattern in patterns:
        if os.path.isdir(pattern):
            raise InputError(f"--micrographs {pattern}: is a folder; give the micrograph files, "
                             f"e.g. '{os.path.join(pattern, '*.mrc')}' (quoted)")
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern) if os.path.isfile(p)} |
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


def check_distinct_pickers(specs, pickers):
    """The same picks twice would make every one of them a two-vote positive: the screen
    would then keep everything it was given."""
    real = [os.path.realpath(p.path) for p in pickers]
    for i, picker in enumerate(pickers):
        for j in range(i):
            if real[i] == real[j] and (picker.min_score, picker.inclusive) == (
                    pickers[j].min_score, pickers[j].inclusive):
                raise InputError(f"--coordinates {specs[i]} is given twice (as {specs[j]}); "
                                 "give each picker once")
            if picker.same_as(pickers[j]):
                raise InputError(f"--coordinates {specs[i]} and --coordinates {specs[j]} hold "
                                 "identical coordinate files: they are one picker; give each "
                                 "picker once")


def picker_scales(args):
    if not args.picker_sampling:
        return [1.0] * len(args.coordinates)
    reference = args.sampling or args.picker_sampling[0]
    return [s / reference for s in args.picker_sampling]


def match_inputs(micrographs, pickers, labels, scales, notes, ctf=None, shapes=None,
                 radius=0.0):
    """[(stem, micrograph, picks per picker, their scores)] of the micrographs with picks,
    every file read and checked before any work: picks inside their micrograph (``shapes``),
    one picker's repeated picks (within ``radius`` px) merged, with a note."""
    from ..io.coordinates import Coordinates
    stems = {stem_of(p): p for p in micrographs}
    matches = []
    for picker, label in zip(pickers, labels):
        matched = picker.match(stems)
        notes.append(picker.describe())
        if len(matched) < len(picker.entries):
            notes.append(f"{label}: {len(picker.entries) - len(matched)} of its "
                         f"{picker.what}s match no micrograph and are ignored")
        matches.append(matched)
    inputs, missing = [], {}
    for stem, path in stems.items():
        picks = [picker.read(matched[stem], path) if stem in matched else Coordinates.empty()
                 for picker, matched in zip(pickers, matches)]
        if sum(len(p) for p in picks) == 0:
            notes.append(f"{stem}: no picks from any picker, skipped")
            continue
        for matched, label in zip(matches, labels):
            if stem not in matched:
                missing.setdefault(label, []).append(stem)
        if ctf is not None and stem not in ctf:
            raise InputError(f"--ctf: no CTF for micrograph {stem}; the CTF file must list "
                             "every micrograph (by file name)")
        xy, scores = [], []
        for p, scale, picker, matched, label in zip(picks, scales, pickers, matches, labels):
            where = picker.where(matched[stem]) if stem in matched else label
            if shapes and shapes.get(path) is not None:
                checks.check_picks_inside(p.xy * scale, shapes[path], where)
            merged, kept_scores, repeated = checks.merge_repeated_picks(p.xy * scale, radius,
                                                                        p.score)
            if repeated:
                notes.append("warning: " + checks.repeated_picks_note(where, repeated, len(p),
                                                                      radius))
            xy.append(merged)
            scores.append(kept_scores)
        inputs.append((stem, path, xy, scores))
    for label, without in missing.items():
        notes.append(f"{label}: no coordinate file for {len(without)} micrograph"
                     f"{'s' if len(without) > 1 else ''} ({', '.join(without[:3])}"
                     f"{', ...' if len(without) > 3 else ''}): no picks there from this picker")
    return inputs


def check_same_picks(inputs, labels):
    """Two pickers with the same picks on every micrograph (one picker exported twice, say as
    .pos and .star) would make every pick a two-vote positive: refused."""
    for i in range(len(labels)):
        for j in range(i):
            if all(checks.same_picks(picks[i], picks[j]) for _, _, picks, _ in inputs):
                raise InputError(f"{labels[i]} and {labels[j]} hold the same picks on every "
                                 "micrograph (in other file formats): they are one picker; "
                                 "give each picker once")


def read_ctf(args):
    if not args.ctf:
        return None
    from ..core.ctf import read_ctf_star
    return read_ctf_star(args.ctf)


def pixel_size(args, micrographs):
    if args.sampling:
        return args.sampling
    from ..io.images import read_pixel_size
    size = checks.check_pixel_sizes({path: read_pixel_size(path) for path in micrographs})
    if args.ctf and not size:
        raise InputError("--ctf needs the pixel size: give --sampling (Å/px), the micrograph "
                         "header has none")
    return size


