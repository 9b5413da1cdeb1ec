"""Boxes of a prepared run for training and scoring, one micrograph read at a time.

``run`` is the run folder (``RunFolder``): its candidate tables and preprocessed
micrographs. Memory never holds more than one micrograph's
boxes plus the (capped) training set.
"""
import numpy as np

from ..constants import DEEP_PARTICLE_SIZE, SELF_TRAINING_NEGATIVE, SELF_TRAINING_POSITIVE
from ..io.images import read_micrograph
from ..core.extract import box_inside, extract_boxes


def micrograph_shape(table):
    """(rows, columns) of the user's micrograph (tables prepared before it was stored: the
    preprocessed shape times the downsampling factor); None when the table has neither."""
    if "micrograph_shape" in table:
        return tuple(int(v) for v in table["micrograph_shape"])
    if "shape" in table:
        return tuple(int(round(v * float(table["factor"]))) for v in table["shape"])
    return None


def positive_mask(table, min_votes, edge_box=None):
    """Training positives: candidates at least ``min_votes`` pickers found, and (``edge_box``,
    a box size) whose box lies whole inside the micrograph."""
    votes = np.asarray(table["votes"])
    keep = votes >= min_votes
    shape = micrograph_shape(table)
    if edge_box and len(votes) and shape:
        keep &= box_inside(table["xy"], shape, edge_box)
    return keep


def collect_training_boxes(run, stems, min_votes, train_size=-1, seed=0, edge_box=None):
    """Positives (``positive_mask``) and negatives (noise).

    Micrographs are taken in the given order until ``train_size`` positives are reached
    (all when -1); negatives are taken from the same micrographs.
    """
    positives, negatives = [], []
    n_pos = 0
    for stem in stems:
        table = run.candidates(stem)
        keep = positive_mask(table, min_votes, edge_box)
        if keep.any() or len(table["negatives"]):
            pre = read_micrograph(run.preprocessed(stem))
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


def unlabeled_boxes(run, stems, min_votes, edge_box=None):
    """Boxes of the candidates that are not positives (fewer than ``min_votes`` pickers found
    them, or their box leaves the micrograph): on real data mostly junk, so harder negatives
    than empty background."""
    boxes = [np.zeros((0, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE), np.float32)]
    for stem in stems:
        table = run.candidates(stem)
        unlabeled = ~positive_mask(table, min_votes, edge_box)
        if unlabeled.any():
            pre = read_micrograph(run.preprocessed(stem))
            boxes.append(extract_boxes(pre, table["xy"][unlabeled] / float(table["factor"]),
                                       DEEP_PARTICLE_SIZE))
    return np.concatenate(boxes)


def self_training_boxes(run, scores_by_stem, dedupe_radius_px):
    """A self-training round's examples from [(stem, network scores)], each micrograph read
    once: boxes of the confident acceptances (duplicates merged, whoever picked them), of the
    confident rejections, and of the micrographs' background."""
    from ..core.consensus import suppress_duplicates
    accepted, rejected, background = [], [], []
    for stem, scores in scores_by_stem:
        table = run.candidates(stem)
        if not len(table["xy"]) and not len(table["negatives"]):
            continue   # a micrograph left out as unusable
        pre = read_micrograph(run.preprocessed(stem))
        factor = float(table["factor"])
        unique = suppress_duplicates(table["xy"], scores, dedupe_radius_px)
        for found, xy in ((accepted, table["xy"][unique & (scores >= SELF_TRAINING_POSITIVE)]),
                          (rejected, table["xy"][scores <= SELF_TRAINING_NEGATIVE]),
                          (background, table["negatives"])):
            found.append(extract_boxes(pre, np.reshape(xy, (-1, 2)) / factor,
                                       DEEP_PARTICLE_SIZE))
    empty = np.zeros((0, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE), np.float32)
    return tuple(np.concatenate([empty] + found) for found in (accepted, rejected, background))


def score_candidates(run, stem, ensemble, batch_size=512):
    """Ensemble score of every candidate of one micrograph, in batches of boxes (not stored)."""
    table = run.candidates(stem)
    if not len(table["xy"]):
        return np.zeros(0, np.float32)
    pre = read_micrograph(run.preprocessed(stem))
    factor = float(table["factor"])
    parts = []
    for start in range(0, len(table["xy"]), batch_size):
        boxes = extract_boxes(pre, table["xy"][start:start + batch_size] / factor,
                              DEEP_PARTICLE_SIZE)
        parts.append(ensemble.score(boxes))
    return np.concatenate(parts).astype(np.float32)
