"""Pickers' native outputs read as each picker writes them (RELION autopick 3.1 / 4, Topaz extract,
crYOLO CBOX / EMAN), matched to micrographs by name, with one clear line when nothing matches."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main, screen
from xmipp3_deepcons.errors import InputError
from xmipp3_deepcons.io.coordinates import read_star_blocks, write_coordinates_star
from xmipp3_deepcons.io.images import write_mrc
from xmipp3_deepcons.io.picker_outputs import (PickerSpec, open_picker, parse_picker_spec,
                                               read_cbox, read_picker_output)

STEMS = ["Falcon_2012_06_12-14_33_35_0", "Falcon_2012_06_12-15_30_21_0"]
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "empiar10017")


def picks(seed, n):
    """n picks with scores between -8 and 4, as Topaz and RELION would give."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(100, 900, (n, 2))), np.round(rng.uniform(-8, 4, n), 4)


# ------------------------------------------------------------------------------- writers

def write_topaz(path, picks_by_name):
    """As topaz/extract.py writes without --per-micrograph: a tab header, then
    name<TAB>x<TAB>y<TAB>score per pick, every micrograph in one file."""
    with open(path, "w") as f:
        print("image_name\tx_coord\ty_coord\tscore", file=f)
        for name, (xy, score) in picks_by_name.items():
            for (x, y), s in zip(xy.astype(int), score.astype(np.float32)):
                print(f"{name}\t{x}\t{y}\t{s}", file=f)


