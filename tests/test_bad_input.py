"""Bad input and faults (issue 19): every one is repaired with a warning or refused in one line
that names the parameter or file and says what to do; no silent wrong results."""
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from xmipp3_deepcons import checks, resources
from xmipp3_deepcons.errors import InputError, UnusableMicrograph
from xmipp3_deepcons.io import atomic
from xmipp3_deepcons.io.coordinates import (find_coordinate_file, quote_star_value,
                                            read_coordinates, read_star_blocks,
                                            split_star_line, write_coordinates_star)
from xmipp3_deepcons.io.images import read_micrograph, write_mrc
from xmipp3_deepcons.io.metadata import load_images, read_particles_xmd, write_particles_xmd

# mrcfile warns when it writes the NaN pixels these tests are about
pytestmark = pytest.mark.filterwarnings("ignore:Data array contains NaN values")


def message(excinfo):
    return str(excinfo.value)


# ------------------------------------------------------------------------------ micrographs

def _repaired_by_hand(image, window=5):
    """The repair rule written out pixel by pixel: mean of the finite pixels in the window
    (inside the image), else the mean of every finite pixel."""
    image = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(image)
    out = image.copy()
    half = window // 2
    for r, c in zip(*np.nonzero(~finite)):
        block = image[max(r - half, 0):r + half + 1, max(c - half, 0):c + half + 1]
        kept = block[np.isfinite(block)]
        out[r, c] = kept.mean() if kept.size else image[finite].mean()
    return out


def test_non_finite_pixels_become_the_mean_of_their_neighbours(tmp_path, caplog):
    image = np.arange(49, dtype=np.float32).reshape(7, 7)
    image[3, 3], image[0, 0], image[6, 5] = np.nan, np.inf, -np.inf
    path = str(tmp_path / "m.mrc")
    write_mrc(path, image)
    with caplog.at_level(logging.WARNING, logger="xmipp3_deepcons"):
        repaired = read_micrograph(path)
    # (3, 3): the 5x5 square of 8..40 less its centre; (0, 0): 1, 2, 7, 8, 9, 14, 15, 16;
    # (6, 5): the square's part inside the image, 31..34, 38..41, 45, 46, 48
    assert repaired[3, 3] == 24.0 and repaired[0, 0] == 9.0
    assert repaired[6, 5] == np.float32(427 / 11)
    untouched = np.isfinite(image)
    np.testing.assert_array_equal(repaired[untouched], image[untouched])
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 3 non-finite pixels (NaN or Inf) replaced by the mean of the finite pixels "
        "around them"]


def test_a_hole_without_finite_neighbours_takes_the_global_mean():
    from xmipp3_deepcons.core.micrograph import repair_non_finite
    rng = np.random.default_rng(0)
    image = rng.normal(10, 2, (40, 50)).astype(np.float32)
    image[5:17, 8:20] = np.nan                      # (11, 14): no finite pixel within 2
    image[30, 40] = np.inf
    repaired, count = repair_non_finite(image)
    assert count == 145 and np.isfinite(repaired).all()
    global_mean = np.float32(image[np.isfinite(image)].astype(np.float64).mean())
    assert repaired[11, 14] == pytest.approx(global_mean, rel=1e-6)
    np.testing.assert_allclose(repaired, _repaired_by_hand(image), rtol=1e-6)


