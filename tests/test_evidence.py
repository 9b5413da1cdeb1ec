import json

import numpy as np
import pytest

from xmipp3_deepcons.core.evidence import (apply_evidence, combine_evidence,
                                           fit_anchored_evidence, fit_independent_evidence,
                                           fit_joint_evidence, picker_ranks, suggest_threshold)
from xmipp3_deepcons.core.metrics import ranking_quality
from xmipp3_deepcons.run.keep import falls_back, final_scores, held_out_check
from xmipp3_deepcons.run.settings import RunSettings


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
    model = json.loads(json.dumps(fit_independent_evidence(ranks, network)))
    np.testing.assert_allclose(apply_evidence(model, ranks[100:200], network[100:200]),
                               combine_evidence(ranks, network)[100:200], rtol=1e-9)
    early = fit_independent_evidence(ranks[:2000], network[:2000])
    later = apply_evidence(early, ranks[2000:], network[2000:])
    network_alone = ranking_quality(real[2000:], network[2000:])[0]
    assert ranking_quality(real[2000:], later)[0] > network_alone + 0.03


def shared_mistakes(rng, n=6000):
    """Pickers that agree on junk: a particle is picked by each picker on its own; a junk object
    by all three or by none; a background pick by one picker alone (mostly the greedy one).
    Returns the union's candidates: truth, (n, 3) ranks (who picked) and a network score."""
    kind = rng.choice(3, n, p=[0.5, 0.2, 0.3])           # particle, junk, background
    picked = np.zeros((n, 3), bool)
    particle = kind == 0
    picked[particle] = rng.random((particle.sum(), 3)) < [0.8, 0.85, 0.6]
    junk = kind == 1
    picked[junk] = (rng.random(junk.sum()) < 0.6)[:, None]
    background = np.flatnonzero(kind == 2)
    picked[background, rng.choice(3, len(background), p=[0.25, 0.6, 0.15])] = True
    seen = picked.any(axis=1)
    network = np.where(particle, rng.beta(4, 2, n), rng.beta(2, 3, n))
    return particle[seen], picked[seen].astype(float), network[seen]


def test_pickers_that_share_mistakes_fool_independent_witnesses_but_not_patterns():
    """Junk every picker takes and background only one takes break the independence of the
    pickers: independent witnesses then rank below the vote count; who picked as one answer
    ranks above the vote count and the network, and finds the share of particles."""
    real, ranks, network = shared_mistakes(np.random.default_rng(3))
    auc_votes = ranking_quality(real, ranks.sum(axis=1))[0]
    auc_network = ranking_quality(real, network)[0]
    assert ranking_quality(real, combine_evidence(ranks, network))[0] < auc_votes
    model = fit_joint_evidence(ranks, network)
    posterior = apply_evidence(model, ranks, network)
    assert ranking_quality(real, posterior)[0] > max(auc_votes, auc_network) + 0.03
    assert abs(model["prior"] - real.mean()) < 0.1
    assert model["link"][1] > 0
    # JSON round trip, and candidates scored later by the fitted model
    again = json.loads(json.dumps(model))
    np.testing.assert_allclose(apply_evidence(again, ranks[:50], network[:50]), posterior[:50],
                               rtol=1e-9)


def test_the_joint_fit_runs_to_its_fixed_point():
    """More iterations than convergence needs change nothing: the result does not depend on an
    iteration count."""
    real, ranks, network = shared_mistakes(np.random.default_rng(4), n=3000)
    converged = apply_evidence(fit_joint_evidence(ranks, network), ranks, network)
    longer = fit_joint_evidence(ranks, network, iterations=5000)
    np.testing.assert_allclose(apply_evidence(longer, ranks, network), converged, atol=1e-5)


def lone_picks(rng, n=6000, precise=True):
    """Picker A precise (its lone picks mostly particles; ``precise=False``: about half), B
    picking particles and junk alike, C adding background. The run's network, trained on the
    consensus, reads the particles only one picker found a little lower than the confirmed
    ones and junk lower still; the shipped network is fooled by B's junk."""
    real = rng.random(n) < 0.5
    a = (0.9, 0.05) if precise else (0.6, 0.5)
    picked = np.column_stack([
        np.where(real, rng.random(n) < a[0], rng.random(n) < a[1]),
        np.where(real, rng.random(n) < 0.6, rng.random(n) < 0.6),
        np.where(real, rng.random(n) < 0.3, rng.random(n) < 0.45)])
    keep = picked.any(axis=1)
    real, picked = real[keep], picked[keep]
    lone = picked.sum(axis=1) == 1
    n = len(real)
    consensus = np.where(real, np.where(lone, rng.beta(4, 3, n), rng.beta(6, 2, n)),
                         rng.beta(2, 5, n))
    fooled = ~real & picked[:, 1]
    shipped = np.where(real | fooled, rng.beta(4, 3, n), rng.beta(2, 4, n))
    return real, picked.astype(float), consensus, shipped, lone


