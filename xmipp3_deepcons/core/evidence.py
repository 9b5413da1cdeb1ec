"""All the evidence about each candidate, combined: who picked it, how confident each picker was,
and what the network sees. The combination is learned without labels, by expectation-
maximisation over a hidden class ("particle" or not), in one of these models:

- *independent witnesses* (``fit_independent_evidence``; ``--picker-evidence votes`` and
  ``ranks``), as Dawid and Skene did for unreliable annotators: every picker and the network
  is a witness whose answer (not picked / rank quintile / score bin) has some probability
  under "particle" and under "not". A picker whose picks the others confirm gains weight.
  Pickers' figures of merit are not comparable (a crYOLO confidence, a Topaz log-likelihood),
  so each becomes a rank within its picker.
- *who picked as one answer* (``fit_joint_evidence``; ``--picker-evidence patterns``): the
  network's score gives the odds through a fitted logistic link a + b logit(score), and the
  pattern of pickers (crYOLO and Topaz but not DeepPicker) is one answer with its own frequency
  among particles and among the rest. It does not assume the pickers' mistakes independent
  (background picks are one picker's alone, junk that fools one fools the others), which the
  first model does and on such data locks onto; but where the network was trained against the
  one-vote candidates it believes the network about them, and on EMPIAR-10017 it keeps fewer
  of the particles only crYOLO found. Measurements: docs/measurements.md.

- *three readings that fail differently* (``fit_anchored_evidence``; ``--picker-evidence
  anchored``, the default with a trained network), the final score's log-odds the mean of
  theirs: who picked and the run's network as one logistic model, P(particle) = sigmoid(a + b
  logit(score) + the pattern's log-odds), the log-odds re-estimated from the posterior and (a,
  b) fitted with them as offsets, to the fixed point (``fit_pattern_link``: a picker whose
  lone picks the network reads like junk loses them all, one whose lone picks it reads like
  the confirmed ones keeps them; fooled when the pickers agree on junk); who picked read by
  a shipped network, which never learnt this run's consensus, the run's network ranking
  within each answer (``fit_shipped_patterns``; fooled by junk that looks like particles to
  it, such as a LoG picker's); and the shipped network's score alone. Chosen on real pickers'
  micrographs, checked on others and on simulated sets (docs/measurements.md, "Where no
  picker is precise").

A fitted model (JSON-ready) scores candidates that arrive later (streaming) with
``apply_evidence``, which reads which model it is.
"""
import numpy as np
from scipy.stats import rankdata

RANK_BINS = 5
SCORE_BINS = 10
PATTERN_PICKERS = 6        # up to 6 pickers, who picked is one of 63 patterns; beyond, the count
MAX_ITERATIONS = 1000      # the joint model runs to its fixed point (TOLERANCE)
TOLERANCE = 1e-7


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


def fit_independent_evidence(ranks, network_scores=None, initial=None, iterations=50):
    """Dawid-Skene EM (add-one smoothing): the prior and, per witness, the log-probability of
    each answer under "particle" and under "not".

    ``initial``: a first guess of the posterior (the network score, or the vote fraction).
    """
    ranks = np.asarray(ranks, dtype=float)
    witnesses = witness_answers(ranks, network_scores)
    posterior = _initial_posterior(ranks, network_scores, initial)
    for _ in range(iterations):
        model = {"prior": float(np.clip(posterior.mean(), 1e-3, 1 - 1e-3)), "witnesses": []}
        for answers, n_categories in witnesses:
            model["witnesses"].append(_log_frequencies(answers, n_categories, posterior))
        posterior = apply_evidence(model, ranks, network_scores)
    return model


def _initial_posterior(ranks, network_scores, initial):
    if initial is None:
        initial = network_scores if network_scores is not None else (ranks > 0).mean(axis=1)
    return np.clip(np.asarray(initial, dtype=float), 0.05, 0.95)


