import os

import mrcfile
import numpy as np
import pytest
import xmippLib
from emtable import Table

from xmipp3_deepcons.errors import InputError
from xmipp3_deepcons.io.coordinates import (Coordinates, find_coordinate_file, read_coordinates,
                                            read_star_blocks, write_coordinates_star, write_pos)
from xmipp3_deepcons.io.images import (read_micrograph, read_pixel_size, read_stack,
                                       write_mrc, write_stack)
from xmipp3_deepcons.io.metadata import (load_images, read_image_list, read_particles_xmd,
                                         write_particles_xmd)

XY = np.array([[10.4, 20.6], [300.0, 5.0], [7.0, 4000.2]])
SCORES = np.array([0.25, 0.5, 0.75])


def _random_boxes(n, box=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, box, box)).astype(np.float32)


# ------------------------------------------------------------------------------ coordinates

def test_coordinates_defaults_and_empty():
    c = Coordinates(XY)
    assert c.xy.dtype == np.float64 and c.xy.shape == (3, 2)
    assert len(c) == 3 and np.isnan(c.score).all()
    assert len(Coordinates.empty()) == 0 and Coordinates.empty().xy.shape == (0, 2)
    with pytest.raises(ValueError):
        Coordinates(XY, [1.0])


def test_pos_round_trip_and_xmipplib_reads_it(tmp_path):
    path = str(tmp_path / "mic.pos")
    write_pos(path, XY, SCORES)
    back = read_coordinates(path)
    np.testing.assert_array_equal(back.xy, np.rint(XY))
    np.testing.assert_allclose(back.score, SCORES)
    md = xmippLib.MetaData("particles@" + path)
    assert md.size() == 3
    ids = list(md)
    assert md.getValue(xmippLib.MDL_XCOOR, ids[0]) == 10
    assert md.getValue(xmippLib.MDL_YCOOR, ids[0]) == 21
    assert md.getValue(xmippLib.MDL_XCOOR, ids[2]) == 7
    assert md.getValue(xmippLib.MDL_YCOOR, ids[2]) == 4000
    assert md.getValue(xmippLib.MDL_ZSCORE_DEEPLEARNING1, ids[1]) == pytest.approx(0.5)
    header = xmippLib.MetaData("header@" + path)
    assert header.getValue(xmippLib.MDL_PICKING_MICROGRAPH_STATE, list(header)[0]) == "Auto"


def test_pos_with_cost_and_without_score(tmp_path):
    path = str(tmp_path / "a.pos")
    write_pos(path, XY, SCORES, score_label="cost")
    np.testing.assert_allclose(read_coordinates(path).score, SCORES)
    md = xmippLib.MetaData("particles@" + path)
    assert md.getValue(xmippLib.MDL_COST, list(md)[2]) == pytest.approx(0.75)
    write_pos(path, XY)
    back = read_coordinates(path)
    assert len(back) == 3 and np.isnan(back.score).all()


def test_pos_with_manual_and_auto_blocks_concatenates_them(tmp_path):
    # emtable alone would read data_particles_auto twice: it finds blocks by prefix.
    path = tmp_path / "both.pos"
    path.write_text("# XMIPP_STAR_1 *\n#\ndata_header\nloop_\n _pickingMicrographState\nReview\n"
                    "data_particles_auto\nloop_\n _xcoor\n _ycoor\n _cost\n  5  6 0.9\n\n"
                    "  7  8 0.8\n"
                    "data_particles\nloop_\n _xcoor\n _ycoor\n  1  2\n")
    back = read_coordinates(str(path))
    np.testing.assert_array_equal(back.xy, [[5, 6], [7, 8], [1, 2]])
    np.testing.assert_allclose(back.score, [0.9, 0.8, np.nan])


def test_pos_single_row_key_value_form(tmp_path):
    path = tmp_path / "one.pos"
    path.write_text("# XMIPP_STAR_1 *\n#\ndata_particles\n _xcoor 123\n _ycoor 456\n _cost 0.3\n")
    back = read_coordinates(str(path))
    np.testing.assert_array_equal(back.xy, [[123, 456]])
    np.testing.assert_allclose(back.score, [0.3])


def test_pos_with_decimal_coordinates_after_integer_ones(tmp_path):
    # a column typed from its first row (emtable's guess) would fail on the second
    path = tmp_path / "mixed.pos"
    path.write_text("data_particles\nloop_\n _xcoor\n _ycoor\n 10 20\n 10.5 20.25\n")
    np.testing.assert_allclose(read_coordinates(str(path)).xy, [[10, 20], [10.5, 20.25]])


