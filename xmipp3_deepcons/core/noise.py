"""Negatives: background positions far from every candidate.

Drawn over the whole micrograph in its own frame (the original drew them in a downsampled frame
with original-frame distances, and swapped x and y on non-square micrographs).
"""
import numpy as np
from scipy.spatial import cKDTree


def pick_noise(shape, avoid_xy, box_size, count, rng, max_rounds=200):
    """Up to ``count`` random box centres at least half a box from every point of ``avoid_xy``.

    ``shape``: (rows, columns) of the micrograph; centres keep the whole box inside it.
    ``rng``: a ``numpy.random.Generator`` (the caller's seed makes the picks reproducible).
    Returns fewer than ``count`` positions only when the free area is too small.
    """
    rows, cols = shape
    half = box_size / 2.0
    if count <= 0 or cols <= box_size or rows <= box_size:
        return np.zeros((0, 2))
    avoid = np.asarray(avoid_xy, dtype=float).reshape(-1, 2)
    tree = cKDTree(avoid) if len(avoid) else None
    found = []
    n_found = 0
    for _ in range(max_rounds):
        trial = np.column_stack([rng.uniform(half, cols - half, 2 * count),
                                 rng.uniform(half, rows - half, 2 * count)])
        if tree is not None:
            distance, _ = tree.query(trial)
            trial = trial[distance >= half]
        found.append(trial)
        n_found += len(trial)
        if n_found >= count:
            break
    return np.concatenate(found)[:count]
