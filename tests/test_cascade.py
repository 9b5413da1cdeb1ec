"""The scoring cascade (run/cascade.py): fewer network evaluations, the same decisions as
scoring every candidate whole, and a PreviousRun that keeps exactly what its run kept."""
import os

import numpy as np
import pytest

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.run import cascade
from xmipp3_deepcons.run.folder import REFERENCE, RunFolder
from xmipp3_deepcons.run.keep import final_score_bounds, final_scores
from xmipp3_deepcons.run.settings import RunSettings

PICKERS = [name for name, *_ in synthetic.PICKERS]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("cascade") / "data")
    synthetic.make_dataset(folder, n_micrographs=3, seed=3, n_particles=50, n_junk=12,
                           shape=(1280, 1280))
    return folder


def screen(data, out, *extra):
    argv = ["screen", "--micrographs", os.path.join(data, "micrographs", "*.mrc"),
            "--box-size", "128", "--seed", "1", "-o", str(out), "--skip-training",
            "--picker-evidence", "anchored", "--training-batch", "1"] + list(extra)
    for name in PICKERS:
        argv += ["--coordinates", os.path.join(data, "coords", name)]
    assert main(argv) == 0
    run = RunFolder(out)
    settings = run.settings()
    return {stem: dict(kept=run.kept(stem), final=run.final_scores(stem),
                       network=run.network_scores(stem),
                       reference=run.network_scores(stem, None, REFERENCE),
                       above=run.final_scores(stem) > float(settings.threshold))
            for stem in run.stems()}


SMALL = os.path.join(os.path.dirname(synthetic.__file__), "models", "pretrained", "noPhaseFlip",
                     "small")


@pytest.fixture(scope="module")
def cascaded_run(dataset, tmp_path_factory):
    """(folder, what it kept and scored): the shipped small network's screen, scored by the
    cascade. Read only: a test that screens it again copies it."""
    out = tmp_path_factory.mktemp("cascaded") / "run"
    return out, screen(dataset, out, "--model", SMALL)


@pytest.mark.slow
def test_the_cascade_decides_as_whole_scores_with_fewer_evaluations(dataset, cascaded_run,
                                                                    tmp_path):
    import shutil
    source, cascaded = cascaded_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    small = SMALL
    run = RunFolder(out)
    settings = run.settings()
    models = cascade.Models(run, settings)
    stems = run.stems()
    # The evidence is fitted on the first micrograph (every candidate of it, scored whole);
    # the others are scored by the cascade alone: far fewer evaluations than 4 views each.
    spent = [cascade.Looks(run, stem, models) for stem in stems[1:]]
    assert np.mean([looks.evaluations(cascade.NETWORK) for looks in spent]) < 0.6 * 4
    assert np.mean([looks.evaluations(REFERENCE) for looks in spent]) < 0.4 * 4
    assert os.path.exists(cascade.margins_file(run, settings.views))

    # The same run scored whole (an output option: the model and evidence stay).
    whole = screen(dataset, out, "--model", small, "--full-scoring")
    assert run.evidence()["model"] is not None
    candidates = sum(len(v["above"]) for v in whole.values())
    above = sum(int((cascaded[s]["above"] != whole[s]["above"]).sum()) for s in stems)
    # stated tolerance: the threshold decision on at most 1 % of the candidates; the kept
    # particles (duplicates merged by score, so the cascade may keep the other one of a pair:
    # matched within the merging radius) on at most 1 % of them
    assert above <= 0.01 * candidates, (above, candidates)
    radius = run.settings().dedupe_radius_px
    unmatched = kept = 0
    for stem in stems:
        xy = run.candidates(stem)["xy"]
        mine, theirs = xy[cascaded[stem]["kept"]], xy[whole[stem]["kept"]]
        kept += len(theirs)
        for one, other in ((mine, theirs), (theirs, mine)):
            distance = np.sqrt(((one[:, None, :] - other[None, :, :]) ** 2).sum(-1))
            unmatched += int((distance.min(axis=1) > radius).sum()) if len(other) else len(one)
    assert 0 < kept and unmatched <= 0.01 * kept, (unmatched, kept)
    # where the run's network was sure, the shipped network never looked: its score is the
    # run's first look standing in, within the margin measured for that, which is finite
    stand_in = cascade.read_json(cascade.margins_file(run, settings.views))[REFERENCE][
        "margins"][str(cascade.STAND_IN)]
    assert 0 < stand_in < 2 * cascade.LOGIT_CLIP
    unseen = 0
    for stem in stems:
        looks = cascade.Looks(run, stem, models)
        never = np.isnan(looks.values[f"{REFERENCE}_{cascade.FIRST}"])
        unseen += int(never.sum())
        first_look = looks.values[f"{cascade.NETWORK}_{cascade.FIRST}"]
        np.testing.assert_array_equal(cascaded[stem]["reference"][never], first_look[never])
        np.testing.assert_array_equal(cascaded[stem]["network"][never], first_look[never])
    assert unseen > 0
    # each stored score is a look the cascade took: a rung of the network's ladder (one member
    # here: the first look, half the views, every view), and a whole score is the very number
    # whole scoring gives, though the cascade made it from the looks below it
    assert models.rungs(cascade.NETWORK) == [cascade.FIRST, cascade.HALF, cascade.WHOLE]
    went_on = 0
    for stem in stems:
        looks = cascade.Looks(run, stem, models)
        rungs = [looks.values[f"{cascade.NETWORK}_{rung}"]
                 for rung in models.rungs(cascade.NETWORK)]
        first, entire = rungs[0], rungs[-1]
        stored = cascaded[stem]["network"]
        assert np.all(np.any([stored == rung for rung in rungs], axis=0))
        is_whole = (stored == entire) & (stored != first) & (stored != rungs[1])
        went_on += int(is_whole.sum())
        np.testing.assert_allclose(stored[is_whole], whole[stem]["network"][is_whole],
                                   atol=1e-6)
    assert went_on > 0


