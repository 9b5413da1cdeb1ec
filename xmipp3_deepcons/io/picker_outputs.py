"""A picker's output as the picker writes it: find its files, match them to micrographs, read them.

A user points at what the picker wrote, without renaming anything:

- a folder with one .pos / .star / .box / .cbox file per micrograph, named after it (a file
  name may carry a suffix after the micrograph's name: ``mic_001_autopick.star``);
- a RELION autopick job folder: RELION 4's ``autopick.star`` (``data_coordinate_files``:
  ``_rlnMicrographName``, ``_rlnMicrographCoordinates``), or RELION 3.1's
  ``coords_suffix_<pickname>.star`` with ``<micrograph's folder>/<stem>_<pickname>.star``
  below the job folder; either index file may also be given itself;
- Topaz's one ``extract`` file for all micrographs (tab-separated, header
  ``image_name x_coord y_coord score``), or its ``--per-micrograph`` ``.coord`` files;
- crYOLO's output folder (its ``CBOX/`` is read, which has the confidences; ``EMAN/`` .box when
  there is no CBOX), or either of those folders;
- a STAR file listing ``_rlnMicrographName`` with ``_rlnCoordinateX`` / ``_rlnCoordinateY``.

``PATH:score>T`` (or ``score>=T``) keeps only the picks scoring above T: Topaz writes every pick
down to its threshold -6, crYOLO's CBOX every detection (crYOLO's own default, confidence 0.3,
is applied to CBOX files unless a threshold is given).

``open_picker(text)`` gives a ``PickerOutput``; ``PickerOutput.match(stems)`` pairs its files
with micrograph stems (one clear ``InputError`` when none pairs); ``read_picker_output`` does both
and reads the picks. The command line and the RELION External job use these.
"""
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import cryosparc
from .coordinates import (EXTENSIONS, Coordinates, column_as_float, find_coordinate_file,
                          read_coordinates, read_star_blocks)

CBOX_DEFAULT_CONFIDENCE = 0.3   # crYOLO's default --threshold; CBOX files hold every detection
TOPAZ_HEADER = ("image_name", "x_coord", "y_coord", "score")
TOPAZ_HEADER_3D = ("image_name", "x_coord", "y_coord", "z_coord", "score")
# Files a RELION job folder holds beside the coordinates: never a micrograph's picks.
RELION_BOOKKEEPING = {"summary.star", "job.star", "job_pipeline.star", "default_pipeline.star",
                      "run.job"}
FOLDER_EXTENSIONS = EXTENSIONS + (".cbox",)
ONE_MICROGRAPH_EXTENSIONS = (".pos", ".box", ".cbox")   # one micrograph's picks: a folder's
_SCORE_SUFFIX = re.compile(r"^(?P<path>.+):score\s*(?P<op>>=|>)\s*(?P<value>[-+0-9.eE]+)$")


@dataclass(frozen=True)
class PickerSpec:
    """One --coordinates value: the path and an optional score threshold (keep score > it, or
    >= it when ``inclusive``)."""
    path: str
    min_score: float = None
    inclusive: bool = False

    @property
    def text(self):
        if self.min_score is None:
            return self.path
        return f"{self.path}:score{'>=' if self.inclusive else '>'}{self.min_score:g}"


def parse_picker_spec(text):
    """``PATH`` or ``PATH:score>T`` / ``PATH:score>=T`` as a ``PickerSpec``."""
    text = os.fspath(text)
    match = _SCORE_SUFFIX.match(text)
    if not match:
        if ":score" in text and not os.path.exists(text):
            raise InputError(f"--coordinates {text}: cannot read the threshold; write it as "
                             "PATH:score>T or PATH:score>=T, e.g. topaz_picks.txt:score>-1")
        return PickerSpec(text)
    try:
        value = float(match.group("value"))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"--coordinates {text}: the threshold {match.group('value')!r} is not "
                         "a finite number; write it as PATH:score>T, e.g. topaz.txt:score>-1")
    return PickerSpec(match.group("path"), value, match.group("op") == ">=")