def kept_share(scores, which):
    return (scores[which] > 0.5).mean()


def test_anchored_evidence_keeps_a_precise_pickers_lone_particles():
    """A precise picker's lone picks are kept; the union is ranked far above the vote count, the
    shipped network alone and who picked read by the shipped network (which B's junk fools: it
    keeps all of B's lone junk), and fewer of B's lone junk are kept than by that reading."""
    real, ranks, consensus, shipped, lone = lone_picks(np.random.default_rng(7))
    model = fit_anchored_evidence(ranks, consensus, shipped)
    anchored = apply_evidence(model, ranks, consensus, shipped)
    earlier = apply_evidence(model["shipped_patterns"], ranks, consensus, shipped)
    a_alone, b_alone = lone & (ranks[:, 0] > 0), lone & (ranks[:, 1] > 0)
    assert kept_share(anchored, a_alone & real) > 0.9
    assert kept_share(anchored, b_alone & ~real) < kept_share(earlier, b_alone & ~real) - 0.05
    auc = ranking_quality(real, anchored)[0]
    for other in (ranks.sum(axis=1), shipped, earlier):
        assert auc > ranking_quality(real, other)[0] + 0.15
    assert abs(model["prior"] - anchored.mean()) < 1e-9
    # JSON round trip and later candidates; the shipped network's scores are required
    again = json.loads(json.dumps(model))
    np.testing.assert_allclose(apply_evidence(again, ranks[:50], consensus[:50], shipped[:50]),
                               anchored[:50], rtol=1e-9)
    with pytest.raises(ValueError, match="shipped network"):
        apply_evidence(model, ranks, consensus)


def test_anchored_evidence_where_no_picker_is_precise():
    """Every picker's lone picks are about half particles: most lone particles are kept, fewer
    lone junk than who picked read by the shipped network keeps, and the union is ranked
    above the vote count (which cannot rank it here) and that reading."""
    real, ranks, consensus, shipped, lone = lone_picks(np.random.default_rng(8), precise=False)
    model = fit_anchored_evidence(ranks, consensus, shipped)
    anchored = apply_evidence(model, ranks, consensus, shipped)
    earlier = apply_evidence(model["shipped_patterns"], ranks, consensus, shipped)
    assert 0.3 < real[lone].mean() < 0.7
    assert kept_share(anchored, lone & real) > 0.7
    assert kept_share(anchored, lone & ~real) < kept_share(earlier, lone & ~real) - 0.1
    auc = ranking_quality(real, anchored)[0]
    assert auc > ranking_quality(real, ranks.sum(axis=1))[0] + 0.15
    assert auc > ranking_quality(real, earlier)[0] + 0.1


def test_an_anchored_model_fitted_before_the_three_readings_still_applies():
    """Runs scored with the earlier anchored model (the larger of two readings of who picked)
    keep their scores when they are read again."""
    old = {"anchor": {"who_picked": [[-1.0, -1.0, -1.0, -1.0], [-1.0, -0.5, -2.0, -2.0]],
                      "link": [0.0, 1.0]},
           "link": [0.5, 0.5], "prior": 0.5}
    ranks = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    network, reference = np.array([0.2, 0.5, 0.9]), np.array([0.6, 0.3, 0.5])
    shipped = apply_evidence(old["anchor"], ranks, reference)
    own = apply_evidence({"who_picked": old["anchor"]["who_picked"], "link": old["link"]},
                         ranks, network)
    np.testing.assert_allclose(apply_evidence(old, ranks, network, reference),
                               np.maximum(shipped, own))


def as_tables(ranks, network, n_micrographs=6):
    """The candidates split into micrographs' tables, as the run keeps them."""
    tables, scores = [], []
    for part in np.array_split(np.arange(len(ranks)), n_micrographs):
        picked = ranks[part] > 0
        tables.append({"members": np.where(picked, 0, -1), "votes": picked.sum(axis=1),
                       "picker_scores": np.full(picked.shape, np.nan)})
        scores.append(network[part])
    return tables, scores


