"""What a run is asked to do: one settings object for both front ends.

The command line fills it from its options, the protocol from its form; both write it to the
run folder's ``run.json`` before any work, and every stage reads it from there. Its fingerprint
covers what the model depends on, so a run continued with other training settings is refused
instead of mixing two runs; output options (threshold, duplicates, evidence, views) may change.
"""
import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Optional

from ..constants import (DEFAULT_DEDUPE_RADIUS, DEFAULT_EPOCHS, DEFAULT_L2, DEFAULT_LEARNING_RATE,
                         DEFAULT_MAX_VAL_ACC, DEFAULT_MIN_BATCHES, DEFAULT_MODELS, DEFAULT_RADIUS,
                         DEFAULT_THRESHOLD, DEFAULT_TRAIN_SIZE, DEFAULT_VIEWS)
from ..core.micrograph import downsample_factor
from ..errors import InputError

EVIDENCE_MODES = ("votes", "ranks", "patterns", "anchored", "none")
# Free to change on a continued run: they act after the network has scored.
OUTPUT_ONLY = ("threshold", "dedupe_radius", "picker_evidence", "views", "full_scoring")
# Free to change too while the folder holds no trained network: nothing was made with them
# (a diverged training is continued with a lower learning rate in the same folder).
TRAINING_ONLY = ("models", "network_size", "epochs", "min_batches", "learning_rate",
                 "l2", "auto_stop")


def default_picker_evidence(start_model, skip_training, shared_mistakes=True, phase_flip=False):
    """The evidence mode a run gets when none is asked for.

    A shipped network that scores without training never saw a picker: its opinion of every
    pattern of pickers is fair, so who picked is read as one answer (``patterns``), which does
    not trust junk the pickers agree on. A network trained on this run learnt "picked by
    several = particle" and scores the one-vote candidates low, true or not: the shipped
    network reads who picked and the trained one ranks within each pattern (``anchored``,
    docs/measurements.md, "Who picked read with the shipped network"). Independent witnesses
    (``votes``) learn when one picker is reliable alone, but trust junk the pickers agree on:
    only when the user says they do not (the Scipion form's "Pickers may agree on junk?" No),
    or without the shipped network."""
    from ..resources import pretrained_model, read_manifest
    if skip_training and start_model:
        try:
            extra = read_manifest(start_model).get("extra")
        except InputError:
            extra = None     # the model's own checks report a bad folder
        if isinstance(extra, dict) and extra.get("pretrained") is True:
            return "patterns"
    if shared_mistakes and pretrained_model(phase_flip, "large") is not None:
        return "anchored"
    return "votes"


@dataclass
class RunSettings:
    box_size: int                            # particle box, micrograph pixels
    n_pickers: int
    pixel_size: Optional[float] = None       # Å/px of the micrographs
    radius: float = DEFAULT_RADIUS           # consensus radius, fraction of the box
    min_votes: int = 2                       # pickers that make a candidate a training positive
    inverted: bool = False                   # micrographs already show white particles
    phase_flip: bool = False                 # inputs carry CTFs; micrographs are phase-flipped
    seed: int = 0
    # model and training
    start_model: Optional[str] = None        # folder of the model to start from or score with
    replicate_start: bool = False            # one-network start model copied to every member
    skip_training: bool = False
    models: int = DEFAULT_MODELS
    network_size: Optional[str] = None
    epochs: float = DEFAULT_EPOCHS
    min_batches: int = DEFAULT_MIN_BATCHES
    learning_rate: float = DEFAULT_LEARNING_RATE
    l2: float = DEFAULT_L2
    auto_stop: bool = True
    train_size: int = DEFAULT_TRAIN_SIZE     # positives used for training at most, -1: all
    training_batch: int = 0                  # micrographs per training pass, 0: all in one
    max_val_acc: float = DEFAULT_MAX_VAL_ACC
    precompiled_negatives: bool = False
    unlabeled_negatives: bool = True
    self_training: int = 0
    positive_weight: float = 1.0             # weight of additional/extra_positives_*.npy
    negative_weight: float = 1.0             # weight of additional/extra_negatives_*.npy
    write_particles: bool = False            # 128 px stack per micrograph (Scipion's particles)
    keep_edge_boxes: bool = False            # candidates whose box leaves the micrograph count
    # output only
    views: int = DEFAULT_VIEWS
    threshold: object = DEFAULT_THRESHOLD    # a number, -1 (keep all) or "auto"
    dedupe_radius: float = DEFAULT_DEDUPE_RADIUS
    picker_evidence: str = "votes"
    full_scoring: bool = False               # every candidate scored by the whole ensemble

    @property
    def factor(self):
        return downsample_factor(self.box_size)

    @property
    def dedupe_radius_px(self):
        return (self.dedupe_radius or 0) * self.box_size

    @property
    def edge_box(self):
        """The box that must lie whole inside the micrograph for a candidate to be a training
        positive or kept; None when edge boxes are kept."""
        return None if self.keep_edge_boxes else self.box_size

    @property
    def uses_evidence(self):
        """The pickers' evidence needs two pickers to say anything: with one, every candidate
        has the same answer, and the posterior would only re-bin the network's score."""
        return self.picker_evidence != "none" and self.n_pickers >= 2

    @property
    def uses_reference(self):
        """The evidence reads who picked with the shipped network's scores too (``anchored``)."""
        return self.uses_evidence and self.picker_evidence == "anchored"

    def preparation_key(self):
        """What a micrograph's preprocessing and candidates depend on. Not the seed (it
        draws the negatives): a run folder never changes its seed, and two runs with other
        seeds then share the keys of the same candidates, which is what lets a PreviousRun
        reuse the pickers' evidence its model came with."""
        return _digest({k: getattr(self, k) for k in
                        ("box_size", "radius", "inverted", "phase_flip", "pixel_size")})

    def fingerprint(self):
        return _digest({k: v for k, v in asdict(self).items() if k not in OUTPUT_ONLY})

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, content):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in content.items() if k in known})

    def changes_from(self, other):
        """Names of the fingerprinted settings that differ from ``other``'s."""
        mine, theirs = asdict(self), asdict(other)
        return [k for k in mine if k not in OUTPUT_ONLY and mine[k] != theirs.get(k)]

    def check_continues(self, stored, where, trained=True):
        """Refuse a continued run whose fingerprinted settings differ from the stored ones
        (``trained`` False: the folder holds no trained network yet, and the training
        settings may change)."""
        changed = [k for k in self.changes_from(stored) if trained or k not in TRAINING_ONLY]
        if changed:
            details = ", ".join(f"{k} {getattr(stored, k)!r} -> {getattr(self, k)!r}"
                                for k in changed)
            raise InputError(f"{where} holds a run made with other settings ({details}); give a "
                             "new output folder, or remove it to start over")


def _digest(content):
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