def who_picked(ranks):
    """Each candidate's answer "who picked it": a bit per picker, or the vote count when there
    are too many pickers for patterns; and the number of possible answers."""
    picked = np.asarray(ranks) > 0
    n_pickers = picked.shape[1]
    if n_pickers <= PATTERN_PICKERS:
        return picked @ (1 << np.arange(n_pickers)), 1 << n_pickers
    return picked.sum(axis=1), n_pickers + 1


def network_logit(network_scores, n):
    if network_scores is None:
        return np.zeros(n)
    scores = np.clip(np.asarray(network_scores, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(scores / (1 - scores))


def _log_frequencies(answers, n_answers, posterior):
    """log P(answer | particle), log P(answer | not), add-one smoothed."""
    particle = np.bincount(answers, weights=posterior, minlength=n_answers) + 1
    other = np.bincount(answers, weights=1 - posterior, minlength=n_answers) + 1
    return [np.log(particle / particle.sum()).tolist(), np.log(other / other.sum()).tolist()]


def _logistic_fit(x, target, start, steps=25, offset=0.0):
    """Weighted logistic regression of a soft target on [1, x] plus a fixed ``offset`` per
    sample (Newton, a small ridge)."""
    design = np.column_stack([np.ones_like(x), x])
    w = np.asarray(start, dtype=float)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(design @ w + offset, -50, 50)))
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, design.T @ (target - p))
        w = w + step
        if np.max(np.abs(step)) < 1e-9:
            break
    return w


def _to_fixed_point(step, posterior, iterations):
    """EM run until no posterior moves by TOLERANCE: ``step(posterior)`` gives the model fitted
    to it and the posterior under that model. Returns the last model and posterior."""
    model = None
    for _ in range(iterations):
        model, updated = step(posterior)
        change = np.max(np.abs(updated - posterior), initial=0.0)
        posterior = updated
        if change < TOLERANCE:
            break
    return model, posterior


def fit_joint_evidence(ranks, network_scores=None, initial=None, iterations=MAX_ITERATIONS):
    """The joint model of these candidates (JSON-ready), fitted by EM from ``initial`` to its
    fixed point. Only who picked counts, not the pickers' figures of merit."""
    ranks = np.asarray(ranks, dtype=float)
    logit = network_logit(network_scores, len(ranks))
    patterns, n_patterns = who_picked(ranks)
    posterior = _initial_posterior(ranks, network_scores, initial)
    link = [0.0, 1.0 if network_scores is not None else 0.0]

    def step(posterior):
        if network_scores is not None:
            link[:] = _logistic_fit(logit, posterior, link)
        else:
            prior = np.clip(posterior.mean(), 1e-3, 1 - 1e-3)
            link[:] = [np.log(prior / (1 - prior)), 0.0]
        model = {"link": [float(v) for v in link],
                 "who_picked": _log_frequencies(patterns, n_patterns, posterior)}
        return model, apply_evidence(model, ranks, network_scores)

    model, posterior = _to_fixed_point(step, posterior, iterations)
    model["prior"] = float(posterior.mean())
    return model


def _pattern_log_odds(model, ranks):
    patterns, _ = who_picked(ranks)
    particle, other = (np.asarray(t) for t in model["who_picked"])
    return (particle - other)[patterns]


def fit_pattern_link(ranks, network_scores, iterations=MAX_ITERATIONS):
    """Who picked and the network's score as one logistic model (JSON-ready, read like
    ``fit_joint_evidence``'s): the patterns' log-odds re-estimated from the posterior at each
    step, the link fitted with them as offsets, so the network only accounts for what who
    picked leaves open; run from the network's scores to the fixed point."""
    ranks = np.asarray(ranks, dtype=float)
    logit = network_logit(network_scores, len(ranks))
    patterns, n_patterns = who_picked(ranks)
    posterior = _initial_posterior(ranks, network_scores, None)
    model = {"link": [0.0, 1.0]}

    def step(posterior):
        model["who_picked"] = _log_frequencies(patterns, n_patterns, posterior)
        offsets = _pattern_log_odds(model, ranks)
        model["link"] = _logistic_fit(logit, posterior, model["link"], offset=offsets).tolist()
        return model, apply_evidence(model, ranks, network_scores)

    model, posterior = _to_fixed_point(step, posterior, iterations)
    model["prior"] = float(posterior.mean())
    return model