class PickerOutput:
    """The picks of one picker, found in what it wrote.

    ``entries`` maps a name (a file's stem, Topaz's image_name, a listed micrograph's stem) to
    a coordinate file or to already-read ``Coordinates``; ``kind`` says which layout was found
    and ``what`` what its names are (for messages); ``suffix`` is a known suffix after the
    micrograph's stem (RELION's ``_<pickname>``).
    """

    def __init__(self, spec, kind, entries, what="file name", suffix=None, default_min=None,
                 cryolo=False):
        self.spec = spec
        self.kind = kind
        self.cryolo = cryolo   # crYOLO counts y from the bottom on some micrographs
        self.entries = dict(entries)
        self.what = what
        self.suffix = suffix
        self.min_score, self.inclusive = spec.min_score, spec.inclusive
        self.default_threshold = spec.min_score is None and default_min is not None
        if self.default_threshold:
            self.min_score, self.inclusive = default_min, True

    @property
    def path(self):
        return self.spec.path

    @property
    def label(self):
        return f"--coordinates {self.spec.text}"

    def describe(self):
        """One line for the log: what was read and which threshold applies."""
        text = f"{self.label}: {self.kind}, {len(self.entries)} micrographs"
        if self.min_score is not None:
            text += (f", keeping score {'>=' if self.inclusive else '>'} {self.min_score:g}"
                     + (" (crYOLO's default; set another with PATH:score>=T)"
                        if self.default_threshold else ""))
        return text

    def match(self, stems):
        """{micrograph stem: entry name} for the given micrograph stems.

        A name matches its micrograph's stem exactly, or as the stem followed by ``_`` and a
        suffix (RELION's ``mic_autopick``); the longest such stem wins. Two names for one
        micrograph, or no name matching any, raise ``InputError``.
        """
        stems = set(stems)
        by_length = sorted(stems, key=len, reverse=True)
        matched = {}
        for name in sorted(self.entries):
            stem = self._stem_of(name, stems, by_length)
            if stem is None:
                continue
            if stem in matched:
                raise InputError(f"{self.label}: two {self.what}s for micrograph {stem} "
                                 f"({matched[stem]} and {name}); keep one of them")
            matched[stem] = name
        if not matched:
            found = ", ".join(sorted(self.entries)[:3]) or "nothing"
            expected = ", ".join(sorted(stems)[:2])
            raise InputError(f"{self.label}: no {self.what} matches a micrograph stem "
                             f"({self.kind}); expected names like {expected}; found {found}"
                             f"{', ...' if len(self.entries) > 3 else ''}")
        return matched

    def where(self, name):
        """The file an entry was read from, for messages (the picker for one read already)."""
        source = self.entries[name]
        return source if isinstance(source, str) else f"{self.label} ({name})"

    def _stem_of(self, name, stems, by_length):
        if self.suffix and name.endswith(self.suffix) and name[:-len(self.suffix)] in stems:
            return name[:-len(self.suffix)]
        if name in stems:
            return name
        return next((s for s in by_length if name.startswith(s + "_")), None)

    def read(self, name, micrograph=None):
        """The picks of one entry, the threshold applied; crYOLO's picks in the micrograph's
        frame when its file is given (``cryolo_counts_y_from_bottom``)."""
        source = self.entries[name]
        picks = source if isinstance(source, Coordinates) else _read_file(source)
        if self.cryolo and micrograph is not None and len(picks):
            height = cryolo_counts_y_from_bottom(micrograph)
            if height:
                picks = Coordinates(np.column_stack([picks.xy[:, 0], height - picks.xy[:, 1]]),
                                    picks.score)
        if self.min_score is None:
            return picks
        if len(picks) and np.isnan(picks.score).all():
            where = source if isinstance(source, str) else self.path
            raise InputError(f"{self.label}: {where} has no scores, so a score threshold "
                             "cannot apply; give the path without :score")
        keep = picks.score >= self.min_score if self.inclusive else picks.score > self.min_score
        return Coordinates(picks.xy[keep], picks.score[keep])

    def same_as(self, other):
        """Whether two pickers hold the same picks (the same files' bytes, or the same read
        picks, under the same threshold): given twice, they would vote twice."""
        if (self.min_score, self.inclusive) != (other.min_score, other.inclusive):
            return False
        if self.entries.keys() != other.entries.keys():
            return False
        return all(_same_source(self.entries[k], other.entries[k]) for k in self.entries)


def _same_source(a, b):
    if isinstance(a, str) and isinstance(b, str):
        with open(a, "rb") as f, open(b, "rb") as g:
            return f.read() == g.read()
    if isinstance(a, Coordinates) and isinstance(b, Coordinates):
        return (a.xy.shape == b.xy.shape and np.array_equal(a.xy, b.xy)
                and np.array_equal(a.score, b.score, equal_nan=True))
    return False


# ------------------------------------------------------------------------------- finding

