"""Peak resident memory of `screen` does not grow with the number of micrographs.

usage: python benchmarks/peak_memory.py [--data ../shared/data/empiar10017] [--out bench_memory]

Runs `screen` on the 4 EMPIAR-10017 micrographs and on the same 4 listed 4 times under other
names (16), side by side: training (1 network, 0.3 epochs, --train-size 1000, so that both
train on the same number of boxes) and scoring with that model (--skip-training). Prints the
peak RSS of each run (each in its own process) and the 16/4 ratio.
"""
import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from empiar10017 import BOX, PICKERS, prepare  # noqa: E402

MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
           "stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def listed_four_times(prepared, folder):
    """Symbolic links: each micrograph and its picks under 4 names."""
    for copy in "abcd":
        for path in glob.glob(os.path.join(prepared, "micrographs", "*.mrc")):
            _link(path, os.path.join(folder, "micrographs", copy + "_" + os.path.basename(path)))
        for picker in PICKERS:
            for path in glob.glob(os.path.join(prepared, "coords", picker, "*.pos")):
                _link(path, os.path.join(folder, "coords", picker,
                                         copy + "_" + os.path.basename(path)))
    return folder


def _link(source, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        os.symlink(os.path.abspath(source), target)


def peak_rss_mb(dataset, out, extra):
    cmd = [sys.executable, "-m", "xmipp3_deepcons", "screen", "--micrographs",
           os.path.join(dataset, "micrographs", "*.mrc"), "--box-size", str(BOX), "-o", out]
    for picker in PICKERS:
        cmd += ["--coordinates", os.path.join(dataset, "coords", picker)]
    result = subprocess.run([sys.executable, "-c", MEASURE] + cmd + extra, check=True,
                            capture_output=True, text=True)
    return int(result.stdout.split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--out", default="bench_memory")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    four = prepare(os.path.abspath(args.data), os.path.join(out, "empiar10017"))
    sixteen = listed_four_times(four, os.path.join(out, "listed_four_times"))
    train = ["--models", "1", "--epochs", "0.3", "--train-size", "1000"]
    rows = []
    for label, extra in (("train", train), ("score only", None)):
        sizes = []
        for name, dataset in (("4", four), ("16", sixteen)):
            run = os.path.join(out, f"{label.replace(' ', '_')}_{name}")
            options = extra if extra is not None else [
                "--model", os.path.join(out, "train_4", "model"), "--skip-training"]
            sizes.append(peak_rss_mb(dataset, run, options))
        rows.append((label, *sizes))
    print("| run | 4 micrographs | 16 micrographs | ratio |\n|---|---|---|---|")
    for label, small, large in rows:
        print(f"| {label} | {small:.0f} MB | {large:.0f} MB | {large / small:.2f} |")


if __name__ == "__main__":
    main()
