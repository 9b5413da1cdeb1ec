"""Keras layers computed the way TensorFlow runs fastest on a CPU: the same functions, with the
same weights, as the standard layers they stand for.
"""
from . import tf_runtime  # noqa: F401  (TensorFlow first: quietly, with our threads)
import keras
import numpy as np
import tensorflow as tf

# From this many channels on, oneDNN's fused batch norm is the fastest training step; below, two
# XLA kernels (statistics and normalisation; the gradient) are. Measured forward + backward per
# image, Keras / fused / XLA: 128x128x4 0.38 / 0.38 / 0.20 ms; 128x128x8 0.63 / 0.24 / 0.55;
# 64x64x8 0.13 / 0.05 / 0.09.
FUSED_MIN_CHANNELS = 8


@keras.saving.register_keras_serializable(package="xmipp3_deepcons")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step is one fused computation (for
    the statistics and the normalisation, and one for their gradient) instead of Keras'
    separate moments, normalisation and gradients: TensorFlow's fused kernel from
    ``FUSED_MIN_CHANNELS`` channels on, XLA below. Same weights, same moving averages (Keras'
    biased batch variance); scoring is Keras' own."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.scale and self.center and not self.renorm
                and inputs.dtype == tf.float32):
            return super().call(inputs, training=training, mask=mask)
        if inputs.shape[-1] >= FUSED_MIN_CHANNELS:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), variance.dtype)
            variance = variance * (n - 1) / n    # the fused kernel returns the unbiased variance
        else:
            # The weights as tensors: the custom gradient hands theirs back to the variables.
            outputs, mean, variance = _normalised_by_xla(
                inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
                self.epsilon)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1 - self.momentum))
        return outputs


def _normalised_by_xla(inputs, gamma, beta, epsilon):
    """Training-mode batch norm over (b, h, w, c): outputs, batch mean, biased batch variance."""

    @tf.custom_gradient
    def normalise(inputs, gamma, beta):
        outputs, mean, variance, inverse_std = _xla_normalise(inputs, gamma, beta, epsilon)

        def gradient(upstream, *_):    # the statistics only feed the moving averages
            return _xla_normalise_gradient(upstream, inputs, mean, inverse_std, gamma)

        return (outputs, mean, variance), gradient

    outputs, mean, variance = normalise(inputs, gamma, beta)
    return outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)


@tf.function(jit_compile=True)
def _xla_normalise(inputs, gamma, beta, epsilon):
    mean = tf.reduce_mean(inputs, axis=(0, 1, 2))
    variance = tf.reduce_mean(tf.square(inputs - mean), axis=(0, 1, 2))
    inverse_std = tf.math.rsqrt(variance + epsilon)
    return (inputs - mean) * (inverse_std * gamma) + beta, mean, variance, inverse_std


@tf.function(jit_compile=True)
def _xla_normalise_gradient(upstream, inputs, mean, inverse_std, gamma):
    """d inputs, d gamma, d beta; the batch statistics' own dependence on the inputs included."""
    normalised = (inputs - mean) * inverse_std
    d_beta = tf.reduce_sum(upstream, axis=(0, 1, 2))
    d_gamma = tf.reduce_sum(upstream * normalised, axis=(0, 1, 2))
    n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), inputs.dtype)
    d_inputs = (gamma * inverse_std / n) * (n * upstream - d_beta - normalised * d_gamma)
    return d_inputs, d_gamma, d_beta


@keras.saving.register_keras_serializable(package="xmipp3_deepcons")
class FewChannelMaxPooling2D(keras.layers.MaxPooling2D):
    """``keras.layers.MaxPooling2D`` (square window, stride 2, 'same', channels last) for maps of
    few channels. oneDNN pools by vectors of channels, which 4 channels fill badly; this pools
    down the columns with each row of the map as one vector of width x channels values, then
    does the same on the transposed result. Same maxima; the gradient goes to the same element
    (up to ties). Measured at 128x128x4, forward + backward per image: 0.54 ms as one pool, 0.31
    as a 1x7 then a 7x1 pool, 0.14 so."""

    def call(self, inputs):
        size = self.pool_size[0]
        if not (len(inputs.shape) == 4 and self.pool_size == (size, size)
                and tuple(self.strides) == (2, 2) and self.padding == "same"
                and self.data_format == "channels_last"):
            return super().call(inputs)
        columns_pooled = tf.transpose(_pool_down_columns(inputs, size), (0, 2, 1, 3))
        return tf.transpose(_pool_down_columns(columns_pooled, size), (0, 2, 1, 3))


