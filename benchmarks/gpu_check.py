"""Do our custom layers run on a GPU, and give there what they give on the CPU?

usage: python benchmarks/gpu_check.py [--bands small,medium,large] [--batch 64] [--repeats 5]

For each network size, built in our layers (core/fft_conv.py FFTConv2D, core/fast_layers.py
WidthPackedConv2D, FusedBatchNormalization, FewChannelMaxPooling2D), with the same weights
on both devices:
- every layer's output on the CPU and on the GPU (training=False), the largest difference
  relative to the layer's largest output, against a float32 tolerance;
- one training step's gradients, the same comparison;
- where the outputs were placed (a layer that fell back to the CPU is named);
- throughput: scoring in 4 mirror views (core/scoring.Scorer) and training steps, images/s on
  each device.
Exits 0 with one line when TensorFlow sees no GPU (nothing to compare), 1 when a difference
exceeds the tolerance or a layer is not placed on the GPU.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TOLERANCE = 1e-4      # largest difference relative to the largest value (float32, FFT vs direct)


def relative_difference(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(a))))


def layer_outputs(model, boxes, device):
    import keras
    import tensorflow as tf
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    with tf.device(device):
        outputs = probe(tf.constant(boxes), training=False)
    return [(layer.name, out) for layer, out in zip(model.layers[1:], outputs)]


def gradients(model, boxes, labels, device):
    import tensorflow as tf
    with tf.device(device):
        with tf.GradientTape() as tape:
            # training=True: batch statistics, but dropout off (rate set to 0 below) so that
            # both devices see the same function
            predicted = model(tf.constant(boxes), training=True)
            loss = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(labels, predicted))
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)], loss.numpy()


def images_per_second(step, images, repeats):
    step()   # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return images / float(np.median(times))


def check_band(band, batch, repeats, other="/GPU:0"):
    import tensorflow as tf
    from xmipp3_deepcons.core.network import build_network
    from xmipp3_deepcons.core.scoring import Scorer
    model = build_network(band)
    for layer in model.layers:
        if layer.__class__.__name__ == "Dropout":
            layer.rate = 0.0
    rng = np.random.default_rng(0)
    boxes = rng.standard_normal((batch, 128, 128, 1)).astype(np.float32)
    labels = np.eye(2, dtype=np.float32)[rng.integers(0, 2, batch)]
    failures = []
    cpu = layer_outputs(model, boxes, "/CPU:0")
    gpu = layer_outputs(model, boxes, other)
    worst = 0.0
    for (name, on_cpu), (_, on_gpu) in zip(cpu, gpu):
        difference = relative_difference(on_cpu.numpy(), on_gpu.numpy())
        worst = max(worst, difference)
        if difference > TOLERANCE:
            failures.append(f"{band} {name}: output differs by {difference:.2e} (relative)")
        kind = other.strip("/").split(":")[0].upper()
        if kind not in on_gpu.device.upper():
            failures.append(f"{band} {name}: placed on {on_gpu.device}, not on {other}")
    grads_cpu, loss_cpu = gradients(model, boxes, labels, "/CPU:0")
    grads_gpu, loss_gpu = gradients(model, boxes, labels, other)
    worst_gradient = max(relative_difference(c, g) for c, g in zip(grads_cpu, grads_gpu))
    if worst_gradient > 10 * TOLERANCE:
        failures.append(f"{band}: gradients differ by {worst_gradient:.2e} (relative)")
    speeds = {}
    for device in ("/CPU:0", other):
        with tf.device(device):
            scorer = Scorer(model, views=4, batch_size=4 * batch)
            data = boxes[..., 0]
            speeds[(device, "score, 4 views")] = images_per_second(
                lambda: scorer(data), 4 * batch, repeats)
            optimizer = tf.keras.optimizers.Adam(1e-4)

            @tf.function
            def train_step():
                with tf.GradientTape() as tape:
                    predicted = model(boxes, training=True)
                    loss = tf.reduce_mean(
                        tf.keras.losses.categorical_crossentropy(labels, predicted))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            speeds[(device, "train")] = images_per_second(
                lambda: train_step().numpy(), batch, repeats)
    return worst, worst_gradient, abs(float(loss_cpu) - float(loss_gpu)), speeds, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", default="small,medium,large")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", default="/GPU:0",
                        help="the device compared with the CPU ('/CPU:0' checks this script "
                             "on a machine without a GPU)")
    args = parser.parse_args()
    from xmipp3_deepcons.core import tf_runtime
    tf = tf_runtime.tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and "GPU" in args.against.upper():
        print("no GPU visible to TensorFlow (CUDA_VISIBLE_DEVICES="
              f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(not set)')}, TensorFlow "
              f"{tf.__version__} built with CUDA: {tf.test.is_built_with_cuda()}): nothing "
              "to compare")
        return 0
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        print(f"GPU: {details.get('device_name', gpus[0].name)}, memory growth "
              f"{tf.config.experimental.get_memory_growth(gpus[0])}")
    print(f"CPU against {args.against}; tolerance {TOLERANCE:g} (relative)\n")
    print("| network | layer outputs, largest difference | gradients | loss | score CPU / GPU "
          "img/s | train CPU / GPU img/s |")
    print("|---|---|---|---|---|---|")
    failures = []
    for band in args.bands.split(","):
        worst, worst_gradient, loss, speeds, failed = check_band(band, args.batch,
                                                                args.repeats, args.against)
        failures += failed
        score = [speeds[(d, "score, 4 views")] for d in ("/CPU:0", args.against)]
        train = [speeds[(d, "train")] for d in ("/CPU:0", args.against)]
        print(f"| {band} | {worst:.1e} | {worst_gradient:.1e} | {loss:.1e} | "
              f"{score[0]:.0f} / {score[1]:.0f} | {train[0]:.0f} / {train[1]:.0f} |",
              flush=True)
    for line in failures:
        print("FAILED:", line)
    print(f"\nall layers placed on {args.against} and equal within tolerance"
          if not failures else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
