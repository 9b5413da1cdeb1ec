"""Bad input through the command line, as a user meets it (issue 19): one line naming the option
or file, exit status 2, no traceback, nothing written for a refused run, no input modified;
bad micrographs repaired or left out by name; altered work files made again."""
import os
import shutil
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.run import stages
from xmipp3_deepcons.run.folder import RunFolder

PICKERS = [name for name, *_ in synthetic.PICKERS]
pytestmark = pytest.mark.filterwarnings("ignore:Data array contains NaN values")


def argv(data, out, *extra, command="screen", pickers=PICKERS):
    args = [command, "--micrographs", str(data / "micrographs" / "*.mrc"), "--box-size", "128",
            "-o", str(out)]
    for picker in pickers:
        args += ["--coordinates", str(data / "coords" / picker)]
    return args + list(extra)


def refused(capsys, args):
    """The one line of a refused command (exit status 2)."""
    status = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1, err
    return err[0].split("error: ", 1)[1]


@pytest.mark.parametrize("extra, message", [
    (["--learning-rate", "-1"], "--learning-rate -1: must be above 0; give e.g. 0.0001 (the "
                                "default)"),
    (["--threshold", "1.5"], "--threshold 1.5: must be between 0 and 1; give a score threshold "
                             "in [0, 1], -1 to keep every candidate, or auto"),
    (["--threshold", "nan"], "--threshold nan: not a number between 0 and 1; give a score "
                             "threshold in [0, 1], -1 to keep every candidate, or auto"),
    (["--box-size", "5000"], "--box-size 5000: larger than the micrographs (768x768 px); give "
                             "the particle box in the micrographs' own pixels"),
    (["--epochs", "nan"], "--epochs nan: not a finite number; give e.g. 2 (the default)"),
    (["--training-batch", "-2"], "--training-batch -2: must be 0 or more; give a number of "
                                 "micrographs per training pass, or 0 to train once on all of "
                                 "them"),
    (["--models", "0"], "--models 0: must be a whole number of at least 1; give e.g. 3 (the "
                        "default)"),
    (["--sampling", "-2"], "--sampling -2: must be above 0; give the micrographs' pixel size in "
                           "Å/px (or leave it out to read it from the MRC header)"),
    (["--train-size", "0"], "--train-size 0: must be -1 (every positive) or at least 320 "
                            "positives; give -1 to train on every positive, or a number of at "
                            "least 320"),
])
def test_numbers_are_checked_before_any_work(dataset, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert refused(capsys, argv(dataset, out, *extra)) == message
    assert not out.exists()                       # nothing left behind by a refused run


@pytest.mark.parametrize("extra", [["--epochs", "0"], ["--learning-rate", "inf"],
                                   ["--l2", "1.5"], ["--models", "0"], ["--min-batches", "-1"]])
def test_train_refuses_the_numbers_screen_refuses_in_the_same_words(dataset, tmp_path, capsys,
                                                                   extra):
    """How networks train, one rule for a run and for `train` (``check_network_training``)."""
    images = tmp_path / "in.xmd"
    images.write_text("data_\n")
    screen = refused(capsys, argv(dataset, tmp_path / "out", *extra))
    train = refused(capsys, ["train", "--positives", str(images), "--negatives", str(images),
                             "-o", str(tmp_path / "m")] + extra)
    assert train == screen and screen.startswith(extra[0] + " ")
    assert not (tmp_path / "m").exists() and not (tmp_path / "out").exists()


def test_paths_that_would_lose_or_mix_data_are_refused(dataset, tmp_path, capsys):
    inside = dataset / "coords" / PICKERS[0] / "screened"
    assert refused(capsys, argv(dataset, inside)) == (
        f"-o {inside}: is inside the input folder {dataset / 'coords' / PICKERS[0]} "
        "(--coordinates); give an output folder outside the inputs")
    assert not inside.exists()
    folder = dataset / "micrographs"
    args = argv(dataset, tmp_path / "o")
    args[args.index("--micrographs") + 1] = str(folder)
    assert refused(capsys, args) == (f"--micrographs {folder}: is a folder; give the "
                                     f"micrograph files, e.g. '{folder / '*.mrc'}' (quoted)")
    twice = argv(dataset, tmp_path / "o", pickers=PICKERS[:2]) + [
        "--coordinates", str(dataset / "coords" / PICKERS[0]) + "/"]
    assert refused(capsys, twice) == (f"--coordinates {dataset / 'coords' / PICKERS[0]}/ is "
                                      f"given twice (as {dataset / 'coords' / PICKERS[0]}); "
                                      "give each picker once")
    copy = tmp_path / "copy"
    shutil.copytree(dataset / "coords" / PICKERS[1], copy)
    same = argv(dataset, tmp_path / "o", pickers=PICKERS[:2]) + ["--coordinates", str(copy)]
    assert refused(capsys, same) == (f"--coordinates {copy} and --coordinates "
                                     f"{dataset / 'coords' / PICKERS[1]} hold identical "
                                     "coordinate files: they are one picker; give each picker "
                                     "once")
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    assert refused(capsys, argv(dataset, blocked / "out")) == (
        f"-o {blocked / 'out'}: cannot be made ({blocked} is a file); give a folder you can "
        "write to")


def test_score_never_writes_over_its_input(tmp_path, capsys):
    particles = tmp_path / "particles.xmd"
    particles.write_text("data_\n")
    before = particles.read_bytes()
    assert refused(capsys, ["score", "--model", "pretrained", "-i", str(particles),
                            "-o", str(particles)]) == (
        f"-o {particles} is the -i file: give another output file, inputs are never "
        "overwritten")
    assert particles.read_bytes() == before


def test_errors_come_fast_and_without_tensorflow(dataset, tmp_path):
    """A refused run does not start TensorFlow: no start-up notices, no seconds lost."""
    code = ("import sys; from xmipp3_deepcons.cli import main; "
            f"status = main({argv(dataset, tmp_path / 'o', '--epochs', '-3')!r}); "
            "sys.exit(status + 10 * ('tensorflow' in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("xmipp_deep_consensus screen: error: --epochs -3: must be above 0; "
                           "give e.g. 2 (the default)\n")


def test_bad_micrographs_are_repaired_or_left_out_by_name(dataset, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    with mrcfile.open(data / "micrographs" / "mic_000.mrc", "r+") as mrc:
        image = mrc.data.copy()
        image[100:104, 200:205] = np.nan
        image[5, 5] = np.inf
        mrc.set_data(image)
    with mrcfile.open(data / "micrographs" / "mic_001.mrc", "r+") as mrc:
        mrc.set_data(np.full_like(mrc.data, 7.0))
    out = tmp_path / "run"
    assert main(argv(data, out, command="init")) == 0
    run = RunFolder(out)
    capsys.readouterr()
    stages.prepare(run, run.stems())
    said = capsys.readouterr().out
    assert (f"{data / 'micrographs' / 'mic_000.mrc'}: 21 non-finite pixels (NaN or Inf) "
            "replaced by the mean of the finite pixels around them") in said
    assert (f"micrograph mic_001 is left out: {data / 'micrographs' / 'mic_001.mrc'}: every "
            "pixel is 7 (a blank micrograph); leave it out") in said
    from xmipp3_deepcons.io.images import read_micrograph
    assert np.isfinite(read_micrograph(run.preprocessed("mic_000"))).all()
    assert len(run.candidates("mic_001")["xy"]) == 0 and run.is_prepared("mic_001")
    assert len(run.candidates("mic_002")["xy"]) > 0
    # the user's files are never touched
    with mrcfile.open(data / "micrographs" / "mic_000.mrc") as mrc:
        assert np.isnan(mrc.data[100, 200])


def test_altered_work_files_are_made_again(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(argv(dataset, out, command="init")) == 0
    run = RunFolder(out)
    stages.prepare(run, run.stems())
    path = run.candidates_file("mic_000")
    table = dict(np.load(path))
    table["xy"] = table["xy"] + 3.0                  # edited by hand, or damaged
    np.savez(path, **table)
    capsys.readouterr()
    assert run.candidates("mic_000") is None
    stages.prepare(run, run.stems())
    said = capsys.readouterr().out
    assert f"{path} does not match its checksum (altered); making it again" in said
    np.testing.assert_array_equal(run.candidates("mic_000")["xy"], table["xy"] - 3.0)


@pytest.mark.parametrize("fault, status, message", [
    (KeyboardInterrupt(), 130, "interrupted; run the same command again to continue where it "
                               "stopped"),
    (OSError(28, "No space left on device", "/full/disk/work/x.npz"), 2,
     "error: /full/disk/work/x.npz: No space left on device; free space or choose a writable "
     "folder, then run the same command again"),
    (PermissionError(13, "Permission denied", "/data/mic_000.mrc"), 2,   # issue 30: not "free
     "error: /data/mic_000.mrc: Permission denied; make it readable (an input) or writable "
     "(an output), then run the same command again"),                    # space"
])
def test_ctrl_c_and_a_full_disk_give_one_line(dataset, tmp_path, capsys, monkeypatch, fault,
                                              status, message):
    def stopped(*args, **kwargs):
        raise fault
    monkeypatch.setattr(stages, "prepare", stopped)
    assert main(argv(dataset, tmp_path / "o", "--model", "pretrained",
                     "--skip-training")) == status
    assert capsys.readouterr().err == f"xmipp_deep_consensus screen: {message}\n"


def test_a_deleted_settings_file_does_not_let_old_work_pass(dataset, tmp_path, capsys):
    """Work is keyed by what it was made from, not by the settings file beside it."""
    out = tmp_path / "run"
    assert main(argv(dataset, out, command="init")) == 0
    run = RunFolder(out)
    stages.prepare(run, run.stems())
    assert float(run.candidates("mic_000")["factor"]) == 1.0
    (out / "run.json").unlink()
    assert main(argv(dataset, out, "--box-size", "160", command="init")) == 0
    capsys.readouterr()
    stages.prepare(run, run.stems())
    assert "mic_000: its micrograph, picks or settings changed" in capsys.readouterr().out
    assert float(run.candidates("mic_000")["factor"]) == 160 / 128


# ------------------------------------------------------------- issue 30: bad input and faults

def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_folder_holding_an_input_is_refused_before_any_work(dataset, tmp_path, capsys):
    """Issue 30, 1: -o proj with --coordinates proj/coordinates wrote the run's outputs over
    the picker's .pos files."""
    proj = tmp_path / "proj"
    shutil.copytree(dataset / "coords" / PICKERS[0], proj / "coordinates")
    for picker in PICKERS[1:]:
        shutil.copytree(dataset / "coords" / picker, proj / picker)
    before = _snapshot(proj)
    args = ["screen", "--micrographs", str(dataset / "micrographs" / "*.mrc"), "--box-size",
            "128", "-o", str(proj), "--coordinates", str(proj / "coordinates"),
            "--coordinates", str(proj / PICKERS[1]), "--coordinates", str(proj / PICKERS[2])]
    assert refused(capsys, args) == (
        f"-o {proj}: holds the input {proj / 'coordinates'} (--coordinates), and the run writes "
        "its outputs there; give an output folder that holds none of the inputs")
    assert _snapshot(proj) == before            # nothing written, nothing overwritten
    mics = tmp_path / "mics"
    shutil.copytree(dataset / "micrographs", mics)
    args = argv(dataset, tmp_path, command="init")
    args[args.index("--micrographs") + 1] = str(mics / "*.mrc")
    assert refused(capsys, args).startswith(f"-o {tmp_path}: holds the input {mics}/*.mrc "
                                            "(--micrographs)")
    assert not (tmp_path / "run.json").exists()


def test_an_output_folder_holding_a_pattern_in_the_working_folder(tmp_path, monkeypatch):
    from xmipp3_deepcons import checks
    from xmipp3_deepcons.errors import InputError
    monkeypatch.chdir(tmp_path)
    inputs = {"--micrographs": ["*.mrc"]}
    assert checks.check_output_folder("screened", inputs) == str(tmp_path / "screened")
    for out in (".", str(tmp_path.parent)):
        with pytest.raises(InputError, match=f"^-o {out}: holds the input \\*.mrc "
                                             "\\(--micrographs\\)"):
            checks.check_output_folder(out, inputs)


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "--seed -1: must be a whole number between 0 and 2147383647; give a "
                       "whole number between 0 and 2147383647"),
    (["--seed", "99999999999999999999"], "--seed 99999999999999999999: must be a whole number "
                                         "between 0 and 2147383647; give a whole number between "
                                         "0 and 2147383647"),
    (["--gpu", "banana"], "--gpu banana: 'banana' is not a GPU number; give GPU numbers as "
                          "nvidia-smi lists them, e.g. 0 or 0,1 ('-1': no GPU)"),
    (["--box-size", "64"], "--box-size 64: under 128 px: are the micrographs already "
                           "downsampled? give the particle box in the micrographs' own pixels"),
    (["--box-size", "400"], "--box-size 400: more than half the micrograph {mic} (768x768 px): "
                            "most picks would lie too close to an edge to be boxed; give the "
                            "particle box in the micrographs' own pixels"),
])
def test_seed_gpu_and_box_are_checked_before_run_json(dataset, tmp_path, capsys, extra, message):
    """Issue 30, 9, 10 and 14: a refused run writes nothing (a run.json would refuse the
    corrected command as 'a run made with other settings')."""
    out = tmp_path / "out"
    mic = dataset / "micrographs" / "mic_000.mrc"
    assert refused(capsys, argv(dataset, out, *extra, command="init")) == message.format(mic=mic)
    assert not out.exists()
    assert main(argv(dataset, out, command="init")) == 0       # the corrected command runs


