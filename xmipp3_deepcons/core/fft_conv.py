"""Convolution through the FFT, for the network's large kernels.

The first block's second 15x15 convolution at 128x128 (the first, which passes no gradient back,
trains faster directly: ``network._convolution``) costs most of the training time when computed
directly on a CPU (measured: its backward pass is 6-9x slower than through the FFT). This layer
computes exactly what ``keras.layers.Conv2D(filters, k, padding="same")`` computes, with the
same weights (kernel (k, k, in, out) and bias), so models and checkpoints are interchangeable.

Its gradient is written out (``_fft_correlation``) rather than left to TensorFlow, whose
gradients of ``rfft2d``/``irfft2d`` add masking, scaling and padding ops around each transform:
the same transforms without them make a training step of these layers about 1.4x faster.
"""
from . import tf_runtime  # noqa: F401  (TensorFlow first: quietly, with our threads)
import keras
import tensorflow as tf

from .fast_layers import packing_factor, width_packed_convolution


def fast_fft_length(n):
    """Smallest even length >= n whose only prime factors are 2, 3 and 5 (even: see
    ``_pack_pairs``)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1 and n % 2 == 0:
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
        # A thin layer (1 -> 8 channels; in the network, the small one's 2 -> 2) has few products
        # per pixel but as many inverse transforms as outputs: without a backward pass, oneDNN's
        # direct convolution is faster (measured 0.27 vs 0.76 ms per 128x128 image for 1 -> 8;
        # 0.12 for 1 -> 4, width-packed).
        self._direct_inference = channels * self.filters < 2 * (channels + self.filters)
        self.pack = packing_factor(int(width), int(channels), self.filters)

    def call(self, inputs, training=None):
        relu = self.activation is keras.activations.relu
        if self._direct_inference and not training:
            outputs = width_packed_convolution(inputs, self.kernel, self.pack, self.bias, relu)
            return outputs if relu else self.activation(outputs)
        if not (relu or self.activation is keras.activations.linear):
            return self.activation(self._correlate(inputs, relu=False))
        return self._correlate(inputs, relu)

    def _correlate(self, inputs, relu):
        # The weights as tensors: the custom gradient hands theirs back to the variables.
        return _fft_correlation(inputs, tf.convert_to_tensor(self.kernel),
                                tf.convert_to_tensor(self.bias), relu, self._fft_shape,
                                (self._height, self._width))

    @property
    def scores_through_fft(self):
        """Whether scoring (no training) goes through the FFT, and so can start from planes."""
        return not self._direct_inference

    def planes_padding(self):
        """``tf.pad`` padding of (b, c, h, w) planes to this layer's transforms."""
        return _origin_padding((self._height, self._width), self._fft_shape)

    def call_on_planes(self, planes):
        """Scoring from the inputs already as (b, c, H, W) planes zero-padded by
        ``planes_padding``: whoever makes the inputs makes them so in the same pass."""
        relu = self.activation is keras.activations.relu
        outputs, _, _ = _planes_correlation(planes, tf.convert_to_tensor(self.kernel),
                                            tf.convert_to_tensor(self.bias), relu,
                                            self._fft_shape, (self._height, self._width))
        return outputs if relu else self.activation(outputs)

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


def _fft_correlation(inputs, kernel, bias, relu, fft_shape, size):
    """'same' cross-correlation of (b, h, w, c) inputs with a (k, k, c, o) kernel, plus the
    bias, then a ReLU if asked, through rFFTs of ``fft_shape`` (at least h + k - 1 by
    w + k - 1, so nothing wraps around).

    Forward: y = crop(irfft(X K)) + bias, K the spectrum of the flipped kernel. Backward, from
    the spectrum G of the output gradient placed where y was cropped from: dx = irfft(G conj(K))
    and dkernel = irfft(conj(X) G), summed over the batch, both exact for real signals; dbias is
    G's zero frequency. Bias and ReLU ride on the passes that crop and place the planes instead of
    running as separate ops (training step per image, side by side: medium 2.55 -> 2.46 ms,
    large 4.74 -> 4.52).
    """
    height, width = size
    k = kernel.shape[0]
    half = (k - 1) // 2
    where_cropped = [[0, 0], [0, 0], [half, fft_shape[0] - half - height],
                     [half, fft_shape[1] - half - width]]

    @tf.custom_gradient
    def correlate(inputs, kernel, bias):
        planes = _padded_planes(inputs, None, _origin_padding(size, fft_shape))
        outputs, spectrum, kernel_spectrum = _planes_correlation(planes, kernel, bias, relu,
                                                                 fft_shape, size)

        def gradient(upstream):
            placed = _padded_planes(upstream, outputs if relu else None, where_cropped)
            upstream_spectrum = tf.signal.rfft2d(placed, fft_length=fft_shape)
            d_bias = tf.reduce_sum(tf.math.real(upstream_spectrum[:, :, 0, 0]), axis=0)
            d_inputs = _inverse_real(
                _mix_channels(upstream_spectrum, tf.math.conj(tf.transpose(kernel_spectrum,
                                                                           (1, 0, 2, 3)))),
                0, size)
            d_flipped = tf.signal.irfft2d(_batch_products(spectrum, upstream_spectrum),
                                          fft_length=fft_shape)
            d_kernel = tf.reverse(tf.transpose(d_flipped[:, :, :k, :k], (2, 3, 0, 1)),
                                  axis=[0, 1])
            return d_inputs, d_kernel, d_bias

        return outputs, gradient

    return correlate(inputs, kernel, bias)


