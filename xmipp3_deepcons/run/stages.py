"""The stages of a run, each a function of a run folder: prepare micrographs, train, finalise
the model (self-training, the pickers' evidence), predict, write the outputs.

Both front ends run exactly these: ``xmipp_deep_consensus screen`` in one process, its stage
subcommands one at a time (``prepare``, ``fit``, ``predict``, ``finish``: job arrays on a
cluster), and the Scipion protocol through ``runJob``. Every stage skips what is already done
with the same inputs, redoes what was made from other inputs, and may be stopped at any time.
"""
import logging
import os
import shutil
import zlib

import numpy as np

from ..constants import DEEP_PARTICLE_SIZE, SELF_TRAINING_MIN_ACCEPTED
from ..errors import InputError, UnusableMicrograph
from ..io.atomic import atomic_path
from . import cascade, schedule
from .folder import (REFERENCE, RunFolder, arrays_digest, continue_or, copy_folder,
                     intact_model, read_json, write_json, write_npz)
from .keep import evidence_model, falls_back, held_out_check

log = logging.getLogger("xmipp3_deepcons")


# ------------------------------------------------------------------------------ prepare
def inputs_key(run, stem, micrograph, settings):
    """What a micrograph's preparation depends on: the bytes of its micrograph, its picks and
    CTF, and the settings that change preprocessing or candidates."""
    with np.load(run.inputs_file(stem)) as data:
        arrays = [data[k] for k in sorted(data.files)]
    return arrays_digest(run.micrograph_digest(stem, micrograph), settings.preparation_key(),
                         *arrays)


def prepare(run, stems, settings=None):
    """Consensus candidates, background negatives and the preprocessed micrograph (and its
    128 px boxes when the run writes particles) of each micrograph."""
    from ..core import consensus
    from ..core.extract import extract_boxes
    from ..core.micrograph import preprocess_micrograph
    from ..core.noise import pick_noise
    from ..io.images import read_micrograph, write_mrc, write_stack
    settings = settings or run.settings()
    files = {e[0]: e[1] for e in run.ledger()}
    labels = run_picker_labels(run, settings)
    for i, stem in enumerate(stems, 1):
        key = inputs_key(run, stem, files[stem], settings)
        stored = run.candidates(stem)
        if stored is not None and str(stored["key"]) == key and run.is_prepared(stem):
            continue
        if stored is not None and str(stored["key"]) != key:
            log.info(f"{stem}: its micrograph, picks or settings changed; preparing it again")
        inputs = run.load_inputs(stem)
        try:
            image = read_micrograph(files[stem])
        except UnusableMicrograph as error:
            skip_micrograph(run, stem, key, str(error), settings.n_pickers)
            continue
        for picks, label in zip(inputs["picks"], labels):
            check_inside(picks, image.shape, f"{label}, micrograph {stem}")
        found = consensus.coordinate_consensus(inputs["picks"],
                                               consensus.merge_radius(settings.box_size,
                                                                      settings.radius))
        # Seeded by the run seed and the micrograph name: the same whatever the arrival order.
        rng = np.random.default_rng([settings.seed, zlib.crc32(stem.encode("utf-8"))])
        negatives = pick_noise(image.shape, found.xy, settings.box_size, len(found), rng)
        ctf = None
        if settings.phase_flip:
            from ..core.ctf import CTFParams
            ctf = CTFParams(*[float(v) for v in inputs["ctf"]])
        image_shape = image.shape
        pre = preprocess_micrograph(image, settings.factor, invert=not settings.inverted,
                                    ctf=ctf, pixel_size=settings.pixel_size, name=files[stem])
        del image
        scores = [s if s is not None else np.full(len(p), np.nan)
                  for s, p in zip(inputs["scores"], inputs["picks"])]
        table = dict(xy=found.xy, votes=found.votes, members=found.members,
                     picker_scores=found.member_values(scores), negatives=negatives,
                     shape=np.array(pre.shape), micrograph_shape=np.array(image_shape), factor=np.array(settings.factor),
                     key=np.array(key))
        os.makedirs(os.path.dirname(run.preprocessed(stem)), exist_ok=True)
        write_mrc(run.preprocessed(stem), pre)
        table.update(run.preprocessed_record(stem))
        if settings.write_particles and len(found.xy):
            boxes = extract_boxes(pre, found.xy / settings.factor, DEEP_PARTICLE_SIZE)
            os.makedirs(os.path.dirname(run.particles(stem)), exist_ok=True)
            write_stack(run.particles(stem), boxes, (settings.pixel_size or 1.0) * settings.factor)
        write_npz(run.candidates_file(stem), **table)   # last: it marks the micrograph done
        by_votes = np.bincount(found.votes, minlength=settings.n_pickers + 1)[1:]
        log.info(f"prepared {i}/{len(stems)} {stem}: {len(found)} candidates (by votes "
                 f"{' '.join(map(str, by_votes))}), {len(negatives)} negatives")