def test_preprocessing_never_outputs_non_finite_values():
    from xmipp3_deepcons.core.micrograph import preprocess_micrograph
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (300, 320)).astype(np.float32)
    image[rng.integers(0, 300, 40), rng.integers(0, 320, 40)] = np.nan
    image[10:14, 100:180] = np.inf
    for invert in (True, False):
        out = preprocess_micrograph(image, 1.5, invert=invert)
        assert out.shape == (200, 213) and np.isfinite(out).all()
    huge = rng.normal(0, 1e37, (256, 256)).astype(np.float32)   # float32 sums would overflow
    out = preprocess_micrograph(huge, 2.0)
    assert np.isfinite(out).all() and out.std() == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("fill, problem", [
    ("nan", "every pixel is NaN or Inf; leave it out or export it again"),
    ("constant", "every pixel is 5 (a blank micrograph); leave it out"),
    ("constant and nan", "every finite pixel is 5 (a blank micrograph); leave it out"),
])
def test_unusable_micrographs_name_the_file(tmp_path, fill, problem):
    image = np.full((16, 16), np.nan if fill == "nan" else 5.0, np.float32)
    if fill == "constant and nan":
        image[3, 4] = np.nan
    path = str(tmp_path / "blank.mrc")
    write_mrc(path, image)
    with pytest.raises(UnusableMicrograph) as error:
        read_micrograph(path)
    assert message(error) == f"{path}: {problem}"
    assert isinstance(error.value, InputError) and error.value.path == path


def test_movies_and_stacks_are_refused(tmp_path):
    import tifffile
    frames = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    path = str(tmp_path / "movie.mrc")
    with mrcfile.new(path) as mrc:
        mrc.set_data(frames)
    with pytest.raises(InputError) as error:
        read_micrograph(path)
    assert message(error) == (f"{path}: holds 3 frames (a movie or a stack), not one micrograph; "
                              "give aligned and summed micrographs (motion-corrected), one image "
                              "per file")
    tiff = str(tmp_path / "movie.tif")
    tifffile.imwrite(tiff, frames[:2])
    with pytest.raises(InputError, match=r"movie\.tif: holds 2 frames \(a movie or a stack\)"):
        read_micrograph(tiff)
    one = str(tmp_path / "one.mrc")
    with mrcfile.new(one) as mrc:
        mrc.set_data(frames[:1])                   # a stack of one image is a micrograph
    np.testing.assert_array_equal(read_micrograph(one), frames[0])


# ---------------------------------------------------------------------------------- training

def _boxes(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 128, 128)).astype(np.float32)


def test_training_refuses_non_finite_boxes_and_parameters(tmp_path):
    from xmipp3_deepcons.core.training import pool_groups, train_ensemble
    bad = _boxes(5)
    bad[2, 7, 7] = np.nan
    with pytest.raises(InputError) as error:
        pool_groups([(_boxes(3), 1), (bad, 0)], "positive")
    assert message(error) == ("positive boxes: 1 of 5 have NaN or Inf pixels; check the "
                              "micrographs or particle images they come from")
    positives, negatives = [(_boxes(320), 1)], [(_boxes(20, 1), 1)]
    for option, value, problem in (
            ("learning_rate", float("nan"), "the learning rate nan: not a finite number"),
            ("learning_rate", -1.0, "the learning rate -1: must be above 0"),
            ("epochs", float("inf"), "the epochs inf: not a finite number"),
            ("n_models", 0, "the number of models 0: must be a whole number of at least 1"),
            ("l2", 2.0, r"the L2 strength 2: must be in \[0, 1\]")):
        with pytest.raises(InputError, match="^" + problem):
            train_ensemble(positives, negatives, str(tmp_path), **{option: value})
    negatives[0][0][4, 0, 0] = np.inf
    with pytest.raises(InputError, match="^negative boxes: 1 of 20 have NaN or Inf pixels"):
        train_ensemble(positives, negatives, str(tmp_path))


@pytest.mark.slow
def test_a_diverging_training_stops_and_says_to_lower_the_learning_rate(tmp_path, monkeypatch):
    from xmipp3_deepcons.core import training
    from xmipp3_deepcons.errors import TrainingDiverged
    monkeypatch.setattr(training, "BATCHES_PER_KERAS_EPOCH", 2)
    folder, lines = str(tmp_path / "model"), []
    with pytest.raises(TrainingDiverged) as error:
        training.train_ensemble([(_boxes(320), 1)], [(_boxes(40, 1), 1)], folder, n_models=2,
                                epochs=0.1, learning_rate=1e30, band="small", seed=1,
                                min_batches=6, auto_stop=False, log=lines.append)
    assert message(error) == ("model 1/2: training diverged at epoch 1 of 3 (loss nan); lower "
                              "the learning rate (now 1e+30), e.g. to 1e+29, and train again")
    assert lines[-1] == message(error)
    assert not os.path.exists(os.path.join(folder, "manifest.json"))   # not a finished model


