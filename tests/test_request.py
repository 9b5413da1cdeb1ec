"""One request, one set of rules (issue 29): the same request given to the command line and to
the Scipion form gives the same settings (fingerprint) and the same problems.

The command line's side is its real parser and ``screen.run_request``; the form's side is a
real protocol object in a headless Scipion project, its coordinate sets imported, whose
``_validate`` and settings are read (no run is launched). Each numeric setting is given at a
valid value, at a boundary and at an invalid one.
"""
import os
import shutil
import sys
import tempfile

os.environ.setdefault("SCIPION_PYTHON", sys.executable)

import pytest

from protocol_helpers import (BOX, PICKERS, SAMPLING, Launcher, import_coordinates,
                              import_micrographs, make_data)
from xmipp3_deepcons.cli import build_parser
from xmipp3_deepcons.cli import screen
from xmipp3_deepcons.constants import VIEW_CHOICES
from xmipp3_deepcons.run import request
from xmipp3_deepcons.run.folder import RunFolder

SEED = 11
# The request both front ends are given, besides the setting under test: the form's defaults
# where the command line's differ (training batch 5, Precompiled negatives), a fixed seed.
CLI_BASE = ["--training-batch", "5", "--precompiled-negatives"]
FORM_BASE = dict(randomSeed=SEED)

# field: (valid, boundary, invalid)
NUMBERS = {
    "radius": (0.2, 1.0, -0.1),
    "threshold": (0.7, -1, 1.5),
    "dedupe_radius": (0.5, 0.0, 1.0),
    "epochs": (2.0, 0.0, -1.0),
    "min_batches": (10, 0, -1),
    "learning_rate": (1e-3, 0.0, -1.0),
    "l2": (0.5, 1.0, 1.5),
    "models": (2, 1, 0),
    "train_size": (500, 320, 100),
    "training_batch": (3, 0, -2),
    "max_val_acc": (0.9, 0.0, -0.1),
    "self_training": (1, 0, -1),
    "seed": (5, 0, -3),
}
CASES = [(field, value) for field, values in NUMBERS.items() for value in values] + [
    ("views", v) for v in VIEW_CHOICES]


@pytest.fixture(scope="module")
def scipion():
    """A project with two micrographs and two pickers' coordinates imported."""
    import pyworkflow
    from pyworkflow.project import Manager
    pyworkflow.PYTHON = os.environ["SCIPION_PYTHON"]
    data = make_data(tempfile.mkdtemp(prefix="deepcons_request_"), n_micrographs=2)
    project = Manager().createProject("deepcons_request_%d" % os.getpid())
    cwd = os.getcwd()
    os.chdir(project.getPath())       # pyworkflow's paths are relative to the project
    try:
        launcher = Launcher(project)
        mics = import_micrographs(launcher, data).outputMicrographs
        coords = [import_coordinates(launcher, data, mics, p) for p in PICKERS[:2]]
        yield project, coords
    finally:
        os.chdir(cwd)
        shutil.rmtree(data, ignore_errors=True)


def form(scipion, **kwargs):
    from pyworkflow.object import Pointer
    from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
    project, coords = scipion
    prot = project.newProtocol(XmippProtScreenDeepConsensus, **dict(FORM_BASE, **kwargs))
    for source in coords:
        prot.inputCoordinates.append(Pointer(source, extended="outputCoordinates"))
    return prot


def cli_args(*extra, seed=SEED):
    argv = ["screen", "--micrographs", "mics/*.mrc", "--box-size", str(BOX), "-o", "out"]
    for picker in PICKERS[:2]:
        argv += ["--coordinates", picker]
    argv += CLI_BASE + ([] if seed is None else ["--seed", str(seed)])
    return build_parser().parse_args(argv + list(extra))


def both(scipion, field, value, run=None):
    """(command line's Built, form's Built, the protocol) for one setting."""
    from xmipp3_deepcons.protocols.screen_request import form_request
    field_of = request.FIELDS[field]
    if field == "views":
        prot = form(scipion, scoringViews=VIEW_CHOICES.index(value))
    elif field == "seed":
        prot = form(scipion, randomSeed=value)
    else:
        prot = form(scipion, **{field_of.param: value})
    args = cli_args(field_of.flag, str(value))      # the last --seed wins
    return (request.build(screen.run_request(args, SAMPLING), run),
            request.build(form_request(prot), run), prot)


def fingerprint(settings):
    """What the model depends on, less what only one front end writes (Scipion's particles)."""
    from dataclasses import replace
    return replace(settings, write_particles=False).fingerprint()


@pytest.mark.parametrize("field, value", CASES, ids=[f"{f}={v}" for f, v in CASES])
def test_the_same_request_gives_the_same_settings_and_problems(scipion, field, value):
    cli, gui, prot = both(scipion, field, value)
    assert cli.problems == gui.problems
    if cli.problems:
        assert cli.settings is None and gui.settings is None
        assert [p.field for p in cli.problems] == [field]
        messages = prot.validate()
        for problem in gui.problems:      # the form lists it with its own label
            assert problem.line(request.labels()) in messages
            assert request.labels()[field] in problem.line(request.labels())
        with pytest.raises(Exception) as refused:      # the command line: the flag
            cli.raise_first()
        assert str(refused.value).startswith(request.FIELDS[field].flag + " ")
    else:
        assert fingerprint(cli.settings) == fingerprint(gui.settings)
        shown = "views" if field == "views" else field
        assert getattr(cli.settings, shown) == pytest.approx(
            float(value) if field not in ("threshold",) or value != -1 else -1.0)


