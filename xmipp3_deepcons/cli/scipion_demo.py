"""Run the plugin's Scipion workflow template headless on a generated dataset.

example:
  xmipp_deep_consensus scipion-demo -o scipion_demo

Generates the demo micrographs and three pickers' coordinates in OUTDIR/data, creates a
Scipion project under OUTDIR/scipion, fills in the `deep_consensus_demo` workflow template
(import micrographs, import three coordinate sets, Deep Consensus), runs it protocol by
protocol, and prints what the Deep Consensus run kept against the planted particles.
"""
import glob
import os
import time

DEMO_BOX, DEMO_SAMPLING = 128, 2.0


def add_args(parser):
    parser.add_argument("-o", "--output", default="scipion_demo", metavar="OUTDIR")
    parser.add_argument("--micrographs", type=int, default=6, help="how many to generate")
    parser.add_argument("--models", type=int, default=3, help="networks in the ensemble")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")


def main(args):
    from .. import synthetic
    from ..headless import fill_template, kept_by_micrograph, run_workflow, scipion_environment
    output = os.path.abspath(args.output)
    scipion_environment(os.path.join(output, "scipion"))
    data = os.path.join(output, "data")
    if not glob.glob(os.path.join(data, "micrographs", "*.mrc")):
        synthetic.make_dataset(data, n_micrographs=args.micrographs, seed=args.seed)
    pickers = synthetic.write_pos_folders(data)

    from pyworkflow.project import Manager
    values = {"micrographs": os.path.join(data, "micrographs"), "sampling": DEMO_SAMPLING,
              "threshold": args.threshold, "models": args.models,
              "train_size": 20000}
    values.update({"box%d" % (i + 1): DEMO_BOX for i in range(3)})
    values.update({"picker%d" % (i + 1): folder for i, folder in enumerate(pickers)})
    workflow = fill_template("deep_consensus_demo", values)
    project = Manager().createProject("deep_consensus_demo_%s" % time.strftime("%Y%m%d_%H%M%S"))
    os.chdir(project.getPath())
    print("project: %s" % project.getPath())
    screen = run_workflow(project, workflow)[-1][0]
    print("\n".join(screen.summary()))

    from .demo import report
    print(report(data, kept_by_micrograph(screen.outputCoordinates), [os.path.join(data, "coords", name)
                              for name, *_ in synthetic.PICKERS]))
    return 0