def _pool_down_columns(maps, size):
    """Max over ``size`` rows at stride 2 ('same') of (b, h, w, c) maps, a row at a time."""
    _, height, width, channels = maps.shape
    pooled = tf.nn.max_pool2d(tf.reshape(maps, (-1, height, 1, width * channels)), (size, 1),
                              (2, 1), "SAME")
    return tf.reshape(pooled, (-1, pooled.shape[1], width, channels))


# oneDNN convolves vectors of channels and fills them from 16 channels on; a map of fewer
# channels is convolved faster with neighbouring columns side by side as channels.
PACKED_CHANNELS = 16
# The gradients run best with the narrow side packed to 16 channels and the wide one up to 32,
# as long as the packed kernel has at most 1.75x the kernel's products (7x7: 1.43x two columns
# at a time, 1.71x four, 3.4x eight; 3x3: 2x two). Measured per 64x64 image, 7x7, forward +
# backward, the gradients packed as the forward / so: 8 -> 16 channels 0.53 -> 0.43 ms (two
# columns at a time); 4 -> 8 0.19 -> 0.145 (four); 2 -> 4 at eight 0.063 -> 0.075, and 8 -> 16
# 3x3 at 32x32, two, 0.036 -> 0.037: slower.
BACKWARD_PACKED_CHANNELS = 2 * PACKED_CHANNELS
MAX_BACKWARD_PRODUCTS = 1.75


def packing_factor(width, in_channels, out_channels):
    """How many neighbouring columns ``width_packed_convolution`` takes as one: a power of two
    that divides the width and keeps both sides within ``PACKED_CHANNELS`` (1: none)."""
    pack = 1
    while (width and 2 * pack * max(in_channels, out_channels) <= PACKED_CHANNELS
           and width % (2 * pack) == 0):
        pack *= 2
    return pack


def backward_packing_factor(width, in_channels, out_channels, kernel_size):
    """How many columns the gradients of ``width_packed_convolution`` take as one: as many as
    the forward pass, or more (see ``BACKWARD_PACKED_CHANNELS``)."""
    narrow, wide = sorted((in_channels, out_channels))
    pack = packing_factor(width, in_channels, out_channels)
    while (width and 2 * pack * narrow <= PACKED_CHANNELS
           and 2 * pack * wide <= BACKWARD_PACKED_CHANNELS and width % (2 * pack) == 0
           and _packed_width(kernel_size, 2 * pack) * 2 * pack
           <= MAX_BACKWARD_PRODUCTS * kernel_size):
        pack *= 2
    return pack


