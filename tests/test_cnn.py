import json
import os

import numpy as np
import pytest

from xmipp3_deepcons.core.ensemble import Ensemble, evaluate_scores
from xmipp3_deepcons.core.metrics import ranking_quality
from xmipp3_deepcons.core.network import build_network
from xmipp3_deepcons.core.training import (BalancedBatches, augment, group_weights, keras_epochs,
                                           pool_groups, rotate_small, train_ensemble)
from xmipp3_deepcons.errors import InputError


@pytest.mark.parametrize("band,count", [("small", 532852), ("medium", 1076958), ("large", 2203546)])
def test_parameter_counts_of_the_original(band, count):
    assert build_network(band).count_params() == count


def test_fft_and_direct_networks_agree_with_the_same_weights():
    fft, direct = build_network("small"), build_network("small", fft=False)
    direct.set_weights(fft.get_weights())
    x = np.random.default_rng(0).normal(size=(4, 128, 128, 1)).astype(np.float32)
    a, b = fft(x, training=False).numpy(), direct(x, training=False).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a.sum(axis=1), 1, atol=1e-6)


def test_automatic_weights():
    # fixed groups of 1000 and 500; an automatic group of 100 counts like 15 groups of its size
    assert group_weights([1000, 500, 100], [1, 2, -1]) == [1, 2, 15]
    assert group_weights([100, 3000], [1, 0]) == [1, 1]
    boxes, probability = pool_groups([(np.zeros((10, 2, 2)), 1), (np.ones((5, 2, 2)), 3)])
    assert len(boxes) == 15 and probability.sum() == pytest.approx(1)
    assert probability[10] == pytest.approx(3 * probability[0])


def test_balanced_batches_and_weighted_draws():
    positives = np.zeros((40, 128, 128), np.float32)
    positives[20:] = 1  # second half: weight 3
    probability = np.r_[np.full(20, 1.0), np.full(20, 3.0)]
    negatives = np.full((30, 128, 128), -1, np.float32)
    batches = BalancedBatches(positives, probability / probability.sum(), negatives,
                              np.full(30, 1 / 30), seed=1, augmented=False)
    heavy = light = 0
    for i in range(len(batches)):
        x, y = batches[i]
        assert x.shape == (64, 128, 128, 1) and y.shape == (64, 2)
        assert y[:, 1].sum() == 32 and y[:, 0].sum() == 32
        assert (x[y[:, 0] == 1] == -1).all()
        means = x[y[:, 1] == 1].mean(axis=(1, 2, 3))
        heavy += int((means == 1).sum())
        light += int((means == 0).sum())
    assert heavy / light == pytest.approx(3, rel=0.15)
    np.testing.assert_array_equal(batches[3][0], batches[3][0])  # reproducible per batch


def test_augmentation_keeps_shapes_and_content():
    boxes = np.random.default_rng(0).normal(size=(64, 128, 128)).astype(np.float32)
    out = augment(boxes, np.random.default_rng(1))
    assert out.shape == boxes.shape and out.dtype == np.float32
    np.testing.assert_allclose(np.sort(out[0].ravel())[[0, -1]], np.sort(boxes[0].ravel())[[0, -1]], atol=1.5)
    np.testing.assert_allclose(rotate_small(boxes[:2], np.zeros(2)), boxes[:2], atol=1e-5)
    quarter = rotate_small(boxes[:1], np.array([90.0]))[0]
    np.testing.assert_allclose(quarter[2:-2, 2:-2], np.rot90(boxes[0], 1)[2:-2, 2:-2], atol=1e-4)


def test_keras_epochs_as_the_original():
    assert keras_epochs(5, 2460) == 7   # 69 batches per pass, 5 passes, 50 per Keras epoch
    assert keras_epochs(0.1, 400) == 1


def blobs(rng, n, positive):
    """Positives: a bright Gaussian blob at the centre; negatives: noise only."""
    yy, xx = np.mgrid[:128, :128] - 63.5
    boxes = rng.normal(0, 1, (n, 128, 128)).astype(np.float32)
    if positive:
        boxes += 2.0 * np.exp(-(xx ** 2 + yy ** 2) / (2 * 12 ** 2)).astype(np.float32)
    return boxes


def test_too_few_positives(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="found 100, need at least 320"):
        train_ensemble([(blobs(rng, 100, True), 1)], [(blobs(rng, 100, False), 1)], str(tmp_path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(0)
    positives, negatives = blobs(rng, 400, True), blobs(rng, 400, False)
    folders = []
    for name in ("a", "b"):
        folder = str(tmp_path_factory.mktemp(name))
        train_ensemble([(positives, 1)], [(negatives, 1)], folder, n_models=1, epochs=4,
                       band="small", seed=5, log=lambda line: None)
        folders.append(folder)
    return folders


def test_tiny_training_separates_blobs_from_noise(trained):
    manifest = json.load(open(os.path.join(trained[0], "manifest.json")))
    assert manifest["band"] == "small" and manifest["n_models"] == 1
    assert manifest["mean_val_accuracy"] > 0.9
    history = json.load(open(os.path.join(trained[0], "history.json")))
    assert max(history[0]["val_accuracy"]) == pytest.approx(manifest["mean_val_accuracy"])
    rng = np.random.default_rng(99)
    ensemble = Ensemble.load(trained[0])
    scores = ensemble.score(np.concatenate([blobs(rng, 100, True), blobs(rng, 100, False)]))
    labels = np.r_[np.ones(100), np.zeros(100)]
    assert ranking_quality(labels, scores)[0] > 0.95
    assert ((scores >= 0) & (scores <= 1)).all()
    report = evaluate_scores(labels, scores)
    assert report["roc_auc"] > 0.95 and 0 <= report["best_threshold"] < 1


def test_same_seed_same_scores_and_reload_is_exact(trained, tmp_path):
    boxes = blobs(np.random.default_rng(3), 20, True)
    a, b = Ensemble.load(trained[0]), Ensemble.load(trained[1])
    np.testing.assert_array_equal(a.score(boxes), b.score(boxes))
    a.models[0].save(str(tmp_path / "model_0.keras"))
    json.dump({"models": [{"file": "model_0.keras"}]}, open(tmp_path / "manifest.json", "w"))
    np.testing.assert_array_equal(Ensemble.load(str(tmp_path)).score(boxes), a.score(boxes))


def test_not_a_model_folder(tmp_path):
    with pytest.raises(InputError, match="not a Deep Consensus model folder"):
        Ensemble.load(str(tmp_path))
