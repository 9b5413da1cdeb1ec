"""Keras layers computed the way TensorFlow runs fastest on a CPU: the same functions, with the
same weights, as the standard layers they stand for.
"""
import keras
import tensorflow as tf

# Below this many channels, oneDNN's fused batch norm is no faster than Keras' (measured at
# 128x128x4: 0.42 vs 0.40 ms per image forward + backward; at 128x128x8: 0.21 vs 0.59).
FUSED_MIN_CHANNELS = 8


@keras.saving.register_keras_serializable(package="xmipp3_deepcons")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step is TensorFlow's fused kernel
    (one pass for the statistics and the normalisation, one fused gradient) instead of the
    separate moments, normalisation and their gradients. Same weights, same moving averages
    (Keras' biased batch variance); scoring is Keras' own."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.scale and self.center and not self.renorm
                and inputs.dtype == tf.float32):
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), variance.dtype)
        variance = variance * (n - 1) / n        # the fused kernel returns the unbiased variance
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1 - self.momentum))
        return outputs
