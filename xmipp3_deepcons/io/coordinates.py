"""Picker coordinates in the formats pickers write: Xmipp .pos, RELION .star, EMAN .box, CSV.

Everything is converted to particle centres in micrograph pixels, x = column and y = row of the
micrograph's data array, with the picker's own score when the file has one (NaN otherwise).
"""
import io
import os
import shlex
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

EXTENSIONS = (".pos", ".star", ".box")  # in order of preference when a picker wrote several
TEXT_EXTENSIONS = (".csv", ".txt")
# When a .pos has both, the Deep Consensus score is the newer judgement, so it wins over _cost.
POS_SCORE_LABELS = ("zScoreDeepLearning1", "cost")
STAR_SCORE_LABELS = ("rlnAutopickFigureOfMerit", "rlnParticleFigureOfMerit")
POS_BLOCKS = ("particles", "particles_auto")
XMIPP_HEADER = "# XMIPP_STAR_1 *\n#\n"


@dataclass(frozen=True)
class Coordinates:
    """Particle centres ``xy`` (n, 2) and the picker's ``score`` (n,), NaN where it gave none."""
    xy: np.ndarray
    score: np.ndarray = None

    def __post_init__(self):
        xy = np.asarray(self.xy, dtype=np.float64).reshape(-1, 2)
        score = np.full(len(xy), np.nan) if self.score is None else self.score
        score = np.asarray(score, dtype=np.float64).reshape(-1)
        if len(score) != len(xy):
            raise ValueError(f"{len(xy)} coordinates but {len(score)} scores")
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "score", score)

    def __len__(self):
        return len(self.xy)

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 2)), np.zeros(0))


# ----------------------------------------------------------------------------------- reading

def read_coordinates(path):
    """Particle centres of one micrograph from a picker file, chosen by the file's extension."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    readers = {".pos": _read_pos, ".star": _read_star, ".box": _read_box,
               ".csv": _read_text_table, ".txt": _read_text_table}
    if ext not in readers:
        raise InputError(f"{path}: unknown coordinate format '{ext}'; "
                         "give Xmipp .pos, RELION .star, EMAN .box or a .csv with x,y columns")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such coordinate file")
    try:
        return readers[ext](path)
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, TypeError, IndexError, KeyError) as error:
        raise InputError(f"{path}: cannot read coordinates ({error}); "
                         "check that it is a valid picker file") from error


def find_coordinate_file(folder, stem):
    """The picker file for a micrograph stem (.pos preferred, then .star, then .box), or None."""
    for ext in EXTENSIONS:
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    return None


def read_star_blocks(path, keep_empty=False):
    """Every data block of a STAR / Xmipp metadata file as {name: emtable.Table}, values as str.

    emtable alone finds a block by prefix (``data_particles`` also matches
    ``data_particles_auto``), ends a loop at the first blank line and guesses each column's
    type from its first row only. So the file is cut into blocks here, blank and comment lines
    are dropped, and each block is handed to emtable on its own with every value kept as text;
    callers convert whole columns. Blocks without labels are skipped, and so are blocks without
    rows unless ``keep_empty``.
    """
    from emtable import Table
    tables = {}
    for name, lines in _split_blocks(path):
        if not any(line.startswith("_") for line in lines):
            continue
        _check_row_widths(name, lines)
        table = Table()
        text = "data_%s\n%s\n" % (name, "\n".join(lines))
        table.readStar(io.StringIO(text), tableName=name, guessType=False)
        if keep_empty or table.size():
            tables.setdefault(name, table)
    return tables


def _split_blocks(path):
    """[(block name, its non-blank, non-comment lines)] in file order."""
    blocks = []
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("data_"):
                blocks.append((line[5:].split()[0] if len(line) > 5 else "", []))
            elif blocks:
                blocks[-1][1].append(line)
    return blocks


def _check_row_widths(name, lines):
    """emtable drops the extra values of a long row and prints to stdout on a short one."""
    if lines[0] != "loop_" and not lines[0].startswith("loop_ "):
        return
    labels = [line for line in lines[1:] if line.startswith("_")]
    for line in lines[1 + len(labels):]:
        count = len(shlex.split(line) if ("'" in line or '"' in line) else line.split())
        if count != len(labels):
            raise ValueError(f"block data_{name}: {len(labels)} columns but the row "
                             f"'{line[:60]}' has {count} values")


def column_as_float(table, label):
    """A whole STAR column as float64; the error names the column and the bad value."""
    values = table.getColumnValues(label)
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise ValueError(f"column _{label} has the non-numeric value '{bad}'") from None


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _coordinates_from_tables(tables, x_label, y_label, score_labels):
    xy_parts, score_parts = [], []
    for table in tables:
        xy_parts.append(np.column_stack([column_as_float(table, x_label),
                                         column_as_float(table, y_label)]))
        label = next((s for s in score_labels if table.hasColumn(s)), None)
        score_parts.append(column_as_float(table, label) if label
                           else np.full(table.size(), np.nan))
    if not xy_parts:
        return Coordinates.empty()
    return Coordinates(np.concatenate(xy_parts).reshape(-1, 2), np.concatenate(score_parts))


def _read_pos(path):
    tables = read_star_blocks(path, keep_empty=True)
    with_xy = {name: t for name, t in tables.items() if t.hasAllColumns(["xcoor", "ycoor"])}
    chosen = [t for name, t in with_xy.items() if name in POS_BLOCKS] or list(with_xy.values())
    if not chosen:
        if any(t.size() for name, t in tables.items() if name != "header"):
            raise InputError(f"{path}: no block with _xcoor and _ycoor columns; "
                             "an Xmipp .pos needs them in data_particles")
        return Coordinates.empty()
    return _coordinates_from_tables(chosen, "xcoor", "ycoor", POS_SCORE_LABELS)


def _read_star(path):
    tables = read_star_blocks(path, keep_empty=True)
    labels = ["rlnCoordinateX", "rlnCoordinateY"]
    chosen = next((t for t in tables.values() if t.hasAllColumns(labels)), None)
    if chosen is None:
        if any(t.size() for t in tables.values()):
            raise InputError(f"{path}: no block with _rlnCoordinateX and _rlnCoordinateY columns")
        return Coordinates.empty()
    return _coordinates_from_tables([chosen], *labels, STAR_SCORE_LABELS)


def _data_rows(path, delimiter=None):
    with open(path) as f:
        lines = [line.strip() for line in f]
    return [line.split(delimiter) for line in lines if line and not line.startswith("#")]


def _numeric_rows(path, rows, min_columns):
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise InputError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    if min(widths) < min_columns:
        return None
    return np.array([[float(value) for value in row] for row in rows], dtype=np.float64)


def _read_box(path):
    """EMAN box: x y width height [score], x and y the box's corner (no axis flip)."""
    rows = _data_rows(path)
    if not rows:
        return Coordinates.empty()
    table = _numeric_rows(path, rows, 4)
    if table is None:
        raise InputError(f"{path}: a .box file needs the columns x y width height [score]")
    centres = table[:, :2] + table[:, 2:4] / 2.0
    return Coordinates(centres, table[:, 4] if table.shape[1] > 4 else None)


