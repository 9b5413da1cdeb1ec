"""Training and scoring throughput of our network (fast layers) vs plain Keras, side by side.

usage: python benchmarks/cnn_throughput.py [--bands small medium large] [--repeats 3]

For each size band, both versions get the same weights; each measurement is a few timed
batches after a warm-up, repeated; the table shows images/s (min and median of the repeats), the
speed-up, and effective GFLOP/s next to the machine's float32 matrix-product GFLOP/s.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from xmipp3_deepcons.core.network import BLOCKS, build_network  # noqa: E402

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


def throughput(model, train, batch, steps, repeats):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, 128, 128, 1)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, batch)]
    step = (lambda: model.train_on_batch(x, y)) if train else (lambda: model.predict_on_batch(x))
    step()
    rates = []
    for _ in range(repeats):
        seconds = _timed(lambda: [step() for _ in range(steps)])
        rates.append(batch * steps / seconds)
    return min(rates), float(np.median(rates))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", nargs="+", default=["small", "medium", "large"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    reference = matmul_gflops()
    print(f"float32 matrix product: {reference:.0f} GFLOP/s\n")
    print("| band | task | Conv2D img/s (min/median) | ours img/s (min/median) | speed-up | "
          "effective GFLOP/s Conv2D / ours |")
    print("|---|---|---|---|---|---|")
    for band in args.bands:
        ours, direct = build_network(band), build_network(band, fast=False)
        direct.set_weights(ours.get_weights())
        for task, train, batch, factor in (("train", True, 64, 3), ("score", False, 256, 1)):
            d_min, d_med = throughput(direct, train, batch, args.steps, args.repeats)
            f_min, f_med = throughput(ours, train, batch, args.steps, args.repeats)
            flops = forward_flops(band) * factor / 1e9
            print(f"| {band} | {task} | {d_min:.0f} / {d_med:.0f} | {f_min:.0f} / {f_med:.0f} | "
                  f"{f_med / d_med:.1f}x | {d_med * flops:.0f} / {f_med * flops:.0f} (of "
                  f"{reference:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
