"""Deep Consensus end to end, one micrograph at a time: the steps the command line and the
Scipion protocol both drive.

Every step reads and writes files under a work folder and skips what is already there, so a run
that was stopped can be continued, and memory never holds more than one micrograph's boxes plus
the (capped) training set.

    work/preprocessed/<mic>.mrc   downsampled, normalised, inverted (and phase-flipped) micrograph
    work/candidates/<mic>.npz     consensus candidates, votes, pickers' scores, negatives
    work/scores/<mic>.npy         ensemble score of every candidate (one view of each box)
    work/scores_round<r>/<mic>.npy  the same after self-training round r
    work/scores..._<v>views/      the same, each box scored in v mirror views: a run continued
                                  with another number of views scores anew, never mixes them
"""
import json
import logging
import os
import zlib
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..constants import (DEEP_PARTICLE_SIZE, DEFAULT_RADIUS, DEFAULT_TRAIN_SIZE,
                         SELF_TRAINING_NEGATIVE, SELF_TRAINING_POSITIVE)
from ..errors import InputError
from ..io.coordinates import Coordinates
from ..io.images import read_micrograph, write_mrc
from . import consensus as consensus_mod
from .extract import extract_boxes
from .micrograph import downsample_factor, preprocess_micrograph
from .noise import pick_noise

log = logging.getLogger("xmipp3_deepcons")


@dataclass
class MicrographInput:
    """One micrograph and what each picker picked on it (``picks[i]`` is picker i's)."""
    stem: str
    path: str
    picks: List[Coordinates]


@dataclass
class ScreenSettings:
    box_size: int
    radius: float = DEFAULT_RADIUS          # consensus radius, fraction of the box
    min_votes: int = 2                      # votes that make a candidate a training positive
    inverted: bool = False                  # micrographs already have white particles
    ctf: Optional[dict] = None              # micrograph stem -> CTFParams, for phase flipping
    pixel_size: Optional[float] = None      # Å/px of the micrographs (needed for phase flipping)
    train_size: int = DEFAULT_TRAIN_SIZE    # positives used for training at most (-1: all)
    seed: int = 0

    @property
    def factor(self):
        return downsample_factor(self.box_size)

    @property
    def radius_px(self):
        return consensus_mod.merge_radius(self.box_size, self.radius)


def per_views(name, views):
    """The name of what is computed from scores of ``views`` mirror views (one view: the name
    itself, as before views existed), so that scores of different views never mix."""
    return name if views == 1 else f"{name}_{views}views"


class WorkFolder:
    """The file layout of one screening run (see the module docstring)."""

    def __init__(self, root, views=1, round_number=0):
        self.root, self.views = root, views
        self.scores_folder = per_views(f"scores_round{round_number}" if round_number
                                       else "scores", views)
        for sub in ("preprocessed", "candidates", self.scores_folder):
            os.makedirs(os.path.join(root, sub), exist_ok=True)

    def for_round(self, number):
        """The same folder, with the scores of self-training round ``number`` (0: the first)."""
        return WorkFolder(self.root, self.views, number)

    def preprocessed(self, stem):
        return os.path.join(self.root, "preprocessed", stem + ".mrc")

    def candidates(self, stem):
        return os.path.join(self.root, "candidates", stem + ".npz")

    def scores(self, stem):
        return os.path.join(self.root, self.scores_folder, stem + ".npy")

    def stored_settings(self):
        path = os.path.join(self.root, "settings.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def check_settings(self, settings):
        """Refuse to continue a run that was started with other settings: its micrographs,
        candidates and model would silently not match what was asked for."""
        path = os.path.join(self.root, "settings.json")
        settings = json.loads(json.dumps(settings))   # the form it has once stored
        stored = self.stored_settings()
        if stored:
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            if changed:
                details = ", ".join(f"{k} {stored.get(k)} -> {settings.get(k)}" for k in changed)
                raise InputError(f"{self.root} holds a run made with other settings ({details}); "
                                 "give a new output folder, or remove it to start over")
        else:
            with open(path, "w") as f:
                json.dump(settings, f, indent=1)

    def is_prepared(self, stem):
        return os.path.exists(self.candidates(stem)) and os.path.exists(self.preprocessed(stem))

    def load_candidates(self, stem):
        with np.load(self.candidates(stem)) as data:
            return {k: data[k] for k in data.files}

    def scored_stems(self):
        """The micrographs whose scores are written, sorted."""
        folder = os.path.join(self.root, self.scores_folder)
        return sorted(name[:-4] for name in os.listdir(folder)
                      if name.endswith(".npy") and not name.endswith(".tmp.npy"))

    def load_scores(self, stem):
        path = self.scores(stem)
        return np.load(path) if os.path.exists(path) else None


def check_inside(coordinates, shape, label):
    """Picks outside the micrograph mean a wrong frame or binning: refuse them."""
    rows, cols = shape
    xy = coordinates.xy
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= cols) | (xy[:, 1] < 0) | (xy[:, 1] >= rows)
    if outside.any():
        x, y = xy[np.argmax(outside)]
        raise InputError(f"{label}: {outside.sum()} coordinates lie outside the {cols}x{rows} px "
                         f"micrograph (first at x={x:.0f}, y={y:.0f}); were they picked on "
                         f"micrographs of another size or binning?")