@pytest.mark.slow
def test_a_previous_run_without_training_keeps_exactly_what_the_run_kept(dataset, cascaded_run,
                                                                        tmp_path):
    source, first = cascaded_run
    # scoring again with that run's model folder (its evidence and margins come with it)
    again = screen(dataset, tmp_path / "previous", "--model", str(source / "model"),
                   "--seed", "7")
    for stem, found in first.items():
        np.testing.assert_array_equal(again[stem]["kept"], found["kept"])
        np.testing.assert_array_equal(again[stem]["network"], found["network"])
        np.testing.assert_array_equal(again[stem]["reference"], found["reference"])


def before_the_ladder(stored):
    """A margins file as written before each look had its own margin: one first-look margin
    per source, keyed by its model alone."""
    return {name: {"model_key": entry["model_key"].split("|")[0],
                   "candidates": entry["candidates"],
                   "margin": entry["margins"][str(cascade.FIRST)]}
            for name, entry in stored.items()}


def before_the_stand_in(stored):
    """A margins file as written before the run's first look stood in for the shipped
    network's: no margin for it, keyed by its model alone."""
    return {name: {**entry, "model_key": entry["model_key"].split("|")[0],
                   "margins": {level: m for level, m in entry["margins"].items()
                               if level != str(cascade.STAND_IN)}}
            for name, entry in stored.items()}


@pytest.mark.slow
@pytest.mark.parametrize("older", [before_the_ladder, before_the_stand_in])
def test_a_run_whose_margins_are_older_continues_to_the_same_particles(
        dataset, cascaded_run, tmp_path, older):
    """A run folder whose margins file an earlier version wrote measures them once when
    continued, and keeps the same particles."""
    import shutil
    source, first = cascaded_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    run = RunFolder(out)
    path = cascade.margins_file(run, run.settings().views)
    stored = cascade.read_json(path)
    cascade.write_json(path, older(stored))
    again = screen(dataset, out, "--model", SMALL)
    assert cascade.read_json(path) == stored
    for stem, found in first.items():
        np.testing.assert_array_equal(again[stem]["kept"], found["kept"])
        np.testing.assert_array_equal(again[stem]["network"], found["network"])


def test_bounds_come_from_the_output_rule_itself():
    settings = RunSettings(box_size=128, n_pickers=2, picker_evidence="patterns")
    table = {"members": np.array([[0, 0], [0, -1], [-1, 0]]), "votes": np.array([2, 1, 1])}
    evidence = {"mode": "patterns", "model": {"link": [0.2, 1.5],
                                              "who_picked": [[-3.0, -1.0, -1.5, -0.5],
                                                             [-0.5, -1.5, -1.0, -3.0]]}}
    low = np.array([0.1, 0.3, 0.6])
    high = np.array([0.2, 0.9, 0.6])
    point = (low + high) / 2
    lowest, highest, low_at, high_at = final_score_bounds(settings, evidence, table,
                                                          (low, point, high))
    # the rule is monotone in the network's score here: its ends are the bounds
    np.testing.assert_allclose(lowest, final_scores(settings, evidence, table, low), rtol=1e-6)
    np.testing.assert_allclose(highest, final_scores(settings, evidence, table, high),
                               rtol=1e-6)
    np.testing.assert_allclose(low_at[0], low)
    assert lowest[2] == pytest.approx(highest[2])
    assert np.all(lowest < highest + 1e-9)