def open_picker(spec):
    """The ``PickerOutput`` of one --coordinates value (a ``PickerSpec`` or its text)."""
    if not isinstance(spec, PickerSpec):
        spec = parse_picker_spec(spec)
    path = spec.path
    if os.path.isdir(path):
        return _open_folder(spec)
    if os.path.isfile(path):
        return _open_file(spec)
    raise InputError(f"--coordinates {spec.text}: no such file or folder")


def read_picker_output(spec, stems):
    """{micrograph stem: Coordinates} of one picker for the given micrograph stems (those it
    has no file for are left out); raises ``InputError`` when none matches."""
    picker = open_picker(spec)
    return {stem: picker.read(name) for stem, name in picker.match(stems).items()}


def _open_folder(spec):
    folder = spec.path
    names = os.listdir(folder)
    index = _relion4_index_in(folder, names)
    if index:
        return _open_relion4_index(spec, index)
    suffix_files = sorted(n for n in names
                          if n.startswith("coords_suffix_") and n.endswith(".star"))
    if suffix_files:
        return _open_relion31_job(spec, os.path.join(folder, suffix_files[0]))
    cbox, eman = os.path.join(folder, "CBOX"), os.path.join(folder, "EMAN")
    if os.path.isdir(cbox) and _files_with(cbox, (".cbox",)):
        return _open_cbox_folder(spec, cbox, "crYOLO output (its CBOX folder)")
    if os.path.isdir(eman) and _files_with(eman, (".box",)):
        picker = _open_flat_folder(spec, eman, "crYOLO output (its EMAN folder)")
        picker.cryolo = True
        return picker
    if _files_with(folder, (".cbox",)):
        return _open_cbox_folder(spec, folder, "crYOLO CBOX folder")
    coord = _files_with(folder, (".coord",))
    if coord:   # topaz extract --per-micrograph: one extract-format file per micrograph
        entries = {}
        for name in coord:
            entries.update(_read_topaz(os.path.join(folder, name)))
        return PickerOutput(spec, "Topaz per-micrograph folder", entries, what="image_name")
    if _files_with(folder, EXTENSIONS, skip=RELION_BOOKKEEPING):
        parent = os.path.dirname(os.path.abspath(folder))
        if os.path.basename(os.path.abspath(folder)) == "EMAN" and any(
                os.path.isdir(os.path.join(parent, d)) for d in ("CBOX", "DISTR")):
            picker = _open_flat_folder(spec, folder, "crYOLO EMAN folder")
            picker.cryolo = True
            return picker
        return _open_flat_folder(spec, folder, "coordinate folder")
    nested = _nested_star_files(folder)
    if nested:
        return PickerOutput(spec, "RELION autopick folder (.star files below it)", nested)
    raise InputError(f"--coordinates {spec.text}: no .pos, .star, .box or .cbox files in the "
                     "folder (nor a RELION autopick index, a crYOLO CBOX/ or EMAN/ folder); "
                     "give the picker's output folder or file")


def _files_with(folder, extensions, skip=()):
    return [n for n in sorted(os.listdir(folder))
            if os.path.splitext(n)[1].lower() in extensions and n not in skip
            and not n.startswith("coords_suffix_") and os.path.isfile(os.path.join(folder, n))]


def _open_flat_folder(spec, folder, kind):
    """One file per micrograph; two formats for one micrograph as ``find_coordinate_file``
    decides (the same picks: the first; different: refused)."""
    stems = {os.path.splitext(n)[0]
             for n in _files_with(folder, EXTENSIONS, skip=RELION_BOOKKEEPING)}
    entries = {stem: find_coordinate_file(folder, stem) for stem in sorted(stems)}
    return PickerOutput(spec, kind, entries)


def _open_cbox_folder(spec, folder, kind):
    entries = {os.path.splitext(n)[0]: os.path.join(folder, n)
               for n in _files_with(folder, (".cbox",))}
    return PickerOutput(spec, kind, entries, default_min=CBOX_DEFAULT_CONFIDENCE, cryolo=True)


def _nested_star_files(folder, depth=4):
    """RELION's per-micrograph files below a job folder (RELION keeps the micrographs'
    folders: AutoPick/job006/Movies/mic_autopick.star), by file stem."""
    entries = {}
    root_depth = folder.rstrip(os.sep).count(os.sep)
    for here, dirs, files in os.walk(folder):
        if here.count(os.sep) - root_depth >= depth:
            dirs[:] = []
        for name in files:
            if (name.endswith(".star") and name not in RELION_BOOKKEEPING
                    and not name.startswith("coords_suffix_")):
                entries.setdefault(name[:-5], []).append(os.path.join(here, name))
    return _unique(entries, folder)