# ------------------------------------------------------------------------------------ models

SHIPPED = [resources.pretrained_model(flip, size) for flip in (False, True)
           for size in ("small", "medium", "large")]


def test_shipped_models_have_matching_checksums():
    for folder in SHIPPED:
        manifest = resources.verify_model_folder(folder)
        assert set(manifest["files"]) == {m["file"] for m in manifest["models"]}
        for name, record in manifest["files"].items():
            with open(os.path.join(folder, name), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == record["sha256"]


@pytest.fixture
def model_copy(tmp_path):
    folder = str(tmp_path / "model")
    shutil.copytree(resources.pretrained_model(False, "small"), folder)
    return folder


def _checksum_error(folder, name="model_0.keras"):
    return (f"model folder {folder}: {name} does not match its checksum in manifest.json "
            "(changed or truncated); retrain or copy the folder again")


def test_changed_or_truncated_model_files_are_refused(model_copy):
    from xmipp3_deepcons.core.ensemble import Ensemble
    from xmipp3_deepcons.core.training import train_ensemble
    path = os.path.join(model_copy, "model_0.keras")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(InputError) as error:
        Ensemble.load(model_copy)
    assert message(error) == _checksum_error(model_copy)
    with pytest.raises(InputError) as error:   # continuing training from it
        train_ensemble([(_boxes(320), 1)], [(_boxes(20, 1), 1)], model_copy + "_next",
                       init_model_dir=model_copy)
    assert message(error) == _checksum_error(model_copy)
    with open(path, "wb") as f:                # same size, one byte changed
        f.write(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    with pytest.raises(InputError) as error:
        resources.replicate_model(model_copy, model_copy + "_copies", 3)
    assert message(error) == _checksum_error(model_copy)


def test_a_truncated_model_without_checksums_is_not_file_not_found(model_copy):
    from xmipp3_deepcons.core.ensemble import Ensemble
    manifest_path = os.path.join(model_copy, "manifest.json")
    manifest = json.load(open(manifest_path))
    del manifest["files"]                      # as written before checksums were kept
    json.dump(manifest, open(manifest_path, "w"))
    path = os.path.join(model_copy, "model_0.keras")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-5000])
    with pytest.raises(InputError) as error:
        Ensemble.load(model_copy)
    assert message(error) == (f"model folder {model_copy}: model_0.keras is not a whole .keras "
                              "file (truncated or damaged); retrain or copy the folder again")


def test_malformed_manifests_give_one_line(model_copy):
    manifest_path = os.path.join(model_copy, "manifest.json")
    text = open(manifest_path).read()
    open(manifest_path, "w").write(text[:200])
    try:
        json.loads(text[:200])
    except ValueError as decode_error:
        expected = str(decode_error)
    for load in (resources.verify_model_folder, resources.model_phase_flip):
        with pytest.raises(InputError) as error:
            load(model_copy)
        assert message(error) == (f"model folder {model_copy}: manifest.json is not valid JSON "
                                  f"({expected}); retrain or copy the folder again")
    open(manifest_path, "w").write('{"band": "small"}')
    with pytest.raises(InputError) as error:
        resources.verify_model_folder(model_copy)
    assert message(error) == (f"model folder {model_copy}: manifest.json does not list the "
                              "networks (a 'models' list with a 'file' for each); retrain or "
                              "copy the folder again")
    open(manifest_path, "w").write('{"models": [{"file": "../model_0.keras"}]}')
    with pytest.raises(InputError, match="names the network file '../model_0.keras', which is "
                                         "not a file of the folder"):
        resources.verify_model_folder(model_copy)