def test_defaults_agree(scipion):
    cli, gui, prot = both(scipion, "views", 4)
    assert not cli.problems and prot.validate() == []
    assert cli.settings.picker_evidence == gui.settings.picker_evidence == "anchored"
    assert (cli.settings.training_batch, cli.settings.models, cli.settings.seed) == (5, 3, SEED)


@pytest.mark.parametrize("seed", [None, SEED, SEED + 1])
def test_a_continued_run_keeps_its_seed_in_both(scipion, tmp_path, seed):
    """No seed given: the stored one; the stored one given: the same run; another: refused
    by both, as any other change of a fingerprinted setting."""
    from xmipp3_deepcons.protocols.screen_request import form_request
    prot = form(scipion, randomSeed=-1 if seed is None else seed)
    runs, found = {}, {}
    for side, make in (("cli", lambda: screen.run_request(cli_args(seed=seed), SAMPLING)),
                       ("form", lambda: form_request(prot))):
        runs[side] = RunFolder(tmp_path / side)      # each front end continues its own run
        first = dict(make(), seed=SEED)              # the run as it was started
        runs[side].write_settings(request.build(first).settings)
        found[side] = request.build(make(), runs[side])
    cli, gui = found["cli"], found["form"]

    def worded(built, run):
        return [(p.field, p.text.replace(run.root, "RUN")) for p in built.problems]
    assert worded(cli, runs["cli"]) == worded(gui, runs["form"])
    if seed in (None, SEED):
        assert cli.settings.seed == gui.settings.seed == SEED
        assert not cli.seed_drawn and not gui.seed_drawn
        assert fingerprint(cli.settings) == fingerprint(gui.settings)
        assert cli.settings.fingerprint() == runs["cli"].settings().fingerprint()
    else:
        assert [p.field for p in cli.problems] == ["output"]
        assert f"seed {SEED} -> {SEED + 1}" in cli.problems[0].line(request.flags())


def test_a_new_run_without_a_seed_draws_one_in_range(scipion):
    from xmipp3_deepcons.checks import SEED_MAX
    from xmipp3_deepcons.protocols.screen_request import form_request
    gui = request.build(form_request(form(scipion, randomSeed=-1)))
    assert gui.seed_drawn and 0 <= gui.settings.seed < SEED_MAX


@pytest.mark.parametrize("form_values, expected", [
    ({}, "anchored"),                                  # the default: may agree on junk
    ({"ignoreCTF": False}, "anchored"),                # the phase-flip network
    ({"pickersShareMistakes": False}, "votes"),
    ({"pickerEvidence": False}, "none"),
    ({"modelInitialization": 1, "skipTraining": True}, "patterns"),
    ({"modelInitialization": 1, "skipTraining": True, "pickersShareMistakes": False},
     "patterns"),
])
def test_form_reads_who_picked_as_the_user_says(scipion, form_values, expected):
    from xmipp3_deepcons.protocols.screen_request import form_request
    built = request.build(form_request(form(scipion, **form_values)))
    assert built.settings.picker_evidence == expected


def test_the_form_lists_every_problem_the_command_line_refuses_one_by_one(scipion):
    prot = form(scipion, consensusRadius=2.0, nEpochs=-1.0, l2RegStrength=3.0)
    messages = prot.validate()
    for label in ("'Relative Radius' 2:", "'Number of epochs' -1:",
                  "'Regularization strength' 3:"):
        assert any(m.startswith(label) for m in messages), (label, messages)


def test_one_picker_is_refused_with_each_front_ends_remedy(scipion):
    """The remedy names what each front end can set: the command line's options, the form's
    model type and 'Skip training?'."""
    from pyworkflow.object import Pointer
    from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
    project, coords = scipion
    prot = project.newProtocol(XmippProtScreenDeepConsensus, **FORM_BASE)
    prot.inputCoordinates.append(Pointer(coords[0], extended="outputCoordinates"))
    remedy = ("add another picker, or score with an existing model ('Select model type' "
              "Pretrained or PreviousRun with 'Skip training?' Yes)")
    assert any(m.startswith("'Input coordinates' 1: training needs at least two") and
               m.endswith(remedy) for m in prot.validate()), prot.validate()
    args = build_parser().parse_args(["screen", "--micrographs", "mics/*.mrc", "--box-size",
                                      str(BOX), "-o", "out", "--coordinates", PICKERS[0]])
    with pytest.raises(Exception) as refused:
        request.build(screen.run_request(args, SAMPLING)).raise_first()
    assert str(refused.value).startswith("--coordinates 1: training needs at least two")
    assert str(refused.value).endswith("add another picker, or score with an existing model "
                                       "(--model DIR --skip-training)")


