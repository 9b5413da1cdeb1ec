"""How fast our scoring could get if the FFT layer's transforms cost nothing.

usage: python benchmarks/scoring_ceiling.py [--bands large] [--repeats 5] [--steps 6]

Times, in turn as `cnn_throughput.py` does: plain Keras, our `scoring.Scorer`, and the same
scorer traced with TensorFlow's `rfft2d` / `ifft2d` replaced by stand-ins of the same shapes that
do next to no work (a slice and a cast). Its scores are meaningless; its speed is the ceiling of
any faster FFT, everything else in the graph unchanged.
"""
import argparse
import contextlib
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from cnn_throughput import keras_scoring, matmul_gflops, side_by_side  # noqa: E402
from xmipp3_deepcons.core.network import build_network  # noqa: E402
from xmipp3_deepcons.core.scoring import Scorer  # noqa: E402


def _free_rfft2d(planes, fft_length):
    """A complex tensor of rfft2d's output shape, made by a pad, a slice and a cast."""
    height, width = fft_length
    padding = [[0, 0]] * (len(planes.shape) - 2) + [[0, height - planes.shape[-2]],
                                                    [0, width - planes.shape[-1]]]
    half = tf.pad(planes, padding)[..., :width // 2 + 1]
    return tf.complex(half, half)


@contextlib.contextmanager
def free_transforms():
    """TensorFlow's 2-D FFTs replaced by free stand-ins while a graph is traced."""
    kept = tf.signal.rfft2d, tf.signal.ifft2d
    tf.signal.rfft2d, tf.signal.ifft2d = _free_rfft2d, tf.identity
    try:
        yield
    finally:
        tf.signal.rfft2d, tf.signal.ifft2d = kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", nargs="+", default=["large"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    print(f"float32 matrix product: {matmul_gflops():.0f} GFLOP/s\n")
    print("| band | views | Conv2D img/s | ours img/s (ratio) | ours, free FFTs img/s (ratio) |")
    print("|---|---|---|---|---|")
    x = np.random.default_rng(1).normal(size=(256, 128, 128)).astype(np.float32)
    for band in args.bands:
        ours, plain = build_network(band), build_network(band, fast=False)
        plain.set_weights(ours.get_weights())
        for views in (1, 4):
            boxes = x[:256 // views]
            scorer = Scorer(ours, views)
            free = Scorer(ours, views)
            with free_transforms():
                free(boxes)                                  # traced with the stand-ins
            (plain_rate, ours_rate, free_rate), (_, ours_ratio, free_ratio) = side_by_side(
                [keras_scoring(plain, boxes, views), lambda: scorer(boxes), lambda: free(boxes)],
                256, args.repeats, args.steps)
            print(f"| {band} | {views} | {plain_rate[1]:.0f} | {ours_rate[1]:.0f} "
                  f"({ours_ratio:.1f}x) | {free_rate[1]:.0f} ({free_ratio:.1f}x) |", flush=True)


if __name__ == "__main__":
    main()
