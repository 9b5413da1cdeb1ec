"""Faults met by a run folder (issue 30): a finished run asked to continue with too few
micrographs, damaged work files and models, a network saved onto a full disk, a diverged
training, a micrograph replaced behind the run's back. The small trained run of the session
(``conftest.small_trained_run``) is shared; each test works on its own copy."""
import errno
import os
import shutil

import mrcfile
import numpy as np
import pytest

from cli_helpers import small_run_argv as screen_args
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.resources import verify_model_folder
from xmipp3_deepcons.run import stages
from xmipp3_deepcons.run.folder import RunFolder


@pytest.fixture(scope="module", autouse=True)
def short_epochs():
    """Keras epochs of 5 batches instead of 50: the faults here need a trained model, not a
    good one, and the module then takes seconds per training instead of a minute."""
    from xmipp3_deepcons.core import training
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "BATCHES_PER_KERAS_EPOCH", 5)
        yield


@pytest.fixture(scope="module")
def data(small_run_data):
    return small_run_data


@pytest.fixture(scope="module")
def trained(small_trained_run):
    """A finished run (351 training positives on 5 micrographs), shared with other files."""
    return small_trained_run


@pytest.fixture
def copy(trained, tmp_path):
    """The finished run, copied with its files' times (its micrographs are the same files)."""
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    return target


def _files(folder, names):
    return {name: (folder / name).read_bytes() for name in names}


@pytest.mark.slow
def test_a_narrower_rerun_is_refused_and_the_finished_run_kept(data, copy, capsys):
    """Issue 30, 2: it deleted training/ and model/, then stopped on 'too few positives',
    leaving the outputs of a model that no longer existed."""
    kept = ["model/manifest.json", "model/model_0.keras", "training/pass_001/manifest.json",
            "coordinates.star", "candidates.star", "run.json"]
    before = _files(copy, kept)
    capsys.readouterr()
    assert main(screen_args(data, copy, mics="mic_00[0-1].mrc")) == 2
    assert capsys.readouterr().err == (
        "xmipp_deep_consensus screen: error: too few positives to train: 133 candidates of the "
        "2 micrographs have at least 2 votes and their box inside the micrograph, 320 are "
        "needed; add micrographs or pickers, lower "
        "--min-votes, or score with an existing model (--model DIR --skip-training). The run "
        "already in the folder was left as it was\n")
    assert _files(copy, kept) == before
    assert RunFolder(copy).stems() == [f"mic_00{i}" for i in range(5)]
    assert main(screen_args(data, copy, "--epochs", "2")) == 2   # trained with epochs 1
    assert capsys.readouterr().err == (
        "xmipp_deep_consensus screen: error: --epochs 2: this run folder was trained with "
        "--epochs 1; leave --epochs out to continue it as it was made, or give a new output "
        "folder\n")
    assert main(screen_args(data, copy, "--learning-rate", "0.0002")) == 2
    assert capsys.readouterr().err == (
        f"xmipp_deep_consensus screen: error: {copy} holds a run made with other settings "
        "(learning_rate 0.0001 -> 0.0002); give a new output folder, or remove it to start "
        "over\n")
    assert _files(copy, kept) == before


@pytest.mark.slow
def test_a_discarded_model_takes_its_outputs_with_it(copy):
    run = RunFolder(copy)
    assert (copy / "coordinates.star").exists() and len(list((copy / "coordinates").iterdir())) == 5
    stages.discard_training_from(run, 1)
    left = sorted(p.name for p in copy.iterdir())
    assert left == ["inputs", "run.json", "run.lock", "screen.log", "training", "work"]
    assert not list((copy / "training").iterdir())


@pytest.mark.slow
def test_a_damaged_final_model_is_made_again_from_its_training_pass(data, copy, capsys):
    """Issue 30, 3 and 8: a model that cannot be loaded (two runs at once wrote it, or it was
    truncated) stuck the folder; a deleted manifest.json was not remade."""
    stars = _files(copy, ["coordinates.star"])
    model = copy / "model" / "model_0.keras"
    model.write_bytes(model.read_bytes()[:100000])          # truncated
    (copy / "training" / "pass_001" / "history.json").unlink()   # not part of the checksums
    capsys.readouterr()
    assert main(screen_args(data, copy)) == 0
    said = capsys.readouterr().out
    assert f"{copy / 'model'} is damaged (a network file does not match its checksum)" in said
    assert "training pass" not in said                       # copied, not trained again
    verify_model_folder(str(copy / "model"))
    assert _files(copy, ["coordinates.star"]) == stars       # the same model: the same output
    (copy / "model" / "manifest.json").unlink()
    assert main(screen_args(data, copy)) == 0
    verify_model_folder(str(copy / "model"))
    assert _files(copy, ["coordinates.star"]) == stars


@pytest.mark.slow
def test_a_damaged_training_pass_is_trained_again(data, copy, capsys):
    pass_model = copy / "training" / "pass_001" / "model_0.keras"
    pass_model.write_bytes(b"\0" * pass_model.stat().st_size)   # same size, zeroed
    (copy / "model" / "model_0.keras").write_bytes(b"PK")
    capsys.readouterr()
    assert main(screen_args(data, copy)) == 0
    said = capsys.readouterr().out
    assert (f"{copy / 'training' / 'pass_001'} is damaged (a network file or the manifest does "
            "not match); training that pass again") in said
    assert "training pass 1 done" in said
    verify_model_folder(str(copy / "training" / "pass_001"))
    verify_model_folder(str(copy / "model"))
    assert not list(copy.rglob("*.tmp")) and not list(copy.rglob(".*.partial.keras"))