def test_star_round_trip_read_by_us_and_by_emtable(tmp_path):
    path = str(tmp_path / "mic.star")
    write_coordinates_star(path, ["mic 1.mrc", "mic 1.mrc", "mic 1.mrc"], XY, SCORES)
    back = read_coordinates(path)
    np.testing.assert_allclose(back.xy, np.round(XY, 1))
    np.testing.assert_allclose(back.score, SCORES)
    table = Table(fileName=path, tableName="particles")
    assert table.size() == 3
    assert table[2].rlnMicrographName == "mic 1.mrc"
    assert table[2].rlnCoordinateY == pytest.approx(4000.2)
    assert table[0].rlnAutopickFigureOfMerit == pytest.approx(0.25)


def test_relion_autopick_star_without_figure_of_merit(tmp_path):
    path = tmp_path / "mic_autopick.star"
    path.write_text("\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                    " 12.0 34.0\n 56.5 78.5\n")
    back = read_coordinates(str(path))
    np.testing.assert_allclose(back.xy, [[12, 34], [56.5, 78.5]])
    assert np.isnan(back.score).all()


def test_relion_31_star_with_optics_block_first(tmp_path):
    path = tmp_path / "parts.star"
    path.write_text("# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n"
                    "_rlnImagePixelSize #2\n1 1.5\n\n\n# version 30001\n\ndata_particles\n\n"
                    "loop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                    "_rlnAutopickFigureOfMerit #3\n\n"
                    "100.000000 200.000000 1.5\n300 400 -0.5\n")
    back = read_coordinates(str(path))
    np.testing.assert_allclose(back.xy, [[100, 200], [300, 400]])
    np.testing.assert_allclose(back.score, [1.5, -0.5])


def test_box_corner_becomes_centre(tmp_path):
    path = tmp_path / "mic.box"
    path.write_text("100\t200\t180\t180\t0.9\n0\t0\t64\t64\t0.1\n")
    back = read_coordinates(str(path))
    np.testing.assert_allclose(back.xy, [[190, 290], [32, 32]])
    np.testing.assert_allclose(back.score, [0.9, 0.1])
    (tmp_path / "four.box").write_text("10 20 50 40\n")
    back = read_coordinates(str(tmp_path / "four.box"))
    np.testing.assert_allclose(back.xy, [[35, 40]])
    assert np.isnan(back.score).all()


def test_csv_with_header_and_txt_without(tmp_path):
    (tmp_path / "a.csv").write_text("score,x,y\n0.5,1.5,2.5\n0.25,3,4\n")
    back = read_coordinates(str(tmp_path / "a.csv"))
    np.testing.assert_allclose(back.xy, [[1.5, 2.5], [3, 4]])
    np.testing.assert_allclose(back.score, [0.5, 0.25])
    (tmp_path / "b.txt").write_text("1 2\n3 4\n")
    back = read_coordinates(str(tmp_path / "b.txt"))
    np.testing.assert_allclose(back.xy, [[1, 2], [3, 4]])
    assert np.isnan(back.score).all()


def test_empty_files_give_no_coordinates(tmp_path):
    (tmp_path / "e.box").write_text("")
    (tmp_path / "e.star").write_text("")
    (tmp_path / "h.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n\n")
    (tmp_path / "h.csv").write_text("x,y,score\n")
    write_pos(str(tmp_path / "e.pos"), np.zeros((0, 2)))
    write_coordinates_star(str(tmp_path / "w.star"), [], np.zeros((0, 2)), np.zeros(0))
    for name in ("e.box", "e.star", "h.star", "h.csv", "e.pos", "w.star"):
        back = read_coordinates(str(tmp_path / name))
        assert len(back) == 0 and back.xy.shape == (0, 2) and back.score.shape == (0,), name
    assert xmippLib.MetaData("particles@" + str(tmp_path / "e.pos")).size() == 0


def test_unknown_extension_names_the_file(tmp_path):
    path = tmp_path / "mic.coords"
    path.write_text("1 2\n")
    with pytest.raises(InputError, match="mic.coords"):
        read_coordinates(str(path))


@pytest.mark.parametrize("name, text", [
    ("nocols.star", "data_particles\nloop_\n_rlnAngleRot #1\n10.0\n"),
    ("nocols.pos", "data_particles\nloop_\n _cost\n 0.5\n"),
    ("short.box", "1 2 3\n"),
    ("ragged.star", "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n3\n"),
    ("text.pos", "data_particles\nloop_\n _xcoor\n _ycoor\n a b\n"),
    ("noxy.csv", "a,b\n1,2\n"),
])
def test_unreadable_coordinates_raise_input_error_naming_the_file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        read_coordinates(str(tmp_path / name))


def test_missing_coordinate_file(tmp_path):
    with pytest.raises(InputError, match="gone.pos"):
        read_coordinates(str(tmp_path / "gone.pos"))


def test_find_coordinate_file_refuses_two_formats_that_differ(tmp_path):
    write_pos(str(tmp_path / "m.pos"), [[50, 50]])
    (tmp_path / "m.box").write_text("10 10 20 20\n")
    (tmp_path / "s.star").write_text("")
    (tmp_path / "b.box").write_text("")
    with pytest.raises(InputError, match=r"m\.pos and .*m\.box: 2 coordinate "
                                         r"files for micrograph m in one picker folder"):
        find_coordinate_file(str(tmp_path), "m")
    assert find_coordinate_file(str(tmp_path), "s") == str(tmp_path / "s.star")
    assert find_coordinate_file(str(tmp_path), "b") == str(tmp_path / "b.box")
    assert find_coordinate_file(str(tmp_path), "other") is None


def test_star_blocks_keep_exact_names(tmp_path):
    path = tmp_path / "b.star"
    path.write_text("data_optics\nloop_\n_rlnOpticsGroup\n1\n2\n"
                    "data_micrographs\nloop_\n_rlnMicrographName\n_rlnDefocusU\nm1.mrc 10000\n")
    tables = read_star_blocks(str(path))
    assert list(tables) == ["optics", "micrographs"]
    assert tables["optics"].getColumnValues("rlnOpticsGroup") == ["1", "2"]
    assert tables["micrographs"][0].rlnMicrographName == "m1.mrc"


# ------------------------------------------------------------------------------ images

def test_mrc_micrograph_and_pixel_size(tmp_path):
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = str(tmp_path / "m.mrc")
    write_mrc(path, image, pixel_size=1.77)
    back = read_micrograph(path)
    assert back.dtype == np.float32 and back.shape == (3, 4)  # rows = y, columns = x
    np.testing.assert_array_equal(back, image)
    assert read_pixel_size(path) == pytest.approx(1.77, abs=1e-3)
    write_mrc(path, image)
    assert read_pixel_size(path) is None
    assert read_pixel_size(str(tmp_path / "m.tif")) is None


def test_3d_mrc_is_refused_unless_it_holds_one_slice(tmp_path):
    movie = _random_boxes(3, box=8)
    path = str(tmp_path / "movie.mrc")
    with mrcfile.new(path) as mrc:
        mrc.set_data(movie)
    with pytest.raises(InputError, match="movie.mrc: holds 3 frames"):
        read_micrograph(path)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(movie[:1])
    np.testing.assert_array_equal(read_micrograph(path), movie[0])


def test_tiff_and_png_grayscale(tmp_path):
    import tifffile
    from PIL import Image
    page = (np.arange(5 * 6).reshape(5, 6) * 100).astype(np.uint16)
    tifffile.imwrite(str(tmp_path / "m.tif"), page)
    np.testing.assert_array_equal(read_micrograph(str(tmp_path / "m.tif")), page)
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_micrograph(str(tmp_path / "g.png")), gray)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_micrograph(str(tmp_path / "rgb.png")), gray)
    deep = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 1000)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_array_equal(read_micrograph(str(tmp_path / "d.png")), deep)


