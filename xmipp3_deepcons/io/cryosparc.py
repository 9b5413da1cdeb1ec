"""cryoSPARC particle datasets (.cs): a picker job's picks read as one picker's coordinates, and
the kept particles written back as a .cs that cryoSPARC imports.

A .cs file is a numpy structured array; cryoSPARC's own `cryosparc-tools` (``Dataset``) reads
and writes it without a server. A pick is ``location/center_x_frac``, ``location/center_y_frac``
(fractions of the micrograph's width and height) on ``location/micrograph_path`` of shape
``location/micrograph_shape`` (rows, columns), as cryoSPARC's pickers and Extract write it; the
pick score is ``pick_stats/ncc_score`` where the picker has one. Micrographs are matched by file
name without the numeric prefix cryoSPARC puts in front of imported files.
"""
import os
import re

import numpy as np

from ..errors import InputError
from .atomic import atomic_write
from .coordinates import Coordinates

X, Y = "location/center_x_frac", "location/center_y_frac"
PATH, SHAPE = "location/micrograph_path", "location/micrograph_shape"
UID, PSIZE, GROUP = "location/micrograph_uid", "location/micrograph_psize_A", \
    "location/exp_group_id"
SCORE_FIELDS = ("pick_stats/ncc_score",)
NEEDED = (PATH, X, Y, SHAPE)
_UID_PREFIX = re.compile(r"^\d{6,}_")   # cryoSPARC names imported files <uid>_<name>


def is_cs(path):
    return os.fspath(path).lower().endswith(".cs")


def micrograph_stem(path):
    """The micrograph's own name: the file stem without cryoSPARC's uid prefix."""
    return _UID_PREFIX.sub("", os.path.splitext(os.path.basename(path))[0])


def load(path, option="--coordinates"):
    """The dataset of a .cs file, with the fields a pick needs."""
    try:
        from cryosparc.dataset import Dataset
    except ImportError as error:
        raise InputError(f"{option} {path}: reading cryoSPARC .cs files needs cryosparc-tools; "
                         "pip install cryosparc-tools (see requirements.txt)") from error
    if not os.path.isfile(path):
        raise InputError(f"{option} {path}: no such file")
    try:
        data = Dataset.load(path)
    except Exception as error:   # numpy's and the library's own errors: one line
        raise InputError(f"{option} {path}: not a cryoSPARC .cs dataset ({error})") from error
    missing = [f for f in NEEDED if f not in data.fields()]
    if missing:
        raise InputError(f"{option} {path}: no {', '.join(missing)}; give a picker's or "
                         "Extract's particles .cs (it has the particles' locations)")
    return data


class CsMicrograph:
    """One micrograph's picks from a .cs file, in micrograph pixels (x = column, y = row),
    with what cryoSPARC needs to find the micrograph again."""

    def __init__(self, source, path, uid, shape, psize, group, coordinates):
        self.source, self.micrograph_path, self.micrograph_uid = source, path, uid
        self.shape, self.psize, self.group, self.coordinates = shape, psize, group, coordinates

    def same_picks(self, other):
        other = getattr(other, "coordinates", None)
        return other is not None and np.array_equal(self.coordinates.xy, other.xy)

    def __repr__(self):
        return f"{self.source} ({self.micrograph_path})"


def picker_files(path, option="--coordinates"):
    """{micrograph stem: CsMicrograph} of one picker's .cs file (screen's picker folder)."""
    data = load(path, option)
    paths = np.array([p.decode() if isinstance(p, bytes) else str(p) for p in data[PATH]],
                     dtype=object)
    shape = np.asarray(data[SHAPE], dtype=np.float64).reshape(-1, 2)
    xy = np.column_stack([np.asarray(data[X], np.float64) * shape[:, 1],
                          np.asarray(data[Y], np.float64) * shape[:, 0]])
    score_field = next((f for f in SCORE_FIELDS if f in data.fields()), None)
    score = (np.asarray(data[score_field], np.float64) if score_field
             else np.full(len(xy), np.nan))
    fields = data.fields()
    micrographs = {}
    for name in dict.fromkeys(paths):
        rows = np.flatnonzero(paths == name)
        stem = micrograph_stem(name)
        if stem in micrographs:
            raise InputError(f"{option} {path}: micrographs {micrographs[stem].micrograph_path} "
                             f"and {name} share the name {stem}; coordinates are matched by "
                             "file name, so names must be unique")
        first = rows[0]
        micrographs[stem] = CsMicrograph(
            path, name, int(data[UID][first]) if UID in fields else 0,
            tuple(int(v) for v in shape[first]),
            float(data[PSIZE][first]) if PSIZE in fields else 0.0,
            int(data[GROUP][first]) if GROUP in fields else 0,
            Coordinates(xy[rows], score[rows]))
    if not micrographs:
        raise InputError(f"{option} {path}: holds no picks")
    return micrographs


def write_particles(path, micrographs, xy, score, psize=0.0):
    """The kept particles as a cryoSPARC particles .cs (the location fields cryoSPARC's
    pickers write, the score as pick_stats/ncc_score for Inspect Picks to threshold on).
    ``micrographs``: per particle, a CsMicrograph (its micrograph as cryoSPARC knows it) or
    (path, (rows, columns)) for a micrograph cryoSPARC has not seen."""
    from cryosparc.dataset import Dataset
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    data = Dataset.allocate(len(xy), [
        (UID, "<u8"), (GROUP, "<u4"), (PATH, "O"), (SHAPE, "<u4", (2,)), (PSIZE, "<f4"),
        (X, "<f4"), (Y, "<f4"), ("pick_stats/ncc_score", "<f4")])
    for i, source in enumerate(micrographs):
        if isinstance(source, CsMicrograph):
            data[UID][i], data[GROUP][i] = source.micrograph_uid, source.group
            data[PATH][i], shape = source.micrograph_path, source.shape
            data[PSIZE][i] = source.psize or psize
        else:
            data[PATH][i], shape = source
            data[PSIZE][i] = psize
        data[SHAPE][i] = shape
        data[X][i], data[Y][i] = xy[i, 0] / shape[1], xy[i, 1] / shape[0]
    data["pick_stats/ncc_score"][:] = np.asarray(score, np.float32)
    with atomic_write(path, "wb") as f:
        data.save(f)
    return len(xy)


def write_kept(run, coordinates, out_path, settings=None, threshold=None):
    """particles.cs of a screened run: its kept particles, each on its micrograph as the .cs
    pickers named it (``coordinates``: the run's --coordinates), else on the micrograph file."""
    from .images import read_micrograph
    settings = settings or run.settings()
    if threshold is None:
        threshold = run.threshold(settings)[0]
    known = {}
    for source in coordinates:
        if is_cs(source):
            for stem, mic in picker_files(source).items():
                known.setdefault(stem, mic)
    where, xy, score = [], [], []
    for stem, path, *_ in run.ledger():
        keep = run.kept(stem, settings, threshold)
        if keep is None or not keep.any():
            continue
        mic = known.get(stem) or (path, read_micrograph(path).shape)
        where += [mic] * int(keep.sum())
        xy.append(run.candidates(stem)["xy"][keep])
        score.append(run.final_scores(stem, settings)[keep])
    return write_particles(out_path, where, np.concatenate(xy or [np.zeros((0, 2))]),
                           np.concatenate(score or [np.zeros(0)]), settings.pixel_size or 0.0)
