"""The engine's refusals name a field the way each front end shows it (issue 29): the command
line its option, the Scipion protocol the form's label, in its jobs (the plugin's environment)
and in its own process. A Scipion user never reads an option they cannot set."""
import ast
import os
import re

import pytest

import xmipp3_deepcons
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.errors import FieldError, InputError
from xmipp3_deepcons.resources import MODELS_VAR
from xmipp3_deepcons.run import request
from xmipp3_deepcons.run.folder import REFERENCE, RunFolder

PICKERS = ("pickerA", "pickerB", "pickerC")
PACKAGE = os.path.dirname(os.path.abspath(xmipp3_deepcons.__file__))


def init_argv(dataset, out, *extra):
    argv = ["init", "--micrographs", str(dataset / "micrographs" / "*.mrc"), "--box-size",
            "128", "--seed", "1", "--views", "1", "-o", str(out)]
    for picker in PICKERS:
        argv += ["--coordinates", str(dataset / "coords" / picker)]
    return argv + list(extra)


def error_line(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(lines) == 1, lines
    return lines[0]


def plugin_names():
    """What the Scipion plugin's jobs are told (its environment for a job)."""
    from xmipp3_deepcons.scipion_plugin import Plugin
    return Plugin.getEnviron()[request.NAMES_VARIABLE]


def test_too_few_positives_name_the_options_or_the_form_labels(dataset, tmp_path, capsys,
                                                                monkeypatch):
    """Three micrographs of 20 particles: the `fit` job refuses to train, as the protocol
    runs it and as a user does."""
    out = tmp_path / "run"
    assert main(init_argv(dataset, out)) == 0      # `init` alone starts a run that cannot train
    assert main(["prepare", str(out)]) == 0
    monkeypatch.delenv(request.NAMES_VARIABLE, raising=False)
    cli = error_line(capsys, ["fit", str(out)])
    head = "xmipp_deep_consensus fit: error: too few positives to train: "
    assert cli.startswith(head)
    assert cli.endswith(" 320 are needed; add micrographs or pickers, lower --min-votes, or "
                        "score with an existing model (--model DIR --skip-training)")
    assert plugin_names() == "form"
    monkeypatch.setenv(request.NAMES_VARIABLE, plugin_names())
    form = error_line(capsys, ["fit", str(out)])
    assert form.endswith(" 320 are needed; add micrographs or pickers, or score with an "
                         "existing model ('Select model type' Pretrained or PreviousRun with "
                         "'Skip training?' Yes)")
    assert "--" not in form
    count = re.search(r"train: (\d+) candidates", cli).group(1)
    assert int(count) < 320 and f"train: {count} candidates" in form
    assert not list((out / "training").glob("pass_*/manifest.json"))   # nothing trained


def test_anchored_without_the_shipped_network_names_the_option_or_the_form_labels(
        dataset, tmp_path, monkeypatch):
    from xmipp3_deepcons.protocols.screen_request import form_wording
    out = tmp_path / "run"
    assert main(init_argv(dataset, out, "--picker-evidence", "anchored")) == 0
    monkeypatch.setenv(MODELS_VAR, str(tmp_path / "no models here"))   # uninstalled since
    run = RunFolder(out)
    with pytest.raises(FieldError) as refused:
        run.source_model(REFERENCE)
    assert refused.value.field == "picker_evidence"
    assert str(refused.value) == (         # the command line's wording
        "the pickers' evidence 'anchored' needs the shipped large network, which is not "
        "installed; reinstall the plugin, or choose another --picker-evidence (votes, ranks, "
        "patterns or none)")
    with pytest.raises(InputError) as shown:      # the protocol's own process (_publish)
        with form_wording():
            run.source_model(REFERENCE)
    assert str(shown.value) == (
        "the pickers' evidence 'anchored' needs the shipped large network, which is not "
        "installed; reinstall the plugin, or choose 'Pickers may agree on junk?' No, or "
        "'Combine with who picked?' No")
    assert run.source_model("final") == run.model_dir()    # the run's own model: no refusal


def _raised_texts(path):
    """(line, text) of every string in a ``raise`` statement of a module."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    yield node.lineno, part.value


# The one option an engine refusal may name: the stage jobs' --shard, which the protocol never
# gives (it names the micrographs of each job).
COMMAND_LINE_ONLY = {("run/schedule.py", "--shard")}


def test_no_engine_refusal_names_a_command_line_option():
    """core/ and run/ raise what both front ends show: an option's name belongs in a
    ``FieldError`` placeholder (``{field}``), worded by the front end."""
    found = []
    for folder in ("core", "run"):
        for name in sorted(os.listdir(os.path.join(PACKAGE, folder))):
            if not name.endswith(".py"):
                continue
            relative = f"{folder}/{name}"
            for line, text in _raised_texts(os.path.join(PACKAGE, relative)):
                for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", text):
                    if (relative, option) not in COMMAND_LINE_ONLY:
                        found.append(f"{relative}:{line} {option}")
    assert found == []