def test_unreadable_or_missing_micrograph_names_the_file(tmp_path):
    path = tmp_path / "bad.mrc"
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.mrc"):
        read_micrograph(str(path))
    (tmp_path / "bad2.mrc").write_bytes(b"\0" * 2048)
    with pytest.raises(InputError, match="bad2.mrc"):
        read_micrograph(str(tmp_path / "bad2.mrc"))
    with pytest.raises(InputError, match="nothere.mrc"):
        read_micrograph(str(tmp_path / "nothere.mrc"))
    with pytest.raises(InputError, match="nothere.mrcs"):
        read_stack(str(tmp_path / "nothere.mrcs"))


def test_written_stack_is_an_image_stack_read_by_xmipplib(tmp_path):
    boxes = _random_boxes(3, box=32)
    stack = str(tmp_path / "parts.mrcs")
    write_stack(stack, boxes, pixel_size=2.5)
    np.testing.assert_array_equal(read_stack(stack), boxes)
    with mrcfile.open(stack) as mrc:
        assert mrc.is_image_stack() and mrc.header.nz == 3
    assert read_pixel_size(stack) == pytest.approx(2.5)
    for i in (1, 2, 3):
        np.testing.assert_array_equal(xmippLib.Image(f"{i}@{stack}").getData(), boxes[i - 1])
    write_stack(stack, boxes[0])
    assert read_stack(stack).shape == (1, 32, 32)