def write_relion_coords(path, xy, fom):
    """A per-micrograph file as RELION 3.1's LoG autopicker writes it (MetaDataTable::write)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n# version 30001\n\ndata_\n\nloop_ \n_rlnCoordinateX #1 \n_rlnCoordinateY #2 \n"
                "_rlnAutopickFigureOfMerit #3 \n_rlnClassNumber #4 \n_rlnAnglePsi #5 \n")
        for (x, y), s in zip(xy, fom):
            f.write(f"{x:12.6f} {y:12.6f} {s:12.6f} {0:12d} {0.0:12.6f} \n")
        f.write(" \n")


def write_cbox_star(path, corners, size, confidence):
    """crYOLO >= 1.8's .cbox (CoordsIO.write_cbox_file through pyStarDB): data_global,
    data_cryolo with 11 columns and <NA> for what a 2D pick lacks, data_cryolo_include."""
    labels = ["CoordinateX", "CoordinateY", "CoordinateZ", "Width", "Height", "Depth",
              "EstWidth", "EstHeight", "Confidence", "NumBoxes", "Angle"]
    with open(path, "w") as f:
        f.write("\ndata_global\n\n_cbox_format_version  1.0 \n\ndata_cryolo\n\nloop_\n")
        f.write("".join(f"_{label} #{i}\n" for i, label in enumerate(labels, 1)))
        for (x, y), c in zip(corners, confidence):
            f.write(f" {x:11.6f}  {y:11.6f} <NA>        {size:11.6f}  {size:11.6f} <NA>       "
                    f" {size - 10:11.6f}  {size - 12:11.6f}  {c:8.6f} <NA>      <NA>      \n")
        f.write("\ndata_cryolo_include\n\nloop_\n_slice_index #1\n\n")


def write_eman_box(path, corners, size):
    """crYOLO's EMAN/*.box: x<TAB>y<TAB>w<TAB>h, the box's corner."""
    with open(path, "w") as f:
        for x, y in corners:
            f.write(f"{x}\t{y}\t{size}\t{size}\n")


# ------------------------------------------------------------------------------- Topaz

def test_topaz_extract_file_with_a_threshold(tmp_path):
    data = {stem: picks(i, 50) for i, stem in enumerate(STEMS)}
    path = tmp_path / "topaz_picks.txt"
    write_topaz(path, data)
    every = read_picker_output(str(path), STEMS + ["unpicked"])
    above = read_picker_output(f"{path}:score>-1", STEMS)
    for stem, (xy, score) in data.items():
        assert len(every[stem]) == 50
        np.testing.assert_allclose(every[stem].xy, xy)
        keep = score.astype(np.float32) > -1
        assert 0 < keep.sum() < 50
        np.testing.assert_allclose(above[stem].xy, xy[keep])
        assert (above[stem].score > -1).all()
    assert set(every) == set(STEMS)   # the micrograph without picks is left out


@pytest.mark.parametrize("line, problem", [("m1\t10\t20\n", "line 3: 3 values, the header names 4"),
                                           ("m1\t10\tabc\t0.5\n", "line 3: x_coord, y_coord"),
                                           ("m1\t10\tinf\t0.5\n", "line 3: a coordinate")])
def test_topaz_bad_line_is_named(tmp_path, line, problem):
    path = tmp_path / "t.txt"
    path.write_text("image_name\tx_coord\ty_coord\tscore\nm1\t1\t2\t-0.5\n" + line
                    + "m1\t3\t4\t1.5\n")
    with pytest.raises(InputError, match=problem):
        open_picker(str(path))


def test_topaz_per_micrograph_coord_files(tmp_path):
    """topaz extract --per-micrograph writes <name>.coord, each in the extract format."""
    data = {stem: picks(i, 20) for i, stem in enumerate(STEMS)}
    for stem, xy_score in data.items():
        write_topaz(tmp_path / f"{stem}.coord", {stem: xy_score})
    read = read_picker_output(f"{tmp_path}:score>=0", STEMS)
    for stem, (xy, score) in data.items():
        np.testing.assert_allclose(read[stem].xy, xy[score.astype(np.float32) >= 0])


def test_threshold_syntax():
    assert parse_picker_spec("a/topaz.txt:score>-1") == PickerSpec("a/topaz.txt", -1.0, False)
    assert parse_picker_spec("x.txt:score >= 0.25") == PickerSpec("x.txt", 0.25, True)
    assert parse_picker_spec("folder/") == PickerSpec("folder/")
    with pytest.raises(InputError, match="PATH:score>T"):
        parse_picker_spec("topaz.txt:score<2")


def test_topaz_names_that_match_no_micrograph(tmp_path):
    path = tmp_path / "topaz.txt"
    write_topaz(path, {"mic_001": picks(0, 3), "mic_002": picks(1, 3)})
    with pytest.raises(InputError) as error:
        read_picker_output(str(path), STEMS)
    text = str(error.value)
    assert text.startswith(f"--coordinates {path}: no image_name matches a micrograph stem")
    assert f"expected names like {STEMS[0]}" in text and "found mic_001, mic_002" in text


def test_threshold_on_a_picker_without_scores(tmp_path):
    folder = tmp_path / "eman"
    folder.mkdir()
    write_eman_box(folder / f"{STEMS[0]}.box", [(10, 20)], 100)
    picker = open_picker(f"{folder}:score>0")
    with pytest.raises(InputError, match="has no scores"):
        picker.read(picker.match(STEMS)[STEMS[0]])


# ------------------------------------------------------------------------------- RELION

def relion31_job(project, stems):
    """A RELION 3.1 autopick job as the pipeliner leaves it: AutoPick/job006/ with the
    micrographs' folder kept below it, summary.star and coords_suffix_autopick.star (which
    holds the input micrographs STAR's name)."""
    job = project / "AutoPick" / "job006"
    written = {}
    for i, stem in enumerate(stems):
        xy, fom = picks(10 + i, 30)
        write_relion_coords(str(job / "Movies" / f"{stem}_autopick.star"), xy, fom)
        written[stem] = (xy, fom)
    (job / "summary.star").write_text("\ndata_\n\nloop_\n_rlnMicrographName #1\n"
                                      "_rlnAutopickFigureOfMerit #2\n_rlnGroupNrParticles #3\n"
                                      + "".join(f"MotionCorr/job002/Movies/{s}.mrc 0.5 30\n"
                                                for s in stems))
    (job / "coords_suffix_autopick.star").write_text("CtfFind/job003/micrographs_ctf.star\n")
    return job, written


def test_relion31_job_folder_and_its_index(tmp_path):
    job, written = relion31_job(tmp_path, STEMS)
    for given in (job, job / "coords_suffix_autopick.star"):
        picker = open_picker(str(given))
        assert picker.kind == "RELION 3.1 autopick job (pickname autopick)"
        read = read_picker_output(str(given), STEMS + ["other"])
        assert set(read) == set(STEMS)
        for stem, (xy, fom) in written.items():
            np.testing.assert_allclose(read[stem].xy, xy)
            np.testing.assert_allclose(read[stem].score, fom, atol=1e-6)


