"""End to end: `screen` on generated micrographs must keep planted particles and drop junk."""
import glob
import os
import shutil

import numpy as np
import pytest
from scipy.spatial import cKDTree

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.constants import DEFAULT_VIEWS
from xmipp3_deepcons.core.consensus import coordinate_consensus
from xmipp3_deepcons.core.metrics import match_to_reference, precision_recall_f1, ranking_quality
from xmipp3_deepcons.core.evidence import apply_evidence, network_logit, presence_ranks
from xmipp3_deepcons.run.folder import REFERENCE, RunFolder
from xmipp3_deepcons.run.keep import inside as keep_inside
from xmipp3_deepcons.io.coordinates import find_coordinate_file, read_coordinates

pytestmark = pytest.mark.slow   # every test trains a network

PICKERS = [name for name, *_ in synthetic.PICKERS]
MATCH = 0.25 * 128


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    root = tmp_path_factory.mktemp("screen")
    data = str(root / "data")
    synthetic.make_dataset(data, n_micrographs=6, seed=11)
    out = str(root / "out")
    # One Keras epoch (50 batches) instead of the defaults' 300 batches: with the defaults the
    # best validation accuracy (the model kept) was that of epoch 1, so this trains the same
    # model (identical scores) in a sixth of the time.
    argv = ["screen", "--micrographs", os.path.join(data, "micrographs", "*.mrc"),
            "--box-size", "128", "--models", "1", "--network-size", "small", "--seed", "0",
            "--epochs", "1", "--min-batches", "50", "-o", out]
    for name in PICKERS:
        argv += ["--coordinates", os.path.join(data, "coords", name)]
    assert main(argv) == 0
    return data, out, argv


def scores_file(out, stem, views=DEFAULT_VIEWS):
    return RunFolder(out).scores_file(stem, views)


def network_scores(out, stems, views=DEFAULT_VIEWS):
    return np.concatenate([RunFolder(out).network_scores(s, views) for s in stems])


def truth(data, stem):
    return np.loadtxt(os.path.join(data, "truth", stem + ".csv"), delimiter=",", skiprows=1)


def test_scores_separate_planted_particles_from_planted_junk(screened):
    data, out, _ = screened
    candidates = np.load(os.path.join(out, "candidates.npz"))
    stems = np.array([os.path.splitext(os.path.basename(m))[0] for m in candidates["micrograph"]])
    distance_to = {"particle": np.zeros(len(stems)), "junk": np.zeros(len(stems))}
    for stem in np.unique(stems):
        mine = stems == stem
        for kind, suffix in (("particle", ""), ("junk", "_junk")):
            reference = np.loadtxt(os.path.join(data, "truth", stem + suffix + ".csv"),
                                   delimiter=",", skiprows=1, ndmin=2)
            distance_to[kind][mine] = cKDTree(reference).query(candidates["xy"][mine])[0]
    on_particle = distance_to["particle"] < MATCH
    on_junk = distance_to["junk"] < MATCH
    scores = candidates["score"]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert on_particle.sum() > 300 and on_junk.sum() > 50
    labels = np.r_[np.ones(on_particle.sum()), np.zeros(on_junk.sum())]
    auc_junk, _ = ranking_quality(labels, np.r_[scores[on_particle], scores[on_junk]])
    # Junk that two pickers agree on is a training positive of the original method, so junk is
    # only partly separated; every other mistake (background, duplicates) must be well separated.
    assert auc_junk > 0.6
    unique = ~candidates["duplicate"]
    auc_all, _ = ranking_quality(on_particle[unique], scores[unique])
    assert auc_all > 0.8
    # empty background picked by a picker is rejected far more often than particles
    background = ~on_particle & ~on_junk
    assert np.mean(scores[background] > 0.5) < 0.5 * np.mean(scores[on_particle] > 0.5)


