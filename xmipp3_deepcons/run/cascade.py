"""Scoring that spends the ensemble only where the decision is open: a cascade.

Every candidate first gets one look: the first network of the ensemble in the first view (one
network evaluation, against members x views for the ensemble's whole score). The whole score
lies, within a margin measured on this run's candidates, in a range around that look;
``keep.final_score_bounds`` says which final scores the candidate could then have (asking the
output rule itself, whatever it is). Where that range lies on one side of the threshold, the
decision is made; only the others go on to the next stage. The stages climb each network's
ladder (LADDER: the first look, every member in the first view, half the views, every view),
the shipped network's (``anchored``) before the ensemble's, each look made from the one below
by adding the evaluations it lacks, each with its own margin. Until the shipped network looks,
the run's first look stands in for its whole score, within a margin of its own (STAND_IN):
where the run's network is sure, the shipped one is never asked. After the last stage every
open candidate has its exact scores.

What is stored is a function of the looks, the margins, the evidence and the threshold alone,
never of what happened to be computed already, so that a PreviousRun scoring the same
micrographs with the same model and evidence keeps exactly what its run kept.

The pickers' evidence is fitted on SAMPLE candidates of its micrographs, each scored by every
network in the first view (the first look and the others: 3 evaluations, not the 12 of a whole
score), and the margins are measured on another MARGIN_SAMPLE of them scored whole: on
EMPIAR-10017, its weak pickers and the demo, as good outputs as the evidence fitted on whole
scores, for 2-3 times fewer evaluations (docs/measurements.md, "The evidence fit for less"). A
candidate decided early carries its looks as its scores (the run's first look standing in
for the shipped network's where that was not asked): estimates, on the side of the threshold
decided.

Off with ``--full-scoring``, and for thresholds the cascade cannot aim at: ``auto`` (the
threshold is the valley of all the final scores) and negative (keep all: the score is the
output).
"""
import json
import logging
import os
import zlib

import numpy as np

from ..constants import DEEP_PARTICLE_SIZE
from .folder import REFERENCE, per_views, read_json, write_json, load_npz, write_npz
from .keep import final_score_bounds

log = logging.getLogger("xmipp3_deepcons")

NETWORK = "final"
# What is known of a score: its first look (the first member in the first view), every member
# in the first view (what the pickers' evidence is fitted on), every member in half the views,
# and the whole score. Each is the mean of more of the same evaluations: a look is made from
# the one below it by adding the evaluations it lacks (LADDER), so a whole score costs no more
# for the looks taken on the way.
FIRST, WHOLE, FIT, HALF = 1, 2, 3, 4
LADDER = (FIRST, FIT, HALF, WHOLE)
# The run's first look standing in for the shipped network's whole score: its margin is wide
# (4.5-6 logit: the networks differ) but finite, which settles a candidate the run's network
# is sure of (docs/measurements.md, "The run's first look stands in").
STAND_IN = 0
LOOK_NAMES = {STAND_IN: "the run's first look", FIRST: "first look",
              FIT: "every member in the first view", HALF: "half the views"}
MARGIN_QUANTILE = 0.99              # of |logit(a look) - logit(whole)| on the sample
MARGIN_SAFETY = 1.0                 # the margin used is this times that quantile
SAMPLE = 2000                       # candidates (in all) of the evidence micrographs the
                                    # evidence is fitted on (their FIT scores)
MARGIN_SAMPLE = 500                 # candidates (in all) of the same micrographs scored whole,
                                    # the margins measured on them
PER_CANDIDATE = ("xy", "votes", "members", "picker_scores")   # a candidate table's rows
LOGIT_CLIP = 6.0                    # scores beyond sigmoid(+-6) count as that sure


def applies(settings):
    """Whether the run scores by the cascade: not asked off, and a threshold it can aim at."""
    if getattr(settings, "full_scoring", False):
        return False
    try:
        return float(settings.threshold) >= 0
    except (TypeError, ValueError):
        return False     # "auto"


def clipped_logit(scores):
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


def score_range(first, margin):
    """Where the whole score can be, given the first look: (low, high)."""
    logit = clipped_logit(first)
    low = 1 / (1 + np.exp(-(logit - margin)))
    high = 1 / (1 + np.exp(-(logit + margin)))
    # a look beyond the clip may be surer still: the range then reaches 0 or 1
    low = np.where(logit <= -LOGIT_CLIP, 0.0, low)
    high = np.where(logit >= LOGIT_CLIP, 1.0, high)
    return low, high


