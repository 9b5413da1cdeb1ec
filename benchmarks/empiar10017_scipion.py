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

from xmipp3_deepcons.headless import fill_template, run_workflow, scipion_environment  # noqa


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "empiar10017"))
    parser.add_argument("--out", default="bench_scipion")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    scipion_environment(os.path.join(out, "scipion"))

    import numpy as np
    from pyworkflow.project import Manager
    from empiar10017 import BOX, MATCH_RADIUS, PICKERS, prepare, truth_of
    from xmipp3_deepcons.core.metrics import match_to_reference, precision_recall_f1
    from xmipp3_deepcons.io.coordinates import read_coordinates

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

    names = {m.getObjId(): os.path.splitext(m.getMicName())[0]
             for m in screen.outputCoordinates.getMicrographs()}
    kept = {}
    for coord in screen.outputCoordinates.iterItems():
        kept.setdefault(names[coord.getMicId()], []).append((coord.getX(), coord.getY()))
    rows = {}
    for stem in sorted(names.values()):
        truth = truth_of(prepared, stem)
        sets = [(p, read_coordinates(os.path.join(prepared, "coords", p, stem + ".pos")).xy)
                for p in PICKERS]
        sets.append(("Deep Consensus in Scipion", np.array(kept.get(stem, [])).reshape(-1, 2)))
        for name, xy in sets:
            total = rows.setdefault(name, [0, 0, 0])
            total[0] += int(match_to_reference(xy, truth, MATCH_RADIUS).sum())
            total[1] += len(xy)
            total[2] += len(truth)
    print("| input | picks | precision | recall | F1 |\n|---|---|---|---|---|")
    for name, (matched, n, n_truth) in rows.items():
        p, r, f = precision_recall_f1(matched, n, n_truth)
        print("| %s | %d | %.3f | %.3f | %.3f |" % (name, n, p, r, f))
    print("\nwall time: " + ", ".join("%s %.0f s" % (prot.getObjLabel(), seconds)
                                      for prot, seconds in runs))
    print("summary:\n  " + "\n  ".join(screen.summary()))


if __name__ == "__main__":
    main()
