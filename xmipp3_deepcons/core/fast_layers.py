"""Keras layers computed the way TensorFlow runs fastest on a CPU: the same functions, with the
same weights, as the standard layers they stand for.
"""
import keras
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
