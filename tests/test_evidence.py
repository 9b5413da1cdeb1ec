import numpy as np
import pytest

import json

from xmipp3_deepcons.core.evidence import (apply_evidence, combine_evidence, fit_evidence,
                                           picker_ranks, suggest_threshold)
from xmipp3_deepcons.core.metrics import ranking_quality


def test_ranks_are_per_picker_and_zero_where_not_picked():
    scores = np.array([[0.9, np.nan], [0.1, 5.0], [np.nan, 7.0], [0.5, 1.0]])
    ranks = picker_ranks(scores)
    np.testing.assert_allclose(ranks[:, 0], [1, 1 / 3, 0, 2 / 3])
    np.testing.assert_allclose(ranks[:, 1], [0, 2 / 3, 1, 1 / 3])


def test_a_pick_without_a_score_counts_as_picked():
    scores = np.array([[np.nan, 2.0], [np.nan, np.nan], [np.nan, 1.0]])
    picked = np.array([[True, True], [True, False], [False, True]])
    np.testing.assert_allclose(picker_ranks(scores, picked), [[1, 1], [1, 0], [0, 0.5]])


def simulated_witnesses(rng, n=4000):
    """A reliable scored picker, a sloppy one and one picking at random, plus a weak network."""
    real = rng.random(n) < 0.6
    scores = np.full((n, 3), np.nan)
    picked_a = np.where(real, rng.random(n) < 0.9, rng.random(n) < 0.3)
    scores[picked_a, 0] = np.where(real, rng.normal(2, 1, n), rng.normal(0, 1, n))[picked_a]
    picked_b = np.where(real, rng.random(n) < 0.7, rng.random(n) < 0.6)
    scores[picked_b, 1] = rng.normal(0, 1, n)[picked_b]
    picked_c = rng.random(n) < 0.4
    scores[picked_c, 2] = rng.normal(0, 1, n)[picked_c]
    empty = np.isnan(scores).all(axis=1)
    scores[empty, 2] = 0.0
    network = np.clip(np.where(real, rng.beta(5, 2, n), rng.beta(2, 4, n)), 0, 1)
    return real, scores, network


def test_combined_evidence_ranks_better_than_votes_or_the_network_alone():
    real, scores, network = simulated_witnesses(np.random.default_rng(0))
    ranks = picker_ranks(scores)
    posterior = combine_evidence(ranks, network)
    assert ((posterior >= 0) & (posterior <= 1)).all()
    auc_votes = ranking_quality(real, (ranks > 0).sum(axis=1))[0]
    auc_network = ranking_quality(real, network)[0]
    auc_combined = ranking_quality(real, posterior)[0]
    assert auc_combined > max(auc_votes, auc_network) + 0.03
    # the reliable picker's own ranking alone is beaten too
    assert auc_combined > ranking_quality(real, ranks[:, 0])[0]


def test_threshold_in_the_valley_of_two_modes():
    rng = np.random.default_rng(1)
    logits = np.r_[rng.normal(-4, 1, 3000), rng.normal(3, 1, 2000)]
    threshold = suggest_threshold(1 / (1 + np.exp(-logits)))
    # equal-variance components cross nearer the lighter mode: between the two modes
    valley = 1 / (1 + np.exp(-np.array([-1.5, 0.5])))
    assert valley[0] < threshold < valley[1]
    assert suggest_threshold([0.5] * 5) == 0.5


def test_a_fitted_model_scores_later_candidates_as_the_whole_fit_does():
    """Streaming: fit on the first micrographs, apply (after a JSON round trip) to each new one."""
    real, scores, network = simulated_witnesses(np.random.default_rng(2))
    ranks = picker_ranks(scores)
    model = json.loads(json.dumps(fit_evidence(ranks, network)))
    np.testing.assert_allclose(apply_evidence(model, ranks[100:200], network[100:200]),
                               combine_evidence(ranks, network)[100:200], rtol=1e-9)
    early = fit_evidence(ranks[:2000], network[:2000])
    later = apply_evidence(early, ranks[2000:], network[2000:])
    network_alone = ranking_quality(real[2000:], network[2000:])[0]
    assert ranking_quality(real[2000:], later)[0] > network_alone + 0.03