def test_replicated_and_loaded_models_keep_their_checksums(model_copy):
    from xmipp3_deepcons.core.ensemble import Ensemble
    target = model_copy + "_three"
    resources.replicate_model(model_copy, target, 3)
    manifest = resources.verify_model_folder(target)
    source = json.load(open(os.path.join(model_copy, "manifest.json")))["files"]
    assert manifest["files"] == {f"model_{i}.keras": source["model_0.keras"] for i in range(3)}
    assert Ensemble.load(model_copy).n_models == 1


# ------------------------------------------------------------------------------- coordinates

@pytest.mark.parametrize("name, text, problem", [
    ("m.pos", "data_particles\nloop_\n _xcoor\n _ycoor\n 10 20\n nan 30\n",
     "line 6: column _xcoor is nan"),
    ("m.star", "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
               "_rlnAutopickFigureOfMerit #3\n1 2 0.5\n3 -inf 0.5\n",
     "line 9: column _rlnCoordinateY is -inf"),
    ("m.star", "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnAutopickFigureOfMerit\n"
               "1 2 nan\n3 4 inf\n",
     "line 7: column _rlnAutopickFigureOfMerit is inf"),
    ("m.box", "# corner x y, size, score\n100 200 180 180 0.9\n\n0 NaN 64 64 0.1\n",
     "line 4: column y is nan"),
    ("m.box", "100 200 inf 180 0.9\n", "line 1: column width is inf"),
    ("m.csv", "x,y,score\n1,2,0.5\n3,inf,0.1\n", "line 3: column y is inf"),
])
def test_non_finite_coordinates_name_the_file_and_line(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as error:
        read_coordinates(str(path))
    assert message(error) == f"{path}, {problem}, not a finite number; fix or remove that line"


def test_a_missing_score_may_be_nan(tmp_path):
    path = tmp_path / "m.box"
    path.write_text("100 200 180 180 nan\n")
    back = read_coordinates(str(path))
    assert back.xy.tolist() == [[190, 290]] and np.isnan(back.score).all()


def test_two_coordinate_files_for_one_micrograph_are_refused_when_they_differ(tmp_path):
    from xmipp3_deepcons.io.coordinates import write_pos
    write_pos(str(tmp_path / "m.pos"), [[100, 100], [200, 300]])
    (tmp_path / "m.box").write_text("80 80 40 40\n")                       # centre 100, 100
    with pytest.raises(InputError) as error:
        find_coordinate_file(str(tmp_path), "m")
    assert message(error) == (f"{tmp_path}/m.pos and {tmp_path}/m.box: 2 coordinate files for "
                              "micrograph m in one picker folder, with different picks (2 and "
                              "1); keep one and move the other out")
    # the same picks in two formats (one export writing both) are one set of picks
    (tmp_path / "m.box").write_text("180 280 40 40\n80 80 40 40\n")
    assert find_coordinate_file(str(tmp_path), "m") == str(tmp_path / "m.pos")
    (tmp_path / "s.star").write_text("")
    assert find_coordinate_file(str(tmp_path), "s") == str(tmp_path / "s.star")


NAMES = ["mic 1.mrc", "it's.mrc", 'say "hi".mrc', "it's \"x\" 2.mrc", "a'b\"c.mrc",
         "data_7.mrc", "_odd.mrc", "#3.mrc", "back\\slash.mrc", "plain.mrc"]
# xmippLib ends a quoted value at its quote character followed by any later space, not by a
# space right after it (STAR 1.1, as we read): it misreads a name with both kinds and a space.
XMIPP_NAMES = [n for n in NAMES if not ("'" in n and '"' in n and " " in n)]


def test_star_names_with_quotes_and_spaces_read_back_identically(tmp_path):
    import xmippLib
    from emtable import Table
    path = str(tmp_path / "coordinates.star")
    xy = np.arange(2 * len(NAMES), dtype=float).reshape(-1, 2) * 10
    score = np.linspace(0, 1, len(NAMES))
    write_coordinates_star(path, NAMES, xy, score)
    table = read_star_blocks(path)["particles"]
    assert table.getColumnValues("rlnMicrographName") == NAMES
    back = read_coordinates(path)
    np.testing.assert_allclose(back.xy, xy)
    np.testing.assert_allclose(back.score, score, atol=1e-6)   # written with 6 decimals
    write_coordinates_star(path, XMIPP_NAMES, xy[:len(XMIPP_NAMES)], score[:len(XMIPP_NAMES)])
    md = xmippLib.MetaData("particles@" + path)
    assert [md.getValue(xmippLib.RLN_MICROGRAPH_NAME, i) for i in md] == XMIPP_NAMES
    # emtable alone splits lines with shlex: it reads every name with one kind of quote
    simple = [n for n in NAMES if not ("'" in n and '"' in n)]
    write_coordinates_star(path, simple, xy[:len(simple)], score[:len(simple)])
    assert [row.rlnMicrographName for row in Table(fileName=path, tableName="particles")] == simple


def test_xmd_names_with_quotes_read_back_identically(tmp_path):
    import xmippLib
    path = str(tmp_path / "parts.xmd")
    write_particles_xmd(path, {"micrograph": NAMES, "xcoor": list(range(len(NAMES)))})
    assert read_particles_xmd(path)["micrograph"] == NAMES
    write_particles_xmd(path, {"micrograph": XMIPP_NAMES, "xcoor": [1] * len(XMIPP_NAMES)})
    md = xmippLib.MetaData("particles@" + path)
    assert [md.getValue(xmippLib.MDL_MICROGRAPH, i) for i in md] == XMIPP_NAMES


def test_star_quoting_rules(tmp_path):
    assert quote_star_value("plain.mrc") == "plain.mrc"
    assert quote_star_value("plain.mrc", always=True) == '"plain.mrc"'
    assert quote_star_value("it's") == '"it\'s"' and quote_star_value('a"b') == "'a\"b'"
    assert split_star_line("'it's' \"a\"b\" bare'q 12") == ["it's", 'a"b', "bare'q", "12"]
    with pytest.raises(ValueError, match="unclosed quote"):
        split_star_line("'open 12")
    with pytest.raises(InputError) as error:
        write_coordinates_star(str(tmp_path / "never.star"), ["a' b\" c"], [[1, 2]], [0.5])
    assert message(error) == ("the name 'a\\' b\" c' has both a ' and a \" before a space and "
                              "cannot be written as one STAR value; rename it")
    assert os.listdir(tmp_path) == []


def test_particle_images_with_nan_are_refused(tmp_path):
    from xmipp3_deepcons.io.images import write_stack
    boxes = _boxes(3)[:, :16, :16].copy()
    boxes[1, 2, 3] = np.nan
    write_stack(str(tmp_path / "p.mrcs"), boxes)
    xmd = str(tmp_path / "p.xmd")
    write_particles_xmd(xmd, {"image": [f"{i}@p.mrcs" for i in (1, 2, 3)]})
    with pytest.raises(InputError) as error:
        load_images(xmd)
    assert message(error) == (f"{xmd}: 1 of 3 images have NaN or Inf pixels (the first: "
                              f"2@{tmp_path}/p.mrcs); remove them from the metadata or extract "
                              "them again")


# ------------------------------------------------------------------------------------ checks

@pytest.mark.parametrize("call, expected", [
    (lambda: checks.check_positive("--learning-rate", -1.0, default=1e-4),
     "--learning-rate -1: must be above 0; give e.g. 0.0001 (the default)"),
    (lambda: checks.check_positive("--learning-rate", -1.0),
     "--learning-rate -1: must be above 0; give a number above 0"),
    (lambda: checks.check_threshold(1.5),
     "--threshold 1.5: must be between 0 and 1; give a score threshold in [0, 1], -1 to keep "
     "every candidate, or auto"),
    (lambda: checks.check_threshold(float("nan")),
     "--threshold nan: not a number between 0 and 1; give a score threshold in [0, 1], -1 to "
     "keep every candidate, or auto"),
    (lambda: checks.check_threshold("high"),
     "--threshold high: not a number between 0 and 1; give a score threshold in [0, 1], -1 to "
     "keep every candidate, or auto"),
    (lambda: checks.check_box_size(5000, (4096, 4096)),
     "--box-size 5000: larger than the micrographs (4096x4096 px); give the particle box in "
     "the micrographs' own pixels"),
    (lambda: checks.check_box_size(0),
     "--box-size 0: must be above 0; give the particle box in the micrographs' own pixels"),
    (lambda: checks.check_positive("--epochs", float("nan"), default=5.0),
     "--epochs nan: not a finite number; give e.g. 5 (the default)"),
    (lambda: checks.check_positive("--epochs", -3.0, default=5.0),
     "--epochs -3: must be above 0; give e.g. 5 (the default)"),
    (lambda: checks.check_training_batch(-2),
     "--training-batch -2: must be 0 or more; give a number of micrographs per training pass, "
     "or 0 to train once on all of them"),
    (lambda: checks.check_integer("--models", 0, minimum=1, default=3),
     "--models 0: must be a whole number of at least 1; give e.g. 3 (the default)"),
    (lambda: checks.check_integer("--models", 2.5, minimum=1),
     "--models 2.5: not a whole number; give a whole number of at least 1"),
    (lambda: checks.check_sampling(-2.0),
     "--sampling -2: must be above 0; give the micrographs' pixel size in Å/px (or leave it "
     "out to read it from the MRC header)"),
    (lambda: checks.check_train_size(0),
     "--train-size 0: must be -1 (every positive) or at least 320 positives; give -1 to train "
     "on every positive, or a number of at least 320"),
    (lambda: checks.check_fraction("--radius", 1.5, 0, 1, low_open=True, high_open=True),
     "--radius 1.5: must be in (0, 1); give a number in (0, 1)"),
    (lambda: checks.check_fraction("--max-val-acc", "x", 0, 1),
     "--max-val-acc x: not a number; give a number in [0, 1]"),
    (lambda: checks.check_finite("--l2", float("inf")),
     "--l2 inf: not a finite number; give a finite number"),
    (lambda: checks.check_choice("--views", 3, (1, 4, 8)),
     "--views 3: not one of the choices; give one of 1, 4, 8"),
])
def test_parameter_checks_say_what_is_wrong_and_what_to_do(call, expected):
    with pytest.raises(InputError) as error:
        call()
    assert message(error) == expected


def test_parameter_checks_return_the_values_to_use():
    assert checks.check_threshold("auto") == "auto" and checks.check_threshold(" AUTO ") == "auto"
    assert checks.check_threshold(-1) == -1.0 and checks.check_threshold("0.7") == 0.7
    assert checks.check_threshold(0) == 0.0 and checks.check_threshold(1) == 1.0
    assert checks.check_positive("--epochs", "2.5") == 2.5
    assert checks.check_integer("--models", 3.0, minimum=1) == 3
    assert checks.check_box_size(4096, (4096, 5000)) == 4096
    assert checks.check_sampling(None) is None and checks.check_sampling(1.2) == 1.2
    assert checks.check_train_size(-1) == -1 and checks.check_train_size(320) == 320
    assert checks.check_training_batch(0) == 0 and checks.check_choice("--views", "4", (1, 4)) == 4


def test_non_finite_items_are_found_chunk_by_chunk():
    stack = np.zeros((7, 3, 3), np.float32)
    stack[1, 0, 2], stack[4, 2, 2], stack[6, 1, 1] = np.nan, np.inf, -np.inf
    for chunk in (1, 2, 3, 100):
        assert checks.non_finite_items(stack, chunk).tolist() == [1, 4, 6]
    assert checks.non_finite_items(np.zeros((0, 3, 3))).tolist() == []


def test_output_folder_checks(tmp_path):
    mics, picks = tmp_path / "mics", tmp_path / "picks"
    mics.mkdir()
    picks.mkdir()
    inputs = {"--micrographs": [str(mics / "*.mrc")], "--coordinates": [str(picks)]}
    out = str(tmp_path / "new" / "out")
    assert checks.check_output_folder(out, inputs) == out and not os.path.exists(out)

    inside = str(mics / "screened")
    with pytest.raises(InputError) as error:
        checks.check_output_folder(inside, inputs)
    assert message(error) == (f"-o {inside}: is inside the input folder {mics}/*.mrc "
                              "(--micrographs); give an output folder outside the inputs")
    with pytest.raises(InputError) as error:
        checks.check_output_folder(str(picks) + "/", inputs)
    assert message(error) == (f"-o {picks}/: is the input folder given with --coordinates; give "
                              "a new folder for the outputs")

    xmd = tmp_path / "in.xmd"
    xmd.write_text("")
    with pytest.raises(InputError) as error:
        checks.check_output_folder(str(xmd), [("-i", str(xmd))])
    assert message(error) == (f"-o {xmd}: is the input file given with -i; give a new folder "
                              "for the outputs")
    with pytest.raises(InputError) as error:
        checks.check_output_folder(str(xmd))
    assert message(error) == (f"-o {xmd}: is a file, not a folder; give a folder for the "
                              "outputs (it is made if missing)")
    with pytest.raises(InputError) as error:
        checks.check_output_folder(str(tmp_path / "run"), {"--coordinates": str(
            tmp_path / "run" / "coordinates")}, writes=("coordinates", "work"))
    assert message(error) == (f"-o {tmp_path}/run: the input {tmp_path}/run/coordinates "
                              "(--coordinates) lies where the run writes its outputs; give "
                              "another output folder")


def test_an_output_folder_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = str(blocker / "out")
    with pytest.raises(InputError) as error:
        checks.check_output_folder(target)
    assert message(error) == (f"-o {target}: cannot be made ({blocker} is a file); give a "
                              "folder you can write to")
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(InputError) as error:
                checks.check_output_folder(str(locked / "out"), name="--output")
            assert message(error) == (f"--output {locked}/out: cannot write there (Permission "
                                      "denied); give a folder you can write to")
        finally:
            locked.chmod(0o700)


# ------------------------------------------------------------------------------ atomic writes

class Boom(RuntimeError):
    pass


def test_atomic_write_leaves_nothing_on_error_and_the_old_file_intact(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with atomic.atomic_write(str(target)) as f:
            f.write("half")
            raise Boom()
    assert os.listdir(tmp_path) == []
    target.write_text("old")
    with pytest.raises(Boom):
        with atomic.atomic_path(str(target)) as tmp:
            open(tmp, "w").write("new")
            raise Boom()
    assert os.listdir(tmp_path) == ["out.txt"] and target.read_text() == "old"
    with atomic.atomic_write(str(target)) as f:
        f.write("new")
    assert os.listdir(tmp_path) == ["out.txt"] and target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_writers_leave_no_partial_file(tmp_path, monkeypatch):
    from xmipp3_deepcons.io import images
    real_new = mrcfile.new

    def failing_new(path, *args, **kwargs):
        mrc = real_new(path, *args, **kwargs)
        mrc.set_data(np.zeros((4, 4), np.float32))
        mrc.close()
        raise Boom()
    monkeypatch.setattr(images.mrcfile, "new", failing_new)
    with pytest.raises(Boom):
        write_mrc(str(tmp_path / "m.mrc"), np.ones((4, 4)))
    with pytest.raises(InputError):   # a name that no STAR quoting can hold, in the 2nd row
        write_coordinates_star(str(tmp_path / "c.star"), ["ok", "a' b\" c"], [[1, 2], [3, 4]],
                               None)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------- imports

def test_checks_and_io_do_not_import_tensorflow():
    code = ("import sys\n"
            "import xmipp3_deepcons.checks, xmipp3_deepcons.io.coordinates\n"
            "import xmipp3_deepcons.io.images, xmipp3_deepcons.io.metadata\n"
            "import xmipp3_deepcons.io.atomic, xmipp3_deepcons.resources\n"
            "import xmipp3_deepcons.core.micrograph\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "assert 'tensorflow' not in sys.modules and not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))
