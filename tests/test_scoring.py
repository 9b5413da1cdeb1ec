"""Scoring in mirror views through a shared first convolution, batch norm folded: the same
scores as the network's own prediction of each mirrored box, averaged."""
import keras
import numpy as np
import pytest

from xmipp3_deepcons.core.network import build_network
from xmipp3_deepcons.core.scoring import Scorer, inference_layers, view_transforms


def informative_network(band, fast, boxes):
    """A network whose batch norms do something and whose scores of ``boxes`` spread over
    (0, 1)."""
    keras.utils.set_random_seed(7)
    model = build_network(band, fast=fast)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]   # negative scales too: a fold must not assume a sign
            layer.set_weights([rng.uniform(-1.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.3, 2.0, n)])
    # the output layer rescaled so that these boxes' logits spread around 0
    features = keras.Model(model.input, model.get_layer("dense").output).predict_on_batch(boxes)
    output = model.get_layer("p_particle")
    kernel, _ = output.get_weights()
    margin = features @ (kernel[:, 1] - kernel[:, 0])
    scale = 3 / margin.std()
    output.set_weights([kernel * scale, np.array([0, -np.median(margin) * scale], np.float32)])
    return model


def mirrored(boxes, views):
    """The views, written out with numpy: as is, flipped left-right, up-down, both, then the
    same of the transposed boxes."""
    out = []
    for seen in (boxes, boxes.transpose(0, 2, 1))[:max(1, views // 4)]:
        out += [seen, seen[:, :, ::-1], seen[:, ::-1, :], seen[:, ::-1, ::-1]][:views]
    return out


@pytest.mark.parametrize("band,fast", [pytest.param("medium", True, marks=pytest.mark.slow),
                                       ("small", False)])
def test_scores_equal_the_mean_prediction_of_the_mirrored_boxes(band, fast):
    boxes = np.random.default_rng(2).normal(size=(70, 128, 128)).astype(np.float32)
    model = informative_network(band, fast, boxes[..., None])
    one_view = model.predict_on_batch(boxes[..., None])[:, 1]
    assert one_view.std() > 0.1                                  # scores that can differ
    for views in (1, 4, 8):
        expected = np.mean([model.predict_on_batch(np.ascontiguousarray(m)[..., None])[:, 1]
                            for m in mirrored(boxes, views)], axis=0)
        scores = Scorer(model, views, batch_size=64)(boxes)     # 70 boxes: a padded last batch
        assert scores.dtype == np.float32 and scores.shape == (70,)
        np.testing.assert_allclose(scores, expected, atol=5e-4)   # logits scaled up: rounding shows
        if views > 1:
            assert np.abs(scores - one_view).max() > 0.05        # the views do differ


def test_views_are_the_symmetries_of_the_square_without_repeats():
    assert view_transforms(1) == [(False, ())]
    assert len(set(view_transforms(4))) == 4 and len(set(view_transforms(8))) == 8
    assert view_transforms(8)[:4] == view_transforms(4)


def test_inference_layers_fold_batch_norm_and_pool_before_relu():
    model = build_network("medium")
    layers = inference_layers(model.layers[2:])
    kinds = [type(layer).__name__ for layer in layers]
    assert "BatchNormalization" not in kinds and "FusedBatchNormalization" not in kinds
    assert "Dropout" not in kinds
    # block 1: convolution, its pool, then the ReLU (block 1's first convolution is the shared
    # one, outside these layers)
    assert kinds[:3] == ["FFTConv2D", "FewChannelMaxPooling2D", "Activation"]
    assert len(layers) == len(model.layers) - 2 - 4 - 1          # 4 batch norms, 1 dropout
    # the original layers are untouched
    assert model.get_layer("block1_conv2").get_weights()[0].shape == (15, 15, 4, 4)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
