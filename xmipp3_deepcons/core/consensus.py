"""Coordinate consensus: turn N pickers' picks on one micrograph into candidates with votes.

Picks of different pickers closer than the merge radius are the same particle. Unlike the
original greedy pass (which depended on which picker came first and let a picker vote twice),
clusters are grown from the closest cross-picker pairs first, a cluster never holds two picks of
the same picker, and every member of a cluster lies within the radius of every other member.
The result is the same whatever the order of the pickers.
"""
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Consensus:
    """Candidates of one micrograph.

    ``xy`` (k, 2): cluster centres (mean of the members); ``votes`` (k,): number of pickers that
    picked it; ``members`` (k, n_pickers): index of the member pick in each picker's list, -1 where
    that picker did not pick it.
    """
    xy: np.ndarray
    votes: np.ndarray
    members: np.ndarray

    def __len__(self):
        return len(self.votes)

    def member_values(self, per_picker_values, fill=np.nan):
        """Gather a per-pick quantity (e.g. each picker's score) into a (k, n_pickers) array."""
        out = np.full(self.members.shape, fill, dtype=float)
        for p, values in enumerate(per_picker_values):
            has = self.members[:, p] >= 0
            out[has, p] = np.asarray(values, dtype=float)[self.members[has, p]]
        return out


def merge_radius(box_size, relative_radius):
    """Merge radius in pixels: a fraction of the box, as in the original form."""
    return float(relative_radius) * float(box_size)


def coordinate_consensus(picks, radius):
    """Cluster the picks of several pickers on one micrograph.

    ``picks``: one (n_i, 2) array of x, y per picker, all in the same pixel frame.
    ``radius``: two picks of different pickers closer than this (pixels) may be one particle.
    """
    picks = [np.asarray(p, dtype=float).reshape(-1, 2) for p in picks]
    n_pickers = len(picks)
    xy = np.concatenate(picks) if picks else np.zeros((0, 2))
    picker = np.concatenate([np.full(len(p), i) for i, p in enumerate(picks)]) if picks else np.zeros(0, int)
    local = np.concatenate([np.arange(len(p)) for p in picks]) if picks else np.zeros(0, int)
    n = len(xy)

    parent = np.arange(n)
    members = {i: [i] for i in range(n)}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1 and radius > 0:
        pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
        pairs = pairs[picker[pairs[:, 0]] != picker[pairs[:, 1]]]
        dist = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
        # Closest pairs first; ties broken by the coordinates themselves, never by picker order.
        lo = np.minimum(pairs[:, 0], pairs[:, 1])
        hi = np.maximum(pairs[:, 0], pairs[:, 1])
        key_a = np.minimum(xy[lo, 0] * 1e6 + xy[lo, 1], xy[hi, 0] * 1e6 + xy[hi, 1])
        key_b = np.maximum(xy[lo, 0] * 1e6 + xy[lo, 1], xy[hi, 0] * 1e6 + xy[hi, 1])
        for k in np.lexsort((key_b, key_a, dist)):
            a, b = root(pairs[k, 0]), root(pairs[k, 1])
            if a == b:
                continue
            ma, mb = members[a], members[b]
            if set(picker[ma]) & set(picker[mb]):
                continue
            if _max_cross_distance(xy[ma], xy[mb]) > radius:
                continue
            parent[b] = a
            members[a] = ma + mb
            del members[b]

    roots = sorted(members, key=lambda r: tuple(xy[members[r]].mean(axis=0)))
    centres = np.array([xy[members[r]].mean(axis=0) for r in roots]).reshape(-1, 2)
    member_table = np.full((len(roots), n_pickers), -1, dtype=int)
    for row, r in enumerate(roots):
        for i in members[r]:
            member_table[row, picker[i]] = local[i]
    votes = (member_table >= 0).sum(axis=1)
    return Consensus(xy=centres, votes=votes, members=member_table)


def _max_cross_distance(a, b):
    return float(np.max(np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])))


def suppress_duplicates(xy, scores, radius):
    """Candidates closer than ``radius`` are one particle: keep the best-scored of each group.

    Returns a bool mask of the candidates kept. Greedy, best score first (non-maximum
    suppression), so the result does not depend on the order of the candidates.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    keep = np.ones(len(xy), dtype=bool)
    if radius <= 0 or len(xy) < 2:
        return keep
    tree = cKDTree(xy)
    order = np.lexsort((xy[:, 1], xy[:, 0], -np.asarray(scores, dtype=float)))
    removed = np.zeros(len(xy), dtype=bool)
    for i in order:
        if removed[i]:
            continue
        for j in tree.query_ball_point(xy[i], radius):
            if j != i and not removed[j]:
                removed[j] = True
                keep[j] = False
    return keep
