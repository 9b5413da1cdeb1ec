"""Picker coordinates in the formats pickers write: Xmipp .pos, RELION .star, EMAN .box, CSV.

Everything is converted to particle centres in micrograph pixels, x = column and y = row of the
micrograph's data array, with the picker's own score when the file has one (NaN otherwise).
"""
import io
import os
import re
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .atomic import atomic_write

EXTENSIONS = (".pos", ".star", ".box")  # a picker folder holds one of these per micrograph
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
    """The picker file for a micrograph stem (.pos, .star or .box), or None.

    Two of them for one micrograph (say a .pos and a .star written by one export) are taken
    when they hold the same picks (within half a pixel), the first in .pos, .star, .box order;
    when they differ they are refused: taking either silently would hide the other.
    """
    found = [os.path.join(folder, stem + ext) for ext in EXTENSIONS
             if os.path.isfile(os.path.join(folder, stem + ext))]
    if len(found) > 1:
        picks = [np.asarray(read_coordinates(path).xy, dtype=float) for path in found]
        first = picks[0][np.lexsort(picks[0].T[::-1])]
        if not all(p.shape == first.shape
                   and np.abs(p[np.lexsort(p.T[::-1])] - first).max(initial=0) <= 0.5
                   for p in picks[1:]):
            counts = " and ".join(f"{len(p)}" for p in picks)
            raise InputError(f"{' and '.join(found)}: {len(found)} coordinate files for "
                             f"micrograph {stem} in one picker folder, with different picks "
                             f"({counts}); keep one and move the other"
                             f"{'s' if len(found) > 2 else ''} out")
    return found[0] if found else None


def read_star_blocks(path, keep_empty=False):
    """Every data block of a STAR / Xmipp metadata file as {name: emtable.Table}, values as str.

    emtable alone finds a block by prefix (``data_particles`` also matches
    ``data_particles_auto``), ends a loop at the first blank line, guesses each column's type
    from its first row only, and splits every row of a loop as it split the first one (a quoted
    value in a later row is cut at its spaces). So the file is cut into blocks here, blank and
    comment lines are dropped, each row is split by the STAR rules (``split_star_line``) and
    handed to emtable in a form it reads back exactly, one block at a time, with every value
    kept as text; callers convert whole columns. Blocks without labels are skipped, and so are
    blocks without rows unless ``keep_empty``.
    """
    return {name: table for name, (table, _) in _star_tables(path, keep_empty).items()}


def _star_tables(path, keep_empty):
    """{block name: (emtable.Table, file line number of each row)}."""
    from emtable import Table
    tables = {}
    for name, lines, numbers in _split_blocks(path):
        if not any(line.startswith("_") for line in lines):
            continue
        text, row_numbers = _block_for_emtable(name, lines, numbers)
        table = Table()
        table.readStar(io.StringIO(text), tableName=name, guessType=False)
        if keep_empty or table.size():
            tables.setdefault(name, (table, row_numbers))
    return tables