def test_model_folders_that_are_no_model_give_one_line(dataset, tmp_path, capsys):
    """Issue 30, 9: a run folder, an empty folder, a folder without manifest.json."""
    run_folder = tmp_path / "run"
    assert main(argv(dataset, run_folder, command="init")) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_0.keras").write_bytes(b"x")
    for folder, problem in [
            (run_folder, f"is a run folder, not a model; give its model folder, --model "
                         f"{run_folder / 'model'}"),
            (empty, "is empty, so it is not a trained model's folder; give the folder that "
                    "training wrote (with manifest.json), or 'pretrained'"),
            (other, "has no manifest.json, so it is not a trained model's folder; give the "
                    "folder that training wrote (with manifest.json), or 'pretrained'")]:
        out = tmp_path / ("o_" + folder.name)
        assert refused(capsys, argv(dataset, out, "--model", str(folder), "--skip-training")) \
            == f"--model {folder}: {problem}"
        assert not out.exists()                          # no run.json, no model.tmp


def _pos(path, xy):
    from xmipp3_deepcons.io.coordinates import write_pos
    write_pos(str(path), np.asarray(xy, float))


def _star(path, xy):
    rows = "\n".join(f"{x:.1f} {y:.1f}" for x, y in xy)
    path.write_text(f"data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n{rows}\n")