def skip_micrograph(run, stem, key, reason, n_pickers):
    """Record an unusable micrograph as prepared with no candidates: it is never trained on,
    scored or output, and the log names it."""
    log.warning(f"micrograph {stem} is left out: {reason}")
    empty = np.zeros((0, 2))
    write_npz(run.candidates_file(stem), xy=empty, votes=np.zeros(0, int),
              members=np.zeros((0, n_pickers), int), picker_scores=np.zeros((0, n_pickers)),
              negatives=empty,
              shape=np.zeros(2, int), factor=np.array(1.0), key=np.array(key),
              skipped=np.array(reason))


def run_picker_labels(run, settings):
    labels = read_json(run.path("inputs", "pickers.json"))
    return labels or [f"picker {i + 1}" for i in range(settings.n_pickers)]


def check_inside(xy, shape, label):
    """Picks outside the micrograph mean a wrong frame or binning: refuse them (the command
    line checks this before any work; streaming inputs meet it here)."""
    from ..checks import check_picks_inside
    check_picks_inside(xy, shape, label)


# ------------------------------------------------------------------------------ training
def training_state(run, settings, prepared_positives=None):
    """(ledger, {stem: positives} of the prepared, valid finished passes, the first stale
    pass or None). Only reads: a pass that no longer matches the rule (its micrographs
    changed, or the ledger did) is named, and ``discard_stale_training`` removes it.
    ``prepared_positives``: a cache kept by a streaming caller (a prepared micrograph stays
    prepared)."""
    ledger = run.stems()
    positives = {} if prepared_positives is None else prepared_positives
    for stem in ledger:
        if stem not in positives and run.is_prepared(stem):
            positives[stem] = run.positives(stem, settings)
    valid = []
    for recorded in run.passes():
        plan = schedule.next_pass(ledger, positives, valid, settings, run.inputs_closed())
        keys = [run.candidate_key(s) for s in recorded["micrographs"]]
        if (plan.action == schedule.TRAIN and plan.stems == recorded["micrographs"]
                and keys == recorded["keys"]):
            valid.append(recorded)
            continue
        return ledger, positives, valid, recorded["number"]
    return ledger, positives, valid, None


def discard_stale_training(run, settings):
    """The valid finished passes, once the passes that no longer match the rule (and every
    later pass and model) are removed, saying so in the log: the step before training or
    finalising."""
    _, _, valid, stale = training_state(run, settings)
    if stale is not None:     # the passes before it stay valid: ``valid`` holds only those
        log.info(f"training pass {stale} was made from other micrographs or picks than the "
                 "run now has: discarding it, the passes after it and the models made from "
                 "them, and training again from there")
        discard_training_from(run, stale)
    return valid


def discard_training_from(run, number):
    """Remove pass ``number`` and every later pass, and the models made from them."""
    while os.path.exists(run.pass_dir(number)):
        shutil.rmtree(run.pass_dir(number))
        number += 1
    discard_final_model(run)


def discard_final_model(run):
    from .outputs import remove_outputs
    shutil.rmtree(run.model_dir(), ignore_errors=True)
    remove_outputs(run)
    number = 1
    while os.path.exists(run.round_dir(number)):
        shutil.rmtree(run.round_dir(number))
        number += 1


def plan_training(run, settings=None, prepared_positives=None):
    """What training does next (``schedule.Plan``). Without training, the final model waits
    only for the micrographs that the pickers' evidence is fitted on."""
    settings = settings or run.settings()
    ledger, positives, passes, _ = training_state(run, settings, prepared_positives)
    if settings.skip_training:
        needed = schedule.evidence_micrographs(ledger, [], settings)
        if settings.uses_evidence and (
                (not run.inputs_closed() and len(needed) < settings.training_batch)
                or any(s not in positives for s in needed) or not needed):
            return schedule.Plan(schedule.WAIT, reason="the pickers' evidence waits for "
                                                       "its micrographs")
        return schedule.Plan(schedule.FINALIZE, reason="scoring with the given model")
    return schedule.next_pass(ledger, positives, passes, settings, run.inputs_closed())


