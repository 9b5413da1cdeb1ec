"""The CNN: the original's network, balanced weighted batches, training, the ensemble's score."""
import hashlib
import json
import os
import re

import numpy as np
import pytest

from xmipp3_deepcons.core import training
from xmipp3_deepcons.core.ensemble import Ensemble, evaluate_scores
from xmipp3_deepcons.core.network import build_network, compile_network, in_fast_layers
from xmipp3_deepcons.core.training import (BalancedBatches, WeightedBoxes, augment, group_weights,
                                           keras_epochs, pool_groups, rotated, split_validation,
                                           train_ensemble)
from xmipp3_deepcons.errors import InputError
from xmipp3_deepcons.resources import file_record


@pytest.mark.parametrize("band,count", [("small", 532852), ("medium", 1076958), ("large", 2203546)])
def test_parameter_counts_of_the_original(band, count):
    assert build_network(band).count_params() == count


def test_softmax_output_and_fft_equals_direct_convolution():
    fft, direct = build_network("small"), build_network("small", fast=False)
    direct.set_weights(fft.get_weights())
    x = np.random.default_rng(0).normal(size=(3, 128, 128, 1)).astype(np.float32)
    p = fft.predict_on_batch(x)
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(direct.predict_on_batch(x), p, atol=1e-5)