def test_one_pickers_picks_in_another_format_are_refused(dataset, tmp_path, capsys):
    """Issue 30, 4: a .pos folder and its .star copy are one picker, not two."""
    from xmipp3_deepcons.io.coordinates import read_coordinates
    source = dataset / "coords" / PICKERS[0]
    copy = tmp_path / "as_star"
    copy.mkdir()
    for path in sorted(source.iterdir()):
        _star(copy / (path.stem + ".star"), read_coordinates(str(path)).xy[::-1])
    args = argv(dataset, tmp_path / "o", pickers=PICKERS[:2]) + ["--coordinates", str(copy)]
    assert refused(capsys, args) == (f"--coordinates {copy} and --coordinates {source} hold the "
                                     "same picks on every micrograph (in other file formats): "
                                     "they are one picker; give each picker once")


@pytest.mark.parametrize("text, line, shown, problem", [
    ("just some words\n1 2 3\n", 1, "just some words", "lies before any data_ block"),
    ("100 200\n300 400\n", 1, "100 200", "lies before any data_ block"),
    ("data_particles\n100 200\n", 2, "100 200", "is in data_particles, which has no _label "
                                                "columns"),
])
def test_malformed_pick_files_name_the_file_and_line(dataset, tmp_path, capsys, text, line,
                                                     shown, problem):
    """Issue 30, 5: read as zero picks before, silently."""
    picker = tmp_path / "picker"
    shutil.copytree(dataset / "coords" / PICKERS[0], picker)
    bad = picker / "mic_001.pos"
    bad.write_text(text)
    args = argv(dataset, tmp_path / "o", pickers=PICKERS[1:]) + ["--coordinates", str(picker)]
    assert refused(capsys, args) == (
        f"{bad} line {line}: '{shown}' {problem}; a .pos or .star file lists its picks in a "
        "data_ block under _xcoor _ycoor (Xmipp) or _rlnCoordinateX _rlnCoordinateY (RELION) "
        "labels")
    assert not (tmp_path / "o").exists()


