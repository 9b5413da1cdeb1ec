"""Training and scoring throughput of our network (fast layers) vs plain Keras, side by side.

usage: python benchmarks/cnn_throughput.py [--bands small medium large] [--repeats 5] [--steps 8]

For each size band, both versions get the same weights; each measurement is a few timed
batches after a warm-up, repeated, the two versions in turn; the table shows images/s (min and
median of the repeats), the speed-up (median of the per-repeat ratios), and effective GFLOP/s
next to the machine's float32 matrix-product GFLOP/s. Scoring is measured in one view and in
the four mirror views `screen` scores by default (images = boxes x views: each is one pass
through the network in plain Keras).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from xmipp3_deepcons.core.network import BLOCKS, build_network  # noqa: E402
from xmipp3_deepcons.core.scoring import Scorer, mirror_views  # noqa: E402

WIDTH = {"small": 0, "medium": 1, "large": 2}


def forward_flops(band):
    """Multiply-adds x 2 of one 128x128 image through the network (convolutions and dense)."""
    size, flops, channels = 128, 0, 1
    for block, (kernel, pool) in enumerate(BLOCKS, 1):
        filters = 2 ** (WIDTH[band] + block)
        flops += 2 * size * size * kernel * kernel * (channels * filters + filters * filters)
        channels = filters
        if pool:
            size //= 2
    return flops + 2 * (channels * 8 * 8 * 512 + 512 * 2)


def matmul_gflops(n=2048, repeats=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(steps_to_time, images, repeats, steps):
    """Images/s of steps that compute ``images`` images each, timed in turn (a, b, c, a, b, c,
    ...) after a warm-up, so that the machine's drift during the run falls on all: (min, median)
    of each, and the median of the per-repeat ratios of each to the first."""
    for step in steps_to_time:
        step()
    rates = [[] for _ in steps_to_time]
    for _ in range(repeats):
        for rate, step in zip(rates, steps_to_time):
            rate.append(images * steps / _timed(lambda: [step() for _ in range(steps)]))
    ratios = [float(np.median(np.array(rate) / np.array(rates[0]))) for rate in rates]
    return [(min(r), float(np.median(r))) for r in rates], ratios


def keras_scoring(model, boxes, views):
    """Plain Keras' scoring step: a prediction of each mirrored batch of the (n, h, w) boxes."""
    return lambda: [model.predict_on_batch(np.ascontiguousarray(m)[..., None])
                    for m in mirror_views(boxes, views)]


def tasks(model, ours):
    """(task, step, images per step, forward passes per image) of one network: training as
    Keras does (64 boxes a batch), scoring as the ensemble does (256 box-views a batch): ours
    through ``scoring.Scorer``, plain Keras by predicting each mirrored batch."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 128, 128, 1)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
    yield "train", lambda: model.train_on_batch(x[:64], y), 64, 3
    for views in (1, 4):
        boxes = x[:256 // views, ..., 0]
        if ours:
            scorer = Scorer(model, views)
            step = lambda scorer=scorer, boxes=boxes: scorer(boxes)  # noqa: E731
        else:
            step = keras_scoring(model, boxes, views)
        yield f"score, {views} view{'s' * (views > 1)}", step, 256, 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", nargs="+", default=["small", "medium", "large"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    reference = matmul_gflops()
    print(f"float32 matrix product: {reference:.0f} GFLOP/s\n")
    print("| band | task | Conv2D img/s (min/median) | ours img/s (min/median) | speed-up | "
          "effective GFLOP/s Conv2D / ours |")
    print("|---|---|---|---|---|---|")
    for band in args.bands:
        ours, direct = build_network(band), build_network(band, fast=False)
        direct.set_weights(ours.get_weights())
        for (task, d_step, images, factor), (_, f_step, _, _) in zip(tasks(direct, False),
                                                                    tasks(ours, True)):
            ((d_min, d_med), (f_min, f_med)), (_, ratio) = side_by_side(
                [d_step, f_step], images, args.repeats, args.steps)
            flops = forward_flops(band) * factor / 1e9
            print(f"| {band} | {task} | {d_min:.0f} / {d_med:.0f} | {f_min:.0f} / {f_med:.0f} | "
                  f"{ratio:.1f}x | {d_med * flops:.0f} / {f_med * flops:.0f} (of "
                  f"{reference:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
