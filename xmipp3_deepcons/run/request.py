"""A run's request (what the user asked for, each option named once) and the one place where
it becomes ``RunSettings``: every rule of a run's parameters, for both front ends.

The command line fills a request from its options, the Scipion protocol from its form; both
call ``build``, which returns the settings and a list of problems (``errors.FieldError``: field,
text). The command line refuses the first problem with its option's name
(``FIELDS[field].flag``), the protocol's ``_validate`` lists them all with the form's labels.
Neither front end checks a number itself.

Rules that live here and nowhere else:
- the numbers' bounds (``checks``), the training ones only when the run trains;
- the seed: a given seed is used (a continued run given another seed is refused, as any other
  change of a fingerprinted setting); none given, a continued run keeps its stored seed, and a
  new run draws one (``draw_seed``);
- the training length (``KEPT_WHEN_NOT_GIVEN``: epochs, minimum batches) by the same rule: not
  given, a continued run keeps its stored one (a run made with earlier defaults continues as
  it was made) and a new run takes the default; given and different on a run that has trained,
  refused in one line that names the option;
- the vote minimum: from 1 to the number of pickers (a run that does not train may ask more);
- the model to start from: ``pretrained`` (the shipped network of this run's phase flipping and
  size, replicated to every member) or a trained model's folder, whose members the run
  continues (its own number of models unless the request gives one);
- the pickers' evidence when none is asked (``settings.default_picker_evidence``), and
  ``classic`` (the original method: no evidence, no duplicate merging, one view).
"""
import os
from dataclasses import dataclass

from .. import checks
from ..constants import (DEEP_PARTICLE_SIZE, DEFAULT_DEDUPE_RADIUS, DEFAULT_EPOCHS,
                         DEFAULT_L2, DEFAULT_LEARNING_RATE, DEFAULT_MAX_VAL_ACC,
                         DEFAULT_MIN_BATCHES, DEFAULT_MODELS, DEFAULT_RADIUS,
                         DEFAULT_THRESHOLD, DEFAULT_TRAIN_SIZE, DEFAULT_VIEWS, VIEW_CHOICES)
from ..errors import FieldError, InputError
from .settings import EVIDENCE_MODES, RunSettings, default_picker_evidence

PRETRAINED = "pretrained"


@dataclass(frozen=True)
class Field:
    """One option of a request: its command line flag and the form's parameter and label
    (None where that front end has none)."""
    name: str
    flag: str
    param: str
    label: str
    default: object = None


