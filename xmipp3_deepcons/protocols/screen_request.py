"""The Deep Consensus form as a run request (``run.request``), and everything the form cannot
check by itself: the run's parameters by the engine's rules, worded with the form's labels,
and what only the form has (the previous run, the CTF relation, the particle sets)."""
import contextlib
import json
import os

from ..constants import DEEP_PARTICLE_SIZE, VIEW_CHOICES
from ..errors import FieldError, InputError
from ..run import request as run_request


def trains(protocol):
    """Whether the form asks for training (New, or a model trained further)."""
    return not (protocol.modelInitialization.get() != protocol.ADD_MODEL_TRAIN_NEW
                and bool(protocol.skipTraining.get()))


def starting_model(protocol):
    """The request's model: None (New), ``pretrained`` or the previous run's model folder."""
    mode = protocol.modelInitialization.get()
    if mode == protocol.ADD_MODEL_TRAIN_PREVRUN:
        previous = protocol.continueRun.get()
        return None if previous is None else previous._getExtraPath("model")
    if mode == protocol.ADD_MODEL_TRAIN_PRETRAIN:
        return run_request.PRETRAINED
    return None


def form_request(protocol):
    """{field: value} of the form, each as the user gave it; None where the form does not ask
    (a hidden parameter, the seed left at -1)."""
    p = protocol
    coords = p.inputCoordinates[0].get() if len(p.inputCoordinates) else None
    mode = p.modelInitialization.get()
    seed = p.randomSeed.get()
    shows_models = mode == p.ADD_MODEL_TRAIN_NEW or (
        mode == p.ADD_MODEL_TRAIN_PRETRAIN and not p.skipTraining.get())
    return {
        "box_size": coords.getBoxSize() if coords is not None else None,
        "n_pickers": len(p.inputCoordinates),
        "pixel_size": (float(coords.getMicrographs().getSamplingRate())
                       if coords is not None else None),
        "radius": p.consensusRadius.get(), "inverted": bool(p.skipInvert.get()),
        "phase_flip": not p.ignoreCTF.get(), "seed": None if seed == -1 else seed,
        "model": starting_model(p), "models_root": p._deepconsPlugin().getModelsDir(),
        "skip_training": not trains(p), "models": p.nModels.get() if shows_models else None,
        "epochs": p.nEpochs.get(), "min_batches": p.minBatches.get(),
        "learning_rate": p.learningRate.get(), "l2": p.l2RegStrength.get(),
        "auto_stop": bool(p.auto_stopping.get()), "train_size": p.toTrainDataSize.get(),
        "training_batch": p.trainingBatch.get(), "max_val_acc": p.maxValAcc.get(),
        "precompiled_negatives": p.addTrainingData.get() == p.ADD_DATA_TRAIN_PRECOMP,
        "unlabeled_negatives": bool(p.unlabeledNegatives.get()),
        "self_training": p.selfTrainingRounds.get(),
        "positive_weight": p.trainPosWeight.get(), "negative_weight": p.trainNegWeight.get(),
        "write_particles": True, "views": VIEW_CHOICES[p.scoringViews.get()],
        "threshold": p.threshold.get(), "dedupe_radius": p.dedupeRadius.get(),
        "picker_evidence": None if p.pickerEvidence.get() else "none",
        "shared_mistakes": bool(p.pickersShareMistakes.get()),
        "full_scoring": bool(p.fullScoring.get())}


def form_settings(protocol, run):
    """The run's settings from the form (``run``: its folder, whose stored seed a continued run
    keeps); a problem raises ``InputError`` worded with the form's labels."""
    return run_request.build(form_request(protocol), run).raise_first(run_request.labels())


@contextlib.contextmanager
def form_wording():
    """The engine's refusals met in the protocol's own process (``FieldError``), worded with
    the form's labels (its jobs word theirs so too: the plugin's environment)."""
    try:
        yield
    except FieldError as error:
        raise InputError(error.line(run_request.labels())) from None