def test_relion4_autopick_star_names_files_from_the_project(tmp_path, monkeypatch):
    job, written = relion31_job(tmp_path, STEMS)
    (job / "coords_suffix_autopick.star").unlink()
    rows = "".join(f"MotionCorr/job002/Movies/{s}.mrc AutoPick/job006/Movies/{s}_autopick.star \n"
                   for s in STEMS)
    (job / "autopick.star").write_text("\n# version 30001\n\ndata_coordinate_files\n\nloop_ \n"
                                       "_rlnMicrographName #1 \n_rlnMicrographCoordinates #2 \n"
                                       + rows + " \n")
    monkeypatch.chdir(tmp_path.parent)     # not the project: paths resolve from the index
    for given in (job, job / "autopick.star"):
        picker = open_picker(str(given))
        assert picker.kind == "RELION autopick.star" and picker.what == "_rlnMicrographName"
        read = read_picker_output(str(given), STEMS)
        for stem, (xy, _) in written.items():
            np.testing.assert_allclose(read[stem].xy, xy)


def test_relion4_index_naming_a_missing_file(tmp_path):
    job = tmp_path / "AutoPick" / "job007"
    job.mkdir(parents=True)
    (job / "autopick.star").write_text("data_coordinate_files\nloop_\n_rlnMicrographName\n"
                                       "_rlnMicrographCoordinates\n"
                                       "m/a.mrc AutoPick/job007/m/a_autopick.star\n")
    with pytest.raises(InputError, match="lists AutoPick/job007/m/a_autopick.star, which is not"):
        open_picker(str(job))


def test_suffix_after_the_micrograph_name_in_a_plain_folder(tmp_path):
    folder = tmp_path / "picks"
    folder.mkdir()
    xy, fom = picks(3, 12)
    write_relion_coords(str(folder / "mic_1_autopick.star"), xy, fom)
    write_relion_coords(str(folder / "mic_10_autopick.star"), xy[:5], fom[:5])
    read = read_picker_output(str(folder), ["mic_1", "mic_10", "mic_2"])
    assert {k: len(v) for k, v in read.items()} == {"mic_1": 12, "mic_10": 5}
    write_relion_coords(str(folder / "mic_1_manualpick.star"), xy, fom)
    with pytest.raises(InputError, match="two file names for micrograph mic_1"):
        read_picker_output(str(folder), ["mic_1", "mic_10"])


@pytest.mark.skipif(shutil.which("relion_autopick") is None,
                    reason="relion_autopick is not installed (Debian: apt-get install relion)")
