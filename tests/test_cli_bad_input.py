"""Bad input through the command line, as a user meets it (issue 19): one line naming the option
or file, exit status 2, no traceback, nothing written for a refused run, no input modified;
bad micrographs repaired or left out by name; altered work files made again."""
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


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad") / "data"
    synthetic.make_dataset(str(folder), n_micrographs=3, shape=(768, 768), n_particles=20,
                           n_junk=4, seed=2)
    return folder


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
    (["--epochs", "nan"], "--epochs nan: not a finite number; give e.g. 5 (the default)"),
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
                           "give e.g. 5 (the default)\n")


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
