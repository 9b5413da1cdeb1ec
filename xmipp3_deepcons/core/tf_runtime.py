"""TensorFlow, imported once per process: quietly, and with the threads the command asked for.

Every module that uses TensorFlow or Keras imports this first. TensorFlow prints start-up
notices from C++ straight to the terminal (absl, oneDNN) whatever TF_CPP_MIN_LOG_LEVEL says;
they would bury our one-line messages, so the import runs with standard error closed (a failed
import still raises its Python exception, with its message).
"""
import importlib
import os
import sys


def _quiet_import(name):
    sys.stderr.flush()
    saved, quiet = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)
    try:
        return importlib.import_module(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)


def apply_threads():
    """The CPU threads set by ``cli.common.set_threads`` ($DEEPCONS_THREADS), while
    TensorFlow still accepts them (until its runtime starts)."""
    threads = int(os.environ.get("DEEPCONS_THREADS") or 0)
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass   # already running: the environment variables still hold for children


def grow_gpu_memory():
    """Each visible GPU takes memory as it needs it instead of all of it at the start (several
    jobs, or TensorFlow and another program, may share one), while TensorFlow still accepts
    it."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass   # already running: TF_FORCE_GPU_ALLOW_GROWTH (set below) holds for children


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
if "tensorflow" in sys.modules:
    tf = sys.modules["tensorflow"]
else:
    tf = _quiet_import("tensorflow")
    apply_threads()
    grow_gpu_memory()


class _WithoutRetracingNotices:
    """TensorFlow warns when one Python function is traced more than five times; every scorer
    traces its own two batch shapes on purpose (``scoring.Scorer``), and a scoring cascade makes
    several scorers, so the notice would only bury the progress lines."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_WithoutRetracingNotices())