def fit_shipped_patterns(ranks, network_scores, reference_scores, iterations=MAX_ITERATIONS):
    """Who picked as one answer with its shares read by ``reference_scores`` (a network that
    never learnt this run's consensus), and ``network_scores`` ranking within a pattern: its
    link fitted by EM with each pattern's log-odds fixed. Read as the larger of the two
    (the ``anchored`` model until 2026-12-07, now one of its three readings)."""
    ranks = np.asarray(ranks, dtype=float)
    anchor = fit_joint_evidence(ranks, reference_scores)
    offsets = _pattern_log_odds(anchor, ranks)
    logit = network_logit(network_scores, len(ranks))
    posterior = _initial_posterior(ranks, network_scores, None)
    model = {"anchor": anchor, "link": [0.0, 1.0]}

    def step(posterior):
        model["link"] = _logistic_fit(logit, posterior, model["link"], offset=offsets).tolist()
        return model, apply_evidence(_own_reading(model), ranks, network_scores)

    return _to_fixed_point(step, posterior, iterations)[0]


def _own_reading(shipped_patterns):
    return {"who_picked": shipped_patterns["anchor"]["who_picked"],
            "link": shipped_patterns["link"]}


def fit_anchored_evidence(ranks, network_scores, reference_scores,
                          iterations=MAX_ITERATIONS):
    """Three readings, each fooled by something else, the final score's log-odds the mean of
    theirs: the run's network with who picked (``fit_pattern_link``: fooled by junk the
    pickers agree on), who picked read by the shipped network (``fit_shipped_patterns``:
    fooled by junk one picker takes that looks like particles to it), and the shipped
    network's score alone."""
    model = {"pattern_link": fit_pattern_link(ranks, network_scores, iterations),
             "shipped_patterns": fit_shipped_patterns(ranks, network_scores, reference_scores,
                                                      iterations)}
    model["prior"] = float(apply_evidence(model, ranks, network_scores, reference_scores).mean())
    return model


def _reference(reference_scores):
    if reference_scores is None:
        raise ValueError("an anchored evidence model needs the shipped network's scores")
    return np.clip(np.asarray(reference_scores, dtype=float), 0.0, 1.0)


def apply_evidence(model, ranks, network_scores=None, reference_scores=None):
    """Posterior P(particle) of each candidate under a fitted model of any kind
    (``reference_scores``: the shipped network's, for an anchored model)."""
    ranks = np.asarray(ranks, dtype=float)
    if "pattern_link" in model:
        reference = _reference(reference_scores)
        readings = (apply_evidence(model["pattern_link"], ranks, network_scores),
                    apply_evidence(model["shipped_patterns"], ranks, network_scores, reference),
                    reference)
        log_odds = np.mean([network_logit(r, len(ranks)) for r in readings], axis=0)
        return 1 / (1 + np.exp(-log_odds))
    if "anchor" in model:    # who picked read by the shipped network (alone until 2026-12-07)
        return np.maximum(apply_evidence(model["anchor"], ranks, _reference(reference_scores)),
                          apply_evidence(_own_reading(model), ranks, network_scores))
    if "who_picked" not in model:
        log_odds = np.full(len(ranks), np.log(model["prior"] / (1 - model["prior"])))
        for (answers, _), (if_particle, if_not) in zip(witness_answers(ranks, network_scores),
                                                       model["witnesses"]):
            log_odds += np.asarray(if_particle)[answers] - np.asarray(if_not)[answers]
        return 1 / (1 + np.exp(-np.clip(log_odds, -50, 50)))
    a, b = model["link"]
    log_odds = a + b * network_logit(network_scores, len(ranks)) + _pattern_log_odds(model, ranks)
    return 1 / (1 + np.exp(-np.clip(log_odds, -50, 50)))


def combine_evidence(ranks, network_scores=None, joint=False):
    """Posterior P(particle) of every candidate, the model fitted on these candidates."""
    model = (fit_joint_evidence if joint else fit_independent_evidence)(ranks, network_scores)
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
