"""The output rule, written once: a candidate's final score, and which candidates are kept.

Both front ends, the viewer and the tests call these; nothing else decides what is output.
"""
import numpy as np

from ..core.consensus import suppress_duplicates
from ..core.extract import box_inside
from ..core.evidence import (apply_evidence, fit_anchored_evidence,
                             fit_independent_evidence, fit_joint_evidence, presence_ranks)


def picker_evidence(mode, table, quantiles=None):
    """Who picked each candidate (``votes``: 1/0 per picker), or how confidently (``ranks``:
    each pick's score as its quantile among the picker's scores on the micrographs the
    evidence was fitted on, so a micrograph's ranks never depend on the others)."""
    members = np.asarray(table["members"])
    ranks = presence_ranks(members)
    if mode != "ranks" or quantiles is None:
        return ranks
    scores = np.asarray(table["picker_scores"], dtype=float)
    for p, reference in enumerate(quantiles):
        mine = (members[:, p] >= 0) & ~np.isnan(scores[:, p])
        if reference and mine.any():
            reference = np.asarray(reference)
            rank = np.searchsorted(reference, scores[mine, p], side="right") / len(reference)
            ranks[mine, p] = np.clip(rank, 1.0 / len(reference), 1.0)
    return ranks


def score_quantiles(tables, n_pickers, points=201):
    """Per picker, quantiles of its figures of merit (empty where it gives none)."""
    quantiles = []
    for p in range(n_pickers):
        values = np.concatenate([t["picker_scores"][t["members"][:, p] >= 0, p]
                                 for t in tables]) if tables else np.zeros(0)
        values = values[~np.isnan(values)]
        quantiles.append(np.quantile(values, np.linspace(0, 1, points)).tolist()
                         if len(values) else [])
    return quantiles


def fit_model(mode, ranks, network, reference=None):
    """``patterns``: who picked as one answer; ``anchored``: its shares read by the shipped
    network's ``reference`` scores; ``votes`` and ``ranks``: independent pickers."""
    if mode == "anchored":
        return fit_anchored_evidence(ranks, network, reference)
    fit = fit_joint_evidence if mode == "patterns" else fit_independent_evidence
    return fit(ranks, network)


def evidence_model(mode, tables, network_scores, n_pickers, reference_scores=None):
    """The evidence model of these micrographs (JSON-ready)."""
    quantiles = score_quantiles(tables, n_pickers) if mode == "ranks" else None
    ranks = np.concatenate([picker_evidence(mode, t, quantiles) for t in tables])
    reference = np.concatenate(reference_scores) if reference_scores else None
    model = fit_model(mode, ranks, np.concatenate(network_scores), reference)
    return {"mode": mode, "model": model, "quantiles": quantiles}


def held_out_check(mode, tables, network_scores, n_pickers, reference_scores=None):
    """Does the combined score rank candidates better than the vote count? Asked without
    truth: the evidence is fitted on every other micrograph and checked on the rest, each
    picker held out in turn as the label (which candidates it picked), ranked by the others'
    vote count and by the combination of the others and the network:

    - ``combined`` against ``votes``: the ROC-AUC of each over the candidates the others found;
      a label biased towards the vote count when the pickers share their mistakes (junk that
      fools one fools all);
    - ``within_votes``: the combination's ROC-AUC among candidates the same number of others
      found, where the vote count cannot rank (0.5) and shared mistakes do not enter.

    Means over the pickers; None when it cannot be asked (fewer than 3 pickers or 2
    micrographs)."""
    from ..core.metrics import ranking_quality
    if n_pickers < 3 or len(tables) < 2:
        return None
    halves = [list(range(0, len(tables), 2)), list(range(1, len(tables), 2))]
    quantiles = (score_quantiles([tables[i] for i in halves[0]], n_pickers)
                 if mode == "ranks" else None)
    ranks, network, reference = [], [], []
    for half in halves:
        ranks.append(np.concatenate([picker_evidence(mode, tables[i], quantiles)
                                     for i in half]))
        network.append(np.concatenate([network_scores[i] for i in half]))
        reference.append(np.concatenate([reference_scores[i] for i in half])
                         if reference_scores else None)
    found = {"votes": [], "combined": [], "within_votes": []}
    for p in range(n_pickers):
        fit_on, check_on = (np.delete(r, p, axis=1) for r in ranks)
        votes = (check_on > 0).sum(axis=1)
        label = ranks[1][:, p] > 0
        known = votes > 0
        if not (fit_on > 0).any() or label[known].all() or not label[known].any():
            continue
        combined = apply_evidence(fit_model(mode, fit_on, network[0], reference[0]),
                                  check_on, network[1], reference[1])
        found["votes"].append(ranking_quality(label[known], votes[known])[0])
        found["combined"].append(ranking_quality(label[known], combined[known])[0])
        levels = [votes == v for v in range(1, n_pickers)
                  if 0 < label[votes == v].sum() < (votes == v).sum()]
        if levels:
            found["within_votes"].append(np.average(
                [ranking_quality(label[s], combined[s])[0] for s in levels],
                weights=[s.sum() for s in levels]))
    if not found["votes"]:
        return None
    check = {k: float(np.mean(v)) if v else 0.5 for k, v in found.items()}
    check["held_out_micrographs"] = len(halves[1])
    return check