def test_kept_particles_beat_the_union(screened):
    data, out, _ = screened
    kept = union = n_truth = 0
    matched_kept = matched_union = 0
    for path in sorted(glob.glob(os.path.join(data, "micrographs", "*.mrc"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        ref = truth(data, stem)
        picks = [read_coordinates(find_coordinate_file(os.path.join(data, "coords", p), stem)).xy
                 for p in PICKERS]
        all_candidates = coordinate_consensus(picks, 12.8).xy
        mine = read_coordinates(os.path.join(out, "coordinates", stem + ".pos")).xy
        matched_kept += match_to_reference(mine, ref, MATCH).sum()
        matched_union += match_to_reference(all_candidates, ref, MATCH).sum()
        kept += len(mine)
        union += len(all_candidates)
        n_truth += len(ref)
    f1_kept = precision_recall_f1(matched_kept, kept, n_truth)[2]
    f1_union = precision_recall_f1(matched_union, union, n_truth)[2]
    assert f1_kept > f1_union + 0.05


def test_outputs_are_consistent(screened):
    data, out, _ = screened
    from emtable import Table
    star = Table(fileName=os.path.join(out, "coordinates.star"), tableName="particles")
    candidates = np.load(os.path.join(out, "candidates.npz"))
    expected = int(((candidates["score"] > 0.5) & ~candidates["duplicate"]).sum())
    assert float(candidates["threshold"]) == 0.5
    assert candidates["kept"].sum() == expected
    assert 0 < float(candidates["suggested_threshold"]) < 1
    assert len(star) == expected > 0
    assert min(float(r.rlnAutopickFigureOfMerit) for r in star) > 0.5
    per_mic = sum(len(read_coordinates(p)) for p in glob.glob(os.path.join(out, "coordinates", "*.pos")))
    assert per_mic == expected
    for png in ("score_histogram.png", "training_curves.png"):
        assert os.path.getsize(os.path.join(out, png)) > 10000
    log = open(os.path.join(out, "screen.log")).read()
    assert "model 1/1 epoch 1/" in log and "prepared 6/6" in log and "scored 6/6" in log


def copied(screened, tmp_path):
    """The trained run copied with its files' times, and its command line aimed at the copy:
    for the tests that change the run (the others only read ``screened``)."""
    data, out, argv = screened
    copy = str(tmp_path / "run")
    shutil.copytree(out, copy)
    return data, copy, argv[:argv.index("-o")] + ["-o", copy] + argv[argv.index("-o") + 2:]


def test_a_stopped_run_continues_to_the_same_outputs(screened, tmp_path):
    data, out, argv = copied(screened, tmp_path)
    before = open(os.path.join(out, "coordinates.star")).read()
    model_time = os.path.getmtime(os.path.join(out, "model", "model_0.keras"))
    # as if stopped while scoring: two micrographs unscored, no final outputs
    for stem in ("mic_002", "mic_005"):
        os.remove(scores_file(out, stem))
    os.remove(os.path.join(out, "coordinates.star"))
    assert main(argv) == 0
    assert open(os.path.join(out, "coordinates.star")).read() == before
    assert os.path.getmtime(os.path.join(out, "model", "model_0.keras")) == model_time


def test_output_settings_apply_without_retraining(screened, tmp_path):
    data, out, argv = copied(screened, tmp_path)
    assert main(argv + ["--threshold", "auto"]) == 0
    candidates = np.load(os.path.join(out, "candidates.npz"))
    assert float(candidates["threshold"]) == float(candidates["suggested_threshold"])
    assert candidates["kept"].sum() == ((candidates["score"] > candidates["threshold"])
                                        & ~candidates["duplicate"]).sum()
    # by default (three pickers, a trained network) the shipped network scores every
    # candidate too, beside the run's network, and the score's log-odds are the mean of three
    # readings: the run's network with who picked, who picked read by the shipped network, and
    # the shipped network alone
    run = RunFolder(out)
    evidence = run.evidence()
    assert run.settings().picker_evidence == "anchored"
    assert evidence["mode"] == "anchored" and "pattern_link" in evidence["model"]
    for stem in run.stems():
        network, reference = run.network_scores(stem), run.network_scores(stem, source=REFERENCE)
        assert reference is not None and len(reference) == len(network)
        assert np.abs(reference - network).max() > 0.05
        ranks = presence_ranks(run.candidates(stem)["members"])
        readings = (apply_evidence(evidence["model"]["pattern_link"], ranks, network),
                    apply_evidence(evidence["model"]["shipped_patterns"], ranks, network,
                                   reference), reference)
        final = run.final_scores(stem)
        inside = keep_inside(run.settings(), run.candidates(stem))   # edge boxes score 0
        assert (final[~inside] == 0).all()
        log_odds = np.mean([network_logit(r, len(r)) for r in readings], axis=0)
        np.testing.assert_allclose(final[inside], (1 / (1 + np.exp(-log_odds)))[inside], atol=1e-5)
        assert np.abs(final[inside] - reference[inside]).max() > 0.05
    # who picked, each picker a witness: candidates picked by the same pickers with the same
    # network score bin share one posterior, whatever the pickers' figures of merit (every
    # candidate scored whole, as `auto` did: the cascade's scores depend on the evidence)
    argv = argv + ["--full-scoring"]
    assert main(argv + ["--picker-evidence", "votes"]) == 0
    votes = np.load(os.path.join(out, "candidates.npz"))
    np.testing.assert_array_equal(votes["network_score"], candidates["network_score"])
    assert len(np.unique(votes["score"])) <= 2 ** len(PICKERS) * 10
    assert votes["kept"].sum() == ((votes["score"] > 0.5) & ~votes["duplicate"]).sum()
    assert main(argv + ["--picker-evidence", "ranks"]) == 0
    ranks = np.load(os.path.join(out, "candidates.npz"))
    np.testing.assert_array_equal(ranks["network_score"], candidates["network_score"])
    assert len(np.unique(ranks["score"])) > 2 ** len(PICKERS) * 10
    # who picked as one answer: among the candidates the same pickers found, the score orders
    # them as the network does
    assert main(argv + ["--picker-evidence", "patterns"]) == 0
    run = RunFolder(out)
    assert run.evidence()["model"]["link"][1] > 0
    for stem in run.stems():
        members, network = run.candidates(stem)["members"], run.network_scores(stem)
        final = run.final_scores(stem)
        for pattern in np.unique(members >= 0, axis=0):
            same = ((members >= 0) == pattern).all(axis=1) & keep_inside(run.settings(),
                                                                          run.candidates(stem))
            order = np.argsort(network[same], kind="stable")
            assert (np.diff(final[same][order]) >= -1e-6).all()
    assert main(argv + ["--classic"]) == 0
    classic = np.load(os.path.join(out, "candidates.npz"))
    inside = np.concatenate([keep_inside(run.settings(), run.candidates(s)) for s in run.stems()])
    assert 0 < (~inside).sum() < len(inside)   # edge boxes: never kept, even as the original
    np.testing.assert_array_equal(classic["score"], np.where(inside, classic["network_score"], 0))
    assert not classic["duplicate"].any()
    assert classic["kept"].sum() == ((classic["network_score"] > 0.5) & inside).sum()
    # the original scored one view: the same model scores again into its own folder, and the
    # defaults' mean of four mirror views differs from it
    stems = sorted({os.path.splitext(os.path.basename(m))[0] for m in classic["micrograph"]})
    one_view = network_scores(out, stems, views=1)
    np.testing.assert_array_equal(classic["network_score"], one_view)
    assert np.abs(one_view - candidates["network_score"]).max() > 0.01
    assert np.corrcoef(one_view, candidates["network_score"])[0, 1] > 0.8


def test_training_in_passes_stops_on_validation_accuracy(tmp_path, monkeypatch):
    # This test is about the passes, not about what they learn: each pass trains one Keras
    # epoch of 2 batches (as tests/test_bad_input.py), boxes are scored in one view, and the
    # pickers are independent witnesses (no scoring by the shipped network).
    from xmipp3_deepcons.core import training
    monkeypatch.setattr(training, "BATCHES_PER_KERAS_EPOCH", 2)
    data = str(tmp_path / "data")
    synthetic.make_dataset(data, n_micrographs=8, seed=5, n_particles=120, n_junk=10)
    base = ["screen", "--micrographs", os.path.join(data, "micrographs", "*.mrc"),
            "--box-size", "128", "--models", "1", "--epochs", "0.1", "--min-batches", "0",
            "--network-size", "small", "--views", "1",
            "--seed", "2", "--training-batch", "4", "--picker-evidence", "votes"]
    for name in PICKERS:
        base += ["--coordinates", os.path.join(data, "coords", name)]
    import json

    # never accurate enough: both passes run, the second continuing the first
    out = str(tmp_path / "two_passes")
    assert main(base + ["--max-val-acc", "1.01", "-o", out]) == 0
    second = json.load(open(os.path.join(out, "training", "pass_002", "manifest.json")))
    assert second["continued_from"] == os.path.join(out, "training", "pass_001")
    final = json.load(open(os.path.join(out, "model", "manifest.json")))
    assert final["n_positives"] == second["n_positives"] and final["created"] == second["created"]

    # accurate enough after the first pass: training stops there
    out = str(tmp_path / "one_pass")
    assert main(base + ["--max-val-acc", "0.0", "-o", out]) == 0
    assert os.path.exists(os.path.join(out, "training", "pass_001", "manifest.json"))
    assert not os.path.exists(os.path.join(out, "training", "pass_002"))
    log = open(os.path.join(out, "screen.log")).read()
    # scored whole, the 4 trained micrographs for the evidence, then the others; by the cascade
    # (the evidence fitted on sampled candidates), all 8 in predict
    assert "training ends: mean validation accuracy" in log
    assert "scored 4/4" in log or "scored 8/8 mic_007 by the cascade" in log


def test_unlabeled_negatives_and_self_training(tmp_path):
    import json
    data = str(tmp_path / "data")
    synthetic.make_dataset(data, n_micrographs=4, seed=7, n_particles=120, n_junk=15)
    out = str(tmp_path / "out")
    argv = ["screen", "--micrographs", os.path.join(data, "micrographs", "*.mrc"),
            "--box-size", "128", "--models", "1", "--epochs", "1", "--min-batches", "0",
            "--network-size", "small",
            "--seed", "3", "--unlabeled-negatives", "--self-training", "1", "--views", "1",
            "--keep-edge-boxes",
            "-o", out]   # one view, edge boxes: this 1-epoch network is confident enough
    for name in PICKERS:
        argv += ["--coordinates", os.path.join(data, "coords", name)]
    assert main(argv) == 0
    log = open(os.path.join(out, "screen.log")).read()
    # edge boxes kept (--keep-edge-boxes): the unlabeled negatives are the one-vote candidates
    candidates = np.load(os.path.join(out, "candidates.npz"))
    assert (f"unlabeled candidates as negatives: {(candidates['votes'] < 2).sum()} boxes"
            in log)
    round1 = json.load(open(os.path.join(out, "model_round1", "manifest.json")))
    assert round1["continued_from"] == os.path.join(out, "training", "pass_001")
    assert "self-training round 1 on 4 micrographs:" in log
    # the output follows the retrained model, not the first one
    final = json.load(open(os.path.join(out, "model", "manifest.json")))
    assert final["created"] == round1["created"]
    stems = sorted({os.path.splitext(os.path.basename(m))[0] for m in candidates["micrograph"]})
    np.testing.assert_array_equal(candidates["network_score"],
                                  network_scores(out, stems, views=1))
    matched = sum(int(match_to_reference(candidates["xy"][candidates["kept"] & (
        np.char.find(candidates["micrograph"], s) >= 0)], truth(data, s), MATCH).sum())
        for s in stems)
    n_truth = sum(len(truth(data, s)) for s in stems)
    _, _, f1 = precision_recall_f1(matched, int(candidates["kept"].sum()), n_truth)
    assert f1 > 0.8

    # stopped while scoring the second round: continues without retraining, same outputs
    before = open(os.path.join(out, "coordinates.star")).read()
    model_time = os.path.getmtime(os.path.join(out, "model_round1", "model_0.keras"))
    os.remove(scores_file(out, stems[1], views=1))
    os.remove(os.path.join(out, "coordinates.star"))
    assert main(argv) == 0
    assert open(os.path.join(out, "coordinates.star")).read() == before
    assert os.path.getmtime(os.path.join(out, "model_round1", "model_0.keras")) == model_time