def _unique(entries, where):
    repeated = {k: v for k, v in entries.items() if len(v) > 1}
    if repeated:
        name, paths = next(iter(sorted(repeated.items())))
        raise InputError(f"--coordinates {where}: two coordinate files named {name} "
                         f"({paths[0]} and {paths[1]}); micrographs are matched by name, so "
                         "give the folder of one of them")
    return {k: v[0] for k, v in entries.items()}


def _relion4_index_in(folder, names):
    """RELION 4's ``autopick.star`` (or another index listing coordinate files) in a job
    folder, or None."""
    candidates = sorted(n for n in names if n.endswith(".star") and n not in RELION_BOOKKEEPING
                        and not n.startswith("coords_suffix_"))
    preferred = [n for n in candidates if n == "autopick.star"] + candidates
    for name in preferred:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and _is_relion4_index(path):
            return path
    return None


def _is_relion4_index(path):
    with open(path, errors="replace") as f:
        head = f.read(4096)
    return "_rlnMicrographCoordinates" in head


def _open_file(spec):
    path = spec.path
    name = os.path.basename(path)
    if cryosparc.is_cs(path):
        found = cryosparc.picker_files(path)
        return PickerOutput(spec, "cryoSPARC .cs", {stem: m.coordinates
                                                   for stem, m in found.items()},
                            what="micrograph name")
    if name.lower().endswith(ONE_MICROGRAPH_EXTENSIONS):
        raise InputError(f"--coordinates {spec.text}: is a file; give the folder that holds one "
                         f"picker's files, --coordinates {os.path.dirname(path) or '.'}")
    if name.startswith("coords_suffix_") and name.endswith(".star"):
        return _open_relion31_job(spec, path)
    first = _first_line(path)
    if tuple(first.split("\t")) in (TOPAZ_HEADER, TOPAZ_HEADER_3D) or (
            tuple(first.split()) in (TOPAZ_HEADER, TOPAZ_HEADER_3D)):
        return PickerOutput(spec, "Topaz extract file", _read_topaz(path), what="image_name")
    if name.lower().endswith(".star"):
        if _is_relion4_index(path):
            return _open_relion4_index(spec, path)
        return _open_listing_star(spec, path)
    raise InputError(f"--coordinates {spec.text}: a single file must be Topaz's extract output "
                     "(header image_name x_coord y_coord score), RELION's autopick.star or "
                     "coords_suffix_autopick.star, or a STAR file with _rlnMicrographName and "
                     "coordinates; for one file per micrograph give their folder")


