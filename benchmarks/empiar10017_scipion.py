"""Deep Consensus as a Scipion user runs it: a real project on the 4 EMPIAR-10017 micrographs.

usage: python benchmarks/empiar10017_scipion.py [--data ../shared/data/empiar10017]
                                                [--out bench_scipion]

Runs the plugin's workflow template headless (import micrographs, import the three pickers'
coordinates as Xmipp .pos, Deep Consensus with the form's defaults), times each protocol, and
prints precision, recall and F1 (match radius 54 px) of the kept coordinates beside the input
pickers. The Scipion home and project live under --out.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from xmipp3_deepcons.cli.demo import report  # noqa: E402
from xmipp3_deepcons.headless import (fill_template, kept_by_micrograph, run_workflow,  # noqa: E402
                                      scipion_environment)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--out", default="bench_scipion")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    scipion_environment(os.path.join(out, "scipion"))

    from pyworkflow.project import Manager
    from empiar10017 import BOX, MATCH_RADIUS, PICKERS, prepare

    prepared = prepare(os.path.abspath(args.data), os.path.join(out, "empiar10017"))
    values = {"micrographs": os.path.join(prepared, "micrographs"), "sampling": 1.77,
              "threshold": 0.5, "models": 3, "train_size": 20000}
    values.update({"box%d" % (i + 1): BOX for i in range(3)})
    values.update({"picker%d" % (i + 1): os.path.join(prepared, "coords", p)
                   for i, p in enumerate(PICKERS)})
    project = Manager().createProject("empiar10017_%d" % int(time.time()))
    os.chdir(project.getPath())
    runs = run_workflow(project, fill_template("deep_consensus_demo", values))
    screen = runs[-1][0]

    print(report(prepared, kept_by_micrograph(screen.outputCoordinates),
                 [os.path.join(prepared, "coords", p) for p in PICKERS], box=BOX,
                 radius=MATCH_RADIUS, label="Deep Consensus in Scipion"))
    print("\nwall time: " + ", ".join("%s %.0f s" % (prot.getObjLabel(), seconds)
                                      for prot, seconds in runs))
    print("summary:\n  " + "\n  ".join(screen.summary()))


if __name__ == "__main__":
    main()
