import numpy as np
import pytest
import xmippLib

from xmipp3_deepcons.errors import InputError
from xmipp3_deepcons.io.coordinates import (Coordinates, find_coordinate_file, read_coordinates,
                                            write_coordinates_star, write_pos)
from xmipp3_deepcons.io.images import read_micrograph, read_pixel_size, read_stack, write_mrc, write_stack
from xmipp3_deepcons.io.metadata import load_images, read_particles_xmd, write_particles_xmd

XY = np.array([[10.4, 20.6], [300.0, 5.0], [7.0, 4000.2]])
SCORES = np.array([0.25, 0.5, 0.75])


def test_pos_round_trip_and_xmipplib_reads_it(tmp_path):
    path = str(tmp_path / "mic.pos")
    write_pos(path, XY, SCORES)
    back = read_coordinates(path)
    np.testing.assert_array_equal(back.xy, np.rint(XY))
    np.testing.assert_allclose(back.score, SCORES)
    md = xmippLib.MetaData("particles@" + path)
    assert md.size() == 3
    ids = list(md)
    assert md.getValue(xmippLib.MDL_XCOOR, ids[2]) == 7
    assert md.getValue(xmippLib.MDL_YCOOR, ids[2]) == 4000
    assert md.getValue(xmippLib.MDL_ZSCORE_DEEPLEARNING1, ids[1]) == pytest.approx(0.5)


def test_pos_with_cost_and_without_score(tmp_path):
    path = str(tmp_path / "a.pos")
    write_pos(path, XY, SCORES, score_label="cost")
    np.testing.assert_allclose(read_coordinates(path).score, SCORES)
    write_pos(path, XY)
    assert np.isnan(read_coordinates(path).score).all() and len(read_coordinates(path)) == 3


def test_star_round_trip(tmp_path):
    path = str(tmp_path / "mic.star")
    write_coordinates_star(path, ["mic.mrc"] * 3, XY, SCORES)
    back = read_coordinates(path)
    np.testing.assert_allclose(back.xy, np.round(XY, 1))
    np.testing.assert_allclose(back.score, SCORES)


def test_relion_autopick_star_without_figure_of_merit(tmp_path):
    path = tmp_path / "mic_autopick.star"
    path.write_text("\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n 12.0 34.0\n 56.5 78.5\n")
    back = read_coordinates(str(path))
    np.testing.assert_allclose(back.xy, [[12, 34], [56.5, 78.5]])
    assert np.isnan(back.score).all()


def test_box_corner_becomes_centre(tmp_path):
    path = tmp_path / "mic.box"
    path.write_text("100\t200\t180\t180\t0.9\n0\t0\t64\t64\t0.1\n")
    back = read_coordinates(str(path))
    np.testing.assert_allclose(back.xy, [[190, 290], [32, 32]])
    np.testing.assert_allclose(back.score, [0.9, 0.1])


def test_empty_files_give_no_coordinates(tmp_path):
    (tmp_path / "e.box").write_text("")
    write_pos(str(tmp_path / "e.pos"), np.zeros((0, 2)))
    assert len(read_coordinates(str(tmp_path / "e.box"))) == 0
    assert len(read_coordinates(str(tmp_path / "e.pos"))) == 0
    assert len(Coordinates.empty()) == 0


def test_unknown_extension_names_the_file(tmp_path):
    path = tmp_path / "mic.coords"
    path.write_text("1 2\n")
    with pytest.raises(InputError, match="mic.coords"):
        read_coordinates(str(path))


def test_find_coordinate_file_prefers_pos(tmp_path):
    for ext in (".box", ".star", ".pos"):
        (tmp_path / f"m{ext}").write_text("")
    assert find_coordinate_file(str(tmp_path), "m").endswith("m.pos")
    assert find_coordinate_file(str(tmp_path), "other") is None


def test_mrc_micrograph_and_pixel_size(tmp_path):
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = str(tmp_path / "m.mrc")
    write_mrc(path, image, pixel_size=1.77)
    np.testing.assert_array_equal(read_micrograph(path), image)
    assert read_pixel_size(path) == pytest.approx(1.77, abs=1e-3)


def test_unreadable_micrograph_names_the_file(tmp_path):
    path = tmp_path / "bad.mrc"
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.mrc"):
        read_micrograph(str(path))


def test_stack_and_xmd_read_by_xmipplib_and_by_us(tmp_path):
    boxes = np.random.default_rng(0).normal(size=(3, 128, 128)).astype(np.float32)
    stack = str(tmp_path / "parts.mrcs")
    write_stack(stack, boxes)
    np.testing.assert_array_equal(read_stack(stack), boxes)
    np.testing.assert_allclose(xmippLib.Image(f"2@{stack}").getData(), boxes[1])

    xmd = str(tmp_path / "parts.xmd")
    write_particles_xmd(xmd, {"image": [f"{i}@parts.mrcs" for i in (1, 2, 3)],
                              "xcoor": np.array([1, 2, 3]), "zScoreDeepLearning1": [0.1, 0.2, 0.3]})
    columns = read_particles_xmd(xmd)
    assert columns["image"][2] == "3@parts.mrcs"
    np.testing.assert_allclose(columns["zScoreDeepLearning1"], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(load_images(xmd), boxes)
    md = xmippLib.MetaData(xmd)
    assert md.size() == 3
    assert md.getValue(xmippLib.MDL_ZSCORE_DEEPLEARNING1, list(md)[2]) == pytest.approx(0.3)
