"""The Deep Consensus network, as in the original: four convolution blocks and a dense head.

Width grows with the training set (small / medium / large). The 15x15 convolutions of the first
block are computed through the FFT (same function and weights as Conv2D, much faster on a CPU);
``fft=False`` builds the plain Conv2D version with identical weights, for comparison.
"""
import keras

from ..constants import DEEP_PARTICLE_SIZE
from .fft_conv import FFTConv2D

WIDTH_INDEX = {"small": 0, "medium": 1, "large": 2}
BLOCKS = ((15, 7), (7, 5), (3, 3), (3, None))   # (kernel size, max-pool size) per block
FFT_MIN_KERNEL = 11                             # smaller kernels are faster computed directly
# Batch-norm statistics follow the weights within tens of batches (Keras' default 0.99 needs
# hundreds, more than a small training set gives, and validation then lags behind training).
BN_MOMENTUM = 0.9


def build_network(band="medium", l2=1e-5, learning_rate=1e-4, fft=True):
    """A compiled network of the given size band."""
    if band not in WIDTH_INDEX:
        raise ValueError(f"unknown network size {band!r}; use small, medium or large")
    width = WIDTH_INDEX[band]
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE, 1), name="box")
    x = inputs
    for block, (kernel, pool) in enumerate(BLOCKS, 1):
        filters = 2 ** (width + block)
        for conv, activation in ((1, "relu"), (2, None)):
            x = _convolution(filters, kernel, activation, regularizer, fft,
                             f"block{block}_conv{conv}")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{block}_relu")(x)
        if pool:
            x = keras.layers.MaxPooling2D(pool, strides=2, padding="same", name=f"block{block}_pool")(x)
    x = keras.layers.AveragePooling2D(4, strides=2, padding="same", name="average")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(512, activation="relu", kernel_regularizer=regularizer, name="dense")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="p_particle")(x)
    model = keras.Model(inputs, outputs, name=f"deep_consensus_{band}")
    compile_network(model, learning_rate)
    return model


def _convolution(filters, kernel, activation, regularizer, fft, name):
    if fft and kernel >= FFT_MIN_KERNEL:
        return FFTConv2D(filters, kernel, activation=activation, kernel_regularizer=regularizer, name=name)
    return keras.layers.Conv2D(filters, kernel, padding="same", activation=activation,
                               kernel_regularizer=regularizer, name=name)


def compile_network(model, learning_rate):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def band_of(model):
    """Size band of a built network, from the width of its first convolution."""
    first = model.get_layer("block1_conv1")
    return {2: "small", 4: "medium", 8: "large"}[first.filters]
