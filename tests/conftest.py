"""Fixtures shared by the test modules, made once per test session (as cryoDRGN's are).

- ``dataset``: three generated 768x768 micrographs with three pickers' .pos files; the command
  line tests read it and copy what they change.
- ``small_run_data`` and ``small_trained_run``: five micrographs and a finished run trained on
  them (test_faults, test_run_engine's stale training); tests copy the run to change it.
- one Scipion project per session holding the generated micrographs and the three pickers'
  imports: ``protocol_helpers.use_shared_project`` (the protocol tests are unittest classes,
  which take no fixtures); test_protocols and test_protocol_options add their runs to it and
  only read the imports.

The headless Scipion home itself is made by the repository's top-level conftest.py.
"""
import pytest

from xmipp3_deepcons import synthetic


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Generated micrographs (mic_000..mic_002, 20 particles and 4 junk each) and the pickers'
    coordinates under coords/<picker>/: read only (copy a part before changing it)."""
    folder = tmp_path_factory.mktemp("shared") / "data"
    synthetic.make_dataset(str(folder), n_micrographs=3, shape=(768, 768), n_particles=20,
                           n_junk=4, seed=2)
    return folder


@pytest.fixture(scope="session")
def small_run_data(tmp_path_factory):
    """Five generated 1024 px micrographs (90 particles and 15 junk each) and three pickers'
    files: read only."""
    folder = tmp_path_factory.mktemp("small_run") / "data"
    synthetic.make_dataset(str(folder), n_micrographs=5, shape=(1024, 1024), n_particles=90,
                           n_junk=15, seed=3)
    return folder


@pytest.fixture(scope="session")
def small_trained_run(small_run_data, tmp_path_factory):
    """A finished `screen` of ``small_run_data`` (``cli_helpers.small_run_argv``: 351 training
    positives, one pass, one small network trained on Keras epochs of 5 batches instead of 50:
    a trained model, not a good one, in seconds). Read only: a test that changes it works on a
    copy (``shutil.copytree`` keeps the files' times, and the micrographs are the same files)."""
    from cli_helpers import small_run_argv
    from xmipp3_deepcons.cli import main
    from xmipp3_deepcons.core import training
    out = tmp_path_factory.mktemp("small_trained") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "BATCHES_PER_KERAS_EPOCH", 5)
        assert main(small_run_argv(small_run_data, out)) == 0
    return out


# ------------------------------------------------------------------ which modules ran
# `pytest -m "not slow" --untested-modules` lists the package's modules that no test ran (none
# of their functions called, or never imported) and fails if there is one (but those in
# NEEDS_A_DISPLAY): the fast tier must exercise every module. Code run in subprocesses
# (Scipion's protocol runs) is not seen.
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

import xmipp3_deepcons  # noqa: E402

PACKAGE = os.path.dirname(os.path.abspath(xmipp3_deepcons.__file__))
# Modules only a display can run: listed, not failed (test_gui runs them, on Xvfb).
NEEDS_A_DISPLAY = {
    "xmipp3_deepcons.viewers.subset_dialog": "a modal Tk dialog (test_gui)",
    "xmipp3_deepcons.viewers.mdviewer_extension": "loaded by Scipion's metadata viewer, a PyQt5 "
                                                  "program, in its own process (test_gui)"}
_called = {}    # file -> names of its code objects that ran (functions, "<module>", classes)


def pytest_addoption(parser):
    parser.addoption("--untested-modules", action="store_true",
                     help="list the package's modules none of whose functions a test called "
                          "(fails when there is one)")


def _record(frame, event, arg):
    if event == "call":
        code = frame.f_code
        if code.co_filename.startswith(PACKAGE):
            _called.setdefault(code.co_filename, set()).add(code.co_name)


def pytest_configure(config):
    if config.getoption("--untested-modules", False):
        sys.settrace(_record)           # calls only (no line events): returns no local tracer
        threading.settrace(_record)
        for name, module in list(sys.modules.items()):   # imported before the trace began
            path = getattr(module, "__file__", None) or ""
            if name.startswith("xmipp3_deepcons") and path.startswith(PACKAGE):
                _called.setdefault(os.path.abspath(path), set()).add("<module>")


def untested_modules():
    """(module, why) for each package module that did not run: never imported, or imported
    but none of its functions called although it defines some."""
    import ast
    missing = []
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
            with open(path) as f:
                tree = ast.parse(f.read())
            defines = any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                          for node in ast.walk(tree))
            ran = _called.get(path, set())
            if not ran:
                missing.append((module, "never imported"))
            elif defines and not ran - {"<module>"} - {
                    n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}:
                missing.append((module, "imported, none of its functions called"))
    return missing


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not config.getoption("--untested-modules", False):
        return
    sys.settrace(None)
    threading.settrace(None)
    missing = untested_modules()
    terminalreporter.section("modules no test ran")
    for module, why in missing:
        shown = NEEDS_A_DISPLAY.get(module)
        terminalreporter.write_line("%s: %s%s" % (module, why, "; needs a display: " + shown
                                                   if shown else ""))
    if not [m for m, _ in missing if m not in NEEDS_A_DISPLAY]:
        terminalreporter.write_line("every module of xmipp3_deepcons ran, but those that "
                                    "need a display")
    config._untested = missing


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("--untested-modules", False) and exitstatus == 0:
        # the summary runs after this hook: compute here to set the exit status
        sys.settrace(None)
        threading.settrace(None)
        if [m for m, _ in untested_modules() if m not in NEEDS_A_DISPLAY]:
            session.exitstatus = 1
