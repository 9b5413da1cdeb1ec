"""The Deep Consensus network of the original: four convolution blocks and a dense head.

Its width grows with the training set (small / medium / large bands). With ``fast=True`` (the
default) it is computed the way a CPU runs it fastest, the same function with the same weights:
the first block's second 15x15 convolution through the FFT (``fft_conv.FFTConv2D``),
convolutions of few channels with neighbouring columns as channels, batch norm as one fused
computation and max pools over few channels with whole rows as oneDNN's vectors
(``fast_layers``). ``fast=False`` is plain Keras (the throughput benchmark's reference).
"""
from . import tf_runtime  # noqa: F401  (TensorFlow first: quietly, with our threads)
import keras

from ..constants import DEEP_PARTICLE_SIZE
from .fast_layers import FewChannelMaxPooling2D, FusedBatchNormalization, WidthPackedConv2D
from .fft_conv import FFTConv2D

BANDS = ("small", "medium", "large")
BLOCKS = ((15, 7), (7, 5), (3, 3), (3, None))  # (kernel size, max-pool size) of blocks 1..4
FFT_MIN_KERNEL = 11                            # below this, direct convolution is faster
# Up to this many channels a pool is faster with whole rows as oneDNN's vectors
# (fast_layers.FewChannelMaxPooling2D; at 128x128x8, 0.27 against 0.28 ms: no gain).
FEW_CHANNELS = 4
OUTPUT_LAYER = "p_particle"                    # softmax over [negative, positive]; no L2
# Batch-norm statistics follow the weights within tens of batches. Keras' default (0.99, the
# original's) needs hundreds, more than a small training set gives: measured on the demo data,
# one model in three then scored every box below 0.5 (validation accuracy stuck at 0.65).
BN_MOMENTUM = 0.9


def build_network(band="medium", l2=1e-5, learning_rate=1e-4, fast=True):
    """A compiled network; filters double per block from 2 (small), 4 (medium) or 8 (large)."""
    if band not in BANDS:
        raise ValueError(f"unknown network size {band!r}: use one of {', '.join(BANDS)}")
    width = BANDS.index(band)
    inputs = keras.Input((DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE, 1), name="box")
    x = inputs
    for block, (kernel, pool) in enumerate(BLOCKS, start=1):
        filters = 2 ** (width + block)
        x = _convolution(filters, kernel, "relu", l2, fast, f"block{block}_conv1",
                         first=block == 1)(x)
        x = _convolution(filters, kernel, None, l2, fast, f"block{block}_conv2")(x)
        x = (FusedBatchNormalization if fast else keras.layers.BatchNormalization)(
            momentum=BN_MOMENTUM, name=f"block{block}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{block}_relu")(x)
        if pool:
            x = _max_pool(x, pool, fast, f"block{block}_pool")
    x = keras.layers.AveragePooling2D(4, strides=2, padding="same", name="average")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(512, activation="relu", kernel_regularizer=_l2(l2), name="dense")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name=OUTPUT_LAYER)(x)
    model = keras.Model(inputs, outputs, name=f"deep_consensus_{band}")
    return compile_network(model, learning_rate, l2)


def compile_network(model, learning_rate, l2):
    """(Re)compile for training, with the L2 factor set anew on every regularised kernel.

    Keras 3 keeps a weight's penalty on the variable itself (``variable.regularizer``), so a
    loaded model can take a new factor; the layer attribute is updated too so that a saved
    model remembers it. Compiling drops the traced training step that used the old one.
    """
    for layer in regularised_layers(model):
        layer.kernel_regularizer = _l2(l2)
        layer.kernel.regularizer = layer.kernel_regularizer
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999,
                                                  epsilon=1e-8),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def regularised_layers(model):
    """Every convolution and the hidden dense layer: all kernels but the output's."""
    return [layer for layer in model.layers
            if hasattr(layer, "kernel_regularizer") and layer.name != OUTPUT_LAYER]


def band_of(model):
    """Size band of a built network, read from the width of its first convolution."""
    filters = model.get_layer("block1_conv1").filters
    return {2: "small", 4: "medium", 8: "large"}[filters]


def in_fast_layers(model):
    """The network in today's fast layers, same weights: a saved one (the shipped models were
    saved with plain layers) trains and scores as fast as a new one. One that does not fit them
    is returned as it is."""
    try:
        fast = build_network(band_of(model))
    except (KeyError, ValueError):
        return model
    if [type(layer) for layer in fast.layers] == [type(layer) for layer in model.layers]:
        return model
    if [tuple(w.shape) for w in fast.weights] != [tuple(w.shape) for w in model.weights]:
        return model
    fast.set_weights(model.get_weights())
    return fast


def _convolution(filters, kernel, activation, l2, fast, name, first=False):
    # The network's first layer passes no gradient back: without that half of its backward
    # pass, a direct convolution trains faster than the FFT (15x15 at 128x128, forward + kernel
    # gradient per image: 1 -> 8 channels 0.60 -> 0.40 ms, 1 -> 4 0.33 -> 0.24; training step,
    # side by side: large 1.05x in 2 of 2 pairs, medium and small 1.01-1.02x).
    if fast and kernel >= FFT_MIN_KERNEL and not first:
        return FFTConv2D(filters, kernel, activation=activation, kernel_regularizer=_l2(l2),
                         name=name)
    return (WidthPackedConv2D if fast else keras.layers.Conv2D)(
        filters, kernel, padding="same", activation=activation, kernel_regularizer=_l2(l2),
        name=name)


def _max_pool(x, size, fast, name):
    """'same'-padded max pool of stride 2."""
    pool = (FewChannelMaxPooling2D if fast and x.shape[-1] <= FEW_CHANNELS
            else keras.layers.MaxPooling2D)
    return pool(size, strides=2, padding="same", name=name)(x)


def _l2(factor):
    return keras.regularizers.L2(factor) if factor else None