def _first_line(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                return line.strip()
    return ""


# ------------------------------------------------------------------------------- RELION

def _open_relion31_job(spec, index):
    """RELION 3.1: ``coords_suffix_<pickname>.star`` (it holds the micrographs STAR's name);
    the coordinates are ``<job>/<micrograph's folder>/<stem>_<pickname>.star``."""
    pickname = os.path.basename(index)[len("coords_suffix_"):-len(".star")]
    folder = os.path.dirname(index) or "."
    suffix = "_" + pickname
    entries = {k: v for k, v in _nested_star_files(folder).items() if k.endswith(suffix)}
    if not entries:
        raise InputError(f"--coordinates {spec.text}: no *{suffix}.star files below {folder} "
                         f"(RELION 3.1 writes them there for pickname {pickname}); give the "
                         "autopick job's folder")
    return PickerOutput(spec, f"RELION 3.1 autopick job (pickname {pickname})", entries,
                        suffix=suffix)


def _open_relion4_index(spec, index):
    """RELION 4: the index lists each micrograph with its coordinate file, whose name is
    relative to the RELION project folder (where the job folder's ancestors are)."""
    table = _table_with(index, ("rlnMicrographName", "rlnMicrographCoordinates"))
    if table is None:
        raise InputError(f"--coordinates {spec.text}: {index} has no loop with "
                         "_rlnMicrographName and _rlnMicrographCoordinates")
    entries = {}
    for mic, coords in zip(table.getColumnValues("rlnMicrographName"),
                           table.getColumnValues("rlnMicrographCoordinates")):
        stem = os.path.splitext(os.path.basename(mic))[0]
        if stem in entries:
            raise InputError(f"--coordinates {spec.text}: two micrographs named {stem} in "
                             f"{index}; micrographs are matched by file name")
        entries[stem] = _project_file(index, coords, spec)
    return PickerOutput(spec, "RELION autopick.star", entries, what="_rlnMicrographName")


def _project_file(index, name, spec):
    """A file a RELION index names: relative to the project folder (an ancestor of the index),
    or, for a moved job folder, relative to the job folder after its ``jobNNN/``."""
    if os.path.isabs(name):
        candidates = [name]
    else:
        here = os.path.dirname(os.path.abspath(index))
        candidates = []
        while True:
            candidates.append(os.path.join(here, name))
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
        job = re.search(r"(?:^|/)job\d{3}/(.+)$", name)
        if job:
            candidates.append(os.path.join(os.path.dirname(index), job.group(1)))
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        raise InputError(f"--coordinates {spec.text}: {index} lists {name}, which is not there "
                         "(looked in the folders above the index and in its job folder); run "
                         "from the RELION project or give the job folder as RELION wrote it")
    return found


def _table_with(path, labels):
    try:
        tables = read_star_blocks(path)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        raise InputError(f"{path}: cannot read it as STAR ({error})") from error
    return next((t for t in tables.values() if t.hasAllColumns(list(labels))), None)


def _open_listing_star(spec, path):
    """A STAR file with every micrograph's picks: _rlnMicrographName, _rlnCoordinateX/Y and
    maybe a figure of merit (RELION's particles or coordinates STAR, this program's own
    coordinates.star)."""
    from .coordinates import STAR_SCORE_LABELS
    labels = ("rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY")
    table = _table_with(path, labels)
    if table is None:
        raise InputError(f"--coordinates {spec.text}: a single STAR file needs "
                         "_rlnMicrographName, _rlnCoordinateX and _rlnCoordinateY (or be "
                         "RELION's autopick.star); for one file per micrograph give their "
                         "folder")
    try:
        x, y = column_as_float(table, "rlnCoordinateX"), column_as_float(table, "rlnCoordinateY")
        label = next((s for s in STAR_SCORE_LABELS if table.hasColumn(s)), None)
        score = column_as_float(table, label) if label else np.full(len(x), np.nan)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from error
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError(f"{path}: a coordinate is not a finite number; fix or remove that row")
    names = [os.path.splitext(os.path.basename(m))[0]
             for m in table.getColumnValues("rlnMicrographName")]
    return PickerOutput(spec, "STAR file of picks", _group(names, x, y, score),
                        what="_rlnMicrographName")


def _group(names, x, y, score):
    """{name: its picks, in file order}, in one pass (Topaz files hold millions of picks)."""
    unique, which = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(unique) + 1))
    xy, score = np.column_stack([x, y])[order], np.asarray(score, dtype=np.float64)[order]
    return {str(n): Coordinates(xy[bounds[i]:bounds[i + 1]], score[bounds[i]:bounds[i + 1]])
            for i, n in enumerate(unique)}


# ------------------------------------------------------------------------------- Topaz