def _packed_width(size, pack):
    """Columns of the packed form of a kernel ``size`` columns wide."""
    return 2 * -(-(size // 2) // pack) + 1


def width_packed_convolution(inputs, kernel, pack, bias=None, relu=False, backward_pack=None):
    """'same' stride-1 convolution of (b, h, w, c) maps with a (k, k, c, o) kernel, plus the
    bias, through a ReLU if asked, as oneDNN computes it fastest for few channels: each ``pack``
    neighbouring columns become one column of pack x c channels (a reshape, free), the kernel
    the equivalent (k, t, pack c, pack o) one, zero where a column is out of another's reach,
    and the output is reshaped back. The same sums in another order. Measured per 64x64 image,
    7x7 kernel, forward + backward: 4 -> 8 channels 0.32 -> 0.22 ms (pack 2), 8 -> 8 0.43 ->
    0.28 (pack 2); per 128x128 image, 15x15, forward: 1 -> 4 channels 0.27 -> 0.12 ms (pack 4).
    The gradients take ``backward_pack`` columns as one where that differs from ``pack``.
    """
    if backward_pack not in (None, pack):
        return _packed_gradients(inputs, kernel, bias, relu, pack, backward_pack)
    _, height, width, channels = inputs.shape
    size, _, _, filters = kernel.shape
    if pack > 1:
        kernel = _packed_kernel(kernel, _packed_kernel_index(size, channels, filters, pack))
        inputs = tf.reshape(inputs, (-1, height, width // pack, pack * channels))
    outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")
    if bias is not None:
        outputs = tf.nn.bias_add(outputs, tf.tile(bias, [pack]))
    if relu:                                  # oneDNN fuses convolution, bias and ReLU
        outputs = tf.nn.relu(outputs)
    return tf.reshape(outputs, (-1, height, width, filters)) if pack > 1 else outputs


def _packed_gradients(inputs, kernel, bias, relu, pack, backward_pack):
    """The convolution packed ``pack`` columns at a time; its input and kernel gradients,
    oneDNN's backward convolutions, ``backward_pack`` at a time (the packed kernel's gradient
    summed back onto the weights it was gathered from)."""
    _, height, width, channels = inputs.shape
    size, _, _, filters = kernel.shape
    index = _packed_kernel_index(size, channels, filters, backward_pack)
    packed_shape = (-1, height, width // backward_pack)
    if bias is None:
        bias = tf.zeros([filters], kernel.dtype)

    @tf.custom_gradient
    def convolve(inputs, kernel, bias):
        outputs = width_packed_convolution(inputs, kernel, pack, bias, relu)

        def gradient(upstream):
            if relu:
                upstream = tf.raw_ops.ReluGrad(gradients=upstream, features=outputs)
            packed_inputs = tf.reshape(inputs, packed_shape + (backward_pack * channels,))
            packed_upstream = tf.reshape(upstream, packed_shape + (backward_pack * filters,))
            packed_kernel = _packed_kernel(kernel, index)
            d_inputs = tf.nn.conv2d_transpose(packed_upstream, packed_kernel,
                                              tf.shape(packed_inputs), 1, "SAME")
            d_packed = tf.raw_ops.Conv2DBackpropFilter(
                input=packed_inputs, filter_sizes=packed_kernel.shape,
                out_backprop=packed_upstream, strides=[1, 1, 1, 1], padding="SAME")
            d_kernel = tf.math.unsorted_segment_sum(tf.reshape(d_packed, [-1]), index.ravel(),
                                                    size * size * channels * filters + 1)[:-1]
            return (tf.reshape(d_inputs, tf.shape(inputs)), tf.reshape(d_kernel, kernel.shape),
                    tf.reduce_sum(upstream, axis=(0, 1, 2)))

        return outputs, gradient

    return convolve(inputs, kernel, bias)


def _packed_kernel(kernel, index):
    """The packed kernel: the weights at ``index`` in the flattened kernel, zero one past it."""
    flat = tf.concat([tf.reshape(kernel, [-1]), tf.zeros([1], kernel.dtype)], axis=0)
    return tf.gather(flat, index)


def _packed_kernel_index(size, channels, filters, pack):
    """Where each weight of the packed kernel comes from in the flattened (k, k, c, o) kernel;
    k k c o (one past its end) for a zero. Output column ``pack u + q`` sees input column
    ``pack (u + a) + r`` through the kernel's column ``pack a + r - q + k // 2``."""
    half, width = size // 2, _packed_width(size, pack)
    reach = width // 2
    flat = np.arange(size * size * channels * filters).reshape(size, size, channels, filters)
    index = np.full((size, width, pack * channels, pack * filters), flat.size)
    for a in range(-reach, reach + 1):
        for r in range(pack):
            for q in range(pack):
                column = pack * a + r - q + half
                if 0 <= column < size:
                    index[:, a + reach, r * channels:(r + 1) * channels,
                          q * filters:(q + 1) * filters] = flat[:, column]
    return index


@keras.saving.register_keras_serializable(package="xmipp3_deepcons")
class WidthPackedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` ('same', stride 1, channels last) computed by
    ``width_packed_convolution`` when its maps have few channels: same weights, same outputs."""

    def build(self, input_shape):
        super().build(input_shape)
        self.pack = packing_factor(input_shape[2], input_shape[3], self.filters)
        self.backward_pack = backward_packing_factor(input_shape[2], input_shape[3],
                                                      self.filters, self.kernel_size[0])

    def call(self, inputs):
        if not (len(inputs.shape) == 4 and self.padding == "same"
                and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and self.kernel_size[0] == self.kernel_size[1] and self.kernel_size[0] % 2):
            return super().call(inputs)
        relu = self.activation is keras.activations.relu
        # The weights as tensors: a custom gradient hands theirs back to the variables.
        outputs = width_packed_convolution(
            inputs, tf.convert_to_tensor(self.kernel), self.pack,
            tf.convert_to_tensor(self.bias) if self.use_bias else None, relu, self.backward_pack)
        return outputs if relu else self.activation(outputs)