def train_pass(run, plan, settings=None):
    """Train the pass the plan names, continuing the previous pass (or the start model)."""
    from .boxes import collect_training_boxes
    from ..core.training import train_ensemble
    settings = settings or run.settings()
    passes = discard_stale_training(run, settings)
    if len(passes) >= plan.number:
        return
    if os.path.exists(run.pass_dir(plan.number + 1)):   # made from the pass trained again
        discard_training_from(run, plan.number + 1)
    used = sum(p["positives"] for p in passes)
    budget = settings.train_size - used if settings.train_size >= 0 else -1
    positives, negatives = collect_training_boxes(run, plan.stems, settings.min_votes, budget,
                                                  [settings.seed, plan.number], settings.edge_box)
    from ..checks import check_training_positives
    check_training_positives(len(positives), settings.min_votes)
    log.info(f"training pass {plan.number} on {len(plan.stems)} micrographs: "
             f"{len(positives)} positives and {len(negatives)} background boxes")
    positive_groups = [(positives, 1)] + additional_boxes(run, "positives",
                                                          settings.positive_weight, plan.stems)
    negative_groups = ([(negatives, 1)] + additional_boxes(run, "negatives",
                                                           settings.negative_weight, plan.stems)
                       + precompiled_negatives(settings) + unlabeled_negatives(run, settings,
                                                                               plan.stems))
    init = passes[-1]["dir"] if passes else run.initial_model_dir()
    metadata = dict(model_metadata(settings), micrographs=list(plan.stems),
                    candidate_keys=[run.candidate_key(s) for s in plan.stems],
                    micrograph_positives=int(len(positives)), **{"pass": plan.number})
    manifest = train_ensemble(
        positive_groups, negative_groups, run.pass_dir(plan.number), n_models=settings.models,
        epochs=settings.epochs, min_batches=settings.min_batches,
        learning_rate=settings.learning_rate, l2=settings.l2, auto_stop=settings.auto_stop,
        band=None if init else settings.network_size, seed=settings.seed + plan.number - 1,
        init_model_dir=init, log=log.info, metadata=metadata)
    log.info(f"training pass {plan.number} done: mean validation accuracy "
             f"{manifest['mean_val_accuracy']:.4f}")


def model_metadata(settings):
    """What a model must be used with; ``screen --model`` refuses a mismatch."""
    return {"phase_flip": settings.phase_flip, "inverted_input": settings.inverted,
            "box_size": settings.box_size, "downsample_factor": settings.factor}


def additional_boxes(run, kind, weight, stems):
    """Extra training boxes the front end put in ``additional/``: ``<kind>_*.npy`` boxes, and
    ``<kind>_coordinates.npz`` centres by micrograph name, boxed on this pass's micrographs."""
    from ..core.extract import extract_boxes
    from ..io.images import read_micrograph
    folder, groups = run.path("additional"), []
    if not os.path.isdir(folder):
        return groups
    for name in sorted(os.listdir(folder)):
        if name.startswith(kind + "_") and name.endswith(".npy"):
            boxes = np.load(os.path.join(folder, name))
            groups.append((boxes, weight))
            log.info(f"additional {kind[:-1]} particles: {len(boxes)} from {name} (weight "
                     f"{weight:g})")
    coordinates = os.path.join(folder, kind + "_coordinates.npz")
    if os.path.exists(coordinates):
        names = {e[0]: e[3] for e in run.ledger()}
        boxes = []
        with np.load(coordinates) as data:
            index = {str(n): f"mic_{i}" for i, n in enumerate(data["names"])}
            for stem in stems:
                key = index.get(names[stem])
                if key is not None:
                    factor = float(run.candidates(stem)["factor"])
                    boxes.append(extract_boxes(read_micrograph(run.preprocessed(stem)),
                                               data[key] / factor, DEEP_PARTICLE_SIZE))
        if boxes:
            boxes = np.concatenate(boxes)
            groups.append((boxes, weight))
            log.info(f"additional {kind[:-1]} coordinates on these micrographs: {len(boxes)} "
                     f"(weight {weight:g})")
    return groups


