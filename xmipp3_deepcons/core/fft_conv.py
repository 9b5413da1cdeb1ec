"""Convolution through the FFT, for the network's large kernels.

The first block's 15x15 convolutions at 128x128 cost most of the training time when computed
directly on a CPU (measured: its backward pass is 6-9x slower than through the FFT). This layer
computes exactly what ``keras.layers.Conv2D(filters, k, padding="same")`` computes, with the
same weights (kernel (k, k, in, out) and bias), so models and checkpoints are interchangeable.
"""
import keras
import tensorflow as tf


def fast_fft_length(n):
    """Smallest length >= n whose only prime factors are 2, 3 and 5."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


@keras.saving.register_keras_serializable(package="xmipp3_deepcons")
class FFTConv2D(keras.layers.Layer):
    """'same'-padded, stride-1 2-D convolution (Keras cross-correlation convention) via rFFT."""

    def __init__(self, filters, kernel_size, activation=None, kernel_regularizer=None,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size[0] if isinstance(kernel_size, (tuple, list)) else kernel_size)
        if self.kernel_size % 2 != 1:
            raise ValueError("FFTConv2D needs an odd kernel size for 'same' padding")
        self.activation = keras.activations.get(activation)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        height, width, channels = input_shape[1], input_shape[2], input_shape[3]
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, channels, self.filters),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self._height, self._width = int(height), int(width)
        self._fft_shape = [fast_fft_length(int(height) + k - 1), fast_fft_length(int(width) + k - 1)]

    def call(self, inputs):
        half = (self.kernel_size - 1) // 2
        # Cross-correlation = convolution with the flipped kernel; FFTs run over the last two axes.
        spectrum = tf.signal.rfft2d(tf.transpose(inputs, (0, 3, 1, 2)), fft_length=self._fft_shape)
        kernel = tf.transpose(tf.reverse(self.kernel, axis=[0, 1]), (2, 3, 0, 1))
        kernel_spectrum = tf.signal.rfft2d(kernel, fft_length=self._fft_shape)
        product = tf.einsum("bchw,cohw->bohw", spectrum, kernel_spectrum)
        full = tf.signal.irfft2d(product, fft_length=self._fft_shape)
        same = full[:, :, half:half + self._height, half:half + self._width]
        return self.activation(tf.transpose(same, (0, 2, 3, 1)) + self.bias)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      activation=keras.activations.serialize(self.activation),
                      kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer)
                      if self.kernel_regularizer else None,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