def test_repeated_picks_of_one_picker_are_merged_with_a_count(dataset, tmp_path, capsys):
    """Issue 30, 6: every pick twice made the copies one-vote candidates (trained as
    negatives); they are merged, and the log counts them."""
    from xmipp3_deepcons.io.coordinates import read_coordinates
    picker = tmp_path / "twice"
    picker.mkdir()
    counts = {}
    for path in sorted((dataset / "coords" / PICKERS[0]).iterdir()):
        xy = read_coordinates(str(path)).xy
        counts[path.stem] = len(xy)
        _pos(picker / path.name, np.concatenate([xy, xy + [2, -1]]))   # each again, 2 px off
    out = tmp_path / "run"
    args = argv(dataset, out, pickers=PICKERS[1:], command="init") + ["--coordinates",
                                                                      str(picker)]
    assert main(args) == 0
    said = capsys.readouterr().out
    run = RunFolder(out)
    for stem, n in counts.items():
        assert (f"warning: {picker / (stem + '.pos')}: {n} of {2 * n} picks repeat another pick "
                "of the same picker within 12.8 px; merged") in said
        assert len(run.load_inputs(stem)["picks"][2]) == n


def test_picks_outside_and_micrographs_of_other_sizes_are_refused_first(dataset, tmp_path,
                                                                        capsys):
    """Issue 30, confusing: one pick out of bounds stopped the run after other micrographs
    were prepared; a too small micrograph was reported as picks outside it."""
    from xmipp3_deepcons.io.coordinates import read_coordinates
    picker = tmp_path / "picker"
    shutil.copytree(dataset / "coords" / PICKERS[0], picker)
    bad = picker / "mic_002.pos"
    _pos(bad, np.concatenate([read_coordinates(str(bad)).xy, [[900, 10]]]))
    out = tmp_path / "o"
    args = argv(dataset, out, pickers=PICKERS[1:]) + ["--coordinates", str(picker)]
    assert refused(capsys, args) == (
        f"{bad}: 1 coordinates lie outside the 768x768 px micrograph (first at x=900, y=10); "
        "were they picked on micrographs of another size or binning?")
    assert not out.exists()
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    small = data / "micrographs" / "mic_001.mrc"
    with mrcfile.new(small, overwrite=True) as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(200, 300)).astype(np.float32))
    assert refused(capsys, argv(data, out)) == (
        f"--box-size 128: more than half the micrograph {small} (300x200 px): most picks would "
        "lie too close to an edge to be boxed; give the particle box in the micrographs' own "
        "pixels")
    with mrcfile.new(small, overwrite=True) as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(100, 300)).astype(np.float32))
    assert refused(capsys, argv(data, out)) == (
        f"--box-size 128: larger than the micrograph {small} (300x100 px); give the particle "
        "box in the micrographs' own pixels, or leave that micrograph out")


