"""All the evidence about each candidate, combined: who picked it, how confident each picker was,
and what the network sees.

Pickers' figures of merit are not comparable (a crYOLO confidence, a Topaz log-likelihood), so
each becomes a rank within its picker. The combination is learned without labels, as
Dawid and Skene did for unreliable annotators: every picker (and the network) is a witness
whose answer (not picked / rank quintile / score bin) has some probability under "particle" and
under "not a particle"; expectation-maximisation finds those probabilities and each candidate's
posterior together. A picker whose confident picks the others confirm gains weight; one whose
picks nobody confirms loses it.
"""
import numpy as np
from scipy.stats import rankdata

RANK_BINS = 5
SCORE_BINS = 10


def picker_ranks(picker_scores, picked=None):
    """(n, pickers) scores -> ranks in (0, 1] within each picker, 0 where not picked.

    ``picked`` (n, pickers) says who picked each candidate (default: where a score is given);
    a pick without a score (a picker that gives none) gets rank 1: presence only.
    """
    scores = np.asarray(picker_scores, dtype=float)
    scored = ~np.isnan(scores)
    picked = scored if picked is None else np.asarray(picked, dtype=bool)
    ranks = np.where(picked, 1.0, 0.0)
    for p in range(scores.shape[1]):
        mine = picked[:, p] & scored[:, p]
        if mine.any():
            ranks[mine, p] = rankdata(scores[mine, p]) / mine.sum()
    return ranks


def presence_ranks(members):
    """Who picked each candidate, without figures of merit: 1 where picked, 0 where not, from
    the consensus' (n, pickers) member indices (-1 where not picked)."""
    return (np.asarray(members) >= 0).astype(float)


def witness_answers(ranks, network_scores=None):
    """Categorical answer of each witness for each candidate: list of (answers, n_categories)."""
    witnesses = []
    for p in range(ranks.shape[1]):
        quintile = 1 + np.minimum((ranks[:, p] * RANK_BINS).astype(int), RANK_BINS - 1)
        witnesses.append((np.where(ranks[:, p] > 0, quintile, 0), RANK_BINS + 1))
    if network_scores is not None:
        bins = np.minimum((np.asarray(network_scores) * SCORE_BINS).astype(int), SCORE_BINS - 1)
        witnesses.append((bins, SCORE_BINS))
    return witnesses


def fit_evidence(ranks, network_scores=None, initial=None, iterations=50):
    """Dawid-Skene EM (add-one smoothing): the prior and, per witness, the log-probability of
    each answer under "particle" and under "not". Fitted once, it can score candidates that
    arrive later (streaming) with ``apply_evidence``.

    ``initial``: a first guess of the posterior (the network score, or the vote fraction).
    """
    witnesses = witness_answers(ranks, network_scores)
    if initial is None:
        initial = network_scores if network_scores is not None else (ranks > 0).mean(axis=1)
    posterior = np.clip(np.asarray(initial, dtype=float), 0.05, 0.95)
    for _ in range(iterations):
        model = {"prior": float(np.clip(posterior.mean(), 1e-3, 1 - 1e-3)), "witnesses": []}
        for answers, n_categories in witnesses:
            if_particle = np.bincount(answers, weights=posterior, minlength=n_categories) + 1
            if_not = np.bincount(answers, weights=1 - posterior, minlength=n_categories) + 1
            model["witnesses"].append([np.log(if_particle / if_particle.sum()).tolist(),
                                       np.log(if_not / if_not.sum()).tolist()])
        posterior = apply_evidence(model, ranks, network_scores)
    return model


def apply_evidence(model, ranks, network_scores=None):
    """Posterior P(particle) of each candidate under a fitted model (JSON-ready dict)."""
    prior = model["prior"]
    log_odds = np.full(len(ranks), np.log(prior / (1 - prior)))
    for (answers, _), (if_particle, if_not) in zip(witness_answers(ranks, network_scores),
                                                   model["witnesses"]):
        log_odds += np.asarray(if_particle)[answers] - np.asarray(if_not)[answers]
    return 1 / (1 + np.exp(-np.clip(log_odds, -50, 50)))


def combine_evidence(ranks, network_scores=None, initial=None, iterations=50):
    """Posterior P(particle) of every candidate, the model fitted on these candidates."""
    model = fit_evidence(ranks, network_scores, initial, iterations)
    return apply_evidence(model, ranks, network_scores)


def suggest_threshold(scores, bins=50):
    """The valley between the rejected and the accepted modes of the score histogram.

    A two-component fit in logit space; the threshold is where the two weighted components
    cross. Falls back to 0.5 when the scores do not show two modes.
    """
    from sklearn.mixture import GaussianMixture
    scores = np.clip(np.asarray(scores, dtype=float), 1e-4, 1 - 1e-4)
    if len(scores) < 20:
        return 0.5
    logit = np.log(scores / (1 - scores))[:, None]
    mixture = GaussianMixture(2, random_state=0).fit(logit)
    low, high = np.argsort(mixture.means_.ravel())
    grid = np.linspace(mixture.means_[low, 0], mixture.means_[high, 0], 400)[:, None]
    responsibility = mixture.predict_proba(grid)
    crossing = np.flatnonzero(responsibility[:, high] >= responsibility[:, low])
    if not len(crossing):
        return 0.5
    value = grid[crossing[0], 0]
    return float(1 / (1 + np.exp(-value)))