@pytest.mark.parametrize("network_kind, expected", [("informative", False), ("random", True),
                                                    ("fooled by junk", True)])
def test_the_held_out_check_falls_back_to_the_vote_only_for_a_network_not_to_trust(
        network_kind, expected):
    """The check has no truth: each picker in turn is the label. Shared junk makes the vote
    count look better than it is in that comparison; an informative network still passes
    (it ranks well among candidates with the same vote count), a random one or one that
    learned the junk does not, and their runs score by the vote count."""
    rng = np.random.default_rng(5)
    real, ranks, network = shared_mistakes(rng)
    network = {"informative": network, "random": rng.random(len(real)),
               "fooled by junk": np.where(real, rng.beta(2, 4, len(real)),
                                          rng.beta(4, 2, len(real)))}[network_kind]
    tables, scores = as_tables(ranks, network)
    check = held_out_check("patterns", tables, scores, 3)
    assert check["held_out_micrographs"] == 3
    assert falls_back(check) == expected
    combined = combine_evidence(ranks, network, joint=True)
    truly_worse = ranking_quality(real, combined)[0] < ranking_quality(real, ranks.sum(1))[0]
    assert truly_worse == expected
    # the fallback: the vote fraction, the network only breaking ties; 2 of 3 stays above 0.5
    settings = RunSettings(box_size=128, n_pickers=3)
    fallback = final_scores(settings, {"mode": "votes", "fallback": True, "model": {}},
                            tables[0], scores[0])
    np.testing.assert_array_equal(fallback > 0.5, tables[0]["votes"] >= 2)
    same_votes = tables[0]["votes"] == 2
    order = np.argsort(scores[0][same_votes])
    assert (np.diff(fallback[same_votes][order]) >= 0).all()


def test_the_held_out_check_needs_three_pickers_and_two_micrographs():
    real, ranks, network = shared_mistakes(np.random.default_rng(6), n=600)
    assert held_out_check("votes", *as_tables(ranks[:, :2], network), 2) is None
    assert held_out_check("votes", *as_tables(ranks, network, 1), 3) is None
    assert not falls_back(None)


def test_who_picked_is_a_pattern_up_to_six_pickers_and_a_count_beyond():
    from xmipp3_deepcons.core.evidence import who_picked
    ranks = np.array([[1, 0, 1], [0, 1, 0]], float)
    np.testing.assert_array_equal(who_picked(ranks)[0], [5, 2])
    assert who_picked(ranks)[1] == 8
    many = np.zeros((2, 7))
    many[0, [0, 3, 6]] = 1
    np.testing.assert_array_equal(who_picked(many)[0], [3, 0])
    assert who_picked(many)[1] == 8


def test_default_evidence_reads_who_picked_as_one_answer_unless_told_otherwise(
        tmp_path, monkeypatch):
    """A shipped network that scores without training reads who picked alone (patterns); a
    network trained on the pickers' agreement is biased against one-vote candidates, so the
    shipped network reads who picked (anchored); the pickers are independent witnesses
    (votes) when the user says they do not share their mistakes, or without the shipped
    network."""
    from xmipp3_deepcons.resources import MODELS_VAR
    from xmipp3_deepcons.run.settings import default_picker_evidence

    def model(name, extra):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"models": [{"file": "model_0.keras"}],
                                                          "extra": extra}))
        return str(folder)

    shipped = model("shipped", {"phase_flip": False, "pretrained": True})
    trained = model("trained", {"phase_flip": False, "micrographs": ["mic_000"]})
    for flip in (False, True):
        assert default_picker_evidence(shipped, True, phase_flip=flip) == "patterns"
        assert default_picker_evidence(shipped, True, False, flip) == "patterns"
        assert default_picker_evidence(shipped, False, phase_flip=flip) == "anchored"  # trained
        assert default_picker_evidence(trained, True, phase_flip=flip) == "anchored"
        assert default_picker_evidence(None, False, phase_flip=flip) == "anchored"
        assert default_picker_evidence(None, False, False, flip) == "votes"
        assert default_picker_evidence(str(tmp_path / "missing"), True,
                                       phase_flip=flip) == "anchored"
    monkeypatch.setenv(MODELS_VAR, str(tmp_path / "no_models"))
    assert default_picker_evidence(None, False) == "votes"
    assert default_picker_evidence(shipped, True) == "patterns"