def _read_topaz(path):
    """Topaz ``extract``: tab-separated ``image_name x_coord y_coord [z_coord] score``, one
    file for all micrographs; image_name is the micrograph's file name without extension.
    Numbers are parsed by numpy (a million picks in seconds); a bad line is then found and
    named line by line."""
    with open(path) as f:
        lines = f.read().splitlines()
    header_at = next((i for i, line in enumerate(lines)
                      if line.strip() and not line.lstrip().startswith("#")), None)
    if header_at is None:
        return {}
    delimiter = "\t" if "\t" in lines[header_at] else None
    n_columns = len(lines[header_at].split(delimiter))
    rows = [(number, line) for number, line in enumerate(lines[header_at + 1:], header_at + 2)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return {}
    try:
        values = np.loadtxt(path, delimiter=delimiter, skiprows=header_at + 1, comments="#",
                            usecols=(1, 2, n_columns - 1), ndmin=2, dtype=np.float64)
        parsed = len(values) == len(rows) and all(
            len(line.split(delimiter)) == n_columns for _, line in rows[:1] + rows[-1:])
    except ValueError:
        parsed = False
    if not parsed:
        _find_bad_topaz_line(path, rows, delimiter, n_columns)
        raise InputError(f"{path}: cannot read it as Topaz's extract output; check that every "
                         f"line has the header's {n_columns} columns")
    bad = ~np.isfinite(values[:, :2]).all(axis=1) | np.isinf(values[:, 2])
    if bad.any():
        raise InputError(f"{path}, line {rows[int(np.argmax(bad))][0]}: a coordinate or score "
                         "is not a finite number; fix or remove that line")
    names = [line.split(delimiter, 1)[0].strip() for _, line in rows]
    return _group(names, values[:, 0], values[:, 1], values[:, 2])


def _find_bad_topaz_line(path, rows, delimiter, n_columns):
    """Raise ``InputError`` naming the first line that is not name, numbers, score."""
    for number, line in rows:
        values = line.split(delimiter)
        if len(values) != n_columns:
            raise InputError(f"{path}, line {number}: {len(values)} values, the header names "
                             f"{n_columns}; fix or remove that line")
        try:
            [float(values[k]) for k in (1, 2, n_columns - 1)]
        except ValueError:
            raise InputError(f"{path}, line {number}: x_coord, y_coord and score must be "
                             f"numbers, found '{line.strip()[:60]}'") from None


# ------------------------------------------------------------------------------- crYOLO

def _read_file(path):
    if path.lower().endswith(".cbox"):
        return read_cbox(path)
    return read_coordinates(path)


def read_cbox(path):
    """crYOLO's .cbox: since crYOLO 1.8 a STAR file (``data_cryolo``: _CoordinateX,
    _CoordinateY, _Width, _Height, _Confidence, ... with ``<NA>`` for missing values), before
    that tab-separated ``x y width height confidence est_width est_height``; x, y are the
    box's corner, as in crYOLO's .box files (centre = corner + size / 2)."""
    try:
        with open(path) as f:
            text = f.read()
        if "data_" in text:
            return _read_cbox_star(path)
        rows = [line.split() for line in text.splitlines()
                if line.strip() and not line.startswith("#")]
        if not rows:
            return Coordinates.empty()
        table = np.array([[float(v) for v in row[:5]] for row in rows], dtype=np.float64)
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as error:
        raise InputError(f"{path}: cannot read it as a crYOLO .cbox file ({error})") from error
    if table.shape[1] < 5:
        raise InputError(f"{path}: a .cbox row needs x y width height confidence")
    return _cbox_centres(path, table[:, 0], table[:, 1], table[:, 2], table[:, 3], table[:, 4])


def _read_cbox_star(path):
    tables = read_star_blocks(path, keep_empty=True)
    labels = ["CoordinateX", "CoordinateY", "Width", "Height"]
    table = tables.get("cryolo")
    if table is None:
        table = next((t for t in tables.values() if t.hasAllColumns(labels)), None)
    if table is None or not table.hasAllColumns(labels):
        raise InputError(f"{path}: no data_cryolo block with _CoordinateX, _CoordinateY, "
                         "_Width and _Height")
    columns = [_cbox_column(table, label) for label in labels]
    confidence = (_cbox_column(table, "Confidence") if table.hasColumn("Confidence")
                  else np.full(table.size(), np.nan))
    return _cbox_centres(path, *columns, confidence)


def _cbox_column(table, label):
    values = ["nan" if v in ("<NA>", "None", "nan") else v for v in table.getColumnValues(label)]
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _number(v))
        raise ValueError(f"column _{label} has the non-numeric value '{bad}'") from None


def _number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _cbox_centres(path, x, y, width, height, confidence):
    centres = np.column_stack([x + width / 2.0, y + height / 2.0])
    if not np.isfinite(centres).all():
        row = int(np.argmax(~np.isfinite(centres).all(axis=1)))
        raise InputError(f"{path}: box {row + 1} has no finite corner or size; fix or remove it")
    return Coordinates(centres, confidence)


def cryolo_counts_y_from_bottom(micrograph):
    """The micrograph's height when crYOLO's y counts from its bottom row, else None.

    crYOLO reads an MRC image as its rows are stored (header ISPG 0, as for single images), and
    any other file (TIFF, JPEG, PNG, an MRC with ISPG 1) flipped upside down: so Scipion's crYOLO
    plugin flips y for those (sphire/convert.py ``needToFlipOnY``), and so does this.
    """
    ext = os.path.splitext(micrograph)[1].lower()
    if ext in (".mrc", ".mrcs"):
        import mrcfile
        with mrcfile.open(micrograph, header_only=True, permissive=True) as mrc:
            return int(mrc.header.ny) if int(mrc.header.ispg) != 0 else None
    if ext in (".tif", ".tiff"):
        import tifffile
        with tifffile.TiffFile(micrograph) as tif:
            return int(tif.pages[0].shape[0])
    from PIL import Image
    with Image.open(micrograph) as picture:
        return int(picture.size[1])
