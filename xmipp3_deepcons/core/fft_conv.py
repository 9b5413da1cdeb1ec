"""Convolution through the FFT, for the network's large kernels.

The first block's 15x15 convolutions at 128x128 cost most of the training time when computed
directly on a CPU (measured: its backward pass is 6-9x slower than through the FFT). This layer
computes exactly what ``keras.layers.Conv2D(filters, k, padding="same")`` computes, with the
same weights (kernel (k, k, in, out) and bias), so models and checkpoints are interchangeable.

Its gradient is written out (``_fft_correlation``) rather than left to TensorFlow, whose
gradients of ``rfft2d``/``irfft2d`` add masking, scaling and padding ops around each transform:
the same transforms without them make a training step of these layers about 1.4x faster.
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
        # The kernel as a tensor: the custom gradient hands its gradient back to the variable.
        outputs = _fft_correlation(inputs, tf.convert_to_tensor(self.kernel),
                                   self._fft_shape, (self._height, self._width))
        return self.activation(outputs + self.bias)

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


def _fft_correlation(inputs, kernel, fft_shape, size):
    """'same' cross-correlation of (b, h, w, c) inputs with a (k, k, c, o) kernel, through
    rFFTs of ``fft_shape`` (at least h + k - 1 by w + k - 1, so nothing wraps around).

    Forward: y = crop(irfft(X K)), K the spectrum of the flipped kernel. Backward, from the
    spectrum G of the output gradient placed where y was cropped from: dx = irfft(G conj(K))
    and dkernel = irfft(conj(X) G), summed over the batch; both exact for real signals.
    """
    height, width = size
    k = kernel.shape[0]
    half = (k - 1) // 2

    @tf.custom_gradient
    def correlate(inputs, kernel):
        spectrum = tf.signal.rfft2d(tf.transpose(inputs, (0, 3, 1, 2)), fft_length=fft_shape)
        flipped = tf.transpose(tf.reverse(kernel, axis=[0, 1]), (2, 3, 0, 1))
        kernel_spectrum = tf.signal.rfft2d(flipped, fft_length=fft_shape)
        full = tf.signal.irfft2d(tf.einsum("bchw,cohw->bohw", spectrum, kernel_spectrum),
                                 fft_length=fft_shape)
        outputs = tf.transpose(full[:, :, half:half + height, half:half + width], (0, 2, 3, 1))

        def gradient(upstream):
            placed = tf.pad(tf.transpose(upstream, (0, 3, 1, 2)),
                            [[0, 0], [0, 0], [half, fft_shape[0] - half - height],
                             [half, fft_shape[1] - half - width]])
            upstream_spectrum = tf.signal.rfft2d(placed, fft_length=fft_shape)
            d_inputs = tf.signal.irfft2d(
                tf.einsum("bohw,cohw->bchw", upstream_spectrum, tf.math.conj(kernel_spectrum)),
                fft_length=fft_shape)
            d_inputs = tf.transpose(d_inputs[:, :, :height, :width], (0, 2, 3, 1))
            d_flipped = tf.signal.irfft2d(
                tf.einsum("bchw,bohw->cohw", tf.math.conj(spectrum), upstream_spectrum),
                fft_length=fft_shape)
            d_kernel = tf.reverse(tf.transpose(d_flipped[:, :, :k, :k], (2, 3, 0, 1)),
                                  axis=[0, 1])
            return d_inputs, d_kernel

        return outputs, gradient

    return correlate(inputs, kernel)
