"""The FFT convolution computes what Conv2D computes, with the same weights."""
import os

import keras
import numpy as np
import pytest

from xmipp3_deepcons.core.fft_conv import FFTConv2D, fast_fft_length


def test_fast_fft_length():
    assert fast_fft_length(142) == 144
    assert fast_fft_length(70) == 72
    assert fast_fft_length(7) == 8
    assert fast_fft_length(125) == 128     # 125 = 5^3, but the packed inverse needs even


@pytest.mark.parametrize("channels,filters,kernel,size", [
    (1, 4, 15, 40), (1, 4, 15, 39), (3, 2, 7, 33), (2, 3, 3, 16),
    (8, 8, 5, 17)])   # kernel gradient's batch products as matrix products
@pytest.mark.parametrize("activation", ["relu", None, "tanh"])   # fused, fused, after the layer
def test_same_output_and_gradients_as_conv2d(channels, filters, kernel, size, activation):
    rng = np.random.default_rng(0)
    direct = keras.layers.Conv2D(filters, kernel, padding="same", activation=activation)
    fft = FFTConv2D(filters, kernel, activation=activation)
    x = rng.normal(size=(3, size, size + 5, channels)).astype("float32")
    direct.build(x.shape)
    fft.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") * 0.1 for w in direct.get_weights()]
    direct.set_weights(weights)
    fft.set_weights(weights)
    expected = direct(x).numpy()
    for training in (True, False):     # FFT while training; thin layers score directly
        # (width 44: four columns at a time, see fast_layers.width_packed_convolution)
        np.testing.assert_allclose(fft(x, training=training).numpy(), expected, atol=2e-5, rtol=1e-4)

    import tensorflow as tf
    grads = []
    x = tf.constant(x)
    for layer in (direct, fft):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y) * y)
        grads.append([g.numpy() for g in tape.gradient(loss, [x] + layer.trainable_weights)])
    assert len(grads[1]) == 3                      # inputs, kernel, bias
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, atol=1e-3, rtol=1e-3)


def test_saved_and_loaded(tmp_path):
    inputs = keras.Input((32, 32, 4))       # 4 -> 4: the FFT path also when scoring
    model = keras.Model(inputs, FFTConv2D(4, 5, kernel_regularizer=keras.regularizers.L2(1e-5))(inputs))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 4)).astype("float32")
    np.testing.assert_array_equal(model(x).numpy(), again(x).numpy())
    import tensorflow as tf      # traced for any batch size, as Keras' training step is
    for training in (False, True):
        traced = tf.function(lambda a: model(a, training=training),
                             input_signature=[tf.TensorSpec((None, 32, 32, 4))])
        np.testing.assert_allclose(traced(x).numpy(), again(x).numpy(), atol=1e-6)
    assert len(again.losses) == 1