def falls_back(check, margin=0.05):
    """The vote count is used instead of the combination when the combination ranks the held-out
    picks worse than the vote count and, among candidates with the same vote count, no
    clearly better than chance (by ``margin``): the network then adds nothing to trust."""
    return (check is not None and check["combined"] < check["votes"]
            and check["within_votes"] < 0.5 + margin)


def vote_scores(table, network, n_pickers):
    """The fallback score: the fraction of pickers, the network's score only breaking ties
    (a 2-of-3 candidate stays above 0.5, a 1-of-3 below)."""
    return ((np.asarray(table["votes"]) + 0.1 * (np.asarray(network) - 0.5))
            / n_pickers).astype(np.float32)


def inside(settings, table):
    """The candidates whose box lies whole inside the micrograph (all when the run keeps edge
    boxes): the others are never kept. The pickers' evidence is fitted with them all: without
    them EMPIAR-10017's F1 fell from 0.878 to 0.866 (docs/measurements.md)."""
    from .boxes import micrograph_shape
    xy, shape = table.get("xy"), micrograph_shape(table)
    if settings.edge_box is None or xy is None or shape is None:
        return np.ones(len(table["votes"]) if xy is None else len(xy), bool)
    return box_inside(xy, shape, settings.edge_box)


def final_scores(settings, evidence, table, network, reference=None):
    """The network's score, or its combination with the pickers' evidence when the run uses
    it and the evidence was fitted in the same mode (``reference``: the shipped network's
    scores, for ``anchored``); 0 for a candidate whose box leaves the micrograph."""
    network = np.asarray(network, dtype=np.float32)
    if (not settings.uses_evidence or evidence is None
            or evidence.get("mode") != settings.picker_evidence or not len(network)):
        scores = network
    elif evidence.get("fallback"):
        scores = vote_scores(table, network, settings.n_pickers)
    else:
        ranks = picker_evidence(evidence["mode"], table, evidence.get("quantiles"))
        scores = apply_evidence(evidence["model"], ranks, network, reference)
    return np.where(inside(settings, table), scores, 0).astype(np.float32)


def unique_and_kept(xy, scores, dedupe_radius_px, threshold):
    """(one candidate per particle: duplicates merged, the best scored kept; those of them
    scoring above the threshold, every one with a negative threshold)."""
    unique = suppress_duplicates(xy, scores, dedupe_radius_px)
    return unique, (unique if threshold < 0 else unique & (np.asarray(scores) > threshold))


def keep_mask(xy, scores, dedupe_radius_px, threshold):
    """The candidates that are output (``unique_and_kept``)."""
    return unique_and_kept(xy, scores, dedupe_radius_px, threshold)[1]


def kept_by_source(run, stems, settings, source):
    """[(stem, network scores, kept)] of micrographs scored by a model that is not the final
    one (``source``: a training pass, for the preliminary outputs): the keep rule on its
    network scores and the run's threshold."""
    found = []
    for stem in stems:
        scores = run.network_scores(stem, settings.views, source)
        found.append((stem, scores, keep_mask(run.candidates(stem)["xy"], scores,
                                              settings.dedupe_radius_px,
                                              float(settings.threshold))))
    return found


def final_score_bounds(settings, evidence, table, network, reference=None, steps=4):
    """The lowest and highest final score each candidate can have while its network score
    (and the shipped network's, ``reference``) is anywhere in a range: each a (low, point,
    high) triple of arrays, the point a value known to lie in the range.

    Asked of ``final_scores`` itself, on a grid (the ends, the point and ``steps`` - 1 values
    between), so that a change of the rule carries over to the scoring cascade
    (``run/cascade.py``) without a second copy of it: exact for a rule monotone in each
    score, the grid's for one that is not (``votes`` bins the score). Returns (low, high,
    (network, reference) where low is reached, the same where high is)."""
    def grid(triple):
        low, point, high = (np.asarray(v, dtype=np.float64) for v in triple)
        return [low + (high - low) * k / steps for k in range(steps + 1)] + [point]

    nets = grid(network)
    refs = grid(reference) if reference is not None else [None]
    n = len(nets[0])
    low, high = np.full(n, np.inf), np.full(n, -np.inf)
    low_at = [np.zeros(n), np.zeros(n)]
    high_at = [np.zeros(n), np.zeros(n)]
    for net in nets:
        for ref in refs:
            score = np.asarray(final_scores(settings, evidence, table, net.astype(np.float32),
                                            None if ref is None else ref.astype(np.float32)),
                               dtype=np.float64)
            lower, higher = score < low, score > high
            low, high = np.where(lower, score, low), np.where(higher, score, high)
            for at, better in ((low_at, lower), (high_at, higher)):
                at[0] = np.where(better, net, at[0])
                if ref is not None:
                    at[1] = np.where(better, ref, at[1])
    return low, high, tuple(low_at), tuple(high_at)
