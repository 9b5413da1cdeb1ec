"""The stages of `screen`, one command each, on a run folder: for clusters and for Scipion.

    xmipp_deep_consensus init <the options of screen> -o RUN
    xmipp_deep_consensus prepare RUN [--shard I/N | --micrographs STEM ...]
    xmipp_deep_consensus fit RUN
    xmipp_deep_consensus predict RUN [--shard I/N | --micrographs STEM ...]
    xmipp_deep_consensus finish RUN

`screen` is these five in one process. Each stage skips what is done and continues a stopped
one; `prepare` and `predict` shards may run at the same time on one run folder.
"""
import os
import time

from ..errors import InputError
from . import common

DESCRIPTIONS = {
    "init": "check the inputs and start a run folder (the options of `screen`)",
    "prepare": "preprocess micrographs and find their candidates",
    "fit": "train (every pass, self-training) and fit the pickers' evidence",
    "predict": "score the candidates of micrographs with the run's final model",
    "finish": "write the outputs of a scored run (coordinates.star, candidates, plots)",
    "evaluate": "score the run's test sets (additional/test_true.npy, test_false.npy)",
}


def add_args(parser, stage):
    if stage == "init":
        from .screen import add_args as add_screen_args
        add_screen_args(parser)
        return
    parser.add_argument("run", metavar="RUN", help="the run folder (`init` or `screen` -o)")
    if stage in ("prepare", "predict"):
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--shard", metavar="I/N",
                           help="only the I-th of N shards of the micrographs (every N-th "
                                "micrograph of the run, starting at the I-th): for job arrays")
        which.add_argument("--micrographs", nargs="+", metavar="STEM",
                           help="only these micrographs (by name, without extension)")
    if stage == "predict":
        parser.add_argument("--model-pass", type=int, metavar="N",
                            help="score with training pass N instead of the final model "
                                 "(preliminary outputs)")
    if stage == "fit":
        parser.add_argument("--one-pass", action="store_true",
                            help="train at most one pass (or finalise), then return")
    if stage != "finish":
        common.add_compute_args(parser)


def main(args, stage):
    from ..run import schedule, stages
    from ..run.folder import RunFolder
    if stage == "init":
        from .screen import init_run
        init_run(args, whole_run=False)[0].held.release()
        return 0
    run = RunFolder(args.run)
    settings = run.settings()
    logger = common.setup_logging(run.path("screen.log"))
    started = time.time()
    if stage != "finish":
        common.set_compute(args.threads, args.gpu)
        logger.info(f"{stage} {run.root}: CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(not set)')}, CPU threads "
                    f"{args.threads or 'all'}")
    if stage in ("prepare", "predict"):
        stems = selected(run, args)
        if stage == "prepare":
            stages.prepare(run, stems, settings)
        else:
            source = ("final" if not args.model_pass else
                      os.path.relpath(run.pass_dir(args.model_pass), run.root))
            if source == "final" and not run.has_model():
                raise InputError(f"{run.root} has no final model yet; run `fit` first")
            stages.predict(run, stems, settings, source)
    elif stage == "fit":
        if args.one_pass:
            plan = stages.plan_training(run, settings)
            if plan.action == schedule.TRAIN:
                stages.train_pass(run, plan, settings)
            elif plan.action == schedule.FINALIZE:
                stages.finalize(run, plan.reason, settings)
            else:
                logger.info(f"training waits: {plan.reason}")
        else:
            stages.train(run, settings)
    elif stage == "finish":
        from ..run.outputs import write_outputs
        summary = write_outputs(run, settings)
        logger.info(f"kept {summary['kept']} of {summary['candidates']} candidates above "
                    f"{summary['threshold']:g} ({summary['duplicates']} duplicates merged)")
    elif stage == "evaluate":
        stages.evaluate(run, settings)
    logger.info(f"{stage} done in {time.time() - started:.0f} s")
    return 0


def selected(run, args):
    from ..run.schedule import parse_shard, shard
    stems = run.stems()
    if args.micrographs:
        unknown = sorted(set(args.micrographs) - set(stems))
        if unknown:
            raise InputError(f"--micrographs {unknown[0]}: not a micrograph of {run.root}")
        return [s for s in stems if s in set(args.micrographs)]
    if args.shard:
        return shard(stems, parse_shard(args.shard))
    return stems