FIELDS = {f.name: f for f in (
    Field("box_size", "--box-size", "inputCoordinates", "Box size of the first input coordinates"),
    Field("n_pickers", "--coordinates", "inputCoordinates", "Input coordinates"),
    Field("pixel_size", "--sampling", None, "Sampling rate of the input micrographs"),
    Field("radius", "--radius", "consensusRadius", "Relative Radius", DEFAULT_RADIUS),
    Field("min_votes", "--min-votes", None, "Pickers that make a positive", 2),
    Field("inverted", "--micrographs-inverted", "skipInvert", "Did you invert the micrographs "
          "contrast (particles are bright now)?", False),
    Field("phase_flip", "--ctf", "ignoreCTF", "Ignore CTF", False),
    Field("seed", "--seed", "randomSeed", "Random seed"),
    Field("model", "--model", "modelInitialization", "Select model type"),
    Field("models_root", None, None, "Folder of the shipped models"),
    Field("skip_training", "--skip-training", "skipTraining", "Skip training?", False),
    Field("models", "--models", "nModels", "Number of models for ensemble"),
    Field("network_size", "--network-size", None, "Network size"),
    Field("epochs", "--epochs", "nEpochs", "Number of epochs", DEFAULT_EPOCHS),
    Field("min_batches", "--min-batches", "minBatches", "Minimum training batches",
          DEFAULT_MIN_BATCHES),
    Field("learning_rate", "--learning-rate", "learningRate", "Learning rate",
          DEFAULT_LEARNING_RATE),
    Field("l2", "--l2", "l2RegStrength", "Regularization strength", DEFAULT_L2),
    Field("auto_stop", "--no-auto-stop", "auto_stopping", "Auto stop training when "
          "convergency is detected?", True),
    Field("train_size", "--train-size", "toTrainDataSize", "Expected number of particles to "
          "use for training", DEFAULT_TRAIN_SIZE),
    Field("training_batch", "--training-batch", "trainingBatch", "Training batch size", 0),
    Field("max_val_acc", "--max-val-acc", "maxValAcc", "Training mean val_acc threshold",
          DEFAULT_MAX_VAL_ACC),
    Field("precompiled_negatives", "--precompiled-negatives", "addTrainingData",
          "Additional training data", False),
    Field("unlabeled_negatives", "--unlabeled-negatives", "unlabeledNegatives",
          "Unlabeled candidates as negatives?", True),
    Field("self_training", "--self-training", "selfTrainingRounds", "Self-training rounds", 0),
    Field("positive_weight", None, "trainPosWeight", "Weight of positive additional train data",
          1),
    Field("negative_weight", None, "trainNegWeight", "Weight of negative additional train data",
          1),
    Field("write_particles", None, None, "Particles output", False),
    Field("keep_edge_boxes", "--keep-edge-boxes", None, "Keep edge boxes", False),
    Field("views", "--views", "scoringViews", "Views scored per box"),
    Field("threshold", "--threshold", "threshold", "Tolerance threshold", DEFAULT_THRESHOLD),
    Field("dedupe_radius", "--dedupe-radius", "dedupeRadius", "Duplicate radius",
          DEFAULT_DEDUPE_RADIUS),
    Field("picker_evidence", "--picker-evidence", "pickerEvidence", "Combine with who picked?"),
    Field("shared_mistakes", None, "pickersShareMistakes", "Pickers may agree on junk?", True),
    Field("full_scoring", "--full-scoring", "fullScoring",
          "Score every candidate with the whole ensemble?", False),
    Field("classic", "--classic", None, "The original method", False),
    Field("output", "-o", None, "This run's folder"),
)}
# How the networks train: checked alike for a run and for ``train`` (``check_network_training``).
NETWORK_TRAINING = ("epochs", "learning_rate", "l2", "models", "min_batches")
# The numbers that matter only when the run trains: not checked (nor shown) otherwise.
TRAINING_NUMBERS = ("epochs", "learning_rate", "l2", "models", "train_size", "training_batch",
                    "max_val_acc", "min_batches", "self_training")
# Not given: a continued run keeps its stored value (defaults that changed since it was made
# must not refuse it), a new run the default.
KEPT_WHEN_NOT_GIVEN = ("epochs", "min_batches")


# Remedies each front end words its own way (problems name them as {phrase}): (the command
# line's words, the form's), naming fields in turn.
PHRASES = {
    "existing_model": ("{model} DIR {skip_training}",
                       "{model} Pretrained or PreviousRun with {skip_training} Yes"),
    "fewer_votes": ("lower {min_votes}, ", ""),     # the form has no vote minimum
    "other_evidence": ("another {picker_evidence} (votes, ranks, patterns or none)",
                       "{shared_mistakes} No, or {picker_evidence} No"),
}
NAMES_VARIABLE = "DEEPCONS_NAMES"    # "form": the Scipion plugin's jobs word with the labels


def flags():
    """{field: its command line option} (and the command line's phrases)."""
    names = {name: f.flag or name for name, f in FIELDS.items()}
    return dict(names, **{k: cli for k, (cli, _) in PHRASES.items()})


def labels():
    """{field: the form's label, quoted as a message shows it} (and the form's phrases)."""
    names = {name: f"'{f.label}'" for name, f in FIELDS.items()}
    return dict(names, **{k: form for k, (_, form) in PHRASES.items()})


def names():
    """The names this process words problems with: the form's labels in a job the Scipion
    plugin started ($DEEPCONS_NAMES=form), else the command line's options."""
    return labels() if os.environ.get(NAMES_VARIABLE) == "form" else flags()


