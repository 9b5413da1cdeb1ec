"""`train` and `score` on Xmipp particle metadata, as the original program's --mode train/score."""
import os

import numpy as np
import pytest
import xmippLib

from xmipp3_deepcons.cli import main
from xmipp3_deepcons.cli.train import parse_weighted
from xmipp3_deepcons.io.images import write_stack
from xmipp3_deepcons.io.metadata import read_particles_xmd, write_particles_xmd


def blob_stack(folder, name, n, positive, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128] - 63.5
    boxes = rng.normal(0, 1, (n, 128, 128)).astype(np.float32)
    if positive:
        boxes += 2.0 * np.exp(-(xx ** 2 + yy ** 2) / (2 * 12 ** 2)).astype(np.float32)
    write_stack(os.path.join(folder, name + ".mrcs"), boxes)
    xmd = os.path.join(folder, name + ".xmd")
    write_particles_xmd(xmd, {"image": [f"{i}@{name}.mrcs" for i in range(1, n + 1)],
                              "enabled": [1] * n})
    return xmd


def test_weights_in_file_names():
    assert parse_weighted("a/b.xmd:3") == ("a/b.xmd", 3)
    assert parse_weighted("b.xmd:-1") == ("b.xmd", -1)
    assert parse_weighted("c:/data/b.xmd") == ("c:/data/b.xmd", 1)


@pytest.mark.slow
def test_train_then_score_with_testing(tmp_path):
    folder = str(tmp_path)
    pos = blob_stack(folder, "pos", 400, True, 0)
    neg = blob_stack(folder, "neg", 300, False, 1)
    extra_neg = blob_stack(folder, "neg_extra", 60, False, 2)
    model = os.path.join(folder, "model")
    assert main(["train", "--positives", pos, "--negatives", neg, "--negatives", extra_neg + ":-1",
                 "--epochs", "1", "--min-batches", "0", "--models", "1", "--network-size", "small",
                 "--seed", "3",
                 "-o", model]) == 0
    assert os.path.exists(os.path.join(model, "manifest.json"))

    mixed = blob_stack(folder, "mixed", 40, True, 4)
    scored = os.path.join(folder, "scored.xmd")
    test_pos = blob_stack(folder, "test_pos", 50, True, 5)
    test_neg = blob_stack(folder, "test_neg", 50, False, 6)
    assert main(["score", "--model", model, "-i", mixed, "-o", scored,
                 "--test-positives", test_pos, "--test-negatives", test_neg]) == 0
    columns = read_particles_xmd(scored)
    assert len(columns["zScoreDeepLearning1"]) == 40
    assert columns["image"][0] == "1@mixed.mrcs"
    md = xmippLib.MetaData(scored)
    values = [md.getValue(xmippLib.MDL_ZSCORE_DEEPLEARNING1, i) for i in md]
    assert all(0 <= v <= 1 for v in values) and np.mean(values) > 0.5
    labels, scores = np.loadtxt(os.path.join(folder, "testPredictions.txt"), unpack=True)
    assert len(labels) == 100 and labels.sum() == 50
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.3
    log = open(os.path.join(folder, "score.log")).read()
    assert "test roc_auc" in log


def test_missing_metadata_is_a_clear_error(tmp_path, capsys):
    status = main(["train", "--positives", str(tmp_path / "nope.xmd"), "--negatives", "x.xmd",
                   "-o", str(tmp_path / "m")])
    assert status == 2
    assert "nope.xmd" in capsys.readouterr().err
