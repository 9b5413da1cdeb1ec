"""The small trained run that several test files share (``conftest.small_trained_run``) and
the command that made it, for the tests that run it again on a copy."""
from xmipp3_deepcons import synthetic

PICKERS = [name for name, *_ in synthetic.PICKERS]


def small_run_argv(data, out, *extra, mics="*.mrc", command="screen"):
    """`screen` (or ``command``) of the small run: one small network, one Keras epoch (of the
    5 batches ``conftest.small_trained_run`` trains with), one view, independent witnesses."""
    args = [command, "--micrographs", str(data / "micrographs" / mics), "--box-size", "128",
            "--epochs", "1", "--models", "1", "--min-batches", "5", "--network-size", "small",
            "--seed", "0", "--views", "1", "--picker-evidence", "votes", "-o", str(out)]
    for picker in PICKERS:
        args += ["--coordinates", str(data / "coords" / picker)]
    return args + list(extra)