def form_problems(protocol):
    """Every problem of the form, one line each, with the form's labels."""
    p = protocol
    if len(p.inputCoordinates) == 0:
        return ["Choose the coordinate sets of at least one picker in 'Input coordinates'."]
    own = model_errors(p)
    problems = run_request.build(form_request(p)).problems
    if own:      # the previous run's own words say it better
        problems = [x for x in problems if x.field not in ("model", "skip_training")]
    errors = [x.line(run_request.labels()) for x in problems] + own
    if not p.ignoreCTF.get() and p.ctfRelations.get() is None:
        errors.append("Phase flipping needs the CTFs of the micrographs: choose a CTF "
                      "estimation in 'CTF estimation', or set 'Ignore CTF' to Yes.")
    return errors + particle_errors(p)


def particle_errors(p):
    """The form's particle sets: 128 px, and given where the form asks for them."""
    errors = []
    custom = trains(p) and p.addTrainingData.get() == p.ADD_DATA_TRAIN_CUST
    usesParticles = custom and p.trainingDataType.get() == p.ADD_DATA_TRAIN_CUSTOM_OPT_PARTS
    testing = trains(p) and p.doTesting.get()
    for pointer, label, used in (
            (p.trainTrueSetOfParticles, "Positive train particles", usesParticles),
            (p.trainFalseSetOfParticles, "Negative train particles", usesParticles),
            (p.testTrueSetOfParticles, "Set of positive test particles", testing),
            (p.testFalseSetOfParticles, "Set of negative test particles", testing)):
        particles = pointer.get()
        if used and particles is not None and particles.getXDim() != DEEP_PARTICLE_SIZE:
            errors.append("'%s' has %s px particles; they must be %d px, extracted "
                          "and preprocessed as described in the Preprocess tab."
                          % (label, particles.getXDim(), DEEP_PARTICLE_SIZE))
    if testing and (p.testTrueSetOfParticles.get() is None
                    or p.testFalseSetOfParticles.get() is None):
        errors.append("Testing needs both test sets: choose the positive and the "
                      "negative test particles, or set 'Perform testing' to No.")
    if custom:
        given = ((p.trainTrueSetOfParticles, p.trainFalseSetOfParticles) if usesParticles
                 else (p.trainTrueSetOfCoords, p.trainFalseSetOfCoords))
        if all(x.get() is None for x in given):
            errors.append("Additional training data is Custom but no %s are given: "
                          "choose a positive or a negative set, or set Additional "
                          "training data to None."
                          % ("particles" if usesParticles else "coordinates"))
    return errors


def model_errors(p):
    """The previous run the form points to: chosen, trained, and trained with this run's
    phase flipping where only its settings know (the model's own checks are the request's)."""
    if p.modelInitialization.get() != p.ADD_MODEL_TRAIN_PREVRUN:
        return []
    previous = p.continueRun.get()
    if previous is None:
        return ["Model type is PreviousRun: choose the run whose model is reused in 'Select "
                "previous run'."]
    if not os.path.exists(previous._getExtraPath("model", "manifest.json")):
        return ["The previous run %s has no trained model (it has not finished training): "
                "wait for it to finish, or choose another run or the New model type."
                % previous.getRunName()]
    from .. import resources
    if resources.model_phase_flip(previous._getExtraPath("model")) is not None:
        return []
    trained = None
    for name in ("run.json", "settings.json"):   # settings.json: runs before the run engine
        path = previous._getExtraPath(name)
        if trained is None and os.path.exists(path):
            with open(path) as f:
                trained = json.load(f).get("phase_flip")
    if trained is None or bool(trained) == (not p.ignoreCTF.get()):
        return []
    return ["The model of the previous run was trained %s phase flipping, and this run %s: "
            "set 'Ignore CTF' to %s as in that run, or choose another model."
            % ("with" if trained else "without",
               "does not phase-flip" if trained else "phase-flips",
               "No" if trained else "Yes")]