def _read_text_table(path):
    """CSV or whitespace text: a header naming x, y and maybe score, or bare x y [score] rows."""
    with open(path) as f:
        first = next((line for line in f if line.strip() and not line.startswith("#")), "")
    delimiter = "," if "," in first else None
    rows = [[value.strip() for value in row] for row in _data_rows(path, delimiter)]
    if not rows:
        return Coordinates.empty()
    columns = {"x": 0, "y": 1, "score": 2}
    if not all(_is_number(value) for value in rows[0]):
        header = [name.lower() for name in rows.pop(0)]
        if "x" not in header or "y" not in header:
            raise InputError(f"{path}: the header line must name the columns x and y")
        columns = {name: header.index(name) for name in ("x", "y", "score") if name in header}
        if not rows:
            return Coordinates.empty()
    table = _numeric_rows(path, rows, 2)
    if table is None:
        raise InputError(f"{path}: every row needs at least x and y")
    score_column = columns.get("score")
    has_score = score_column is not None and score_column < table.shape[1]
    return Coordinates(table[:, [columns["x"], columns["y"]]],
                       table[:, score_column] if has_score else None)


# ----------------------------------------------------------------------------------- writing

def quote_star_value(text):
    """STAR strings with spaces (or nothing at all) must be quoted to stay one value."""
    text = str(text)
    return f'"{text}"' if not text or any(c.isspace() for c in text) else text


def write_pos(path, xy, score=None, score_label="zScoreDeepLearning1"):
    """Xmipp .pos, readable by xmippLib and by Scipion's Xmipp coordinate import.

    Coordinates are rounded to integers because Xmipp's _xcoor/_ycoor are integer labels
    (xmippLib truncates a decimal value instead of rounding it).
    """
    xy = np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    if score is not None:
        score = np.asarray(score, dtype=np.float64).reshape(-1)
        if len(score) != len(xy):
            raise ValueError(f"{len(xy)} coordinates but {len(score)} scores")
    lines = [XMIPP_HEADER + "data_header\nloop_\n _pickingMicrographState\nAuto\n",
             "data_particles\nloop_\n _xcoor\n _ycoor\n"]
    if score is not None:
        lines.append(f" _{score_label}\n")
    for i, (x, y) in enumerate(xy):
        row = f"{x:7d} {y:7d}"
        if score is not None:
            row += f" {score[i]:12.6f}"
        lines.append(row + "\n")
    with open(path, "w") as f:
        f.write("".join(lines))


def write_coordinates_star(path, micrograph_names, xy, score):
    """RELION coordinates: micrograph name, centre (1 decimal) and score as figure of merit."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if isinstance(micrograph_names, (str, os.PathLike)):
        micrograph_names = [os.fspath(micrograph_names)] * len(xy)
    score = np.full(len(xy), np.nan) if score is None else np.asarray(score, np.float64)
    if not len(micrograph_names) == len(score.reshape(-1)) == len(xy):
        raise ValueError("micrograph_names, xy and score must have the same length")
    lines = ["\n# version 30001\n\ndata_particles\n\nloop_\n_rlnMicrographName #1\n"
             "_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnAutopickFigureOfMerit #4\n"]
    for name, (x, y), s in zip(micrograph_names, xy, score.reshape(-1)):
        lines.append(f"{quote_star_value(name)} {x:10.1f} {y:10.1f} {s:12.6f}\n")
    with open(path, "w") as f:
        f.write("".join(lines) + "\n")