def test_the_cascade_stands_aside_where_it_cannot_aim():
    base = dict(box_size=128, n_pickers=3)
    assert cascade.applies(RunSettings(**base))
    assert not cascade.applies(RunSettings(**base, full_scoring=True))
    assert not cascade.applies(RunSettings(**base, threshold="auto"))
    assert not cascade.applies(RunSettings(**base, threshold=-1))
    low, high = cascade.score_range(np.array([0.5, 1e-12, 1.0]), 1.0)
    np.testing.assert_allclose([low[0], high[0]], [1 / (1 + np.e), 1 / (1 + 1 / np.e)])
    assert low[1] == 0.0 and high[2] == 1.0


@pytest.mark.slow
def test_the_evidence_is_fitted_on_every_network_in_the_first_view(dataset, tmp_path):
    """Issue 28: the sampled candidates' scores the evidence is fitted on are the ensemble's
    mean in the first view (the first look shared), not the whole score; the margins come
    from at most MARGIN_SAMPLE candidates scored whole."""
    from xmipp3_deepcons import resources
    from xmipp3_deepcons.core.ensemble import Ensemble
    from xmipp3_deepcons.core.extract import extract_boxes
    from xmipp3_deepcons.io.images import read_micrograph
    model = tmp_path / "three"
    resources.replicate_model(resources.pretrained_model(False, "small"), str(model), 3)
    out = tmp_path / "run"
    screen(dataset, out, "--model", str(model))
    run = RunFolder(out)
    settings = run.settings()
    models = cascade.Models(run, settings)
    stem = run.stems()[0]                      # the evidence micrograph (training batch 1)
    looks = cascade.Looks(run, stem, models)
    fit = looks.values[f"{cascade.NETWORK}_{cascade.FIT}"]
    sampled = np.flatnonzero(~np.isnan(fit))
    assert len(sampled) == looks.n             # fewer than SAMPLE candidates: all of them
    table = run.candidates(stem)
    boxes = extract_boxes(read_micrograph(run.preprocessed(stem)),
                          table["xy"][sampled] / float(table["factor"]), 128)
    one_view = Ensemble.load(str(model), 1).score(boxes)
    np.testing.assert_allclose(fit[sampled], one_view, atol=2e-6)
    whole = Ensemble.load(str(model), settings.views).score(boxes)
    assert np.abs(fit[sampled] - whole).max() > 1e-3          # not the 4-view score
    # evaluations: the first look of every candidate, 2 more members on the sampled ones, then
    # up the ladder on the margins' sample and wherever the decision stayed open: 3 more for
    # half the views, 6 more for every view; a whole score costs its 12, no more, for the looks
    # taken on the way (each made from the one below)
    taken = {rung: ~np.isnan(looks.values[f"{cascade.NETWORK}_{rung}"])
             for rung in cascade.LADDER}
    entire = taken[cascade.WHOLE]
    assert entire.any() and np.all(taken[cascade.HALF][entire] & taken[cascade.FIT][entire])
    # a look made from the one below is the look taken at once: half the views, every view
    climbed = np.flatnonzero(entire)
    boxes = extract_boxes(read_micrograph(run.preprocessed(stem)),
                          table["xy"][climbed] / float(table["factor"]), 128)
    from xmipp3_deepcons.core.scoring import Scorer
    members = Ensemble.load(str(model)).models
    for rung, views in ((cascade.HALF, 2), (cascade.WHOLE, 4)):
        at_once = np.mean([Scorer(member, views)(boxes) for member in members], axis=0)
        np.testing.assert_allclose(looks.values[f"{cascade.NETWORK}_{rung}"][climbed],
                                   at_once, atol=2e-6)
    assert looks.evaluations(cascade.NETWORK) == pytest.approx(
        (looks.n + 2 * taken[cascade.FIT].sum() + 3 * taken[cascade.HALF].sum()
         + 6 * entire.sum()) / looks.n)
    measured = cascade.read_json(cascade.margins_file(run, settings.views))
    assert measured[cascade.NETWORK]["candidates"] == min(looks.n, cascade.MARGIN_SAMPLE)