class Models:
    """The ensembles the cascade looks with, loaded once: the run's and the shipped one."""

    def __init__(self, run, settings):
        self.run, self.settings, self._loaded = run, settings, {}

    def __getitem__(self, source):
        if source not in self._loaded:
            from ..core.ensemble import Ensemble
            self._loaded[source] = Ensemble.load(self.run.source_model(source),
                                                 self.settings.views)
        return self._loaded[source]

    def shape(self, source, level):
        """(members, views) a look at ``level`` is the mean over."""
        members, views = self[source].n_models, self.settings.views
        return {FIRST: (1, 1), FIT: (members, 1), HALF: (members, max(1, views // 2)),
                WHOLE: (members, views)}[level]

    def rungs(self, source):
        """The levels of the ladder that differ for this source (one member: FIT is FIRST;
        one view: FIT, HALF and WHOLE are one)."""
        rungs = []
        for level in LADDER:
            if all(self.shape(source, level) != self.shape(source, r) for r in rungs):
                rungs.append(level)
        return rungs

    def same_as(self, source, level):
        """The rung whose values ``level`` has."""
        return next(r for r in self.rungs(source)
                    if self.shape(source, r) == self.shape(source, level))

    def is_whole(self, source, level):
        return self.shape(source, level) == self.shape(source, WHOLE)

    def added(self, source, rung):
        """Network evaluations a look at ``rung`` adds to the one below it."""
        rungs = self.rungs(source)
        at = rungs.index(rung)
        members, views = self.shape(source, rung)
        below = self.shape(source, rungs[at - 1]) if at else (0, 0)
        return members * views - below[0] * below[1]

    def key(self, source):
        return self.run.model_key(self.run.source_model(source))

    def margin_key(self, source):
        """What a source's margins depend on: its model, and for the shipped network the run's
        too (the run's first look stands in for it)."""
        if source == NETWORK:
            return self.key(NETWORK)
        return f"{self.key(source)}|{self.key(NETWORK)}"

    def sources(self):
        return [NETWORK] + ([REFERENCE] if self.settings.uses_reference else [])


class Looks:
    """Every look taken at one micrograph's candidates, cached in the run folder (work/
    cascade*/<stem>.npz): each rung of the ladder per source, NaN where not taken."""

    def __init__(self, run, stem, models):
        self.run, self.stem, self.models = run, stem, models
        self.table = run.candidates(stem)
        self.n = len(self.table["xy"])
        self.path = run.path("work", per_views("cascade", models.settings.views),
                             stem + ".npz")
        stored = load_npz(self.path) or {}
        self.values, self.keys = {}, {}
        for source in models.sources():
            key = f"{self.run.candidate_key(stem)}/{models.key(source)}"
            self.keys[source] = key
            for level in LADDER:
                name = f"{source}_{level}"
                ok = (str(stored.get(name + "_key", "")) == key
                      and len(stored.get(name, ())) == self.n)
                self.values[name] = (np.array(stored[name], np.float32) if ok
                                     else np.full(self.n, np.nan, np.float32))
        self._image = None
        self.changed = False

    def get(self, source, level, index):
        """The look ``level`` of ``source`` at candidates ``index``, taking those missing: each
        made from the rung below by the evaluations it lacks, whatever was taken before."""
        level = self.models.same_as(source, level)
        values = self.values[f"{source}_{level}"]
        index = np.asarray(index, dtype=int)
        missing = index[np.isnan(values[index])]
        if len(missing):
            from ..core.extract import extract_boxes
            from ..io.images import read_micrograph
            if self._image is None:
                self._image = read_micrograph(self.run.preprocessed(self.stem))
            rungs = self.models.rungs(source)
            factor = float(self.table["factor"])
            for start in range(0, len(missing), 512):
                part = missing[start:start + 512]
                boxes = extract_boxes(self._image, self.table["xy"][part] / factor,
                                      DEEP_PARTICLE_SIZE)
                below = None
                for rung in rungs[:rungs.index(level) + 1]:
                    here = self.values[f"{source}_{rung}"]
                    lacking = np.isnan(here[part])
                    if lacking.any():
                        here[part[lacking]] = self._climb(source, below, rung,
                                                          boxes[lacking], part[lacking])
                    below = rung
            self.changed = True
        return values[index]

    def _climb(self, source, below, rung, boxes, index):
        """The look ``rung`` at these candidates: the look ``below`` (None for the first) with
        the evaluations it lacks added, as a mean."""
        ensemble = self.models[source]
        members, views = self.models.shape(source, rung)
        if below is None:
            return ensemble.partial_sum(boxes, (0, 1), (0, 1)).astype(np.float32)
        had_members, had_views = self.models.shape(source, below)
        total = self.values[f"{source}_{below}"][index].astype(np.float64) \
            * had_members * had_views
        if views > had_views:       # the members it had, in the views it lacked
            total += ensemble.partial_sum(boxes, (0, had_members), (had_views, views))
        if members > had_members:   # the members it lacked, in every view
            total += ensemble.partial_sum(boxes, (had_members, members), (0, views))
        return (total / (members * views)).astype(np.float32)

    def evaluations(self, source):
        """Network evaluations spent on each candidate so far (mean), by this cache."""
        return sum(np.count_nonzero(~np.isnan(self.values[f"{source}_{rung}"]))
                   * self.models.added(source, rung)
                   for rung in self.models.rungs(source)) / max(1, self.n)

    def save(self):
        if self.changed:
            arrays = dict(self.values)
            for name in list(self.values):
                arrays[name + "_key"] = np.array(self.keys[name.rsplit("_", 1)[0]])
            write_npz(self.path, **arrays)
            self.changed = False


# ------------------------------------------------------------------------------ sample
def sample(run, stems, size, stream=0):
    """{stem: sorted candidate indices}: about ``size`` candidates in all, each micrograph's
    share of them drawn with a seed of its name (not the run's seed: a PreviousRun with
    another seed draws the same) and ``stream``, every candidate when there are fewer."""
    counts = {s: len(run.candidates(s)["xy"]) for s in stems}
    share = min(1.0, size / max(1, sum(counts.values())))
    chosen = {}
    for stem, n in counts.items():
        rng = np.random.default_rng([stream, zlib.crc32(stem.encode("utf-8"))])
        chosen[stem] = np.sort(rng.choice(n, min(n, int(np.ceil(share * n))), replace=False))
    return chosen


def some_candidates(table, index):
    """A micrograph's candidate table with only these candidates (what the evidence reads)."""
    return {k: (np.asarray(v)[index] if k in PER_CANDIDATE else v) for k, v in table.items()}


def sampled_looks(run, stems, settings, models=None, levels=(FIT,), size=None, stream=0):
    """The looks ``levels`` of the sampled candidates of ``stems``: {stem: index},
    {source: {level: [arrays]}}. The evidence is fitted on the FIT scores of SAMPLE
    candidates; the margins are measured on the first looks and whole scores of another
    MARGIN_SAMPLE (stream 1)."""
    models = models or Models(run, settings)
    chosen = sample(run, stems, SAMPLE if size is None else size, stream)
    found = {s: {level: [] for level in levels} for s in models.sources()}
    for stem in stems:
        looks = Looks(run, stem, models)
        for source in found:
            for level in levels:
                found[source][level].append(looks.get(source, level, chosen[stem]))
        looks.save()
    return chosen, found


# ------------------------------------------------------------------------------ margins
def margins_file(run, views):
    return os.path.join(run.model_dir(), per_views("cascade", views) + ".json")


def margins(run, settings, stems, models):
    """How far (in logit) each look may be from the whole score, {source: {level: margin}}:
    measured once per model on the sampled candidates of ``stems``, kept in the model folder
    so that a PreviousRun uses the same."""
    path = margins_file(run, settings.views)
    keys = {s: models.margin_key(s) for s in models.sources()}
    stored = read_json(path) or {}
    if not all(stored.get(s, {}).get("model_key") == k and "margins" in stored[s]
               for s, k in keys.items()):
        stored.update(_measured_margins(run, settings, stems, models, keys))
        write_json(path, stored)
    return {s: {int(level): m for level, m in stored[s]["margins"].items()} for s in keys}


def _measured_margins(run, settings, stems, models, keys):
    """{source: its entry in the margins file}: each look's margin, measured on MARGIN_SAMPLE
    candidates taken up every rung."""
    found = sampled_looks(run, stems, settings, models, LADDER, MARGIN_SAMPLE, 1)[1]

    def joined(source, level):      # one array over the sampled micrographs
        return np.concatenate([np.zeros(0)] + found[source][level])

    result = {}
    for source in keys:
        looks = {level: joined(source, level) for level in models.rungs(source)}
        whole = looks[models.same_as(source, WHOLE)]
        if source != NETWORK:
            looks = {STAND_IN: joined(NETWORK, FIRST), **looks}
        measured = {}
        for level, look in looks.items():
            if level != STAND_IN and models.is_whole(source, level):
                measured[level] = 0.0
            elif not len(look):
                measured[level] = 2 * LOGIT_CLIP
            else:
                gap = np.abs(clipped_logit(look) - clipped_logit(whole))
                measured[level] = float(MARGIN_SAFETY * np.quantile(gap, MARGIN_QUANTILE))
        result[source] = {"model_key": keys[source], "candidates": int(len(whole)),
                          "margins": {str(level): m for level, m in measured.items()}}
        within = ", ".join(f"{LOOK_NAMES[level]} within {m:.2f}"
                           for level, m in measured.items() if level in LOOK_NAMES)
        log.info(f"scoring cascade, {'shipped network' if source == REFERENCE else 'ensemble'}:"
                 f" {within or 'one look, the whole score'} (logit) of the whole score, measured "
                 f"on {len(whole)} candidates")
    return result


# ------------------------------------------------------------------------------ scoring
def context(settings, evidence, margin):
    """What the stored scores of a micrograph were decided for: the same context gives the
    same scores."""
    return json.dumps({"threshold": float(settings.threshold), "margins": margin,
                       "evidence": evidence if settings.uses_evidence else None,
                       "mode": settings.picker_evidence, "pickers": settings.n_pickers},
                      sort_keys=True)


def decide(looks, settings, evidence, margin):
    """Run the cascade on one micrograph: (network scores, shipped network's scores or None,
    evaluations per candidate by source)."""
    table, n = looks.table, looks.n
    threshold = float(settings.threshold)
    sources = looks.models.sources()
    low = {s: np.zeros(n) for s in sources}
    high = {s: np.ones(n) for s in sources}
    point = {s: np.full(n, 0.5) for s in sources}
    known = {s: np.zeros(n, int) for s in sources}      # how many rungs up (0: none)
    ladder = {s: looks.models.rungs(s) for s in sources}
    # The run's first look, then the shipped network's ladder, then the ensemble's: the shipped
    # network's reading weighs in two of the evidence's three and its whole score costs about 8
    # of the run's evaluations against 11, so asked first it settles more for less; each look
    # adds only what the one below lacks (docs/measurements.md, "The scoring cascade").
    stages = [(NETWORK, FIRST)] + [(REFERENCE, rung) for rung in ladder.get(REFERENCE, [])] \
        + [(NETWORK, rung) for rung in ladder[NETWORK][1:]]
    open_ = np.ones(n, bool)

    def bounds(triples):
        return final_score_bounds(settings, evidence, table, triples[NETWORK],
                                  triples.get(REFERENCE))

    for source, level in stages:
        step = ladder[source].index(level) + 1
        index = np.flatnonzero(open_ & (known[source] < step))
        if len(index):
            values = looks.get(source, level, index).astype(np.float64)
            if looks.models.is_whole(source, level):
                low[source][index] = high[source][index] = values
            else:
                low[source][index], high[source][index] = score_range(
                    values, margin[source][level])
            point[source][index] = values
            known[source][index] = step
            if REFERENCE in sources and (source, level) == (NETWORK, FIRST):
                # the run's first look stands in for the shipped network's until it looks
                low[REFERENCE][index], high[REFERENCE][index] = score_range(
                    values, margin[REFERENCE][STAND_IN])
                point[REFERENCE][index] = values
        lowest, highest = bounds({s: (low[s], point[s], high[s]) for s in sources})[:2]
        open_ = (lowest <= threshold) & (highest > threshold)
        if not open_.any():
            break
    # Decided without the shipped network, a candidate keeps the run's first look as its
    # reading (the value nearest the threshold, tried first, tied every early rejection just
    # below it and cost the union's ranking 0.05 ROC-AUC on a weak two-picker set).
    reference = point[REFERENCE].astype(np.float32) if REFERENCE in sources else None
    return point[NETWORK].astype(np.float32), reference


def score(run, stems, settings, evidence=None, log_each=True):
    """Score these micrographs by the cascade and store the scores (with the context they
    were decided in); returns {source: evaluations per candidate} over them."""
    models = Models(run, settings)
    margin = margins(run, settings, stems, models)
    where = context(settings, evidence, margin)
    spent = {s: [0.0, 0] for s in models.sources()}
    for i, stem in enumerate(stems, 1):
        looks = Looks(run, stem, models)
        network, reference = decide(looks, settings, evidence, margin)
        looks.save()
        run.write_network_scores(stem, settings.views, network, NETWORK, context=where)
        if reference is not None:
            run.write_network_scores(stem, settings.views, reference, REFERENCE, context=where)
        for source in spent:
            spent[source][0] += looks.evaluations(source) * looks.n
            spent[source][1] += looks.n
        if log_each:
            each = ", ".join(f"{looks.evaluations(s):.2f} by the "
                             f"{'shipped network' if s == REFERENCE else 'ensemble'}"
                             for s in models.sources())
            log.info(f"scored {i}/{len(stems)} {stem} by the cascade: {looks.n} candidates, "
                     f"network evaluations per candidate {each}")
    return {s: total / max(1, count) for s, (total, count) in spent.items()}