def test_mixed_pixel_sizes_are_refused_with_the_names(dataset, tmp_path, capsys):
    """Issue 30, 13: the first micrograph's pixel size was used for all, CTF included."""
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    for i, size in enumerate((1.0, 1.0, 2.5)):
        with mrcfile.open(data / "micrographs" / f"mic_00{i}.mrc", "r+") as mrc:
            mrc.voxel_size = size
    assert refused(capsys, argv(data, tmp_path / "o")) == (
        "--micrographs: the micrographs have different pixel sizes in their headers "
        "(mic_000.mrc 1 Å/px, mic_002.mrc 2.5 Å/px); screen micrographs of one pixel size "
        "together, or give --sampling if the headers are wrong")
    assert main(argv(data, tmp_path / "o", "--sampling", "1.0", command="init")) == 0


def test_a_file_given_as_a_picker_folder_and_a_missing_pick_file(dataset, tmp_path, capsys):
    """Issue 30, confusing: a file as --coordinates said 'no such folder'; a micrograph without
    a pick file of one picker was zero picks without a word."""
    one = dataset / "coords" / PICKERS[0] / "mic_000.pos"
    args = argv(dataset, tmp_path / "o", pickers=PICKERS[1:]) + ["--coordinates", str(one)]
    assert refused(capsys, args) == (f"--coordinates {one}: is a file; give the folder that "
                                     f"holds one picker's files, --coordinates {one.parent}")
    picker = tmp_path / "picker"
    shutil.copytree(dataset / "coords" / PICKERS[0], picker)
    (picker / "mic_001.pos").unlink()
    args = argv(dataset, tmp_path / "run", pickers=PICKERS[1:], command="init") + [
        "--coordinates", str(picker)]
    assert main(args) == 0
    assert (f"--coordinates {picker}: no coordinate file for 1 micrograph (mic_001): no picks "
            "there from this picker") in capsys.readouterr().out