@dataclass
class Built:
    """What ``build`` returns: the settings (None when a problem stops them), the problems in
    the order the checks meet them, whether the seed was drawn, and the notes to log."""
    settings: RunSettings
    problems: list
    seed_drawn: bool = False
    notes: tuple = ()

    def raise_first(self, names=None):
        """The first problem, one line: worded with ``names`` (``InputError``), or, without,
        a ``FieldError`` that the command line words with its options."""
        if self.problems:
            first = self.problems[0]
            if names is None:
                raise first
            raise InputError(first.line(names))
        return self.settings


def draw_seed():
    """A new run's seed when none is given: the one rule (and range, ``checks.SEED_MAX``) for
    both front ends and ``train``."""
    return int.from_bytes(os.urandom(4), "little") % checks.SEED_MAX


class _Checker:
    """Runs checks, turning each refusal into a ``FieldError`` of its field."""

    def __init__(self):
        self.problems = []

    def __call__(self, field, check, *args, **kwargs):
        try:
            return check(field, *args, **kwargs)
        except FieldError as error:
            self.problems.append(error)
            return None
        except InputError as error:
            text = str(error)
            if text.startswith(field + " "):
                self.problems.append(FieldError(field, text[len(field) + 1:]))
            else:
                self.problems.append(FieldError(field, text, named=False))
            return None

    def add(self, field, text):
        self.problems.append(FieldError(field, text))

    def failed(self, *fields):
        return any(p.field in fields for p in self.problems)


def _reversed(check):
    """``checks`` functions that take (value, name=...) called as (name, value)."""
    return lambda name, value, **kw: check(value, name=name, **kw)


def _numbers(request, check):
    """Each number within its bounds; returns them as the run uses them."""
    values = {}
    values["threshold"] = check("threshold", _reversed(checks.check_threshold),
                                request["threshold"])
    box = check("box_size", checks.check_positive, request["box_size"], integer=True)
    if box is not None and box < DEEP_PARTICLE_SIZE:
        check.add("box_size", f"{box}: under {DEEP_PARTICLE_SIZE} px: are the micrographs "
                              "already downsampled? give the particle box in the micrographs' "
                              "own pixels")
    values["box_size"] = box
    values["pixel_size"] = check("pixel_size", _reversed(checks.check_sampling),
                                 request["pixel_size"])
    values["radius"] = check("radius", checks.check_fraction, request["radius"], 0, 1,
                             low_open=True, high_open=True, default=DEFAULT_RADIUS)
    values["dedupe_radius"] = check("dedupe_radius", checks.check_fraction,
                                    request["dedupe_radius"], 0, 1, high_open=True,
                                    default=DEFAULT_DEDUPE_RADIUS)
    values["views"] = check("views", checks.check_choice, request["views"], VIEW_CHOICES)
    if request["skip_training"]:
        values.update({name: request[name] for name in TRAINING_NUMBERS})
        return values
    values.update(_network_training(request, check))
    values["train_size"] = check("train_size", _reversed(checks.check_train_size),
                                 request["train_size"])
    values["training_batch"] = check("training_batch", _reversed(checks.check_training_batch),
                                     request["training_batch"])
    accuracy = check("max_val_acc", checks.check_finite, request["max_val_acc"])
    if accuracy is not None and accuracy < 0:
        check.add("max_val_acc", f"{checks.shown(accuracy)}: must be 0 or more; give a mean "
                                 f"validation accuracy, e.g. {DEFAULT_MAX_VAL_ACC} (the default; "
                                 "above 1: never stop early)")
    values["max_val_acc"] = accuracy
    values["self_training"] = check("self_training", checks.check_integer,
                                    request["self_training"], minimum=0, default=0)
    return values


def _network_training(request, check):
    """How the networks train (a run's and ``train``'s): epochs, learning rate, L2, models (None:
    not given), minimum batches."""
    models = request["models"]
    return {
        "epochs": check("epochs", checks.check_positive, request["epochs"],
                        default=DEFAULT_EPOCHS),
        "learning_rate": check("learning_rate", checks.check_positive, request["learning_rate"],
                               default=DEFAULT_LEARNING_RATE),
        "l2": check("l2", checks.check_l2, request["l2"]),
        "models": None if models is None else check("models", checks.check_integer, models,
                                                    minimum=1, default=DEFAULT_MODELS),
        "min_batches": check("min_batches", checks.check_integer, request["min_batches"],
                             minimum=0, default=DEFAULT_MIN_BATCHES)}


