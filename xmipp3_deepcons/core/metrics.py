"""How good a set of picks is against reference particles: for benchmarks and tests."""
import numpy as np
from scipy.spatial import cKDTree


def match_to_reference(picks_xy, reference_xy, radius):
    """One-to-one matching, closest pairs first; returns a bool per pick (matched or not).

    A second pick of an already matched particle is not matched: duplicates count as false
    positives, as they cost the user a duplicated particle.
    """
    picks_xy = np.asarray(picks_xy, dtype=float).reshape(-1, 2)
    reference_xy = np.asarray(reference_xy, dtype=float).reshape(-1, 2)
    matched = np.zeros(len(picks_xy), dtype=bool)
    if len(picks_xy) == 0 or len(reference_xy) == 0:
        return matched
    pairs = cKDTree(picks_xy).sparse_distance_matrix(cKDTree(reference_xy), radius,
                                                     output_type="ndarray")
    used_reference = np.zeros(len(reference_xy), dtype=bool)
    for i, j, _ in sorted(pairs.tolist(), key=lambda p: p[2]):
        i, j = int(i), int(j)
        if not matched[i] and not used_reference[j]:
            matched[i] = used_reference[j] = True
    return matched


def precision_recall_f1(n_matched, n_picks, n_reference):
    precision = n_matched / n_picks if n_picks else 0.0
    recall = n_matched / n_reference if n_reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def ranking_quality(labels, scores):
    """ROC-AUC and average precision of scores against 0/1 labels (NaN when undefined)."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    labels = np.asarray(labels, dtype=int)
    if labels.min(initial=1) == labels.max(initial=0):
        return float("nan"), float("nan")
    return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))
