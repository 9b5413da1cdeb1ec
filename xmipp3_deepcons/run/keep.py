"""The output rule, written once: a candidate's final score, and which candidates are kept.

Both front ends, the viewer and the tests call these; nothing else decides what is output.
"""
import numpy as np

from ..core.consensus import suppress_duplicates
from ..core.evidence import apply_evidence, fit_evidence, presence_ranks


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


def fit(mode, tables, network_scores, n_pickers):
    """The evidence model of these micrographs (JSON-ready)."""
    quantiles = score_quantiles(tables, n_pickers) if mode == "ranks" else None
    ranks = np.concatenate([picker_evidence(mode, t, quantiles) for t in tables])
    model = fit_evidence(ranks, np.concatenate(network_scores))
    return {"mode": mode, "model": model, "quantiles": quantiles}


def final_scores(settings, evidence, table, network):
    """The network's score, or its combination with the pickers' evidence when the run uses
    it and the evidence was fitted in the same mode."""
    network = np.asarray(network, dtype=np.float32)
    if (not settings.uses_evidence or evidence is None
            or evidence.get("mode") != settings.picker_evidence or not len(network)):
        return network
    ranks = picker_evidence(evidence["mode"], table, evidence.get("quantiles"))
    return apply_evidence(evidence["model"], ranks, network).astype(np.float32)


def keep_mask(xy, scores, dedupe_radius_px, threshold):
    """One candidate per particle (duplicates merged, the best scored kept), scoring above
    the threshold (every one with a negative threshold)."""
    keep = suppress_duplicates(xy, scores, dedupe_radius_px)
    return keep if threshold < 0 else keep & (np.asarray(scores) > threshold)