def prepare_micrograph(mic, settings, work, picker_labels=None):
    """Consensus, negatives and preprocessing of one micrograph; skipped when already done.

    Returns the candidate table (see ``WorkFolder.load_candidates``).
    """
    if work.is_prepared(mic.stem):
        return work.load_candidates(mic.stem)
    image = read_micrograph(mic.path)
    labels = picker_labels or [f"picker {i + 1}" for i in range(len(mic.picks))]
    for picks, label in zip(mic.picks, labels):
        check_inside(picks, image.shape, f"{label}, micrograph {mic.stem}")

    found = consensus_mod.coordinate_consensus([p.xy for p in mic.picks], settings.radius_px)
    # Negatives are seeded from the run seed and the micrograph name: reproducible, and the same
    # whichever order micrographs arrive in (streaming).
    rng = np.random.default_rng([settings.seed, _stable_hash(mic.stem)])
    negatives = pick_noise(image.shape, found.xy, settings.box_size, len(found), rng)

    ctf = None
    if settings.ctf is not None:
        ctf = settings.ctf.get(mic.stem)
        if ctf is None:
            raise InputError(f"--ctf: no CTF for micrograph {mic.stem}; the CTF file must list "
                             f"every micrograph (by file name)")
    pre = preprocess_micrograph(image, settings.factor, invert=not settings.inverted, ctf=ctf,
                                pixel_size=settings.pixel_size)
    del image
    pick_scores = found.member_values([p.score for p in mic.picks])
    table = dict(xy=found.xy, votes=found.votes, members=found.members,
                 picker_scores=pick_scores, negatives=negatives,
                 shape=np.array(pre.shape), factor=np.array(settings.factor))
    # Write the candidates last: their presence marks the micrograph as prepared.
    write_mrc(work.preprocessed(mic.stem), pre)
    tmp = work.candidates(mic.stem) + ".tmp.npz"
    np.savez(tmp, **table)
    os.replace(tmp, work.candidates(mic.stem))
    return table


def _stable_hash(text):
    return zlib.crc32(text.encode("utf-8"))


def collect_training_boxes(work, stems, min_votes, train_size=-1, seed=0):
    """Positives (candidates with at least ``min_votes`` votes) and negatives (noise).

    Micrographs are taken in the given order until ``train_size`` positives are reached
    (all when -1); negatives are taken from the same micrographs.
    """
    positives, negatives = [], []
    n_pos = 0
    for stem in stems:
        table = work.load_candidates(stem)
        keep = table["votes"] >= min_votes
        if keep.any() or len(table["negatives"]):
            pre = read_micrograph(work.preprocessed(stem))
            factor = float(table["factor"])
            positives.append(extract_boxes(pre, table["xy"][keep] / factor, DEEP_PARTICLE_SIZE))
            negatives.append(extract_boxes(pre, table["negatives"] / factor, DEEP_PARTICLE_SIZE))
            n_pos += int(keep.sum())
        if 0 <= train_size <= n_pos:
            break
    pos = np.concatenate(positives) if positives else np.zeros((0,) + (DEEP_PARTICLE_SIZE,) * 2, np.float32)
    neg = np.concatenate(negatives) if negatives else np.zeros_like(pos)
    if 0 <= train_size < len(pos):
        pick = np.random.default_rng(seed).choice(len(pos), train_size, replace=False)
        pos = pos[np.sort(pick)]
    return pos, neg


def unlabeled_boxes(work, stems, min_votes):
    """Boxes of the candidates fewer than ``min_votes`` pickers found: not positives, and on
    real data mostly junk, so harder negatives than empty background."""
    boxes = [np.zeros((0, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE), np.float32)]
    for stem in stems:
        table = work.load_candidates(stem)
        unlabeled = table["votes"] < min_votes
        if unlabeled.any():
            pre = read_micrograph(work.preprocessed(stem))
            boxes.append(extract_boxes(pre, table["xy"][unlabeled] / float(table["factor"]),
                                       DEEP_PARTICLE_SIZE))
    return np.concatenate(boxes)


def self_training_boxes(work, scores_by_stem, dedupe_radius_px):
    """A self-training round's examples from [(stem, network scores)], each micrograph read
    once: boxes of the confident acceptances (duplicates merged, whoever picked them), of the
    confident rejections, and of the micrographs' background."""
    from .consensus import suppress_duplicates
    accepted, rejected, background = [], [], []
    for stem, scores in scores_by_stem:
        table = work.load_candidates(stem)
        pre = read_micrograph(work.preprocessed(stem))
        factor = float(table["factor"])
        unique = suppress_duplicates(table["xy"], scores, dedupe_radius_px)
        for found, xy in ((accepted, table["xy"][unique & (scores >= SELF_TRAINING_POSITIVE)]),
                          (rejected, table["xy"][scores <= SELF_TRAINING_NEGATIVE]),
                          (background, table["negatives"])):
            found.append(extract_boxes(pre, np.reshape(xy, (-1, 2)) / factor,
                                       DEEP_PARTICLE_SIZE))
    empty = np.zeros((0, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE), np.float32)
    return tuple(np.concatenate([empty] + found) for found in (accepted, rejected, background))


def score_candidates(work, stem, ensemble, batch_size=512):
    """Ensemble score of every candidate of one micrograph, in batches of boxes (not stored)."""
    table = work.load_candidates(stem)
    if not len(table["xy"]):
        return np.zeros(0, np.float32)
    pre = read_micrograph(work.preprocessed(stem))
    factor = float(table["factor"])
    parts = []
    for start in range(0, len(table["xy"]), batch_size):
        boxes = extract_boxes(pre, table["xy"][start:start + batch_size] / factor,
                              DEEP_PARTICLE_SIZE)
        parts.append(ensemble.score(boxes))
    return np.concatenate(parts).astype(np.float32)


def score_micrograph(work, stem, ensemble):
    """Score every candidate of one micrograph (kept in the work folder); skipped when done."""
    done = work.load_scores(stem)
    if done is not None:
        return done
    scores = score_candidates(work, stem, ensemble)
    tmp = work.scores(stem) + ".tmp.npy"
    np.save(tmp, scores)
    os.replace(tmp, work.scores(stem))
    return scores
