"""Deep Consensus as a RELION 3.1 External job (issue 31).

The real test drives a real RELION 3.1 headless with relion_pipeliner: Import of generated
micrographs, two Laplacian-of-Gaussian AutoPick jobs with different settings, the External job,
Extract of its output node. RELION comes from Debian (`apt-get install relion`), installed here
when missing and running as root; the test is skipped, with the reason, otherwise. The other
tests check the RELION project conventions without RELION.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.io import relion_project as relion
from xmipp3_deepcons.io.coordinates import read_coordinates, read_star_blocks
from xmipp3_deepcons.run.folder import RunFolder

PIXEL = 2.0
# Small and quick, but enough two-vote positives to train (320): three 1536 px micrographs.
MICROGRAPHS, SHAPE, PARTICLES = 3, (1536, 1536), 120
SCREEN = ("box-size 128;epochs 1;models 1;min-batches 0;train-size 320;views 1;"
          "picker-evidence votes;seed 3")
PIPELINE_START = "\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 1\n\n"


# ------------------------------------------------------------------ without RELION

def test_path_in_job_cuts_as_relion_does():
    assert relion.path_in_job("MotionCorr/job002/Movies/a/mic1.mrc") == "Movies/a/mic1.mrc"
    assert relion.path_in_job("Micrographs/mic1.mrc") == "Micrographs/mic1.mrc"
    assert relion.coordinate_file("External/job005/", "CtfFind/job003/Movies/m1.mrc",
                                  "_deepcons.star") == "External/job005/Movies/m1_deepcons.star"


def write_micrographs_star(path, names, pixel_sizes):
    groups = "".join(f"opticsGroup{i + 1} {i + 1} {size} 300 2.7 0.1\n"
                     for i, size in enumerate(pixel_sizes))
    rows = "".join(f"{name} {i % len(pixel_sizes) + 1}\n" for i, name in enumerate(names))
    path.write_text("\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
                    "_rlnMicrographPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
                    "_rlnAmplitudeContrast #6\n" + groups +
                    "\n\ndata_micrographs\n\nloop_\n_rlnMicrographName #1\n"
                    "_rlnOpticsGroup #2\n" + rows)


def test_micrographs_star_pixel_size_from_optics(tmp_path):
    star = tmp_path / "micrographs.star"
    write_micrographs_star(star, ["Micrographs/a.mrc", "Micrographs/b.mrc"], [1.34])
    assert relion.read_micrographs(str(star)) == (["Micrographs/a.mrc", "Micrographs/b.mrc"],
                                                  1.34)
    write_micrographs_star(star, ["Micrographs/a.mrc", "Micrographs/b.mrc"], [1.34, 0.67])
    with pytest.raises(Exception, match="different pixel sizes .0.67, 1.34"):
        relion.read_micrographs(str(star))


def external(job, *params, in_mics="Import/job001/micrographs.star", in_coords=None):
    argv = ["relion-external", "--o", job, "--in_mics", in_mics]
    if in_coords:
        argv += ["--in_coords", in_coords]
    return main(argv + list(params))


def test_bad_parameter_fails_the_job_with_its_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.makedirs("Micrographs")
    synthetic_mic = tmp_path / "Micrographs" / "m1.mrc"
    from xmipp3_deepcons.io.images import write_mrc
    write_mrc(str(synthetic_mic), np.zeros((256, 256), np.float32), pixel_size=PIXEL)
    os.makedirs("Import/job001")
    write_micrographs_star(tmp_path / "Import/job001/micrographs.star",
                           ["Micrographs/m1.mrc"], [PIXEL])
    os.makedirs("External/job002")
    open("External/job002/RELION_JOB_EXIT_SUCCESS", "w").close()   # from an earlier try
    status = external("External/job002/", "--in_coords", "AutoPick/job009/",
                      "--box-size", "128", "--no-such-option", "1")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and err == [
        "xmipp_deep_consensus relion-external: error: parameter --no-such-option: not an "
        "option of `xmipp_deep_consensus screen`; see its --help for the labels"]
    assert os.listdir("External/job002") == ["RELION_JOB_EXIT_FAILURE"]

    status = external("External/job002/", "--micrographs", "x.mrc")
    assert status == 2 and "set by the External job from --in_mics" in capsys.readouterr().err
    status = external("External/job002/", "--in_coords", "AutoPick/job009/", "--box-size",
                      "128")
    assert status == 2 and ("--in_coords AutoPick/job009/: no such file or folder"
                            in capsys.readouterr().err)
    assert os.listdir("External/job002") == ["RELION_JOB_EXIT_FAILURE"]

    os.makedirs("AutoPick/job009")      # the engine's refusal names the job's parameter
    with open("AutoPick/job009/m1_autopick.star", "w") as star:
        star.write("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n100 100\n")
    status = external("External/job002/", "--in_coords", "AutoPick/job009/", "--box-size",
                      "100")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and err == [
        "xmipp_deep_consensus relion-external: error: parameter --box-size 100: under 128 px: "
        "are the micrographs already downsampled? give the particle box in the micrographs' "
        "own pixels"]


# ------------------------------------------------------------------ with RELION 3.1

@pytest.fixture(scope="module")
def relion_bin():
    """RELION's pipeliner: installed from Debian when missing and root, else a skip."""
    if shutil.which("relion_pipeliner") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("RELION is not installed (relion_pipeliner not on PATH) and this is "
                        "not root with apt-get to install it: apt-get install relion")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "relion"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=900)
            if done.returncode != 0:
                pytest.skip(f"cannot install RELION ({' '.join(command)}: "
                            f"{done.stderr.strip().splitlines()[-1:]})")
    if shutil.which("relion_pipeliner") is None:
        pytest.skip("apt-get install relion gave no relion_pipeliner")
    return os.path.dirname(shutil.which("relion_pipeliner"))


