"""cryoSPARC .cs particle datasets (issue 31): a picker's picks read as coordinates by
`screen --coordinates FILE.cs`, and the kept particles written back as particles.cs.

The .cs inputs are written with cryosparc-tools' Dataset as cryoSPARC's pickers write them:
paths of imported micrographs with cryoSPARC's uid prefix, fractional centres, the micrograph
shape as (rows, columns), the pick score in pick_stats/ncc_score."""
import os

import numpy as np
import pytest

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.io import cryosparc
from xmipp3_deepcons.io.coordinates import find_coordinate_file, read_coordinates, \
    read_star_blocks

Dataset = pytest.importorskip("cryosparc.dataset").Dataset
SHAPE = (768, 1024)   # rows, columns: not square, so x and y cannot be swapped unseen
UID = 300000000000000000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cs")
    synthetic.make_dataset(str(folder), n_micrographs=2, shape=SHAPE, n_particles=20,
                           n_junk=4, seed=4)
    return folder


def micrograph_uid(stem):
    return UID + int(stem.split("_")[1])


def cs_path(stem):
    return f"J2/imported/{micrograph_uid(stem):020d}_{stem}.mrc"


def write_picker_cs(path, picks, with_score=True):
    """{stem: Coordinates} as a cryoSPARC picker job's particles .cs."""
    n = sum(len(c) for c in picks.values())
    fields = [("location/micrograph_uid", "<u8"), ("location/exp_group_id", "<u4"),
              ("location/micrograph_path", "O"), ("location/micrograph_shape", "<u4", (2,)),
              ("location/micrograph_psize_A", "<f4"), ("location/center_x_frac", "<f4"),
              ("location/center_y_frac", "<f4"), ("location/min_dist_A", "<f4")]
    if with_score:
        fields += [("pick_stats/ncc_score", "<f4"), ("pick_stats/power", "<f4")]
    data = Dataset.allocate(n, fields)
    row = 0
    for stem, coordinates in picks.items():
        rows = slice(row, row + len(coordinates))
        data["location/micrograph_uid"][rows] = micrograph_uid(stem)
        data["location/micrograph_path"][rows] = cs_path(stem)
        data["location/micrograph_shape"][rows] = SHAPE
        data["location/micrograph_psize_A"][rows] = 2.0
        data["location/center_x_frac"][rows] = coordinates.xy[:, 0] / SHAPE[1]
        data["location/center_y_frac"][rows] = coordinates.xy[:, 1] / SHAPE[0]
        if with_score:
            data["pick_stats/ncc_score"][rows] = coordinates.score
            data["pick_stats/power"][rows] = 100.0
        row += len(coordinates)
    data.save(str(path))
    return path


def picker_picks(dataset, picker):
    folder = dataset / "coords" / picker
    stems = sorted(os.path.splitext(n)[0] for n in os.listdir(folder))
    return {s: read_coordinates(find_coordinate_file(str(folder), s)) for s in stems}


def test_a_cs_file_reads_as_the_pickers_coordinates(dataset, tmp_path):
    picks = picker_picks(dataset, "pickerA")
    path = write_picker_cs(tmp_path / "picked_particles.cs", picks)
    read = cryosparc.picker_files(str(path))
    assert sorted(read) == sorted(picks)   # cryoSPARC's uid prefix is not part of the name
    for stem, coordinates in picks.items():
        got = read[stem]
        assert got.micrograph_path == cs_path(stem)
        assert got.micrograph_uid == micrograph_uid(stem) and got.shape == SHAPE
        assert np.allclose(got.coordinates.xy, coordinates.xy, atol=1e-3)
        assert np.allclose(got.coordinates.score, coordinates.score, atol=1e-6)


def test_a_cs_file_without_a_score_gives_none(dataset, tmp_path):
    picks = picker_picks(dataset, "pickerB")
    path = write_picker_cs(tmp_path / "blob_picked.cs", picks, with_score=False)
    read = cryosparc.picker_files(str(path))
    assert all(np.isnan(m.coordinates.score).all() for m in read.values())
    assert sum(len(m.coordinates) for m in read.values()) == sum(map(len, picks.values()))


def test_a_cs_without_locations_is_refused(tmp_path, capsys, dataset):
    data = Dataset.allocate(3, [("blob/path", "O"), ("blob/idx", "<u4")])
    data.save(str(tmp_path / "extracted.cs"))
    status = main(["screen", "--micrographs", str(dataset / "micrographs" / "*.mrc"),
                   "--box-size", "128", "-o", str(tmp_path / "out"),
                   "--coordinates", str(tmp_path / "extracted.cs"),
                   "--coordinates", str(dataset / "coords" / "pickerB")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1
    assert ("extracted.cs: no location/micrograph_path, location/center_x_frac, "
            "location/center_y_frac, location/micrograph_shape") in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_screen_reads_cs_pickers_and_writes_the_kept_as_cs(dataset, tmp_path):
    a = write_picker_cs(tmp_path / "template_picks.cs", picker_picks(dataset, "pickerA"))
    b = write_picker_cs(tmp_path / "topaz_picks.cs", picker_picks(dataset, "pickerB"))
    out = tmp_path / "out"
    status = main(["screen", "--micrographs", str(dataset / "micrographs" / "*.mrc"),
                   "--box-size", "128", "-o", str(out), "--coordinates", str(a),
                   "--coordinates", str(b), "--coordinates", str(dataset / "coords" / "pickerC"),
                   "--model", "pretrained", "--network-size", "small", "--skip-training",
                   "--views", "1", "--seed", "1"])
    assert status == 0
    kept = read_star_blocks(str(out / "coordinates.star"))["particles"]
    written = Dataset.load(str(out / "particles.cs"))
    assert 10 < len(written) == len(kept)
    shape = written["location/micrograph_shape"]
    assert (shape == SHAPE).all()
    x = written["location/center_x_frac"] * shape[:, 1]
    y = written["location/center_y_frac"] * shape[:, 0]
    stems = [os.path.splitext(os.path.basename(str(row.rlnMicrographName)))[0] for row in kept]
    assert list(written["location/micrograph_path"]) == [cs_path(s) for s in stems]
    assert list(written["location/micrograph_uid"]) == [micrograph_uid(s) for s in stems]
    assert np.allclose(x, [float(r.rlnCoordinateX) for r in kept], atol=0.06)
    assert np.allclose(y, [float(r.rlnCoordinateY) for r in kept], atol=0.06)
    assert np.allclose(written["pick_stats/ncc_score"],
                       [float(r.rlnAutopickFigureOfMerit) for r in kept], atol=1e-5)
    assert len(set(written["uid"].tolist())) == len(written)   # cryoSPARC's row identity