def precompiled_negatives(settings):
    """The shipped negatives for this preprocessing, weighted as the run's own (as the
    original's 'Precompiled' additional data)."""
    if not settings.precompiled_negatives:
        return []
    from .. import resources
    path = resources.negatives_path(settings.phase_flip)
    if path is None:
        log.warning(f"no precompiled negatives are installed in {resources.models_dir()}: "
                    "training without them")
        return []
    boxes = resources.load_negatives(path)
    log.info(f"precompiled negatives: {len(boxes)} boxes from {path} (weight 1)")
    return [(boxes, 1)]


def unlabeled_negatives(run, settings, stems):
    """The candidates too few pickers found: unlabeled, mostly junk, harder than background."""
    if not settings.unlabeled_negatives:
        return []
    from .boxes import unlabeled_boxes
    boxes = unlabeled_boxes(run, stems, settings.min_votes, settings.edge_box)
    what = " and candidates whose box leaves the micrograph" if settings.edge_box else ""
    log.info(f"unlabeled candidates{what} as negatives: {len(boxes)} boxes (weight 1)")
    return [(boxes, 1)]


def train(run, settings=None):
    """All of training, for a run whose inputs are closed: every pass the rule gives, then
    the final model. Returns False when it must wait for more micrographs (streaming)."""
    settings = settings or run.settings()
    while True:
        plan = plan_training(run, settings)
        if plan.action == schedule.WAIT:
            if run.inputs_closed():
                raise InputError(f"training cannot start: {plan.reason}; prepare every "
                                 f"micrograph first ({continue_or('prepare')}), and check the "
                                 "coordinates")
            log.info(f"training waits: {plan.reason}")
            return False
        if plan.action == schedule.FINALIZE:
            finalize(run, plan.reason, settings)
            return True
        train_pass(run, plan, settings)


# ------------------------------------------------------------------------------ final model
def finalize(run, reason="", settings=None):
    """The final model (the last pass after self-training, or the given model), and the
    pickers' evidence fitted with it."""
    settings = settings or run.settings()
    if not settings.skip_training:
        passes = discard_stale_training(run, settings)
        if not passes:
            raise InputError("no training pass finished: nothing to finalise")
        source = self_train(run, passes, settings)
        origin = {"source": os.path.relpath(source, run.root),
                  "source_key": run.model_key(source)}
    else:
        source = run.initial_model_dir()
        origin = {"source": settings.start_model, "source_key": run.model_key(source)}
    damaged = os.path.isdir(run.model_dir()) and not intact_model(run.model_dir())
    if damaged:
        log.warning(f"{run.model_dir()} is damaged (a network file does not match its "
                    f"checksum); making it again from {origin['source']}")
    if damaged or read_json(os.path.join(run.model_dir(), "origin.json")) != origin:
        if reason:
            log.info(f"training ends: {reason}")
        copy_folder(source, run.model_dir())
        write_json(os.path.join(run.model_dir(), "origin.json"), origin)
        log.info(f"final model: {origin['source']}")
    fit_picker_evidence(run, settings)
    if cascade.applies(settings):   # before any shard scores: one margin for all
        cascade.margins(run, settings, margin_micrographs(run, settings),
                        cascade.Models(run, settings))


def self_train(run, passes, settings):
    """Continue the last pass on its own confident answers on the training micrographs, round
    after round; returns the last round's folder. Network scores, not the combined ones:
    labels learnt from the pickers' evidence would count that evidence twice."""
    from ..core.ensemble import Ensemble
    from .boxes import score_candidates, self_training_boxes
    from ..core.training import train_ensemble
    source = passes[-1]["dir"]
    stems = [s for p in passes for s in p["micrographs"]]
    for number in range(1, settings.self_training + 1):
        target = run.round_dir(number)
        manifest = read_json(os.path.join(target, "manifest.json"))
        if manifest is None or manifest.get("extra", {}).get("source_key") != run.model_key(source):
            ensemble = Ensemble.load(source, settings.views)
            scores = [(s, score_candidates(run, s, ensemble)) for s in stems]
            positives, rejected, background = self_training_boxes(run, scores,
                                                                  settings.dedupe_radius_px)
            if 0 <= settings.train_size < len(positives):
                pick = np.random.default_rng([settings.seed, 1000 + number]).choice(
                    len(positives), settings.train_size, replace=False)
                positives = positives[np.sort(pick)]
            if len(positives) < SELF_TRAINING_MIN_ACCEPTED:
                log.info(f"self-training round {number}: only {len(positives)} confident "
                         f"acceptances (< {SELF_TRAINING_MIN_ACCEPTED}), keeping the model")
                break
            log.info(f"self-training round {number} on {len(stems)} micrographs: "
                     f"{len(positives)} confident acceptances, {len(rejected)} confident "
                     f"rejections, {len(background)} background boxes")
            train_ensemble([(positives, 1)], [(background, 1), (rejected, 1)], target,
                           n_models=settings.models, epochs=settings.epochs,
                           min_batches=settings.min_batches,
                           learning_rate=settings.learning_rate, l2=settings.l2,
                           auto_stop=settings.auto_stop, seed=settings.seed + 1000 * number,
                           init_model_dir=source, log=log.info,
                           metadata=dict(model_metadata(settings), self_training_round=number,
                                         source_key=run.model_key(source)),
                           min_positives=SELF_TRAINING_MIN_ACCEPTED)
        source = target
    return source