def test_real_relion_autopick_log_output(tmp_path):
    """RELION 3.1's own LoG autopicker on two generated micrographs; its output folder is read
    as it is: the pick counts are those RELION's summary.star reports, and the picks lie on
    the generated particles (x = column, y = row)."""
    rng = np.random.default_rng(1)
    os.makedirs(tmp_path / "Micrographs")
    truth = {}
    for i in range(2):
        image, particles, _ = synthetic.generated_micrograph(rng, (512, 512), 12, 2, 128, 0.5)
        write_mrc(str(tmp_path / "Micrographs" / f"mic_{i:03d}.mrc"), image, pixel_size=2.0)
        truth[f"mic_{i:03d}"] = particles
    (tmp_path / "mics.star").write_text(
        "data_optics\nloop_\n_rlnOpticsGroupName\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n"
        "_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\nopticsGroup1 1 2.0 300 "
        "2.7 0.1\n\ndata_micrographs\nloop_\n_rlnMicrographName\n_rlnOpticsGroup\n"
        + "".join(f"Micrographs/{s}.mrc 1\n" for s in truth))
    subprocess.run(["relion_autopick", "--i", "mics.star", "--odir", "AutoPick/job006/",
                    "--pickname", "autopick", "--LoG", "--LoG_diam_min", "60", "--LoG_diam_max",
                    "100", "--angpix", "2.0", "--shrink", "0", "--lowpass", "20"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    job = tmp_path / "AutoPick" / "job006"
    summary = read_star_blocks(str(job / "summary.star"))[""]
    counts = dict(zip((os.path.splitext(os.path.basename(m))[0]
                       for m in summary.getColumnValues("rlnMicrographName")),
                      map(int, summary.getColumnValues("rlnGroupNrParticles"))))
    read = read_picker_output(str(job), list(truth))
    assert {stem: len(c) for stem, c in read.items()} == counts
    for stem, particles in truth.items():
        distance = np.hypot(*(particles[:, None, :] - read[stem].xy[None]).transpose(2, 0, 1))
        assert (distance.min(axis=1) < 15).mean() >= 0.9
        assert np.isfinite(read[stem].score).all()


# ------------------------------------------------------------------------------- crYOLO

def cryolo_output(root, stems, size=200):
    """crYOLO's prediction folder: CBOX/ (every detection, with confidences) and EMAN/ (those
    at or above its threshold, 0.3 by default)."""
    (root / "CBOX").mkdir(parents=True)
    (root / "EMAN").mkdir()
    (root / "DISTR").mkdir()
    written = {}
    for i, stem in enumerate(stems):
        corners, _ = picks(20 + i, 40)
        confidence = np.linspace(0.05, 0.95, 40)
        write_cbox_star(root / "CBOX" / f"{stem}.cbox", corners, size, confidence)
        write_eman_box(root / "EMAN" / f"{stem}.box", corners[confidence >= 0.3].astype(int), size)
        written[stem] = (corners + size / 2, confidence)
    return written


def test_cryolo_root_reads_cbox_with_cryolos_default_threshold(tmp_path):
    written = cryolo_output(tmp_path / "cryolo", STEMS)
    picker = open_picker(str(tmp_path / "cryolo"))
    assert picker.kind == "crYOLO output (its CBOX folder)"
    default = read_picker_output(str(tmp_path / "cryolo"), STEMS)
    lower = read_picker_output(f"{tmp_path / 'cryolo'}:score>=0.1", STEMS)
    eman = read_picker_output(str(tmp_path / "cryolo" / "EMAN"), STEMS)
    for stem, (centres, confidence) in written.items():
        keep = confidence >= 0.3
        np.testing.assert_allclose(default[stem].xy, centres[keep])
        np.testing.assert_allclose(default[stem].score, confidence[keep], atol=1e-6)
        np.testing.assert_allclose(eman[stem].xy, default[stem].xy)   # the same picks
        assert len(lower[stem]) == (confidence >= 0.1).sum() > len(default[stem])


def test_cryolo_root_without_cbox_reads_eman(tmp_path):
    written = cryolo_output(tmp_path / "cryolo", STEMS)
    shutil.rmtree(tmp_path / "cryolo" / "CBOX")
    picker = open_picker(str(tmp_path / "cryolo"))
    assert picker.kind == "crYOLO output (its EMAN folder)"
    read = read_picker_output(str(tmp_path / "cryolo"), STEMS)
    assert {s: len(c) for s, c in read.items()} == {s: int((c >= 0.3).sum())
                                                    for s, (_, c) in written.items()}


def test_cryolo_y_counts_from_the_bottom_of_a_jpeg(tmp_path):
    """crYOLO reads JPEG/TIFF micrographs upside down (Scipion's crYOLO plugin flips y for
    them), MRC images (ISPG 0) as stored: the same .cbox gives y = height - y on a JPEG."""
    from PIL import Image
    Image.fromarray(np.zeros((700, 1000), np.uint8)).save(tmp_path / "m.jpg")
    write_mrc(str(tmp_path / "m.mrc"), np.zeros((700, 1000), np.float32))
    (tmp_path / "out" / "CBOX").mkdir(parents=True)
    write_cbox_star(tmp_path / "out" / "CBOX" / "m.cbox", [(100, 50), (300, 400)], 100, [0.9, 0.8])
    picker = open_picker(str(tmp_path / "out"))
    np.testing.assert_allclose(picker.read("m", str(tmp_path / "m.mrc")).xy,
                               [[150, 100], [350, 450]])
    np.testing.assert_allclose(picker.read("m", str(tmp_path / "m.jpg")).xy,
                               [[150, 600], [350, 250]])
    (tmp_path / "out" / "EMAN").mkdir()
    write_eman_box(tmp_path / "out" / "EMAN" / "m.box", [(100, 50)], 100)
    eman = open_picker(str(tmp_path / "out" / "EMAN"))
    np.testing.assert_allclose(eman.read("m", str(tmp_path / "m.jpg")).xy, [[150, 600]])


def test_old_tab_separated_cbox(tmp_path):
    path = tmp_path / "m.cbox"
    path.write_text("10\t20\t100\t100\t0.8\t90\t95\n50.5\t60\t100\t100\t0.2\t90\t95\n")
    back = read_cbox(str(path))
    np.testing.assert_allclose(back.xy, [[60, 70], [100.5, 110]])
    np.testing.assert_allclose(back.score, [0.8, 0.2])


# ------------------------------------------------------------------------------- others

def test_shared_weak_pickers_read_directly():
    """The RELION LoG and Topaz general picks in the shared EMPIAR-10017 folder, as they are:
    the pick counts its README reports (3273; Topaz with score > -1: 2889)."""
    here = os.path.join(SHARED, "picks_here")
    if not os.path.isdir(here):
        pytest.skip(f"{here} is not there")
    stems = [os.path.splitext(n)[0] for n in os.listdir(os.path.join(SHARED, "micrographs"))]
    total = {spec: sum(len(c) for c in read_picker_output(os.path.join(here, spec), stems).values())
             for spec in ("relionLoG", "topazGeneral:score>-1")}
    assert total == {"relionLoG": 3273, "topazGeneral:score>-1": 2889}


def test_one_star_file_listing_every_micrograph(tmp_path):
    xy, score = picks(5, 9)
    names = [f"MotionCorr/job002/{STEMS[i % 2]}.mrc" for i in range(9)]
    write_coordinates_star(str(tmp_path / "coordinates.star"), names, xy, score)
    read = read_picker_output(str(tmp_path / "coordinates.star"), STEMS)
    np.testing.assert_allclose(read[STEMS[0]].xy, xy[0::2])
    np.testing.assert_allclose(read[STEMS[1]].score, score[1::2], atol=1e-6)


def test_a_file_that_is_no_picker_output(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x y\n1 2\n")
    with pytest.raises(InputError, match="Topaz's extract output"):
        open_picker(str(path))


# ------------------------------------------------------------------------------- screen

def test_screen_takes_three_native_formats(dataset, tmp_path):
    """A Topaz file with a threshold, a RELION 3.1 job and a crYOLO root, side by side: each
    micrograph gets exactly the picks each picker wrote for it."""
    stems = ["mic_000", "mic_001"]
    topaz = {stem: picks(30 + i, 25) for i, stem in enumerate(stems)}
    write_topaz(tmp_path / "topaz.txt", topaz)
    job, relion = relion31_job(tmp_path / "relion", stems)
    cryolo = cryolo_output(tmp_path / "cryolo", stems)
    specs = [f"{tmp_path / 'topaz.txt'}:score>-1", str(job), str(tmp_path / "cryolo")]
    pickers = [open_picker(spec) for spec in specs]
    micrographs = sorted(str(p) for p in (dataset / "micrographs").glob("*.mrc"))
    notes = []
    inputs = screen.match_inputs(micrographs, pickers, [p.label for p in pickers], [1.0] * 3,
                                 notes)
    assert [stem for stem, *_ in inputs] == stems
    assert "keeping score > -1" in notes[0] and "keeping score >= 0.3" in notes[2]
    for stem, _, xy, _ in inputs:
        expected = [topaz[stem][0][topaz[stem][1].astype(np.float32) > -1], relion[stem][0],
                    cryolo[stem][0][cryolo[stem][1] >= 0.3]]
        for got, want in zip(xy, expected):
            np.testing.assert_allclose(got, want)


def test_screen_refuses_a_picker_matching_no_micrograph(dataset, tmp_path, capsys):
    write_topaz(tmp_path / "topaz.txt", {"Falcon_1": picks(0, 4)})
    argv = ["screen", "--micrographs", str(dataset / "micrographs" / "*.mrc"), "--box-size",
            "128", "-o", str(tmp_path / "out"), "--coordinates",
            str(dataset / "coords" / "pickerA"), "--coordinates",
            f"{tmp_path / 'topaz.txt'}:score>-1"]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "topaz.txt:score>-1: no image_name matches a micrograph stem" in lines[0]
    assert "expected names like mic_000, mic_001; found Falcon_1" in lines[0]
    assert not (tmp_path / "out").exists()


def test_screen_refuses_one_topaz_file_given_twice(dataset, tmp_path, capsys):
    write_topaz(tmp_path / "t.txt", {"mic_000": picks(0, 4), "mic_001": picks(1, 4)})
    base = ["screen", "--micrographs", str(dataset / "micrographs" / "*.mrc"), "--box-size",
            "128", "-o", str(tmp_path / "out")]
    assert main(base + ["--coordinates", str(tmp_path / "t.txt"),
                        "--coordinates", str(tmp_path / "t.txt")]) == 2
    assert "is given twice" in capsys.readouterr().err
    pickers = [open_picker(f"{tmp_path / 't.txt'}{s}") for s in ("", ":score>0")]
    screen.check_distinct_pickers(["a", "b"], pickers)   # two thresholds: two picker sets
