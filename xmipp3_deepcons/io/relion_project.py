"""A RELION 3.1 project's files as its programs write and read them: the micrographs STAR
(optics table first), an autopick job's coordinates, and an External job's outputs.

The conventions follow RELION 3.1.3's own code: ``decomposePipelineFileName`` (a file's path
inside its job folder), ``AutoPicker::getOutputRootName`` (``<job>/<path>_<pickname>.star``),
``Preprocessing::getCoordinateFileName`` (what Extract looks for:
``--coord_dir <job>/ --coord_suffix _<name>.star``), ``PipeLine::getOutputNodesFromStarFile``
(``RELION_OUTPUT_NODES.star``) and ``pipeline_control.h`` (the exit files).
"""
import glob
import os
import re

import numpy as np

from ..errors import InputError
from .atomic import atomic_write
from .coordinates import column_as_float, read_star_blocks

NODE_MICS = 1          # RELION 3.1 node types (pipeline_jobs.h)
NODE_MIC_COORDS = 2
EXIT_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
EXIT_FAILURE = "RELION_JOB_EXIT_FAILURE"
EXIT_ABORTED = "RELION_JOB_EXIT_ABORTED"
OUTPUT_NODES = "RELION_OUTPUT_NODES.star"
SUFFIX_PREFIX = "coords_suffix"
_JOB = re.compile(r"job\d\d\d")


def path_in_job(name):
    """The part of a pipeline file name after its ``<Type>/jobNNN/`` folder, as RELION's
    decomposePipelineFileName cuts it (the whole name when it is not in a job folder):
    autopick and extract name their per-micrograph files after it."""
    parts = name.split("/")
    for i in range(1, len(parts) - 1):
        if _JOB.match(parts[i]):
            return "/".join(parts[i + 1:])
    return name


def read_micrographs(star_path, option="--in_mics"):
    """(micrograph names as written, pixel size in Å or None) of a RELION micrographs STAR.

    RELION 3.1 keeps the pixel size in data_optics (rlnMicrographPixelSize, per optics group);
    a 3.0 file without optics may carry it per micrograph. Differing pixel sizes are refused:
    one screen works at one scale."""
    if not os.path.isfile(star_path):
        raise InputError(f"{option} {star_path}: no such file; give the micrographs STAR of a "
                         "RELION job (e.g. Import/job001/micrographs.star)")
    try:
        blocks = read_star_blocks(star_path)
    except InputError:
        raise
    except Exception as error:   # emtable's own errors: one line, not a traceback
        raise InputError(f"{option} {star_path}: not a readable STAR file ({error})") from error
    table = blocks.get("micrographs") or next(
        (t for n, t in blocks.items() if n != "optics"
         and "rlnMicrographName" in t.getColumnNames()), None)
    if table is None or "rlnMicrographName" not in table.getColumnNames():
        raise InputError(f"{option} {star_path}: no micrographs table with rlnMicrographName; "
                         "give a RELION micrographs STAR (Import, MotionCorr or CtfFind output)")
    names = [str(row.rlnMicrographName) for row in table]
    sizes = set()
    for block, label in (("optics", "rlnMicrographPixelSize"), ("optics", "rlnImagePixelSize"),
                         (None, "rlnMicrographPixelSize")):
        source = blocks.get(block) if block else table
        if source is not None and label in source.getColumnNames():
            sizes = set(np.round(column_as_float(source, label), 6).tolist())
            break
    if len(sizes) > 1:
        raise InputError(f"{option} {star_path}: micrographs of different pixel sizes "
                         f"({', '.join(f'{s:g}' for s in sorted(sizes))} Å); screen each "
                         "optics group in its own job (Select the micrographs first)")
    return names, (sizes.pop() if sizes else None)