def check_network_training(given):
    """``train``'s numbers (a model trained outside a run) by a run's rules: {field: value}
    of ``NETWORK_TRAINING`` checked, or the first problem raised (``FieldError``)."""
    check = _Checker()
    values = _network_training({name: given.get(name) for name in NETWORK_TRAINING}, check)
    if check.problems:
        raise check.problems[0]
    return values


def _start_model(request, values, check):
    """(folder, replicated, its number of members) of the model to start from."""
    from .. import resources
    model, phase_flip = request["model"], bool(request["phase_flip"])
    if not model:
        return None, False, None
    if model == PRETRAINED and not os.path.isfile(os.path.join(model, "manifest.json")):
        size = resources.pretrained_size(values.get("train_size") or request["train_size"],
                                         request["network_size"])
        folder = resources.pretrained_model(phase_flip, size, root=request["models_root"])
        if folder is None:
            check.add("model", f"{PRETRAINED}: no pretrained {size} model for "
                               f"{'phase-flipped' if phase_flip else 'unflipped'} micrographs is "
                               f"installed in {request['models_root'] or resources.models_dir()};"
                               " regenerate them with scripts/train_shipped_models.py or set "
                               "$DEEPCONS_MODELS")
            return None, False, None
        check("model", lambda name: resources.check_phase_flip(folder, phase_flip))
        return os.path.abspath(folder), True, None
    if not os.path.isdir(model):
        check.add("model", f"{model}: no such folder (give a trained model's folder, or "
                           f"'{PRETRAINED}')")
        return None, False, None
    if not os.path.isfile(os.path.join(model, "manifest.json")):
        if os.path.isfile(os.path.join(model, "run.json")):
            check.add("model", f"{model}: is a run folder, not a model; give its model folder, "
                               f"{{model}} {os.path.join(model, 'model')}")
        else:
            what = "is empty" if not os.listdir(model) else "has no manifest.json"
            check.add("model", f"{model}: {what}, so it is not a trained model's folder; give "
                               "the folder that training wrote (with manifest.json), or "
                               f"'{PRETRAINED}'")
        return None, False, None
    manifest = check("model", lambda name: resources.verify_model_folder(model))
    if manifest is None:
        return None, False, None
    check("model", lambda name: resources.check_phase_flip(
        model, phase_flip, "Run with the preprocessing the model was trained with ({phase_flip} "
                           "or not), or use another model, e.g. {model} pretrained, which "
                           "matches this run."))
    return os.path.abspath(model), False, int(manifest.get("n_models", 0)) or None


def _seed(request, stored, check):
    """(seed, drawn): see the module docstring."""
    seed = request["seed"]
    if seed is not None:
        return check("seed", _reversed(checks.check_seed), seed), False
    if stored is not None:
        return stored.seed, False
    return draw_seed(), True


def _stored_or_default(request, stored):
    """The training length not given: the continued run's own, else the default."""
    for name in KEPT_WHEN_NOT_GIVEN:
        if request[name] is None:
            request[name] = (getattr(stored, name) if stored is not None
                             else FIELDS[name].default)


def _kept_training(values, stored, trained, check):
    """A training length given and different from the one a trained run was made with."""
    if stored is None or not trained:
        return
    for name in KEPT_WHEN_NOT_GIVEN:
        given, kept = values.get(name), getattr(stored, name)
        if given is not None and float(given) != float(kept):
            check.add(name, f"{checks.shown(given)}: this run folder was trained with {{{name}}} "
                            f"{checks.shown(kept)}; leave {{{name}}} out to continue it as it "
                            "was made, or give a new output folder")