def _split_blocks(path):
    """[(block name, its non-blank, non-comment lines, their line numbers)] in file order."""
    blocks = []
    with open(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("data_"):
                blocks.append((line[5:].split()[0] if len(line) > 5 else "", [], []))
            elif blocks:
                blocks[-1][1].append(line)
                blocks[-1][2].append(number)
            else:   # read as nothing, it would make a picker's picks silently zero
                _refuse_line(path, number, line, "lies before any data_ block")
    for name, lines, numbers in blocks:
        content = [(n, line) for n, line in zip(numbers, lines) if line != "loop_"]
        if content and not any(line.startswith("_") for _, line in content):
            _refuse_line(path, content[0][0], content[0][1],
                         f"is in data_{name}, which has no _label columns")
    return blocks


def _refuse_line(path, number, line, problem):
    raise InputError(f"{path} line {number}: '{line[:40]}' {problem}; a .pos or .star file "
                     "lists its picks in a data_ block under _xcoor _ycoor (Xmipp) or "
                     "_rlnCoordinateX _rlnCoordinateY (RELION) labels")


# A STAR value: quoted by ' or " up to the same quote followed by a space or the end of the line
# (so a quote inside, not followed by a space, is part of the value), or bare up to a space.
_STAR_VALUE = re.compile(r"""'((?:[^']|'(?=\S))*)'(?=\s|$)|"((?:[^"]|"(?=\S))*)"(?=\s|$)|(\S+)""")


def split_star_line(line):
    """The values of one STAR data line, quotes removed (STAR 1.1 rules, as RELION and Xmipp
    read them): ``'mic 1.mrc' 10 "it's"`` gives ['mic 1.mrc', '10', "it's"]."""
    if "'" not in line and '"' not in line:
        return line.split()
    values = []
    for match in _STAR_VALUE.finditer(line):
        single, double, bare = match.groups()
        if bare is not None and bare[0] in "'\"":
            raise ValueError(f"the line '{line[:60]}' has an unclosed quote")
        values.append(single if single is not None else double if double is not None else bare)
    return values


def _shell_quoted(value):
    """A value as shlex (emtable's splitter for lines with quotes) reads it back exactly."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _block_for_emtable(name, lines, numbers):
    """The block as text emtable reads value for value as ``split_star_line`` splits it, and
    the file line number of each of its rows."""
    is_loop = lines[0] == "loop_" or lines[0].startswith("loop_ ")
    if not is_loop:
        rows = [split_star_line(line) for line in lines if line.startswith("_")]
        if any(not _plain(v) for row in rows for v in row[1:]):
            lines = [" ".join([row[0]] + [_shell_quoted(v) for v in row[1:]]) for row in rows]
        return "data_%s\n%s\n" % (name, "\n".join(lines)), numbers[:1]
    n_labels = 0
    while 1 + n_labels < len(lines) and lines[1 + n_labels].startswith("_"):
        n_labels += 1
    head, body = lines[:1 + n_labels], lines[1 + n_labels:]
    rows = [split_star_line(line) for line in body]
    for line, row, number in zip(body, rows, numbers[1 + n_labels:]):
        if len(row) != n_labels:  # emtable drops a long row's extra values, fails on a short one
            raise ValueError(f"block data_{name}, line {number}: {n_labels} columns but the row "
                             f"'{line[:60]}' has {len(row)} values")
    quoted = any("'" in line or '"' in line for line in body)   # else every value is plain
    if quoted and any(not _plain(v) for row in rows for v in row):
        body = [" ".join(_shell_quoted(v) for v in row) for row in rows]
    return "data_%s\n%s\n" % (name, "\n".join(head + body)), numbers[1 + n_labels:]


def _plain(value):
    """Whether a value reads back the same from a line split at whitespace."""
    return bool(value) and "'" not in value and '"' not in value and not any(
        c.isspace() for c in value)


def column_as_float(table, label):
    """A whole STAR column as float64; the error names the column and the bad value."""
    values = table.getColumnValues(label)
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise ValueError(f"column _{label} has the non-numeric value '{bad}'") from None


def _check_finite(path, column, label, line_numbers, what):
    """Refuse NaN and Inf in a ``column`` of coordinates, Inf in a column of scores (NaN there
    means no score), naming the file, the line and the column."""
    bad = ~np.isfinite(column) if what != "score" else np.isinf(column)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"{path}, line {line_numbers[row]}: column {label} is "
                         f"{_text(column[row])}, not a finite number; fix or remove that line")


def _text(number):
    return "nan" if np.isnan(number) else ("inf" if number > 0 else "-inf")


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _coordinates_from_tables(path, tables, x_label, y_label, score_labels):
    xy_parts, score_parts = [], []
    for table, line_numbers in tables:
        x, y = column_as_float(table, x_label), column_as_float(table, y_label)
        _check_finite(path, x, "_" + x_label, line_numbers, "coordinate")
        _check_finite(path, y, "_" + y_label, line_numbers, "coordinate")
        xy_parts.append(np.column_stack([x, y]))
        label = next((s for s in score_labels if table.hasColumn(s)), None)
        if label:
            score = column_as_float(table, label)
            _check_finite(path, score, "_" + label, line_numbers, "score")
        else:
            score = np.full(table.size(), np.nan)
        score_parts.append(score)
    if not xy_parts:
        return Coordinates.empty()
    return Coordinates(np.concatenate(xy_parts).reshape(-1, 2), np.concatenate(score_parts))


def _read_pos(path):
    tables = _star_tables(path, keep_empty=True)
    with_xy = {name: t for name, t in tables.items() if t[0].hasAllColumns(["xcoor", "ycoor"])}
    chosen = [t for name, t in with_xy.items() if name in POS_BLOCKS] or list(with_xy.values())
    if not chosen:
        if any(t.size() for name, (t, _) in tables.items() if name != "header"):
            raise InputError(f"{path}: no block with _xcoor and _ycoor columns; "
                             "an Xmipp .pos needs them in data_particles")
        return Coordinates.empty()
    return _coordinates_from_tables(path, chosen, "xcoor", "ycoor", POS_SCORE_LABELS)


def _read_star(path):
    tables = _star_tables(path, keep_empty=True)
    labels = ["rlnCoordinateX", "rlnCoordinateY"]
    chosen = next((t for t in tables.values() if t[0].hasAllColumns(labels)), None)
    if chosen is None:
        if any(t.size() for t, _ in tables.values()):
            raise InputError(f"{path}: no block with _rlnCoordinateX and _rlnCoordinateY columns")
        return Coordinates.empty()
    return _coordinates_from_tables(path, [chosen], *labels, STAR_SCORE_LABELS)


def _data_rows(path, delimiter=None):
    """[(line number, values)] of the lines that are neither blank nor comments."""
    with open(path) as f:
        lines = [(number, line.strip()) for number, line in enumerate(f, 1)]
    return [(number, line.split(delimiter)) for number, line in lines
            if line and not line.startswith("#")]


def _numeric_rows(path, rows, min_columns, labels):
    """The rows as a float table, None when they have fewer than ``min_columns``. NaN / Inf in
    the columns named by ``labels`` are refused with the line (a last "score" may be NaN)."""
    widths = {len(values) for _, values in rows}
    if len(widths) > 1:
        raise InputError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    if min(widths) < min_columns:
        return None
    table = np.array([[float(value) for value in values] for _, values in rows],
                     dtype=np.float64)
    numbers = [number for number, _ in rows]
    for column, label in enumerate(labels):
        if label and column < table.shape[1]:
            what = "score" if label == "score" else "coordinate"
            _check_finite(path, table[:, column], label, numbers, what)
    return table


def _read_box(path):
    """EMAN box: x y width height [score], x and y the box's corner (no axis flip)."""
    rows = _data_rows(path)
    if not rows:
        return Coordinates.empty()
    table = _numeric_rows(path, rows, 4, ("x", "y", "width", "height", "score"))
    if table is None:
        raise InputError(f"{path}: a .box file needs the columns x y width height [score]")
    centres = table[:, :2] + table[:, 2:4] / 2.0
    return Coordinates(centres, table[:, 4] if table.shape[1] > 4 else None)


def _read_text_table(path):
    """CSV or whitespace text: a header naming x, y and maybe score, or bare x y [score] rows."""
    with open(path) as f:
        first = next((line for line in f if line.strip() and not line.startswith("#")), "")
    delimiter = "," if "," in first else None
    rows = [(number, [value.strip() for value in values])
            for number, values in _data_rows(path, delimiter)]
    if not rows:
        return Coordinates.empty()
    columns = {"x": 0, "y": 1, "score": 2}
    header = ["x", "y", "score"]
    if not all(_is_number(value) for value in rows[0][1]):
        header = [name.lower() for name in rows.pop(0)[1]]
        if "x" not in header or "y" not in header:
            raise InputError(f"{path}: the header line must name the columns x and y")
        columns = {name: header.index(name) for name in ("x", "y", "score") if name in header}
        if not rows:
            return Coordinates.empty()
    labels = [name if name in ("x", "y", "score") else None for name in header]
    table = _numeric_rows(path, rows, 2, labels)
    if table is None:
        raise InputError(f"{path}: every row needs at least x and y")
    score_column = columns.get("score")
    has_score = score_column is not None and score_column < table.shape[1]
    return Coordinates(table[:, [columns["x"], columns["y"]]],
                       table[:, score_column] if has_score else None)


# ----------------------------------------------------------------------------------- writing

_RESERVED_STARTS = ("data_", "loop_", "save_", "global_", "stop_")


def _needs_quotes(text):
    return (not text or any(c.isspace() for c in text) or "'" in text or '"' in text
            or text[0] in "_#$;[]" or text.lower().startswith(_RESERVED_STARTS))


def quote_star_value(text, always=False):
    """A STAR value that reads back as ``text``: quoted when it is empty, has a space or a
    quote, or starts like a STAR keyword (``data_``, ``_``, ``#``), or ``always``.

    Double quotes unless the text has a double quote or a backslash (then single quotes): so a
    value with one kind of quote also reads back through shlex, as emtable splits lines.
    A closing quote is one followed by a space, so the text must not have the chosen quote
    followed by a space; text with both kinds so placed, or with a line break, cannot be one
    STAR value and raises ``InputError``.
    """
    text = str(text)
    if not (always or _needs_quotes(text)):
        return text
    if "\n" in text or "\r" in text:
        raise InputError(f"the name {text!r} has a line break and cannot be written in a STAR "
                         "file; rename it")
    order = ("'", '"') if ('"' in text or "\\" in text) else ('"', "'")
    for quote in order:
        if not re.search(re.escape(quote) + r"\s", text):
            return quote + text + quote
    raise InputError(f"the name {text!r} has both a ' and a \" before a space and cannot be "
                     "written as one STAR value; rename it")


def quote_star_column(values):
    """The values of one column as STAR text: all quoted when one must be, so that readers
    that split every row as they split the first (emtable) read them all."""
    texts = [str(v) for v in values]
    always = any(_needs_quotes(t) for t in texts)
    return [quote_star_value(t, always) for t in texts]


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
    with atomic_write(path) as f:
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
    names = quote_star_column(os.fspath(name) for name in micrograph_names)
    for name, (x, y), s in zip(names, xy, score.reshape(-1)):
        lines.append(f"{name} {x:10.1f} {y:10.1f} {s:12.6f}\n")
    with atomic_write(path) as f:
        f.write("".join(lines) + "\n")