def coordinates_suffix_file(source, option):
    """The ``coords_suffix_<name>.star`` a coordinates parameter stands for: the file itself,
    or the one in the job folder given."""
    if os.path.isdir(source):
        found = sorted(glob.glob(os.path.join(source, SUFFIX_PREFIX + "_*.star")))
        if len(found) != 1:
            raise InputError(f"{option} {source}: {len(found) or 'no'} {SUFFIX_PREFIX}_*.star "
                             "files in this job folder; give the one to use, e.g. "
                             f"{os.path.join(source, SUFFIX_PREFIX + '_autopick.star')}")
        return found[0]
    name = os.path.basename(source)
    if not (name.startswith(SUFFIX_PREFIX) and name.endswith(".star")):
        raise InputError(f"{option} {source}: not a RELION coordinates node; give a "
                         f"{SUFFIX_PREFIX}_*.star file or its job folder (e.g. AutoPick/job004/)")
    if not os.path.isfile(source):
        raise InputError(f"{option} {source}: no such file; has that job finished?")
    return source


def picker_coordinate_files(source, micrographs, option):
    """{micrograph name: its coordinate file} of one RELION picking job, for the micrographs
    that have one: ``<job folder>/<path in job without extension><suffix>``, the file name
    RELION's Extract looks for."""
    suffix_file = coordinates_suffix_file(source, option)
    folder = os.path.dirname(suffix_file)
    suffix = os.path.basename(suffix_file)[len(SUFFIX_PREFIX):]
    files = {}
    for name in micrographs:
        path = coordinate_file(folder, name, suffix)
        if os.path.isfile(path):
            files[name] = path
    if not files:
        example = coordinate_file(folder, micrographs[0], suffix) if micrographs else folder
        raise InputError(f"{option} {source}: no coordinate file for any micrograph of "
                         f"--in_mics (looked for e.g. {example}); give the picking job that "
                         "ran on these micrographs")
    return files


def coordinate_file(job_folder, micrograph, suffix):
    """Where a RELION job keeps the coordinates of ``micrograph`` (suffix: ``_autopick.star``)."""
    return os.path.join(job_folder, os.path.splitext(path_in_job(micrograph))[0] + suffix)


def write_coordinates(path, xy, score):
    """A RELION coordinate file as autopick writes it: centres in micrograph pixels and the
    score as _rlnAutopickFigureOfMerit (RELION's Extract carries it into particles.star)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    lines = ["\n# version 30001\n\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
             "_rlnAutopickFigureOfMerit #3\n"]
    lines += [f"{x:12.6f} {y:12.6f} {s:12.6f}\n" for (x, y), s in zip(xy, score)]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path) as f:
        f.write("".join(lines) + "\n")


def write_suffix_file(job_folder, name, micrographs_star):
    """``coords_suffix_<name>.star``: the coordinates node, holding the micrographs STAR the
    coordinates belong to, as RELION's autopick job writes it. Returns its path."""
    path = os.path.join(job_folder, f"{SUFFIX_PREFIX}_{name}.star")
    with atomic_write(path) as f:
        f.write(micrographs_star + "\n")
    return path


def write_output_nodes(job_folder, nodes):
    """RELION_OUTPUT_NODES.star: the nodes ([(file name, node type)]) the pipeline adds to an
    External job when it finishes."""
    lines = ["\n# version 30001\n\ndata_output_nodes\n\nloop_\n_rlnPipeLineNodeName #1\n"
             "_rlnPipeLineNodeType #2\n"]
    lines += [f"{name} {kind}\n" for name, kind in nodes]
    with atomic_write(os.path.join(job_folder, OUTPUT_NODES)) as f:
        f.write("".join(lines) + "\n")


def clear_exit(job_folder):
    """Remove the exit files of an earlier try (RELION does so before it runs a job; a job run
    by hand must too, or the pipeline reads the old outcome)."""
    for name in (EXIT_SUCCESS, EXIT_FAILURE, EXIT_ABORTED):
        try:
            os.remove(os.path.join(job_folder, name))
        except FileNotFoundError:
            pass


def mark_exit(job_folder, success):
    """Touch RELION_JOB_EXIT_SUCCESS or _FAILURE: the pipeline polls for them."""
    os.makedirs(job_folder, exist_ok=True)
    with open(os.path.join(job_folder, EXIT_SUCCESS if success else EXIT_FAILURE), "w"):
        pass