def _planes_correlation(planes, kernel, bias, relu, fft_shape, size):
    """The forward pass from zero-padded planes: outputs, their spectrum, the kernel's."""
    spectrum = tf.signal.rfft2d(planes, fft_length=fft_shape)
    flipped = tf.transpose(tf.reverse(kernel, axis=[0, 1]), (2, 3, 0, 1))
    kernel_spectrum = tf.signal.rfft2d(flipped, fft_length=fft_shape)
    outputs = _inverse_real(_mix_channels(spectrum, kernel_spectrum), kernel.shape[0] // 2, size,
                            bias, relu)
    return outputs, spectrum, kernel_spectrum


def _origin_padding(size, fft_shape):
    return [[0, 0], [0, 0], [0, fft_shape[0] - size[0]], [0, fft_shape[1] - size[1]]]


@tf.function(jit_compile=True)
def _padded_planes(maps, relu_outputs, padding):
    """(b, h, w, c) maps as (b, c, H, W) planes zero-padded to the transform's size, in one pass
    (TensorFlow's transpose, then rfft2d's own padding: 2-7 % of the training step more); an
    output gradient goes through the ReLU first when its ``relu_outputs`` are given."""
    if relu_outputs is not None:
        maps = tf.where(relu_outputs > 0, maps, tf.zeros_like(maps))
    return tf.pad(tf.transpose(maps, (0, 3, 1, 2)), padding)


# The per-frequency channel products, written as sums of elementwise products that XLA fuses
# into one pass over the spectra. TensorFlow's complex einsum over 10^4 tiny matrices was 2.4-2.8x
# slower measured alone at batch 64; in the whole network scoring gained (474-490 -> 604-822
# images/s, medium) and training did not change within noise.
@tf.function(jit_compile=True)
def _mix_channels(spectrum, kernel_spectrum):
    """(b, c, h, w) x (c, o, h, w) -> (b, o, h, w): sum over c of spectrum[:, c] kernel[c]."""
    total = spectrum[:, :1] * kernel_spectrum[0][None]
    for c in range(1, spectrum.shape[1]):
        total += spectrum[:, c:c + 1] * kernel_spectrum[c][None]
    return total


BATCH_PRODUCT_MIN_PAIRS = 64    # channel pairs from which _batch_products is a matrix product


@tf.function(jit_compile=True)
def _batch_products(spectrum, upstream_spectrum):
    """(b, c, h, w), (b, o, h, w) -> (c, o, h, w): sum over the batch of conj(X) G.

    From 64 channel pairs on, as one matrix product per frequency (XLA's, transposes included):
    XLA's sum over the batch slows down more than the pairs grow (per image, 144x144: 0.10 ms at
    4 -> 4, 0.36 at 8 -> 8), the products do not (0.13, 0.27; 0.10 at 1 -> 8, against 0.05).
    Large training step, side by side: 1.05x (two pairs of runs).
    """
    _, c, height, width = spectrum.shape
    o = upstream_spectrum.shape[1]
    if c * o < BATCH_PRODUCT_MIN_PAIRS:
        return tf.reduce_sum(tf.math.conj(spectrum)[:, :, None] * upstream_spectrum[:, None],
                             axis=0)
    products = tf.einsum("bcf,bof->cof",
                         tf.math.conj(tf.reshape(spectrum, (-1, c, height * width))),
                         tf.reshape(upstream_spectrum, (-1, o, height * width)))
    return tf.reshape(products, (c, o, height, width))


def _inverse_real(spectra, start, size, bias=None, relu=False):
    """(b, n, H, W/2+1) half spectra of real planes -> the planes' (b, h, w, n) crop at
    (start, start), channels last, plus ``bias`` (n,), through a ReLU if ``relu``.

    Two real planes a, b go through one complex inverse transform, of A + iB on the full grid
    (a = its real part, b = its imaginary part): measured 1.3-1.5x faster than TensorFlow's
    irfft2d per plane, whose output the crop and transpose then read once more anyway.
    """
    n = spectra.shape[1]
    if n % 2:
        spectra = tf.concat([spectra, tf.zeros_like(spectra[:, :1])], axis=1)
    return _unpack_pairs(tf.signal.ifft2d(_pack_pairs(spectra)), start, size, n, bias, relu)


@tf.function(jit_compile=True)
def _pack_pairs(spectra):
    """(b, 2m, H, W/2+1) -> (b, m, H, W), W even: the full spectrum of plane 2j + i plane
    2j+1; the columns rfft2d leaves out are the conjugates of the mirrored ones (real planes)."""
    half_width = spectra.shape[-1]
    left, right = spectra[:, 0::2], spectra[:, 1::2]
    i = tf.complex(0.0, 1.0)

    def missing_columns(half):
        mirrored = tf.roll(tf.reverse(half, [2]), 1, axis=2)          # row k -> row -k
        return tf.math.conj(tf.reverse(mirrored[..., 1:half_width - 1], [3]))

    return tf.concat([left + i * right, missing_columns(left) + i * missing_columns(right)],
                     axis=-1)


@tf.function(jit_compile=True)
def _unpack_pairs(pairs, start, size, n, bias, relu):
    """(b, m, H, W) complex planes -> (b, h, w, n <= 2m): real and imaginary parts, cropped,
    plus the bias if given, through a ReLU if asked."""
    height, width = size
    pairs = pairs[:, :, start:start + height, start:start + width]
    planes = tf.stack([tf.math.real(pairs), tf.math.imag(pairs)], axis=-1)   # (b, m, h, w, 2)
    planes = tf.transpose(planes, (0, 2, 3, 1, 4))
    planes = tf.reshape(planes, [-1, height, width, 2 * pairs.shape[1]])[..., :n]
    if bias is not None:
        planes += bias
    return tf.nn.relu(planes) if relu else planes