@pytest.mark.parametrize("band", ["small", "medium"])
def test_fast_network_trains_as_plain_keras(band):
    """Same weights: the same features, gradients and batch-norm statistics while training."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    fast, plain = build_network(band), build_network(band, fast=False)
    assert [layer.name for layer in fast.layers] == [layer.name for layer in plain.layers]
    few = [layer.name for layer in fast.layers
           if type(layer).__name__ == "FewChannelMaxPooling2D"]
    assert few == {"small": ["block1_pool", "block2_pool"], "medium": ["block1_pool"]}[band]
    assert [layer.name for layer in fast.layers
            if type(layer).__name__ == "FFTConv2D"] == ["block1_conv2"]
    packed = [(layer.name, layer.pack, layer.backward_pack) for layer in fast.layers
              if type(layer).__name__ == "WidthPackedConv2D" and layer.backward_pack > 1]
    assert packed == {
        "small": [("block1_conv1", 8, 8), ("block2_conv1", 4, 4), ("block2_conv2", 4, 4),
                  ("block3_conv1", 2, 2), ("block3_conv2", 2, 2)],
        "medium": [("block1_conv1", 4, 8), ("block2_conv1", 2, 4), ("block2_conv2", 2, 2)]}[band]
    fused = [layer.name for layer in fast.layers
             if type(layer).__name__ == "FusedBatchNormalization"]
    assert fused == [f"block{b}_bn" for b in range(1, 5)]
    plain.set_weights(fast.get_weights())
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 128, 128, 1)).astype(np.float32))
    results = []
    for model in (fast, plain):
        features = keras.Model(model.input, model.get_layer("dense").output)
        with tf.GradientTape() as tape:
            out = features(x, training=True)
            loss = tf.reduce_sum(tf.sin(out) * out)
        grads = tape.gradient(loss, features.trainable_weights)
        statistics = [w.numpy() for w in model.non_trainable_weights]
        results.append((out.numpy(), [g.numpy() for g in grads], statistics))
    (out, grads, stats), (out_plain, grads_plain, stats_plain) = results
    np.testing.assert_allclose(out, out_plain, atol=1e-3 * np.abs(out_plain).max())
    # Each gradient as a whole: a pre-activation within float32 rounding of zero can fall on the
    # other side of a ReLU in one network and not the other (about one in 10^5), which moves
    # the gradients around it by up to 1e-3 of the largest. (Plus noise against the largest
    # gradient: a bias before a batch norm has none but noise.)
    scale = max(np.abs(g).max() for g in grads_plain)
    for g, g_plain in zip(grads, grads_plain):
        assert np.linalg.norm(g - g_plain) <= (1e-2 * np.linalg.norm(g_plain)
                                               + 1e-4 * scale * np.sqrt(g.size))
    for s, s_plain in zip(stats, stats_plain):                # moving mean and variance
        np.testing.assert_allclose(s, s_plain, rtol=1e-3, atol=1e-5)
    assert not np.allclose(stats[1], 1.0)                    # updated by the step


def test_a_plain_saved_network_continues_in_the_fast_layers():
    import keras
    plain = build_network("small", fast=False)
    fast = in_fast_layers(plain)
    assert fast is not plain
    assert type(fast.get_layer("block1_pool")).__name__ == "FewChannelMaxPooling2D"
    assert type(fast.get_layer("block2_conv1")).__name__ == "WidthPackedConv2D"
    x = np.random.default_rng(3).normal(size=(4, 128, 128, 1)).astype(np.float32)
    np.testing.assert_allclose(fast.predict_on_batch(x), plain.predict_on_batch(x), atol=1e-5)
    assert in_fast_layers(fast) is fast                  # already fast
    inputs = keras.Input((128, 128, 1))                   # not ours: continued as it is
    other = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="block1_conv1")(inputs))
    assert in_fast_layers(other) is other


@pytest.mark.parametrize("shape,size", [((2, 128, 128, 4), 7), ((3, 33, 20, 3), 5)])
def test_few_channel_max_pool_is_keras_max_pool(shape, size):
    """Same maxima and the same gradient (distinct values: no ties), odd sizes included."""
    import keras
    import tensorflow as tf
    from xmipp3_deepcons.core.fast_layers import FewChannelMaxPooling2D
    x = tf.constant(np.random.default_rng(5).permutation(np.prod(shape)).reshape(shape)
                    .astype(np.float32))
    results = []
    for pool in (FewChannelMaxPooling2D, keras.layers.MaxPooling2D):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = pool(size, strides=2, padding="same")(x)
            weights = np.arange(1, 1 + y.shape.num_elements(), dtype=np.float32)  # exact sums
            loss = tf.reduce_sum(y * weights.reshape(y.shape))
        results.append((y.numpy(), tape.gradient(loss, x).numpy()))
    (y, g), (y_keras, g_keras) = results
    assert y.shape == y_keras.shape == (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2, shape[3])
    np.testing.assert_array_equal(y, y_keras)
    np.testing.assert_array_equal(g, g_keras)


@pytest.mark.parametrize("shape,filters,kernel,activation,packs", [
    ((2, 20, 24, 1), 4, 15, "relu", (4, 8)), ((3, 9, 12, 3), 2, 7, None, (4, 4)),
    ((2, 16, 10, 8), 8, 3, "tanh", (2, 2)), ((2, 8, 6, 2), 4, 5, "relu", (2, 2)),
    ((2, 8, 7, 2), 4, 5, "relu", (1, 1)), ((2, 9, 16, 4), 8, 7, "relu", (2, 4)),
    ((3, 8, 10, 8), 16, 7, None, (1, 2))])
def test_width_packed_convolution_is_conv2d(shape, filters, kernel, activation, packs):
    """Same outputs and gradients as Conv2D with the same weights, neighbouring columns taken
    as channels (odd widths are convolved as they are), in the forward pass and, as many or
    more at a time, in the gradients."""
    import keras
    import tensorflow as tf
    from xmipp3_deepcons.core.fast_layers import WidthPackedConv2D
    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    layers = [WidthPackedConv2D(filters, kernel, padding="same", activation=activation),
              keras.layers.Conv2D(filters, kernel, padding="same", activation=activation)]
    results = []
    for layer in layers:
        layer.build(x.shape)
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.weights]
                          if not results else layers[0].get_weights())
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y) * y)
        results.append([y.numpy()] + [g.numpy() for g in tape.gradient(
            loss, [x, layer.kernel, layer.bias])])
    assert (layers[0].pack, layers[0].backward_pack) == packs
    for packed, plain in zip(*results):
        np.testing.assert_allclose(packed, plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())


def test_width_packed_convolution_of_maps_of_any_size():
    """A model built for any map size convolves unpacked (the width is unknown when built)."""
    import keras
    from xmipp3_deepcons.core.fast_layers import WidthPackedConv2D
    inputs = keras.Input((None, None, 4))
    layer = WidthPackedConv2D(8, 7, padding="same", activation="relu")
    model = keras.Model(inputs, layer(inputs))
    plain = keras.layers.Conv2D(8, 7, padding="same", activation="relu")
    plain.build((None, None, None, 4))
    plain.set_weights(model.get_weights())
    x = np.random.default_rng(7).normal(size=(2, 20, 24, 4)).astype(np.float32)
    assert layer.pack == 1
    np.testing.assert_allclose(model(x).numpy(), plain(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("channels", [4, 8])     # XLA, TensorFlow's fused kernel
def test_fused_batch_norm_is_keras_batch_norm(channels):
    """Outputs, gradients and moving statistics; on 2x4x4 values per channel the unbiased
    variance the fused kernel returns would be 3 % off."""
    import keras
    import tensorflow as tf
    from xmipp3_deepcons.core.fast_layers import FusedBatchNormalization
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(2, 3, size=(2, 4, 4, channels)).astype(np.float32))
    layers = [FusedBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)]
    results = []
    for layer in layers:
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, channels).astype(np.float32))
        layer.beta.assign(np.linspace(-1, 1, channels).astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y) * y)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y.numpy()] + [g.numpy() for g in grads]
                       + [layer.moving_mean.numpy(), layer.moving_variance.numpy(),
                          layer(x, training=False).numpy()])
    for fused, keras_bn in zip(*results):
        np.testing.assert_allclose(fused, keras_bn, rtol=1e-5, atol=1e-5)


def test_recompiling_sets_a_new_l2_factor():
    model = build_network("small", l2=1e-5)
    before = float(sum(model.losses))
    compile_network(model, 1e-3, 1e-3)
    assert float(sum(model.losses)) == pytest.approx(100 * before, rel=1e-4)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.get_layer("p_particle").kernel.regularizer is None


def test_automatic_weights():
    # fixed groups of 1000 and 500 boxes: an automatic group of 100 weighs floor(1500 / 100)
    assert group_weights([1000, 500, 100], [1, 2, -1]) == [1, 2, 15]
    assert group_weights([100, 3000], [1, 0]) == [1, 1]   # at least 1
    assert group_weights([10, 20], [0, 0]) == [1, 1]      # nothing fixed
    boxes, probability = pool_groups([(np.zeros((300, 128, 128)), 1), (np.ones((100, 128, 128)), 0)])
    assert len(boxes) == 400 and probability.sum() == pytest.approx(1)
    assert probability[300] == pytest.approx(3 * probability[0])


def test_balanced_batches_respect_weights():
    boxes, probability = pool_groups([(np.zeros((20, 128, 128)), 1), (np.ones((20, 128, 128)), 3)])
    negatives = np.full((30, 128, 128), -1, np.float32)
    batches = BalancedBatches(WeightedBoxes(boxes, np.arange(40), probability),
                              WeightedBoxes(negatives, np.arange(30), np.full(30, 1 / 30)),
                              seed=1, augmented=False)
    heavy = light = 0
    for i in range(60):
        x, y = batches[i]
        assert x.shape == (64, 128, 128, 1) and y.shape == (64, 2)
        assert y[:, 1].sum() == 32 and y[:, 0].sum() == 32
        assert (x[y[:, 0] == 1] == -1).all()
        means = x[y[:, 1] == 1].mean(axis=(1, 2, 3))
        heavy, light = heavy + int((means == 1).sum()), light + int((means == 0).sum())
    assert heavy + light == 60 * 32
    assert heavy / light == pytest.approx(3, rel=0.15)


def test_batches_are_reproducible_and_augmented():
    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(50, 128, 128)).astype(np.float32)
    members = WeightedBoxes(boxes, np.arange(50), np.full(50, 0.02))
    first, again = (BalancedBatches(members, members, seed=[3, 0]) for _ in range(2))
    np.testing.assert_array_equal(first[2][0], again[2][0])
    np.testing.assert_array_equal(first[52][0], again[52][0])   # asked for out of order
    np.testing.assert_array_equal(first[2][0], again[2][0])
    assert not np.array_equal(first[2][0], first[52][0])
    assert not np.array_equal(first[2][0], BalancedBatches(members, members, seed=[3, 1])[2][0])


def test_training_sees_every_batch_once_in_order():
    """fit() over epochs draws one stream: batch numbers 0, 1, 2, ... never restarted."""
    asked = []

    class Recorded(BalancedBatches):
        def __getitem__(self, number):
            asked.append(number)
            return super().__getitem__(number)

    boxes = np.random.default_rng(0).normal(size=(40, 128, 128)).astype(np.float32)
    members = WeightedBoxes(boxes, np.arange(40), np.full(40, 1 / 40))
    labels = np.eye(2, dtype=np.float32)[np.zeros(10, int)]
    build_network("small").fit(Recorded(members, members, seed=1).dataset(9), epochs=3,
                               steps_per_epoch=3, validation_data=(boxes[:10, ..., None], labels),
                               shuffle=False, verbose=0)
    assert asked == list(range(9))


def test_augmentation_flips_turns_and_rotates_slightly():
    yy, xx = np.mgrid[:128, :128]
    smooth = np.stack([np.exp(-((xx - 40 - i) ** 2 + (yy - 90 + i / 2) ** 2) / (2 * 15 ** 2))
                       for i in range(64)]).astype(np.float32)   # off-centre blobs
    changed = rotated = 0
    for seed in range(4):
        out = augment(smooth, np.random.default_rng(seed))
        assert out.shape == smooth.shape and out.dtype == np.float32
        for before, after in zip(smooth, out):
            dihedral = [np.rot90(b, k) for b in (before, before[:, ::-1]) for k in range(4)]
            match = max(np.corrcoef(d.ravel(), after.ravel())[0, 1] for d in dihedral)
            assert match > 0.9        # the same image, up to a small rotation
            changed += not np.array_equal(before, after)
            rotated += match < 0.9999
    assert changed > 64 and rotated > 8


def test_fast_rotation_is_scipys_float32_rotation_bit_for_bit():
    from scipy import ndimage
    rng = np.random.default_rng(3)
    for scale in (1e-3, 1.0, 300.0):
        box = (rng.normal(size=(128, 128)) * scale).astype(np.float32)
        for angle in rng.uniform(-10, 10, 6):
            fast = rotated(box, angle)
            assert fast.dtype == np.float32
            assert np.array_equal(fast, ndimage.rotate(box, angle, reshape=False,
                                                       mode="reflect"))


def test_validation_split_and_epochs_as_the_original():
    train, validation = split_validation(400, np.random.default_rng(0))
    assert len(validation) == 40 and len(np.union1d(train, validation)) == 400
    assert keras_epochs(5, 2460) == 7   # 69 batches per pass, 5 passes, 50 per Keras epoch
    assert keras_epochs(0.1, 400) == 1


def test_default_training_length():
    """The defaults train EMPIAR-10017's 2460 positives for 3 Keras epochs of 50 batches (the
    original's 5 epochs: 7), and a small set for at least 150 batches."""
    from xmipp3_deepcons.constants import DEFAULT_EPOCHS, DEFAULT_MIN_BATCHES
    assert keras_epochs(DEFAULT_EPOCHS, 2460, DEFAULT_MIN_BATCHES) == 3
    assert keras_epochs(DEFAULT_EPOCHS, 736, DEFAULT_MIN_BATCHES) == 3
    assert keras_epochs(DEFAULT_EPOCHS, 20000, DEFAULT_MIN_BATCHES) == 23