@pytest.mark.slow
def test_a_damaged_preprocessed_micrograph_is_made_again(data, copy, capsys):
    """Issue 30, 8: 40 KB zeroed in work/preprocessed/<mic>.mrc was used (scores off by up to
    0.49); a truncated one was not remade."""
    run = RunFolder(copy)
    scores = {s: run.network_scores(s) for s in run.stems()}
    pre = copy / "work" / "preprocessed" / "mic_001.mrc"
    good = mrcfile.read(pre)
    stat = pre.stat()
    with open(pre, "r+b") as f:
        f.seek(20000)
        f.write(b"\0" * 40000)
    os.utime(pre, ns=(stat.st_atime_ns, stat.st_mtime_ns))     # even with its old time
    truncated = copy / "work" / "preprocessed" / "mic_003.mrc"
    truncated.write_bytes(truncated.read_bytes()[:50000])
    capsys.readouterr()
    assert main(screen_args(data, copy)) == 0
    said = capsys.readouterr().out
    for stem in ("mic_001", "mic_003"):
        assert (f"{copy / 'work' / 'preprocessed' / stem}.mrc does not match its checksum "
                f"(damaged or truncated); preparing {stem} again") in said
    assert said.count("preparing") == 2
    np.testing.assert_array_equal(mrcfile.read(pre), good)
    for stem, before in scores.items():
        np.testing.assert_array_equal(run.network_scores(stem), before)


@pytest.mark.slow
def test_a_micrograph_replaced_with_the_same_size_and_time_is_hashed_again(data, tmp_path):
    """Issue 30, 11: the digest was cached by size and modification time only."""
    mic = tmp_path / "mic.mrc"
    shutil.copy(data / "micrographs" / "mic_000.mrc", mic)
    run = RunFolder(tmp_path / "run")
    first = run.micrograph_digest("mic", str(mic))
    stat = mic.stat()
    replacement = tmp_path / "new.mrc"
    shutil.copy(data / "micrographs" / "mic_001.mrc", replacement)
    assert replacement.stat().st_size == stat.st_size
    os.replace(replacement, mic)
    os.utime(mic, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (mic.stat().st_size, mic.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    second = run.micrograph_digest("mic", str(mic))
    assert second != first
    assert second == run.micrograph_digest("mic2", str(data / "micrographs" / "mic_001.mrc"))


@pytest.mark.slow
def test_a_diverging_screen_stops_with_one_line(data, tmp_path, capsys):
    """Issue 30, 7: --learning-rate 1e6 gave loss 1e21, every score 0 and exit 0."""
    out = tmp_path / "run"
    assert main(screen_args(data, out, "--learning-rate", "1e6")) == 2
    err = capsys.readouterr().err
    assert err.startswith("xmipp_deep_consensus screen: error: model 1/1: training diverged at "
                          "epoch 1 of 2 (loss ")
    assert err.endswith("); lower the learning rate (now 1e+06), e.g. to 100000, and train "
                        "again\n")
    assert not (out / "model").exists() and not (out / "coordinates.star").exists()
    assert not (out / "training" / "pass_001" / "manifest.json").exists()
    assert main(screen_args(data, out, "--learning-rate", "1e-4", command="init")) == 0
    assert RunFolder(out).settings().learning_rate == 1e-4    # the lower rate, same folder


def _boxes(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 128, 128)).astype(np.float32)


@pytest.mark.slow
def test_a_full_disk_while_a_network_is_saved_leaves_no_part_of_it(tmp_path, monkeypatch):
    """Issue 30, 12: 2.0 of 6.5 MB of model_0.keras were left under its final name."""
    from xmipp3_deepcons.core import training

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    folder = tmp_path / "model"
    with pytest.raises(OSError, match="No space left"):
        training.train_ensemble([(_boxes(320), 1)], [(_boxes(40, 1), 1)], str(folder),
                                n_models=1, epochs=0.1, band="small", seed=1, min_batches=2,
                                auto_stop=False, log=lambda line: None)
    assert sorted(os.listdir(folder)) == []


def test_a_network_confidently_wrong_at_chance_has_diverged():
    """Issue 30, 7: `train --learning-rate 1e6` ended with val_acc 0.356 (answering one class)
    and exit 0. A loss of a guess (0.69) at chance is a network that learnt nothing yet, not a
    diverged one."""
    from xmipp3_deepcons.core.training import EpochRecorder
    recorder = EpochRecorder(lambda line: None, 1, 3, 4)
    recorder.history.update(loss=[9.1, 8.7], val_accuracy=[0.356, 0.356])
    error = recorder.divergence(1e6, chance=0.644)
    assert str(error) == ("model 1/3: training diverged (loss 8.7 after 2 epochs, best validation "
                          "accuracy 0.356: no better than answering one class, 0.644); lower "
                          "the learning rate (now 1e+06), e.g. to 100000, and train again")
    recorder.history.update(loss=[0.71, 0.69])
    assert recorder.divergence(1e-4, chance=0.644) is None
    recorder.history.update(loss=[9.1, 8.7], val_accuracy=[0.356, 0.81])
    assert recorder.divergence(1e-4, chance=0.644) is None
