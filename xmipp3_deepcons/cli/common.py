"""What every subcommand shares: logging to the terminal and a file, CPU threads, seeds."""
import logging
import os
import sys

LOGGER_NAME = "xmipp3_deepcons"


def setup_logging(log_file=None, quiet=False):
    """Progress lines on stdout and, when given, in ``log_file`` too."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    if not quiet:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(formatter)
        logger.addHandler(console)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(formatter)
        logger.addHandler(to_file)
    logger.propagate = False
    return logger


def set_threads(threads):
    """Cap the CPU threads of numpy/scipy FFTs and TensorFlow. TensorFlow takes them when
    it starts (``core.tf_runtime``), so the refusal of a bad option never waits for it."""
    if not threads or threads <= 0:
        return
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "DEEPCONS_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    if "tensorflow" in sys.modules:
        from ..core.tf_runtime import apply_threads
        apply_threads()


def resolve_seed(seed, logger):
    """A run without --seed still gets one, logged, so any run can be repeated exactly."""
    if seed is None:
        from ..run.request import draw_seed
        seed = draw_seed()
        logger.info(f"seed {seed} (pass --seed {seed} to repeat this run)")
    return seed


def add_training_args(parser, continues=False):
    """Options shared by `screen` and `train`, with the original protocol's defaults.
    ``continues``: the command continues a run folder, which keeps its own training length
    where none is given (``run.request``): those options then default to None."""
    from ..constants import (DEFAULT_EPOCHS, DEFAULT_L2, DEFAULT_LEARNING_RATE, DEFAULT_MIN_BATCHES,
                             DEFAULT_MODELS)
    own = "; a continued run: its own" if continues else ""
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=float, default=None if continues else DEFAULT_EPOCHS,
                   help=f"passes over the training positives (default {DEFAULT_EPOCHS}{own})")
    g.add_argument("--min-batches", type=int, default=None if continues else DEFAULT_MIN_BATCHES,
                   metavar="N",
                   help="train on at least N batches of 64 boxes whatever --epochs gives: a "
                        f"small set otherwise gets a few dozen (default {DEFAULT_MIN_BATCHES}"
                        f"{own}; 0: as the original)")
    g.add_argument("--models", type=int,
                   help="networks in the ensemble; the score is their mean (default "
                        f"{DEFAULT_MODELS}; continuing a --model DIR: its own number)")
    g.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE,
                   help="Adam learning rate (default %(default)s)")
    g.add_argument("--l2", type=float, default=DEFAULT_L2,
                   help="L2 regularisation strength (default %(default)s)")
    g.add_argument("--no-auto-stop", dest="auto_stop", action="store_false",
                   help="train all epochs instead of stopping when validation accuracy stalls")
    g.add_argument("--network-size", choices=("small", "medium", "large"),
                   help="network width; default: chosen from the number of positives "
                        "(<1500 small, <20000 medium, else large)")
    g.add_argument("--seed", type=int, help="random seed: the same inputs and seed give the "
                                            "same scores (default: drawn and logged)")
    add_compute_args(parser)


def add_compute_args(parser):
    g = parser.add_argument_group("compute")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network (default: all cores)")
    g.add_argument("--gpu", metavar="IDS",
                   help="GPUs to use, as CUDA_VISIBLE_DEVICES takes them ('0', '0,1'); "
                        "'-1' or '': none (default: what the environment gives)")


def visible_devices(gpu, given=None):
    """``--gpu`` as CUDA_VISIBLE_DEVICES. Where a scheduler already set it (Slurm gives a job
    its GPUs, and Scipion numbers a queued job's GPUs from 0), the ids are positions in that
    list, as CUDA numbers them: the job never reaches another job's GPU."""
    gpu = gpu.strip()
    ids = [i.strip() for i in gpu.split(",") if i.strip()]
    available = [d.strip() for d in (given or "").split(",") if d.strip()]
    if (not available or gpu in ("", "-1")
            or not all(i.isdigit() and int(i) < len(available) for i in ids)):
        return gpu
    return ",".join(available[int(i)] for i in ids)


def set_compute(threads, gpu=None):
    """GPUs and CPU threads, before TensorFlow starts in this process."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices(gpu, os.environ.get(
            "CUDA_VISIBLE_DEVICES"))
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    set_threads(threads)


def add_views_arg(group, default):
    """--views, for the commands that score boxes."""
    from ..constants import VIEW_CHOICES
    group.add_argument("--views", type=int, choices=VIEW_CHOICES, default=default,
                       help="score each box in this many mirror views and take the mean: 1 as "
                            "the original; 4 adds it flipped left-right, up-down and both; 8 "
                            "also transposed. Each view is one more scoring pass (default: %s)"
                            % (default or "4, 1 with --classic"))