def deepcons_executable():
    script = os.path.join(os.path.dirname(sys.executable), "xmipp_deep_consensus")
    command = script if os.path.isfile(script) else f"{sys.executable} -m xmipp3_deepcons"
    return command + " relion-external"


def pipeliner(project, *args):
    done = subprocess.run(["relion_pipeliner", *args], cwd=project, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def add_job(project, kind, options):
    pipeliner(project, "--addJob", kind, "--addJobOptions",
              ";".join(f"{k} == {v}" for k, v in options.items()))


def run_jobs(project, *jobs):
    # RELION 3.1.3 drops the last name of --RunJobs unless the list ends with a space
    pipeliner(project, "--RunJobs", " ".join(jobs) + " ", "--sec_wait_after", "1")


def external_options(params, threads=2):
    options = {"fn_exe": deepcons_executable(), "in_mic": "Import/job001/micrographs.star",
               "in_coords": "AutoPick/job002/coords_suffix_autopick.star",
               "nr_threads": threads}
    for i, pair in enumerate(params.split(";"), 1):
        label, value = pair.split(" ", 1)
        options[f"param{i}_label"], options[f"param{i}_value"] = label, value
    return options


def job_status(project):
    table = read_star_blocks(os.path.join(project, "default_pipeline.star"))[
        "pipeline_processes"]
    return {row.rlnPipeLineProcessName: int(row.rlnPipeLineProcessStatus) for row in table}


@pytest.fixture(scope="module")
def project(relion_bin, tmp_path_factory):
    """A RELION project: Import, AutoPick LoG x2, the External job, Extract of its node."""
    root = tmp_path_factory.mktemp("relion_project")
    synthetic.make_dataset(str(root / "synthetic"), n_micrographs=MICROGRAPHS, shape=SHAPE,
                           n_particles=PARTICLES, n_junk=15, seed=5)
    shutil.copytree(root / "synthetic" / "micrographs", root / "Micrographs")
    (root / "default_pipeline.star").write_text(PIPELINE_START)
    started = time.time()
    add_job(root, "Import", {"do_raw": "Yes", "fn_in_raw": "Micrographs/*.mrc",
                             "is_multiframe": "No", "angpix": PIXEL})
    for low, high, adjust in ((50, 90, 2), (60, 120, 1.5)):
        add_job(root, "AutoPick", {"fn_input_autopick": "Import/job001/micrographs.star",
                                   "do_log": "Yes", "log_diam_min": low, "log_diam_max": high,
                                   "log_maxres": 20, "log_adjust_thr": adjust})
    add_job(root, "External", external_options(
        SCREEN + ";coordinates2 AutoPick/job003/;threshold 0.5"))
    run_jobs(root, "Import/job001/", "AutoPick/job002/", "AutoPick/job003/",
             "External/job004/")
    # Extract is set up as a user does: on the node the External job announced
    add_job(root, "Extract", {"star_mics": "Import/job001/micrographs.star",
                              "coords_suffix": "External/job004/coords_suffix_deepcons.star",
                              "extract_size": 128, "do_invert": "Yes", "do_norm": "Yes"})
    run_jobs(root, "Extract/job005/")
    add_job(root, "External", external_options(SCREEN + ";coordinates2 AutoPick/job003/;"
                                                         "threshold 1.5"))
    run_jobs(root, "External/job006/")
    return root, time.time() - started


def kept_by_the_run(root):
    """[(micrograph as the project names it, x, y, score)] of the screen's own output (its
    coordinates.star)."""
    table = read_star_blocks(str(root / "External/job004/deepcons/coordinates.star"))[
        "particles"]
    return [(os.path.relpath(os.path.join(root, row.rlnMicrographName), root),
             float(row.rlnCoordinateX), float(row.rlnCoordinateY),
             float(row.rlnAutopickFigureOfMerit)) for row in table]


def same_particles(found, expected, tolerance=0.075):
    """One to one, on the same micrographs, at the same place (coordinates.star has one
    decimal in x and y: 0.07 px at most) and with the same score."""
    if len(found) != len(expected):
        return False
    for mic in {row[0] for row in expected} | {row[0] for row in found}:
        a = np.array([row[1:] for row in found if row[0] == mic]).reshape(-1, 3)
        b = np.array([row[1:] for row in expected if row[0] == mic]).reshape(-1, 3)
        if len(a) != len(b):
            return False
        distance = np.hypot(*(a[:, None, :2] - b[None, :, :2]).transpose(2, 0, 1))
        nearest = distance.argmin(1)
        if (len(set(nearest)) != len(a) or distance.min(1).max() > tolerance
                or np.abs(a[:, 2] - b[nearest, 2]).max() > 1e-5):
            return False
    return True


@pytest.mark.slow
def test_every_job_finished_in_the_pipeline(project):
    root, seconds = project
    status = job_status(str(root))
    assert status == {"Import/job001/": 2, "AutoPick/job002/": 2, "AutoPick/job003/": 2,
                      "External/job004/": 2, "Extract/job005/": 2, "External/job006/": 3}
    edges = read_star_blocks(str(root / "default_pipeline.star"))["pipeline_output_edges"]
    assert ("External/job004/", "External/job004/coords_suffix_deepcons.star") in {
        (row.rlnPipeLineEdgeProcess, row.rlnPipeLineEdgeToNode) for row in edges}
    assert seconds < 150, f"the RELION pipeline took {seconds:.0f} s"


@pytest.mark.slow
def test_extract_has_exactly_the_kept_particles(project):
    root, _ = project
    kept = kept_by_the_run(root)
    assert 200 < len(kept) < 3 * MICROGRAPHS * PARTICLES
    assert min(score for *_, score in kept) > 0.5
    blocks = read_star_blocks(str(root / "Extract/job005/particles.star"))
    assert float(blocks["optics"][0].rlnImagePixelSize) == PIXEL
    extracted = [(row.rlnMicrographName, float(row.rlnCoordinateX), float(row.rlnCoordinateY),
                  float(row.rlnAutopickFigureOfMerit)) for row in blocks["particles"]]
    assert len(extracted) == len(kept)
    assert same_particles(extracted, kept)
    shifted = [(m, x + 0.5, y, s) for m, x, y, s in kept]   # the check can fail
    assert not same_particles(extracted, shifted)
    # ... and the run's kept set is the engine's own rule on its scores
    run = RunFolder(str(root / "External/job004/deepcons"))
    assert sum(int(run.kept(stem).sum()) for stem in run.stems()) == len(kept)


@pytest.mark.slow
def test_coordinate_files_are_relions(project):
    root, _ = project
    per_mic = [read_coordinates(str(root / f"External/job004/Micrographs/mic_{i:03d}"
                                            "_deepcons.star")) for i in range(MICROGRAPHS)]
    assert same_particles([(f"Micrographs/mic_{i:03d}.mrc", x, y, score)
                           for i, c in enumerate(per_mic) for (x, y), score in zip(c.xy, c.score)],
                          kept_by_the_run(root))
    assert all(np.all(c.score > 0.5) for c in per_mic)
    assert (root / "External/job004/coords_suffix_deepcons.star").read_text().strip() == \
        "Import/job001/micrographs.star"


@pytest.mark.slow
def test_bad_parameter_ends_the_job_failed_with_the_reason(project):
    root, _ = project
    job = root / "External/job006"
    assert (job / "RELION_JOB_EXIT_FAILURE").exists()
    assert not (job / "RELION_JOB_EXIT_SUCCESS").exists()
    assert not (job / "RELION_OUTPUT_NODES.star").exists()
    err = [line for line in (job / "run.err").read_text().splitlines() if line.strip()]
    assert err == ["xmipp_deep_consensus relion-external: error: parameter --threshold 1.5: "
                   "must be between 0 and 1; give a score threshold in [0, 1], -1 to keep "
                   "every candidate, or auto"]


@pytest.mark.slow
def test_continuing_the_job_continues_the_run(project):
    """RELION's 'continue' runs the same command again: the trained model is not trained
    again and the outputs are the same."""
    root, _ = project
    job = root / "External/job004"
    model = job / "deepcons/training/pass_001/model_0.keras"
    before = model.stat().st_mtime_ns
    files = {p: p.read_text() for p in (job / "Micrographs").iterdir()}
    command = deepcons_executable().split() + [
        "--o", "External/job004/", "--in_mics", "Import/job001/micrographs.star",
        "--in_coords", "AutoPick/job002/coords_suffix_autopick.star"]
    for pair in (SCREEN + ";coordinates2 AutoPick/job003/;threshold 0.5").split(";"):
        label, value = pair.split(" ", 1)
        command += ["--" + label, value]
    done = subprocess.run(command + ["--j", "2"], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert model.stat().st_mtime_ns == before
    assert {p: p.read_text() for p in (job / "Micrographs").iterdir()} == files
    assert (job / "RELION_JOB_EXIT_SUCCESS").exists()