def fit_picker_evidence(run, settings=None):
    """Fit the pickers' evidence on the training micrographs (without training, on the first
    training batch of the ledger), with the final model's scores. Kept in the model folder
    with the keys of those micrographs: a run scoring the same inputs with this model (a
    PreviousRun without training) reuses it, and so keeps exactly what this run kept."""
    settings = settings or run.settings()
    if not settings.uses_evidence:
        if settings.picker_evidence != "none":
            log.info("one picker: the pickers' evidence says nothing; scores are the network's")
        return
    path = run.evidence_file(settings.views)
    current = {s: run.candidate_key(s) for s in run.stems()}
    stored = read_json(path)
    if (stored and stored.get("mode") == settings.picker_evidence
            and stored.get("micrographs")
            and all(current.get(s) == k for s, k in stored["micrographs"].items())):
        return
    stems = schedule.evidence_micrographs(run.stems(), run.passes(), settings)
    missing = [s for s in stems if not run.is_prepared(s)]
    if missing:
        raise InputError(f"the pickers' evidence needs micrograph {missing[0]} prepared first")
    tables = [run.candidates(s) for s in stems]
    if cascade.applies(settings):
        # fitted on a sample of their candidates, each network in the first view (the same
        # sample whatever the cascade scores later; docs/measurements.md)
        chosen, looks = cascade.sampled_looks(run, stems, settings)
        tables = [cascade.some_candidates(t, chosen[s]) for s, t in zip(stems, tables)]
        network = looks[cascade.NETWORK][cascade.FIT]
        reference = looks[REFERENCE][cascade.FIT] if settings.uses_reference else None
    else:
        predict(run, stems, settings)
        network = [run.network_scores(s, settings.views) for s in stems]
        reference = ([run.network_scores(s, settings.views, REFERENCE) for s in stems]
                     if settings.uses_reference else None)
    evidence = evidence_model(settings.picker_evidence, tables, network, settings.n_pickers,
                                  reference)
    evidence["micrographs"] = {s: current[s] for s in stems}
    model = evidence["model"]
    log.info(f"pickers' evidence ({settings.picker_evidence}) fitted on {len(stems)} "
             f"micrographs ({sum(len(t['xy']) for t in tables)} candidates): share of "
             f"particles {model['prior']:.3f}")
    evidence["check"] = check = held_out_check(settings.picker_evidence, tables, network,
                                               settings.n_pickers, reference)
    if check is None:
        log.info("the check against the vote count needs 3 pickers and 2 training micrographs")
    else:
        verdict = (f"held-out check on {check['held_out_micrographs']} micrographs, each picker "
                   f"in turn the label: ROC-AUC {check['combined']:.3f} combined, "
                   f"{check['votes']:.3f} by vote count, {check['within_votes']:.3f} combined "
                   "within a vote count")
        evidence["fallback"] = falls_back(check)
        if evidence["fallback"]:
            log.warning(f"the combined score ranks worse than the pickers' vote count ({verdict});"
                        " scoring by the vote count, the network's score breaking ties")
        else:
            log.info(verdict)
    write_json(path, evidence)