def test_repeated_picks_are_merged_alike_in_both_front_ends():
    """One picker listing a particle twice: the command line's inputs and the protocol's
    admission merge it the same way, and count it."""
    import numpy as np
    from xmipp3_deepcons.checks import merge_repeated_picks
    from xmipp3_deepcons.run.streaming import merge_repeated
    first = np.array([[100.0, 100.0], [103.0, 101.0], [400.0, 300.0]])
    second = np.array([[50.0, 60.0]])
    merged, warnings = merge_repeated([first, second], 16.0, "mic_000")
    np.testing.assert_array_equal(merged[0], first[[0, 2]])
    np.testing.assert_array_equal(merged[1], second)
    assert warnings == ["mic_000: coordinate set 1: 1 of 3 picks repeat another pick of the "
                        "same picker within 16 px; merged"]
    kept, scores, repeated = merge_repeated_picks(first, 16.0, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(kept, merged[0])
    assert (scores.tolist(), repeated) == ([0.1, 0.3], 1)


# The training length before issue 28 (today's defaults are shorter).
EARLIER = {"epochs": 5.0, "min_batches": 300}


def trained_run(folder, built):
    """A run folder started with ``built``'s settings at the earlier training length, holding a
    model (a shipped network put as its final model): a run that has trained."""
    from dataclasses import replace
    from xmipp3_deepcons.resources import pretrained_model
    run = RunFolder(folder)
    run.write_settings(replace(built.settings, **EARLIER))
    shutil.copytree(pretrained_model(False, "small"), run.model_dir())
    assert run.has_training()
    return run


@pytest.mark.parametrize("given", ["none", "same", "epochs", "min_batches"])
def test_a_continued_run_keeps_its_training_length_in_both(scipion, tmp_path, given):
    """Issue 28: a run made with the earlier defaults (5 epochs, 300 batches) continues without
    --epochs/--min-batches, as it was made (same fingerprint); the same values given continue
    it too; another value is refused in one line naming the option (the form's label)."""
    from xmipp3_deepcons.constants import DEFAULT_EPOCHS, DEFAULT_MIN_BATCHES
    from xmipp3_deepcons.protocols.screen_request import form_request
    assert (DEFAULT_EPOCHS, DEFAULT_MIN_BATCHES) != (EARLIER["epochs"], EARLIER["min_batches"])
    flags = {"none": [], "same": ["--epochs", "5", "--min-batches", "300"],
             "epochs": ["--epochs", "3"], "min_batches": ["--min-batches", "100"]}[given]
    # the form shows what the protocol was made with: the earlier values, or the change
    form_values = {"epochs": dict(nEpochs=3.0, minBatches=300),
                   "min_batches": dict(nEpochs=5.0, minBatches=100)}.get(
        given, dict(nEpochs=5.0, minBatches=300))
    sides = {"cli": (cli_args(*flags), lambda args: screen.run_request(args, SAMPLING)),
             "form": (form(scipion, **form_values), form_request)}
    for side, (source, make) in sides.items():
        started = request.build(make(cli_args() if side == "cli" else form(scipion)))
        run = trained_run(tmp_path / side, started)
        built = request.build(make(source), run)
        if given in ("none", "same"):
            assert not built.problems, built.problems
            assert (built.settings.epochs, built.settings.min_batches) == (5.0, 300)
            assert built.settings.fingerprint() == run.settings().fingerprint()
            run.write_settings(built.settings)            # continues: no refusal
        else:
            assert built.settings is None and [p.field for p in built.problems] == [given]
            names = request.flags() if side == "cli" else request.labels()
            value, kept = ("3", "5") if given == "epochs" else ("100", "300")
            assert built.problems[0].line(names) == (
                f"{names[given]} {value}: this run folder was trained with {names[given]} "
                f"{kept}; leave {names[given]} out to continue it as it was made, or give a "
                "new output folder")


def test_a_new_run_without_a_training_length_takes_the_defaults(tmp_path):
    """Not given on a new run folder, or on one that has not trained: today's defaults."""
    from xmipp3_deepcons.constants import DEFAULT_EPOCHS, DEFAULT_MIN_BATCHES
    args = cli_args()
    assert (args.epochs, args.min_batches) == (None, None)     # "not given" reaches the rules
    built = request.build(screen.run_request(args, SAMPLING), RunFolder(tmp_path / "new"))
    assert (built.settings.epochs, built.settings.min_batches) == (DEFAULT_EPOCHS,
                                                                   DEFAULT_MIN_BATCHES)
    untrained = RunFolder(tmp_path / "untrained")       # started earlier, never trained
    from dataclasses import replace
    untrained.write_settings(replace(built.settings, **EARLIER))
    again = request.build(screen.run_request(cli_args("--epochs", "3"), SAMPLING), untrained)
    assert not again.problems and again.settings.epochs == 3.0
    kept = request.build(screen.run_request(cli_args(), SAMPLING), untrained)
    assert (kept.settings.epochs, kept.settings.min_batches) == (5.0, 300)
