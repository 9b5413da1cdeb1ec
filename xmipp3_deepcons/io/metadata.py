"""Xmipp particle metadata (.xmd): what the original program read and wrote, via emtable."""
import os

import numpy as np

from ..errors import InputError


def write_particles_xmd(path, columns):
    """A ``data_particles`` loop; ``columns`` maps Xmipp label names (no underscore) to values."""
    from emtable import Table
    names = list(columns)
    lengths = {len(columns[n]) for n in names}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    table = Table(columns=names)
    for row in zip(*(_plain(columns[n]) for n in names)):
        table.addRow(*row)
    with open(path, "w") as f:
        f.write("# XMIPP_STAR_1 *\n#\n")
        if table.size():
            table.writeStar(f, tableName="particles")
        else:  # emtable writes no header for an empty table: keep the columns anyway
            f.write("data_particles\nloop_\n" + "".join(f" _{n}\n" for n in names))


def _plain(values):
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def read_particles_xmd(path):
    """{label: array or list of str}, from the first data block with rows."""
    from .coordinates import _star_tables
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such metadata file")
    tables = _star_tables(path)
    if not tables:
        return {}
    table = tables.get("particles") or next(iter(tables.values()))
    columns = {}
    for name in table.getColumnNames():
        values = table.getColumnValues(name)
        columns[name] = values if isinstance(values[0], str) else np.asarray(values)
    return columns


def image_references(path):
    """(index starting at 1, absolute stack path) of each row's ``image`` entry."""
    columns = read_particles_xmd(path)
    if "image" not in columns:
        raise InputError(f"{path}: no image column; give particle metadata with _image entries")
    folder = os.path.dirname(os.path.abspath(path))
    references = []
    for entry in columns["image"]:
        index, _, stack = entry.partition("@") if "@" in entry else ("1", "", entry)
        references.append((int(index), stack if os.path.isabs(stack) else os.path.join(folder, stack)))
    return references


def load_images(path):
    """Every image of a particle metadata file as (n, h, w) float32, each stack read once."""
    from .images import read_stack
    references = image_references(path)
    stacks = {}
    images = []
    for index, stack in references:
        if stack not in stacks:
            if not os.path.isfile(stack):
                raise InputError(f"{path}: image stack {stack} not found")
            stacks[stack] = read_stack(stack)
        images.append(stacks[stack][index - 1])
    return np.stack(images) if images else np.zeros((0, 128, 128), np.float32)