# ------------------------------------------------------------------------------ scoring
def predict(run, stems, settings=None, source="final"):
    """The network score of every candidate of these micrographs, with the final model (or
    ``source``: a training pass's folder relative to the run, for preliminary outputs); with
    ``--picker-evidence anchored`` the shipped network's scores too."""
    from ..core.ensemble import Ensemble
    from .boxes import score_candidates
    settings = settings or run.settings()
    if source == "final" and cascade.applies(settings):
        return predict_by_cascade(run, stems, settings)
    sources = [source] + ([REFERENCE] if source == "final" and settings.uses_reference else [])
    views = f"{settings.views} view" + ("s" if settings.views > 1 else "")
    for current in sources:
        # scores a cascade decided (for other settings) are not whole scores: scored anew
        todo = [s for s in stems if run.network_scores(s, settings.views, current) is None
                or run.scores_context(s, settings.views, current) is not None]
        if not todo:
            continue
        ensemble = Ensemble.load(run.source_model(current), settings.views)
        by = " by the shipped network" if current == REFERENCE else ""
        for i, stem in enumerate(todo, 1):
            require_prepared(run, stem)
            scores = score_candidates(run, stem, ensemble)
            run.write_network_scores(stem, settings.views, scores, current)
            log.info(f"scored {i}/{len(todo)} {stem}{by} ({views} each): {len(scores)} "
                     f"candidates, {int((scores > 0.5).sum())} with network score above 0.5")


def require_prepared(run, stem):
    """Scoring needs the micrograph's candidates: refused in one line that says how."""
    if not run.is_prepared(stem):
        raise InputError(f"micrograph {stem} is not prepared; prepare it first "
                         f"({continue_or('prepare')})")


def predict_by_cascade(run, stems, settings):
    """``predict`` spending the ensemble only where the decision is open (``run/cascade.py``):
    micrographs scored for another threshold or evidence are decided again from the looks
    already taken. Returns {source: network evaluations per candidate} of what it scored."""
    evidence = run.evidence(settings.views) if settings.uses_evidence else None
    models = cascade.Models(run, settings)
    where = cascade.context(settings, evidence,
                            cascade.margins(run, settings, margin_micrographs(run, settings),
                                            models))
    todo = [s for s in stems if any(
        run.network_scores(s, settings.views, current) is None
        or run.scores_context(s, settings.views, current) != where
        for current in models.sources())]
    for stem in todo:
        require_prepared(run, stem)
    return cascade.score(run, todo, settings, evidence) if todo else {}


def margin_micrographs(run, settings):
    """Where the cascade measures its margins: the micrographs the evidence is fitted on."""
    return [s for s in schedule.evidence_micrographs(run.stems(), run.passes(), settings)
            if run.is_prepared(s)]


def evaluate(run, settings=None):
    """Accuracy, ROC-AUC and the best-MCC threshold of the final model on the test sets in
    ``additional/test_true.npy`` and ``test_false.npy``."""
    from ..core.ensemble import Ensemble, evaluate_scores
    settings = settings or run.settings()
    positives = np.load(run.path("additional", "test_true.npy"))
    negatives = np.load(run.path("additional", "test_false.npy"))
    scores = Ensemble.load(run.model_dir(), settings.views).score(
        np.concatenate([positives, negatives]))
    labels = np.r_[np.ones(len(positives), int), np.zeros(len(negatives), int)]
    metrics = evaluate_scores(labels, scores)
    metrics.update(n_positive=int(len(positives)), n_negative=int(len(negatives)))
    with atomic_path(run.path("testPredictions.txt")) as tmp:
        np.savetxt(tmp, np.c_[labels, scores], fmt=["%d", "%.6f"], header="label score")
    write_json(run.path("testing.json"), metrics)
    log.info(f"testing on {len(positives)} particles and {len(negatives)} non-particles: "
             f"accuracy at 0.5 {metrics['accuracy_at_0.5']:.4f}, ROC-AUC "
             f"{metrics['roc_auc']:.4f}; at the best threshold {metrics['best_threshold']:.3f}: "
             f"precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f}, MCC "
             f"{metrics['mcc']:.4f}")
    return metrics


def start_model(run, settings):
    """Copy the model to start from into the run (replicated to every member for a
    one-network pretrained model), so that the run does not depend on it changing."""
    if not settings.start_model or (run.initial_model_dir()
                                    and intact_model(run.initial_model_dir())):
        return
    from .. import resources
    target = run.path("initial_model")
    if settings.replicate_start and not settings.skip_training:
        resources.replicate_model(settings.start_model, target, settings.models)
    else:
        copy_folder(settings.start_model, target)


__all__ = ["RunFolder", "prepare", "plan_training", "train_pass", "train", "finalize",
           "fit_picker_evidence", "predict", "evaluate", "start_model"]
