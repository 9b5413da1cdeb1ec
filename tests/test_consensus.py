import itertools

import numpy as np
import pytest

from xmipp3_deepcons.core.consensus import (coordinate_consensus, merge_radius,
                                             suppress_duplicates)


def as_set(result):
    return sorted((round(x, 6), round(y, 6), int(v)) for (x, y), v in zip(result.xy, result.votes))


def test_constructed_geometry_votes_and_centres():
    a = np.array([[100, 100], [300, 300], [500, 500]])
    b = np.array([[104, 100], [300, 306], [900, 900]])
    c = np.array([[100, 108], [700, 700]])
    result = coordinate_consensus([a, b, c], radius=10)
    assert as_set(result) == sorted([
        (round(304 / 3, 6), round(308 / 3, 6), 3),   # all three pickers
        (300.0, 303.0, 2),                            # a and b
        (500.0, 500.0, 1), (900.0, 900.0, 1), (700.0, 700.0, 1)])


def test_a_picker_votes_once_per_particle():
    # Two picks of picker a near one pick of b: b joins the closest, the other stays alone.
    a = np.array([[100, 100], [108, 100]])
    b = np.array([[101, 100]])
    result = coordinate_consensus([a, b], radius=10)
    assert sorted(result.votes.tolist()) == [1, 2]
    assert result.votes.max() <= 2
    paired = result.xy[result.votes == 2][0]
    np.testing.assert_allclose(paired, [100.5, 100])


def test_no_chaining_beyond_the_radius():
    # a-b and b-c are within 10 px, a-c is 18 px apart: they cannot all be one particle.
    a, b, c = np.array([[0.0, 0]]), np.array([[9.0, 0]]), np.array([[18.0, 0]])
    result = coordinate_consensus([a, b, c], radius=10)
    assert sorted(result.votes.tolist()) == [1, 2]


def test_result_does_not_depend_on_picker_order():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 2000, (150, 2))
    picks = [base[mask] + rng.normal(0, 5, (mask.sum(), 2))
             for mask in (rng.random(150) < 0.8, rng.random(150) < 0.7, rng.random(150) < 0.5)]
    reference = as_set(coordinate_consensus(picks, radius=18))
    for order in itertools.permutations(range(3)):
        shuffled = [picks[i][rng.permutation(len(picks[i]))] for i in order]
        assert as_set(coordinate_consensus(shuffled, radius=18)) == reference
    assert sum(v for *_, v in reference) == sum(len(p) for p in picks)


def test_members_point_back_to_the_picks():
    a = np.array([[10, 10], [50, 50]])
    b = np.array([[52, 50]])
    result = coordinate_consensus([a, b], radius=5)
    scores = result.member_values([np.array([0.1, 0.2]), np.array([0.9])])
    row = int(np.argmax(result.votes))
    assert result.members[row].tolist() == [1, 0]
    assert scores[row].tolist() == [0.2, 0.9]
    assert np.isnan(scores[1 - row, 1])


def test_empty_pickers_and_radius_helpers():
    result = coordinate_consensus([np.zeros((0, 2)), np.array([[5, 5]])], radius=10)
    assert len(result) == 1 and result.votes.tolist() == [1]
    assert len(coordinate_consensus([np.zeros((0, 2))] * 3, radius=10)) == 0
    assert merge_radius(180, 0.1) == pytest.approx(18.0)


def test_duplicates_keep_the_best_scored():
    xy = np.array([[0, 0], [10, 0], [100, 0], [104, 0], [300, 0]])
    scores = np.array([0.6, 0.9, 0.2, 0.1, 0.5])
    keep = suppress_duplicates(xy, scores, radius=20)
    assert keep.tolist() == [False, True, True, False, True]
    assert suppress_duplicates(xy, scores, radius=0).all()