def blobs(rng, n, positive):
    """Positives: a bright Gaussian blob at the centre; negatives: noise only."""
    yy, xx = np.mgrid[:128, :128] - 63.5
    boxes = rng.normal(0, 1, (n, 128, 128)).astype(np.float32)
    if positive:
        boxes += 2.0 * np.exp(-(xx ** 2 + yy ** 2) / (2 * 12 ** 2)).astype(np.float32)
    return boxes


def test_too_few_positives(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="too few positives to train: found 300, need at least 320"):
        train_ensemble([(blobs(rng, 200, True), 1), (blobs(rng, 100, True), 0)],
                       [(blobs(rng, 100, False), 1)], str(tmp_path))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return [(blobs(rng, 400, True), 1)], [(blobs(rng, 400, False), 1)]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A small network trained on blobs vs noise, three short Keras epochs of 5 batches."""
    folder, lines = str(tmp_path_factory.mktemp("trained")), []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "BATCHES_PER_KERAS_EPOCH", 5)
        train_ensemble(*data, folder, n_models=1, epochs=1.3, band="small", seed=5,
                       log=lines.append, metadata={"box_size": 180})
    return folder, lines


@pytest.mark.slow
def test_training_separates_blobs_from_noise(trained):
    folder, lines = trained
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert manifest["band"] == "small" and manifest["n_models"] == 1 and manifest["seed"] == 5
    assert manifest["n_positives"] == 400 and manifest["extra"] == {"box_size": 180}
    assert manifest["mean_val_accuracy"] > 0.9
    with open(os.path.join(folder, "model_0.keras"), "rb") as f:
        assert manifest["files"] == {"model_0.keras": {
            "bytes": os.path.getsize(os.path.join(folder, "model_0.keras")),
            "sha256": hashlib.sha256(f.read()).hexdigest()}}
    history = json.load(open(os.path.join(folder, "history.json")))
    assert set(history[0]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert manifest["models"][0]["val_accuracy"] == max(history[0]["val_accuracy"])
    assert len(history[0]["loss"]) == manifest["models"][0]["epochs_run"] == 3
    assert sum(bool(re.match(r"model 1/1 epoch \d/3: loss .* acc .* val_acc .* lr ", line))
               for line in lines) == 3

    rng = np.random.default_rng(99)
    scores = Ensemble.load(folder).score(np.concatenate([blobs(rng, 100, True),
                                                         blobs(rng, 100, False)]))
    assert scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
    report = evaluate_scores(np.r_[np.ones(100), np.zeros(100)], scores)
    assert report["roc_auc"] > 0.95 and report["accuracy_at_0.5"] > 0.9


@pytest.mark.slow
def test_saved_model_is_the_reported_epoch(trained, data):
    """The model on disk scores the validation set exactly as the manifest says."""
    folder, _ = trained
    ensemble = Ensemble.load(folder)
    rng = np.random.default_rng(ensemble.manifest["seed"])
    validation = [group[0][split_validation(400, rng)[1]] for group in (data[0][0], data[1][0])]
    scores = ensemble.score(np.concatenate(validation))
    accuracy = np.mean(np.r_[scores[:40] > 0.5, scores[40:] <= 0.5])
    assert accuracy == pytest.approx(ensemble.manifest["models"][0]["val_accuracy"])


@pytest.mark.slow
def test_reloaded_ensemble_scores_identically(trained, tmp_path):
    boxes = blobs(np.random.default_rng(3), 20, True)
    ensemble = Ensemble.load(trained[0])
    ensemble.models[0].save(str(tmp_path / "model_0.keras"))
    with pytest.raises(InputError, match="model_0.keras does not match its checksum"):
        json.dump(ensemble.manifest, open(tmp_path / "manifest.json", "w"))
        Ensemble.load(str(tmp_path))   # the manifest's checksum is the trained file's
    manifest = dict(ensemble.manifest, files={"model_0.keras": file_record(
        str(tmp_path / "model_0.keras"))})
    json.dump(manifest, open(tmp_path / "manifest.json", "w"))
    np.testing.assert_array_equal(Ensemble.load(str(tmp_path)).score(boxes), ensemble.score(boxes))


@pytest.mark.slow
def test_mirror_views_score_the_mean_of_the_mirrored_boxes(trained):
    boxes = np.concatenate([blobs(np.random.default_rng(5), 30, True),
                            blobs(np.random.default_rng(6), 30, False)])
    one = Ensemble.load(trained[0])
    mirrored = [boxes, boxes[:, :, ::-1], boxes[:, ::-1, :], boxes[:, ::-1, ::-1]]
    expected = np.mean([one.score(m) for m in mirrored], axis=0)
    four = Ensemble.load(trained[0], views=4)
    np.testing.assert_allclose(four.score(boxes), expected, atol=1e-6)
    assert np.abs(expected - one.score(boxes)).max() > 1e-3      # the views do differ
    # eight views are the symmetries of the square: a mirrored box scores as the box
    eight = Ensemble.load(trained[0], views=8)
    np.testing.assert_allclose(eight.score(boxes.transpose(0, 2, 1)[:, ::-1]), eight.score(boxes),
                               atol=1e-6)
    transposed = [m.transpose(0, 2, 1) for m in mirrored]
    np.testing.assert_allclose(eight.score(boxes),
                               np.mean([one.score(m) for m in mirrored + transposed], axis=0),
                               atol=1e-6)
    with pytest.raises(InputError, match="views 3"):
        Ensemble.load(trained[0], views=3)


@pytest.mark.slow
def test_same_seed_same_scores_and_continued_training(data, trained, tmp_path):
    boxes = blobs(np.random.default_rng(4), 20, True)
    scores = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "BATCHES_PER_KERAS_EPOCH", 2)
        for name in ("a", "b"):
            train_ensemble(*data, str(tmp_path / name), n_models=1, epochs=0.1, band="small",
                           seed=11, log=lambda line: None)
            scores.append(Ensemble.load(str(tmp_path / name)).score(boxes))
        np.testing.assert_array_equal(scores[0], scores[1])

        with pytest.raises(InputError, match="differs from the model"):
            train_ensemble(*data, str(tmp_path / "c"), band="medium", init_model_dir=trained[0])
        report = train_ensemble(*data, str(tmp_path / "c"), n_models=1, epochs=0.1, l2=1e-4,
                                seed=11, init_model_dir=trained[0], log=lambda line: None)
    assert report["band"] == "small" and report["l2"] == 1e-4
    assert report["continued_from"] == os.path.abspath(trained[0])
    continued = Ensemble.load(str(tmp_path / "c"))
    assert continued.models[0].get_layer("dense").kernel_regularizer.l2 == pytest.approx(1e-4)


def test_best_mcc_threshold_matches_scikit_learn():
    from sklearn.metrics import matthews_corrcoef
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.4
    scores = np.clip(0.3 * labels + rng.normal(0.35, 0.2, 300), 0, 1)
    report = evaluate_scores(labels, scores)
    mcc = [matthews_corrcoef(labels, scores > t) for t in np.arange(1000) / 1000]
    assert report["best_threshold"] == np.argmax(mcc) / 1000
    assert report["mcc"] == pytest.approx(max(mcc))
    predicted = scores > report["best_threshold"]
    assert report["precision"] == pytest.approx((predicted & labels).sum() / predicted.sum())
    assert report["recall"] == pytest.approx((predicted & labels).sum() / labels.sum())


@pytest.mark.slow
def test_not_a_model_folder_and_wrong_box_size(tmp_path, trained):
    with pytest.raises(InputError, match="not a Deep Consensus model folder"):
        Ensemble.load(str(tmp_path))
    with pytest.raises(InputError, match=r"shape \(2, 64, 64\)"):
        Ensemble.load(trained[0]).score(np.zeros((2, 64, 64)))
