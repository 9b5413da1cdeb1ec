"""A trained network's P(particle) for boxes in mirror views, computed the fastest way we know
on a CPU: the same function, in another order.

- The views share the first convolution. A view of the box convolved with the kernel is the
  view of (the box convolved with the kernel seen in the inverse view), exactly, for 'same'
  padding and an odd kernel; oneDNN computes 1 -> 16 channels barely slower than 1 -> 4, so the
  views' first layers are one convolution with their kernels side by side (width-packed when
  few), and each view's maps, seen in its view, go on through the network as one batch, made in
  the same pass as the padded planes of the FFT layer that follows.
- Batch norm is folded into the convolution before it (at scoring time both are affine per
  channel), and each ReLU runs after the max pool that follows it (they commute, exactly), on a
  quarter of the pixels.
Measured side by side with plain Keras' prediction of each view: README, "Speed and memory".
"""
from . import tf_runtime  # noqa: F401  (TensorFlow first: quietly, with our threads)
import keras
import numpy as np
import tensorflow as tf

from ..constants import DEEP_PARTICLE_SIZE
from .fast_layers import packing_factor, width_packed_convolution
from .fft_conv import FFTConv2D
from .network import in_fast_layers

# Views share a first convolution up to this many output channels: oneDNN's cost per channel
# falls up to 16 and rises beyond (1 -> 4, 8, 16, 32 channels: 0.37, 0.45, 0.58, 1.25 ms per box).
SHARED_MAX_CHANNELS = 16
# The symmetries of the square in the order views take them: as is, flipped left-right, up-down,
# both (a half turn), then the same four of the transposed box.
_FLIPS = ((), (2,), (1,), (1, 2))   # axes of an (n, h, w) stack