# ------------------------------------------------------------------------------ metadata

def test_xmd_round_trip_read_by_xmipplib_and_by_us(tmp_path):
    boxes = _random_boxes(3, box=16)
    write_stack(str(tmp_path / "parts.mrcs"), boxes)
    xmd = str(tmp_path / "parts.xmd")
    abs_stack = str(tmp_path / "parts.mrcs")
    write_particles_xmd(xmd, {"image": [f"{i}@{abs_stack}" for i in (1, 2, 3)],
                              "micrograph": ["001", "001", "002"],
                              "xcoor": np.array([1.0, 2.4, 3.6]), "ycoor": [4, 5, 6],
                              "enabled": [1, 1, 1],
                              "zScoreDeepLearning1": np.array([0.1, 0.2, 0.123456789],
                                                              dtype=np.float32)})
    columns = read_particles_xmd(xmd)
    assert columns["image"][2] == f"3@{abs_stack}"
    assert columns["micrograph"] == ["001", "001", "002"]
    np.testing.assert_array_equal(columns["xcoor"], [1, 2, 4])
    assert columns["xcoor"].dtype == np.int64
    np.testing.assert_allclose(columns["zScoreDeepLearning1"],
                               np.array([0.1, 0.2, 0.123456789], dtype=np.float32))
    md = xmippLib.MetaData(xmd)
    assert md.size() == 3
    ids = list(md)
    assert md.getValue(xmippLib.MDL_IMAGE, ids[1]) == f"2@{abs_stack}"
    assert md.getValue(xmippLib.MDL_XCOOR, ids[2]) == 4
    assert md.getValue(xmippLib.MDL_ENABLED, ids[0]) == 1
    assert md.getValue(xmippLib.MDL_ZSCORE_DEEPLEARNING1, ids[2]) == pytest.approx(0.123456789)
    np.testing.assert_array_equal(xmippLib.Image(md.getValue(xmippLib.MDL_IMAGE, ids[2])).getData(),
                                  boxes[2])


def test_load_images_groups_by_stack_with_relative_paths(tmp_path):
    a, b = _random_boxes(3, seed=1), _random_boxes(2, seed=2)
    os.mkdir(tmp_path / "stacks")
    write_stack(str(tmp_path / "stacks" / "a.mrcs"), a)
    write_stack(str(tmp_path / "stacks" / "b.mrcs"), b)
    xmd = str(tmp_path / "mixed.xmd")
    write_particles_xmd(xmd, {"image": ["2@stacks/b.mrcs", "3@stacks/a.mrcs",
                                        "000001@stacks/a.mrcs", "1@stacks/b.mrcs:mrcs"]})
    assert read_image_list(xmd) == [(2, str(tmp_path / "stacks" / "b.mrcs")),
                                    (3, str(tmp_path / "stacks" / "a.mrcs")),
                                    (1, str(tmp_path / "stacks" / "a.mrcs")),
                                    (1, str(tmp_path / "stacks" / "b.mrcs"))]
    images = load_images(xmd)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, np.stack([b[1], a[2], a[0], b[0]]))
    write_particles_xmd(xmd, {"image": ["9@stacks/a.mrcs"]})
    with pytest.raises(InputError, match="out of range"):
        load_images(xmd)
    write_particles_xmd(xmd, {"xcoor": [1]})
    with pytest.raises(InputError, match="mixed.xmd"):
        load_images(xmd)


@pytest.mark.parametrize("block", ["data_", "data_noname"])
def test_read_xmd_from_an_unnamed_block(tmp_path, block):
    path = tmp_path / "plain.xmd"
    path.write_text(f"# XMIPP_STAR_1 *\n#\n{block}\nloop_\n _image\n _cost\n"
                    " 1@s.mrcs 0.5\n 2@s.mrcs 1\n")
    columns = read_particles_xmd(str(path))
    assert columns["image"] == ["1@s.mrcs", "2@s.mrcs"]
    np.testing.assert_allclose(columns["cost"], [0.5, 1.0])


def test_xmd_without_rows_and_bad_columns(tmp_path):
    path = str(tmp_path / "e.xmd")
    write_particles_xmd(path, {"image": [], "cost": []})
    columns = read_particles_xmd(path)
    assert columns["image"] == [] and len(columns["cost"]) == 0
    assert load_images(path).shape[0] == 0
    with pytest.raises(ValueError, match="differ in length"):
        write_particles_xmd(path, {"image": ["1@a"], "cost": [1.0, 2.0]})
    with pytest.raises(InputError, match="absent.xmd"):
        read_particles_xmd(str(tmp_path / "absent.xmd"))