def test_a_run_folder_in_use_is_refused_and_released_after(dataset, tmp_path, capsys):
    """Issue 30, 3: two runs into one folder at once corrupted its model for good."""
    out = tmp_path / "run"
    held = RunFolder(out).lock()          # as another process's run holds it
    try:
        assert refused(capsys, argv(dataset, out, command="init")) == (
            f"-o {out}: the folder is in use by PID {os.getpid()} (another run writes into "
            "it); wait for that run to end, or give another output folder")
        assert not (out / "run.json").exists()
    finally:
        held.release()
    assert main(argv(dataset, out, command="init")) == 0
    assert main(argv(dataset, out, command="init")) == 0       # released when init ended


def test_score_and_train_check_options_before_tensorflow(tmp_path):
    """Issue 30, confusing: train/score errors took 12-36 s and printed TensorFlow's start-up
    lines first; --test-positives alone was ignored."""
    images = tmp_path / "in.xmd"
    images.write_text("data_\n")
    cases = [
        (["score", "--model", str(tmp_path), "-i", str(images), "-o", str(tmp_path / "o.xmd"),
          "--test-positives", str(images)],
         "score: error: --test-positives needs --test-negatives too: the test measures how well "
         "the model tells the two apart; give both, or neither"),
        (["train", "--positives", str(images), "--negatives", str(images), "--seed", "-1",
          "-o", str(tmp_path / "m")],
         "train: error: --seed -1: must be a whole number between 0 and 2147383647; give a "
         "whole number between 0 and 2147383647"),
        (["train", "--positives", str(images), "--negatives", str(images), "--gpu", "x",
          "-o", str(tmp_path / "m")],
         "train: error: --gpu x: 'x' is not a GPU number; give GPU numbers as nvidia-smi lists "
         "them, e.g. 0 or 0,1 ('-1': no GPU)"),
    ]
    for args, message in cases:
        code = ("import sys; from xmipp3_deepcons.cli import main; "
                f"status = main({args!r}); sys.exit(status + 10 * ('tensorflow' in sys.modules))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert (done.returncode, done.stderr) == (2, f"xmipp_deep_consensus {message}\n")
    assert not (tmp_path / "m").exists()


def test_train_with_too_few_particles_is_refused_before_tensorflow(tmp_path):
    from xmipp3_deepcons.io.images import write_stack
    from xmipp3_deepcons.io.metadata import write_particles_xmd
    write_stack(str(tmp_path / "few.mrcs"),
                np.random.default_rng(0).normal(size=(12, 128, 128)).astype(np.float32))
    xmd = tmp_path / "few.xmd"
    write_particles_xmd(str(xmd), {"image": [f"{i}@few.mrcs" for i in range(1, 13)],
                                   "enabled": [1] * 12})
    args = ["train", "--positives", str(xmd), "--negatives", str(xmd), "-o", str(tmp_path / "m")]
    code = ("import sys; from xmipp3_deepcons.cli import main; "
            f"status = main({args!r}); sys.exit(status + 10 * ('tensorflow' in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, (
        "xmipp_deep_consensus train: error: --positives: 12 particles, at least 320 are needed "
        "to train; add particles\n"))
    assert not (tmp_path / "m").exists()