def view_transforms(views):
    """(transposed, flipped axes of an (n, h, w) stack) of each of the first ``views`` views."""
    return [(transposed, flip) for transposed in (False, True)[:max(1, views // 4)]
            for flip in _FLIPS[:views]]


def mirror_views(boxes, views):
    """The (n, h, w) boxes in each of the first ``views`` views, with numpy: what ``Scorer``
    scores, for a network's own prediction to be compared with."""
    for transposed, flip in view_transforms(views):
        seen = boxes.transpose(0, 2, 1) if transposed else boxes
        yield np.flip(seen, axis=flip) if flip else seen


class Scorer:
    """Mean P(particle) of one network over the mirror views of each box, with the weights the
    network has when the scorer is made (batch norm is folded into copies)."""

    def __init__(self, model, views=1, batch_size=256, skip=0):
        """``skip``: leave out the first views (a scoring cascade adds the views a look lacks)."""
        model = in_fast_layers(model)
        first = model.layers[1]
        kernel = first.kernel
        if len(kernel.shape) != 4 or kernel.shape[2] != 1 or kernel.shape[0] % 2 != 1:
            raise ValueError(f"{model.name}: the first layer must be a 'same' convolution of "
                             "one channel with an odd kernel")
        self.transforms = view_transforms(views)[skip:]
        if not self.transforms:
            raise ValueError(f"no view left: views {views}, skip {skip}")
        self.boxes_per_call = max(1, batch_size // len(self.transforms))
        self._first = first
        self._rest = inference_layers(model.layers[2:])
        # Two batch shapes, each traced once: full batches, and a tail an eighth as large, so
        # that a few boxes (a cascade's open candidates) do not cost a whole padded batch.
        self._shapes = sorted({self.boxes_per_call, max(1, self.boxes_per_call // 8)},
                              reverse=True)
        self._scores = {size: tf.function(self._views_score, input_signature=[tf.TensorSpec(
            (size, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE, 1), tf.float32)])
            for size in self._shapes}

    def __call__(self, boxes):
        """(n, h, w) boxes -> (n,) float32 scores."""
        scores = np.zeros(len(boxes), np.float32)
        start = 0
        while start < len(boxes):
            left = len(boxes) - start
            # the large batch unless what is left fits in a few small ones
            small = self._shapes[-1]
            step = small if left <= 4 * small else self._shapes[0]
            n = min(step, left)
            batch = np.zeros((step, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE, 1), np.float32)
            batch[:n, ..., 0] = boxes[start:start + n]
            scores[start:start + n] = self._scores[step](batch).numpy()[:n]
            start += n
        return scores

    def _views_of(self, maps, bias):
        """The views' first maps (bias and activation added), each seen in its view."""
        per_view = []
        for group in maps:
            views = group.shape[-1] // bias.shape[0]
            per_view += tf.split(self._first.activation(group + tf.tile(bias, [views])), views,
                                 axis=-1)
        return [_seen(m, t, (1, 2)) for m, t in zip(per_view, self.transforms)]

    @tf.function(jit_compile=True)
    def _as_batch(self, maps, bias):
        """The views' first maps as one batch, in one pass over them."""
        return tf.concat(self._views_of(maps, bias), axis=0)

    @tf.function(jit_compile=True)
    def _as_planes(self, maps, bias, padding):
        """The views' first maps as one batch of the zero-padded channels-first planes an FFT
        layer transforms, in one pass over them (0.037 + 0.022 ms per box and view as a batch,
        then planes)."""
        return tf.concat([tf.pad(tf.transpose(m, (0, 3, 1, 2)), padding)
                          for m in self._views_of(maps, bias)], axis=0)

    def _views_score(self, boxes):
        kernel, views = self._first.kernel, len(self.transforms)
        # view(x) * kernel = view(x * inverse view(kernel)), '*' the 'same' convolution
        viewed = [_seen(kernel, t, (0, 1), inverse=True) for t in self.transforms]
        together = max(1, SHARED_MAX_CHANNELS // kernel.shape[-1])
        kernels = [tf.concat(viewed[start:start + together], axis=-1)
                   for start in range(0, views, together)]
        maps = [width_packed_convolution(boxes, k, packing_factor(boxes.shape[2], 1, k.shape[-1]))
                for k in kernels]
        bias, rest = tf.convert_to_tensor(self._first.bias), self._rest
        if isinstance(rest[0], FFTConv2D) and rest[0].scores_through_fft:
            x = rest[0].call_on_planes(self._as_planes(maps, bias, rest[0].planes_padding()))
            rest = rest[1:]
        else:
            x = self._as_batch(maps, bias)
        for layer in rest:
            x = layer(x, training=False)
        return tf.reduce_mean(tf.reshape(x[:, 1], (views, -1)), axis=0)


def _seen(tensor, transform, spatial, inverse=False):
    """``tensor`` (spatial axes ``spatial``) in a view: transposed, then flipped; with
    ``inverse``, the view undone: flipped, then transposed."""
    transposed, flip = transform
    perm = list(range(len(tensor.shape)))
    perm[spatial[0]], perm[spatial[1]] = perm[spatial[1]], perm[spatial[0]]
    steps = [lambda t: tf.transpose(t, perm) if transposed else t,
             lambda t: tf.reverse(t, [spatial[a - 1] for a in flip]) if flip else t]
    for step in reversed(steps) if inverse else steps:
        tensor = step(tensor)
    return tensor


def inference_layers(layers):
    """The layers as scoring runs them: each batch norm folded into the convolution before it,
    each ReLU moved after the max pools that follow it, dropout left out."""
    out = []
    for layer in layers:
        if isinstance(layer, keras.layers.Dropout):
            continue
        if (isinstance(layer, keras.layers.BatchNormalization) and layer.scale and layer.center
                and out and _is_convolution(out[-1])):
            out[-1] = _folded(out[-1], layer)
            continue
        if (isinstance(layer, keras.layers.MaxPooling2D) and out
                and isinstance(out[-1], keras.layers.Activation)
                and out[-1].activation is keras.activations.relu):
            out.insert(len(out) - 1, layer)
            continue
        out.append(layer)
    return out


def _is_convolution(layer):
    """A 2-D convolution with a bias and no activation: batch norm after it folds into it."""
    return (getattr(layer, "bias", None) is not None and len(layer.kernel.shape) == 4
            and getattr(layer, "activation", None) in (None, keras.activations.linear))


def _folded(convolution, norm):
    """A copy of ``convolution`` computing convolution then ``norm`` (at scoring time)."""
    scale = np.asarray(norm.gamma) / np.sqrt(np.asarray(norm.moving_variance) + norm.epsilon)
    kernel = np.asarray(convolution.kernel) * scale
    bias = (np.asarray(convolution.bias) - np.asarray(norm.moving_mean)) * scale \
        + np.asarray(norm.beta)
    copy = convolution.__class__.from_config(convolution.get_config())
    copy.build(convolution.input.shape)
    copy.set_weights([kernel, bias])
    return copy