def _with_defaults(request):
    full = {name: field.default for name, field in FIELDS.items()}
    unknown = set(request) - set(full)
    if unknown:
        raise ValueError(f"not a request field: {sorted(unknown)[0]}")
    full.update({k: v for k, v in request.items() if v is not None})
    if full["classic"]:
        full["picker_evidence"], full["dedupe_radius"] = "none", 0.0
    if full["views"] is None:
        full["views"] = 1 if full["classic"] else DEFAULT_VIEWS
    full["seed"] = request.get("seed")
    for name in KEPT_WHEN_NOT_GIVEN:
        full[name] = request.get(name)
    full["models"] = request.get("models")
    full["network_size"] = request.get("network_size")
    full["picker_evidence"] = full["picker_evidence"] if full["classic"] else request.get(
        "picker_evidence")
    return full


def build(request, run=None):
    """``Built`` from a request ({field: value}, a missing field or None: not given). ``run``:
    the run folder the settings are for; a continued run keeps its stored seed and training
    length when none is given, and is refused when a fingerprinted setting changed."""
    request = _with_defaults(request)
    stored = run.settings() if run is not None and run.has_settings() else None
    _stored_or_default(request, stored)
    check = _Checker()
    values = _numbers(request, check)
    if not request["skip_training"]:
        _kept_training(values, stored, run is not None and run.has_training(), check)
    n_pickers, skip = int(request["n_pickers"] or 0), bool(request["skip_training"])
    if skip and not request["model"]:
        check.add("skip_training", "needs {model} DIR: a trained model to score with")
    if n_pickers < 2 and not skip:
        check.add("n_pickers", f"{n_pickers}: training needs at least two coordinate sets "
                               "(particles are the candidates pickers agree on); add another "
                               "picker, or score with an existing model ({existing_model})")
    min_votes = check("min_votes", checks.check_integer, request["min_votes"], minimum=1)
    if min_votes is not None and min_votes > max(n_pickers, 1) and not skip:
        check.add("min_votes", f"{min_votes}: must be between 1 and the number of pickers "
                               f"({n_pickers})")
    if (values.get("self_training") or 0) and skip:
        check.add("self_training", "retrains the model: leave out {skip_training}")
    evidence = request["picker_evidence"]
    if evidence is not None:
        evidence = check("picker_evidence", checks.check_choice, evidence, EVIDENCE_MODES)
    start, replicate, members = _start_model(request, values, check)
    seed, drawn = _seed(request, stored, check)
    if check.problems:
        return Built(None, check.problems)
    models = values["models"] or (members if start and not replicate else None) or DEFAULT_MODELS
    settings = RunSettings(
        box_size=values["box_size"], n_pickers=n_pickers, pixel_size=values["pixel_size"],
        radius=values["radius"], min_votes=min_votes, inverted=bool(request["inverted"]),
        phase_flip=bool(request["phase_flip"]), seed=int(seed), start_model=start,
        replicate_start=replicate, skip_training=skip, models=int(models),
        network_size=request["network_size"], epochs=float(values["epochs"]),
        min_batches=int(values["min_batches"]), learning_rate=float(values["learning_rate"]),
        l2=float(values["l2"]), auto_stop=bool(request["auto_stop"]),
        train_size=int(values["train_size"]), training_batch=int(values["training_batch"]),
        max_val_acc=float(values["max_val_acc"]),
        precompiled_negatives=bool(request["precompiled_negatives"]),
        unlabeled_negatives=bool(request["unlabeled_negatives"]),
        self_training=int(values["self_training"]),
        positive_weight=float(request["positive_weight"] or 1),
        negative_weight=float(request["negative_weight"] or 1),
        write_particles=bool(request["write_particles"]),
        keep_edge_boxes=bool(request["keep_edge_boxes"]), views=int(values["views"]),
        threshold=values["threshold"], dedupe_radius=float(values["dedupe_radius"] or 0.0),
        full_scoring=bool(request["full_scoring"]),
        picker_evidence=evidence or default_picker_evidence(
            start, skip, bool(request["shared_mistakes"]), bool(request["phase_flip"])))
    if stored is not None:
        try:
            settings.check_continues(stored, run.root, run.has_training())
        except InputError as error:
            return Built(None, [FieldError("output", str(error), named=False)])
    notes = (f"pretrained model: {start}",) if replicate else ()
    return Built(settings, [], drawn, notes)
