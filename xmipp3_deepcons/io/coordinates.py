"""Picker coordinates in the formats pickers write: Xmipp .pos, RELION .star, EMAN .box.

Everything is converted to particle centres in micrograph pixels, x = column and y = row of the
micrograph's data array, with the picker's own score when the file has one.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

EXTENSIONS = (".pos", ".star", ".box")  # preferred first when a picker wrote several
POS_SCORE_LABELS = ("cost", "zScoreDeepLearning1")
STAR_SCORE_LABELS = ("rlnAutopickFigureOfMerit", "rlnParticleFigureOfMerit")


@dataclass(frozen=True)
class Coordinates:
    """Particle centres ``xy`` (n, 2) and the picker's ``score`` (n,), NaN where it gave none."""
    xy: np.ndarray
    score: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "xy", np.asarray(self.xy, dtype=float).reshape(-1, 2))
        score = np.full(len(self.xy), np.nan) if self.score is None else self.score
        object.__setattr__(self, "score", np.asarray(score, dtype=float).reshape(-1))

    def __len__(self):
        return len(self.xy)

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 2)), np.zeros(0))


def read_coordinates(path):
    ext = os.path.splitext(path)[1].lower()
    readers = {".pos": _read_pos, ".star": _read_star, ".box": _read_box, ".csv": _read_csv}
    if ext not in readers:
        raise InputError(f"{path}: unknown coordinate format '{ext}'; use .pos, .star or .box")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such coordinate file")
    try:
        return readers[ext](path)
    except InputError:
        raise
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise InputError(f"{path}: cannot read coordinates ({error})") from error


def find_coordinate_file(folder, stem):
    """The picker file for a micrograph stem (.pos preferred, then .star, then .box), or None."""
    for ext in EXTENSIONS:
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    return None


def _star_tables(path):
    """Every data block of a STAR-like file as {name: emtable.Table} (empty blocks skipped)."""
    from emtable import Table
    names = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("data_"):
                names.append(line[5:])
    tables = {}
    for name in names:
        table = Table()
        table.read(path, tableName=name)
        if table.size():
            tables[name] = table
    return tables


def _columns(table, x, y, score_labels):
    xy = np.array([[float(getattr(r, x)), float(getattr(r, y))] for r in table])
    for label in score_labels:
        if table.hasColumn(label):
            return xy, np.array([float(getattr(r, label)) for r in table])
    return xy, None


def _read_pos(path):
    tables = _star_tables(path)
    found = [t for name, t in tables.items() if name in ("particles", "particles_auto")]
    found = found or [t for t in tables.values() if t.hasAllColumns(["xcoor", "ycoor"])]
    if not found:
        if _has_rows(path):
            raise InputError(f"{path}: no _xcoor/_ycoor columns in a particles block")
        return Coordinates.empty()
    parts = [_columns(t, "xcoor", "ycoor", POS_SCORE_LABELS) for t in found]
    return _join(parts)


def _read_star(path):
    tables = _star_tables(path)
    found = [t for t in tables.values() if t.hasAllColumns(["rlnCoordinateX", "rlnCoordinateY"])]
    if not found:
        if tables:
            raise InputError(f"{path}: no _rlnCoordinateX/_rlnCoordinateY columns")
        return Coordinates.empty()
    return _join([_columns(found[0], "rlnCoordinateX", "rlnCoordinateY", STAR_SCORE_LABELS)])


def _read_box(path):
    rows = np.loadtxt(path, ndmin=2) if os.path.getsize(path) else np.zeros((0, 4))
    if rows.size == 0:
        return Coordinates.empty()
    if rows.shape[1] < 4:
        raise InputError(f"{path}: a .box file needs columns x y width height [score]")
    centres = rows[:, :2] + rows[:, 2:4] / 2.0
    return Coordinates(centres, rows[:, 4] if rows.shape[1] > 4 else None)


def _read_csv(path):
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if rows.size == 0:
        return Coordinates.empty()
    return Coordinates(rows[:, :2], rows[:, 2] if rows.shape[1] > 2 else None)


def _join(parts):
    xy = np.concatenate([p[0] for p in parts])
    scores = [p[1] if p[1] is not None else np.full(len(p[0]), np.nan) for p in parts]
    return Coordinates(xy, np.concatenate(scores))


def _has_rows(path):
    with open(path) as f:
        return any(line.strip() and line.strip()[0] in "-0123456789" for line in f)


def write_pos(path, xy, score=None, score_label="zScoreDeepLearning1"):
    """Xmipp .pos, readable by xmippLib and by Scipion's Xmipp coordinate import."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    with open(path, "w") as f:
        f.write("# XMIPP_STAR_1 *\n#\ndata_header\nloop_\n _pickingMicrographState\nAuto\n")
        f.write("data_particles\nloop_\n _xcoor\n _ycoor\n")
        if score is not None:
            f.write(f" _{score_label}\n")
        for i, (x, y) in enumerate(np.rint(xy).astype(int)):
            line = f"{x:7d} {y:7d}"
            if score is not None:
                line += f" {float(score[i]):.6f}"
            f.write(line + "\n")


def write_coordinates_star(path, micrograph_names, xy, score):
    """RELION coordinates with the micrograph name and the score as figure of merit."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    with open(path, "w") as f:
        f.write("\n# version 30001\n\ndata_particles\n\nloop_\n_rlnMicrographName #1\n"
                "_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnAutopickFigureOfMerit #4\n")
        for name, (x, y), s in zip(micrograph_names, xy, score):
            f.write(f"{name} {x:.1f} {y:.1f} {float(s):.6f}\n")
        f.write("\n")
