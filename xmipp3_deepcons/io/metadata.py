"""Xmipp particle metadata (.xmd): the lists of particle images the original program read and
wrote, so its inputs and outputs keep working with xmippLib and Scipion."""
import os

import numpy as np

from ..constants import DEEP_PARTICLE_SIZE
from ..checks import non_finite_items
from ..errors import InputError
from .atomic import atomic_write
from .coordinates import XMIPP_HEADER, quote_star_column, read_star_blocks

# Xmipp stores these as integers and truncates a decimal value, so they are rounded on write.
INTEGER_LABELS = frozenset({"xcoor", "ycoor", "enabled", "itemId", "ref", "micrographId",
                            "particleId", "classNumber"})
# Text labels stay text even when every value looks like a number (a micrograph named "001").
TEXT_LABELS = frozenset({"image", "micrograph", "imageOriginal", "imageRef", "micrographMovie",
                         "ctfModel", "psd", "comment", "fileName"})
PARTICLE_BLOCKS = ("particles", "noname", "")


# ----------------------------------------------------------------------------------- writing

def write_particles_xmd(path, columns):
    """A ``data_particles`` loop; ``columns`` maps Xmipp label names (no underscore) to
    equally long sequences: strings, integers or floats."""
    names = list(columns)
    values = [_as_list(columns[name]) for name in names]
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        detail = ", ".join(f"{n}: {len(v)}" for n, v in zip(names, values))
        raise ValueError(f"{path}: metadata columns differ in length ({detail})")
    cells = [_format_column(name, column) for name, column in zip(names, values)]
    widths = [max((len(c) for c in column), default=0) for column in cells]
    lines = [XMIPP_HEADER + "data_particles\nloop_\n"] + [f" _{name}\n" for name in names]
    for row in zip(*cells):
        lines.append(" ".join(cell.rjust(width) for cell, width in zip(row, widths)) + "\n")
    with atomic_write(path) as f:
        f.write("".join(lines))


def _as_list(values):
    if isinstance(values, (str, bytes)):
        raise ValueError("each metadata column must be a sequence, not a single string")
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _format_column(label, column):
    """A column's cells as text; its strings all quoted when one must be (see
    ``quote_star_column``)."""
    column = [value.item() if isinstance(value, np.generic) else value for value in column]
    texts = [i for i, value in enumerate(column) if isinstance(value, str)]
    cells = [None if isinstance(value, str) else _format_cell(label, value) for value in column]
    for i, text in zip(texts, quote_star_column(column[i] for i in texts)):
        cells[i] = text
    return cells


def _format_cell(label, value):
    if label in INTEGER_LABELS or isinstance(value, (bool, int)):
        return str(int(round(value)))
    # 9 significant digits keep float32 scores exact; xmippLib reads "nan" as 0.
    return format(float(value), ".9g")


# ----------------------------------------------------------------------------------- reading

def read_particles_xmd(path):
    """{label: np.ndarray for numbers, list of str for text}, from ``data_particles`` (else a
    bare ``data_`` / ``data_noname`` block, else the first block with columns)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such metadata file")
    try:
        tables = read_star_blocks(path, keep_empty=True)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        raise InputError(f"{path}: cannot read the metadata ({error})") from error
    if not tables:
        return {}
    name = next((n for n in PARTICLE_BLOCKS if n in tables and tables[n].size()), None)
    if name is None:
        name = next((n for n, t in tables.items() if t.size()), next(iter(tables)))
    table = tables[name]
    return {label: _typed_column(label, table.getColumnValues(label))
            for label in table.getColumnNames()}


def _typed_column(label, texts):
    """Integers if every value is one, else floats if every value is one, else strings."""
    if label in TEXT_LABELS:
        return list(texts)
    for convert, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([convert(t) for t in texts], dtype=dtype)
        except (ValueError, OverflowError):
            continue
    return list(texts)


def read_image_list(path):
    """(1-based index, absolute stack path) of each row's ``image`` entry (``idx@stack``);
    relative stack paths are relative to the metadata file's folder."""
    path = os.fspath(path)
    columns = read_particles_xmd(path)
    if "image" not in columns:
        raise InputError(f"{path}: no _image column; give particle metadata whose _image "
                         "entries look like 3@particles.mrcs")
    folder = os.path.dirname(os.path.abspath(path))
    references = []
    for entry in columns["image"]:
        index, stack = entry.split("@", 1) if "@" in entry else ("1", entry)
        if stack.endswith((":mrcs", ":mrc")):  # Xmipp's format hint, not part of the path
            stack = stack.rsplit(":", 1)[0]
        try:
            index = int(index)
        except ValueError:
            raise InputError(f"{path}: image entry '{entry}' does not start with an index"
                             ) from None
        references.append((index, stack if os.path.isabs(stack) else os.path.join(folder, stack)))
    return references


def load_images(path):
    """Every image of a particle metadata file as (n, h, w) float32, in row order; each stack
    is read once however many rows point into it."""
    from .images import read_stack
    references = read_image_list(path)
    rows_by_stack = {}
    for row, (index, stack) in enumerate(references):
        rows_by_stack.setdefault(stack, []).append((row, index))
    if not references:
        return np.zeros((0, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE), dtype=np.float32)
    images = None
    for stack, rows in rows_by_stack.items():
        if not os.path.isfile(stack):
            raise InputError(f"{path}: image stack {stack} not found")
        data = read_stack(stack)
        if images is None:
            images = np.empty((len(references),) + data.shape[1:], dtype=np.float32)
        if data.shape[1:] != images.shape[1:]:
            raise InputError(f"{path}: {stack} holds {data.shape[1:]} images, others "
                             f"{images.shape[1:]}; all particles must have one box size")
        for row, index in rows:
            if not 1 <= index <= len(data):
                raise InputError(f"{path}: image {index}@{stack} is out of range "
                                 f"(the stack has {len(data)} images)")
            images[row] = data[index - 1]
    bad = non_finite_items(images)
    if len(bad):
        index, stack = references[bad[0]]
        raise InputError(f"{path}: {len(bad)} of {len(images)} images have NaN or Inf pixels "
                         f"(the first: {index}@{stack}); remove them from the metadata or "
                         "extract them again")
    return images
