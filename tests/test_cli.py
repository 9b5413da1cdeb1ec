"""The command line: bad input gives one clear line and exit status 2; nothing is written over."""
import os

import numpy as np

from xmipp3_deepcons.cli import main
from xmipp3_deepcons.io.coordinates import write_pos


def screen_args(dataset, out, *extra, pickers=("pickerA", "pickerB", "pickerC"), box="128"):
    argv = ["screen", "--min-batches", "0", "--micrographs",
            str(dataset / "micrographs" / "*.mrc"), "--box-size", box,
            "-o", str(out)]
    for p in pickers:
        argv += ["--coordinates", str(dataset / "coords" / p)]
    return argv + list(extra)


def run_error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_box_under_128(dataset, tmp_path, capsys):
    line = run_error(capsys, screen_args(dataset, tmp_path / "o", box="100"))
    assert line.endswith("error: --box-size 100: under 128 px: are the micrographs already "
                         "downsampled? give the particle box in the micrographs' own pixels")
    assert not (tmp_path / "o").exists()            # refused before run.json is written


def test_one_picker_cannot_train(dataset, tmp_path, capsys):
    line = run_error(capsys, screen_args(dataset, tmp_path / "o", pickers=("pickerA",)))
    assert "at least two coordinate sets" in line and "--skip-training" in line


def test_coordinates_matching_no_micrograph(dataset, tmp_path, capsys):
    stray = tmp_path / "stray"
    stray.mkdir()
    write_pos(str(stray / "other_name.pos"), np.array([[10.0, 10.0]]))
    argv = screen_args(dataset, tmp_path / "o") + ["--coordinates", str(stray)]
    line = run_error(capsys, argv)
    assert str(stray) in line and "matches a micrograph" in line


def test_unreadable_micrograph(dataset, tmp_path, capsys):
    mics = tmp_path / "mics"
    mics.mkdir()
    (mics / "mic_000.mrc").write_bytes(b"not an mrc file")
    argv = screen_args(dataset, tmp_path / "o")
    argv[argv.index("--micrographs") + 1] = str(mics / "*.mrc")
    line = run_error(capsys, argv)
    assert "mic_000.mrc" in line


def test_coordinates_outside_the_micrograph(dataset, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    for stem in ("mic_000", "mic_001"):
        write_pos(str(outside / f"{stem}.pos"), np.array([[100.0, 100.0], [5000.0, 20.0]]))
    argv = screen_args(dataset, tmp_path / "o", pickers=("pickerA",)) + ["--coordinates", str(outside)]
    line = run_error(capsys, argv)
    assert "outside the 768x768" in line and "x=5000" in line


def test_too_few_positives_says_how_many(dataset, tmp_path, capsys):
    line = run_error(capsys, screen_args(dataset, tmp_path / "o"))
    assert "too few positives" in line and "320" in line
    found = int(line.split("positives to train: ")[1].split()[0])
    assert 0 < found < 320


def test_inputs_are_left_untouched(dataset, tmp_path, capsys):
    before = {p: os.path.getmtime(p) for p in dataset.rglob("*") if p.is_file()}
    run_error(capsys, screen_args(dataset, tmp_path / "o"))
    after = {p: os.path.getmtime(p) for p in dataset.rglob("*") if p.is_file()}
    assert before == after


def test_continuing_with_other_settings_is_refused(dataset, tmp_path, capsys):
    out = tmp_path / "o"
    init = screen_args(dataset, out, "--seed", "4")
    init[0] = "init"                                  # too few picks to train: screen refuses
    assert main(init) == 0
    line = run_error(capsys, screen_args(dataset, out, "--seed", "4", "--radius", "0.2"))
    assert "other settings" in line and "radius 0.1 -> 0.2" in line


def test_continuing_without_a_seed_keeps_the_first_one(dataset, tmp_path, capsys):
    out = tmp_path / "o"
    first = run_error(capsys, screen_args(dataset, out))
    assert "too few positives" in first and not out.exists()   # refused before any work
    init = screen_args(dataset, out)
    init[0] = "init"
    assert main(init) == 0
    from xmipp3_deepcons.run.folder import RunFolder
    seed = RunFolder(out).settings().seed
    assert f"seed {seed} (pass --seed {seed} to repeat this run)" in capsys.readouterr().out
    assert main(init) == 0
    assert RunFolder(out).settings().seed == seed
    assert "pass --seed" not in capsys.readouterr().out
