"""Checks of the run's parameters before any work, for the command line and the protocol alike.

Each check returns the value as the run should use it (a float, an int, 'auto') or raises
``InputError`` with one line of the form ``--option VALUE: what is wrong; what to do``. ``name``
is how the caller shows the parameter (an option such as ``--epochs``, or a form label). A
check that the engine makes while it runs, with no name given, raises a ``FieldError`` that
each front end words with its own names (``run.request``).
Pure Python: no TensorFlow, no Scipion.
"""
import glob
import math
import numbers
import os
import tempfile

import numpy as np

from .constants import MIN_POSITIVES
from .errors import FieldError, InputError

AUTO = "auto"


def shown(value):
    """The value as the user wrote it, near enough: -1.0 shows as -1, 1e-4 as 0.0001."""
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _fail(name, value, problem, fix):
    raise InputError(f"{name} {shown(value)}: {problem}; {fix}")


def _default_hint(default, otherwise):
    return f"give e.g. {shown(default)} (the default)" if default is not None else otherwise


def _as_number(name, value, fix):
    """A float from a number or numeric text; non-numbers and NaN / Inf are refused."""
    if isinstance(value, bool):
        _fail(name, value, "not a number", fix)
    if isinstance(value, numbers.Real):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except (TypeError, ValueError):
            _fail(name, value, "not a number", fix)
    if not math.isfinite(number):
        _fail(name, value, "not a finite number", fix)
    return number


def _as_integer(name, value, fix):
    number = _as_number(name, value, fix)
    if number != int(number):
        _fail(name, value, "not a whole number", fix)
    return int(number)


# --------------------------------------------------------------------------------- numbers

def non_finite_items(array, chunk=1024):
    """Indices (along the first axis) of the items of ``array`` that hold a NaN or Inf: the
    images of a stack, the boxes of a training set. Checked ``chunk`` items at a time, so the
    mask never costs more than that."""
    array = np.asarray(array)
    bad = [start + np.flatnonzero(~np.isfinite(part).reshape(len(part), -1).all(axis=1))
           for start in range(0, len(array), chunk) for part in [array[start:start + chunk]]]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def check_finite(name, value, fix="give a finite number"):
    """Any finite number (NaN, Inf and text that is no number are refused)."""
    return _as_number(name, value, fix)


def check_positive(name, value, default=None, integer=False):
    """A finite number above 0 (a whole number with ``integer``)."""
    fix = _default_hint(default, "give a whole number above 0" if integer
                        else "give a number above 0")
    number = _as_integer(name, value, fix) if integer else _as_number(name, value, fix)
    if number <= 0:
        _fail(name, value, "must be above 0", fix)
    return number


def check_integer(name, value, minimum=None, maximum=None, default=None):
    """A whole number within [minimum, maximum] (either may be None: no bound)."""
    if minimum is not None and maximum is not None:
        bounds = f"between {minimum} and {maximum}"
    elif minimum is not None:
        bounds = f"of at least {minimum}"
    elif maximum is not None:
        bounds = f"of at most {maximum}"
    else:
        bounds = ""
    fix = _default_hint(default, f"give a whole number {bounds}".rstrip())
    number = _as_integer(name, value, fix)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        _fail(name, value, f"must be a whole number {bounds}", fix)
    return number


def check_fraction(name, value, low=0.0, high=1.0, low_open=False, high_open=False,
                   default=None):
    """A finite number within ``low``..``high``; each end is included unless it is open."""
    interval = f"{'(' if low_open else '['}{shown(low)}, {shown(high)}{')' if high_open else ']'}"
    fix = _default_hint(default, f"give a number in {interval}")
    number = _as_number(name, value, fix)
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if below or above:
        _fail(name, value, f"must be in {interval}", fix)
    return number


def check_choice(name, value, choices):
    """One of ``choices`` (compared as given, numbers as numbers)."""
    for choice in choices:
        if value == choice or str(value).strip() == str(choice):
            return choice
    raise InputError(f"{name} {shown(value)}: not one of the choices; give one of "
                     f"{', '.join(map(str, choices))}")


# ------------------------------------------------------------------------ run parameters

def check_threshold(value, name="--threshold"):
    """'auto', -1 (keep every candidate) or a score threshold in [0, 1]."""
    fix = "give a score threshold in [0, 1], -1 to keep every candidate, or auto"
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = _as_number(name, value, fix)
    except InputError:
        _fail(name, value, "not a number between 0 and 1", fix)
    if number == -1:
        return -1.0
    if not 0 <= number <= 1:
        _fail(name, value, "must be between 0 and 1", fix)
    return number


def check_sampling(value, name="--sampling"):
    """The micrographs' pixel size in Å/px: above 0 and finite; None (not given) stays None."""
    if value is None:
        return None
    fix = "give the micrographs' pixel size in Å/px (or leave it out to read it from the MRC " \
          "header)"
    number = _as_number(name, value, fix)
    if number <= 0:
        _fail(name, value, "must be above 0", fix)
    return number


def check_box_size(box, micrograph_shape=None, name="--box-size"):
    """The particle box in micrograph pixels: a whole number above 0 and no larger than the
    micrograph (``micrograph_shape`` = (rows, columns), when known)."""
    fix = "give the particle box in the micrographs' own pixels"
    box = _as_integer(name, box, fix)
    if box <= 0:
        _fail(name, box, "must be above 0", fix)
    if micrograph_shape is not None:
        rows, cols = (int(n) for n in micrograph_shape[-2:])
        if box > min(rows, cols):
            _fail(name, box, f"larger than the micrographs ({cols}x{rows} px)", fix)
    return box


def check_l2(name, value):
    """The L2 regularisation strength: a number in [0, 1] (the one bound of both front ends
    and of training; typical values are 1e-6 to 1e-1)."""
    return check_fraction(name, value, 0, 1)


def check_train_size(value, name="--train-size", minimum=MIN_POSITIVES):
    """The positives to train on: -1 (all of them) or at least ``minimum`` (training refuses
    fewer)."""
    fix = f"give -1 to train on every positive, or a number of at least {minimum}"
    number = _as_integer(name, value, fix)
    if number != -1 and number < minimum:
        _fail(name, value, f"must be -1 (every positive) or at least {minimum} positives", fix)
    return number


def check_training_batch(value, name="--training-batch"):
    """Micrographs per training pass: 0 (one pass over all micrographs) or at least 1."""
    fix = "give a number of micrographs per training pass, or 0 to train once on all of them"
    number = _as_integer(name, value, fix)
    if number < 0:
        _fail(name, value, "must be 0 or more", fix)
    return number


# --------------------------------------------------------------------------------- paths

def _named_inputs(inputs):
    """[(option, path)] from {option: path or paths}, [(option, path)] or [path]."""
    if isinstance(inputs, dict):
        items = inputs.items()
    else:
        items = [item if isinstance(item, tuple) else ("an input", item) for item in inputs]
    named = []
    for option, paths in items:
        if paths is None:
            continue
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        named.extend((option, os.fspath(p)) for p in paths if p is not None and os.fspath(p))
    return named


def _input_root(path):
    """The file or folder an input names: for a glob pattern ('mics/*.mrc'), the folder that
    holds its matches; None for a pattern with no folder of its own ('*.mrc')."""
    if os.path.exists(path) or not glob.has_magic(path):
        return path
    head = path
    while glob.has_magic(head):
        head = os.path.dirname(head)
    return head or None


def _inside(path, folder):
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)


def _existing_ancestor(path):
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_writable(name, shown, folder):
    """``folder`` (or its nearest existing parent, where it will be made) takes new files."""
    where = _existing_ancestor(folder)
    if not os.path.isdir(where):
        raise InputError(f"{name} {shown}: cannot be made ({where} is a file); give a folder "
                         "you can write to")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"{name} {shown}: cannot write there ({reason}); give a folder you "
                         "can write to") from None


def check_output_folder(path, inputs=(), name="-o", writes=()):
    """The output folder: not a file, writable (made if missing), not an input, not inside an
    input folder, holding no input (a run writes coordinates/ and model/ into it: a picker's
    folder there would be overwritten), and without an input at a path the run writes
    (``writes``: names relative to the folder, such as "coordinates"). ``inputs``: {option: path or paths},
    [(option, path)] or [path]; glob patterns stand for their folder. Returns its absolute
    path."""
    shown = os.fspath(path)
    if not shown.strip():
        raise InputError(f"{name}: no output folder given; give a folder for the outputs")
    real = os.path.realpath(shown)
    written = [os.path.join(real, w) for w in writes]
    for option, given in _named_inputs(inputs):
        root = _input_root(given)
        if root is None:   # '*.mrc': its folder is the working one, which may hold -o
            here = os.path.realpath(os.getcwd())
            if here == real or _inside(here, real):
                raise InputError(f"{name} {shown}: holds the input {given} ({option}), and "
                                 "the run writes its outputs there; give an output folder "
                                 "that holds none of the inputs")
            continue
        source = os.path.realpath(root)
        if source == real:
            kind = "folder" if os.path.isdir(source) else "file"
            raise InputError(f"{name} {shown}: is the input {kind} given with {option}; give "
                             "a new folder for the outputs")
        if _inside(real, source):
            raise InputError(f"{name} {shown}: is inside the input folder {given} ({option}); "
                             "give an output folder outside the inputs")
        for target in written:
            if source == target or _inside(source, target):
                raise InputError(f"{name} {shown}: the input {given} ({option}) lies where "
                                 "the run writes its outputs; give another output folder")
        if _inside(source, real):
            raise InputError(f"{name} {shown}: holds the input {given} ({option}), and the run "
                             "writes its outputs there; give an output folder that holds none "
                             "of the inputs")
    if os.path.exists(real) and not os.path.isdir(real):
        raise InputError(f"{name} {shown}: is a file, not a folder; give a folder for the "
                         "outputs (it is made if missing)")
    _check_writable(name, shown, real)
    return os.path.abspath(shown)


# ------------------------------------------------------------------- more run parameters

SEED_MAX = 2 ** 31 - 1 - 100000   # room for the per-member and per-pass offsets added to it


def check_seed(value, name="--seed"):
    """A random seed: None (drawn) or a whole number from 0 to ``SEED_MAX`` (NumPy and
    TensorFlow take no negative or 64-bit seeds)."""
    if value is None:
        return None
    return check_integer(name, value, minimum=0, maximum=SEED_MAX)


def check_gpu(value, name="--gpu"):
    """GPUs as CUDA_VISIBLE_DEVICES takes them: '', '-1' (none), or a comma-separated list
    of device numbers or GPU-/MIG- UUIDs. Anything else CUDA would silently read as 'no GPU'."""
    if value is None:
        return None
    text = str(value).strip()
    if text in ("", "-1"):
        return text
    for item in text.split(","):
        item = item.strip()
        if not (item.isdigit() or item.startswith(("GPU-", "MIG-"))):
            raise InputError(f"{name} {value}: '{item}' is not a GPU number; give GPU numbers "
                             "as nvidia-smi lists them, e.g. 0 or 0,1 ('-1': no GPU)")
    return text


def check_box_in_micrographs(box, shapes, name="--box-size"):
    """The box against each micrograph (``shapes``: {file: (rows, columns)}): no larger than
    any of them, and at most half of the smallest side (a larger box leaves only the picks in
    the middle far enough from every edge to be boxed)."""
    for path, shape in shapes.items():
        if shape is None:
            continue
        rows, cols = (int(n) for n in shape[-2:])
        if box > min(rows, cols):
            raise InputError(f"{name} {box}: larger than the micrograph {path} ({cols}x{rows} "
                             "px); give the particle box in the micrographs' own pixels, or "
                             "leave that micrograph out")
        if 2 * box > min(rows, cols):
            raise InputError(f"{name} {box}: more than half the micrograph {path} ({cols}x{rows}"
                             " px): most picks would lie too close to an edge to be boxed; give "
                             "the particle box in the micrographs' own pixels")
    return box


def check_pixel_sizes(sizes, name="--micrographs"):
    """One pixel size for all micrographs (``sizes``: {file: Å/px or None}); the first is used
    for all, the CTF phase flip included, so mixed ones are refused with two of the names."""
    known = {path: size for path, size in sizes.items() if size}
    if not known:
        return None
    first_path, first = next(iter(known.items()))
    for path, size in known.items():
        if abs(size - first) > 1e-3 * first:
            raise InputError(f"{name}: the micrographs have different pixel sizes in their "
                             f"headers ({os.path.basename(first_path)} {first:g} Å/px, "
                             f"{os.path.basename(path)} {size:g} Å/px); screen micrographs of "
                             "one pixel size together, or give --sampling if the headers are "
                             "wrong")
    return first


def check_picks_inside(xy, shape, label):
    """Picks outside the micrograph mean a wrong frame or binning: refused before any work,
    with the file and the first one."""
    rows, cols = (int(n) for n in shape[-2:])
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= cols) | (xy[:, 1] < 0) | (xy[:, 1] >= rows)
    if outside.any():
        x, y = xy[np.argmax(outside)]
        raise InputError(f"{label}: {int(outside.sum())} coordinates lie outside the {cols}x{rows}"
                         f" px micrograph (first at x={x:.0f}, y={y:.0f}); were they picked on "
                         "micrographs of another size or binning?")


def duplicate_picks(xy, radius):
    """Indices of the picks of ONE picker that repeat an earlier pick of the same picker
    within ``radius`` pixels. A picker that lists a particle twice would make the copy a
    one-vote candidate (trained as a negative) beside its own positive: merge, keep the first."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if len(xy) < 2 or radius <= 0:
        return np.zeros(0, np.int64)
    from scipy.spatial import cKDTree
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    drop, kept = set(), np.ones(len(xy), bool)
    for i, j in sorted(map(tuple, pairs)):
        if kept[i] and j not in drop:
            drop.add(j)
            kept[j] = False
    return np.array(sorted(drop), np.int64)


def merge_repeated_picks(xy, radius, scores=None):
    """(picks, their scores, how many were merged): one picker's repeated picks within
    ``radius`` px merged, the first kept (``duplicate_picks``); both front ends' inputs."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    keep = np.setdiff1d(np.arange(len(xy)), duplicate_picks(xy, radius))
    return xy[keep], None if scores is None else np.asarray(scores)[keep], len(xy) - len(keep)


def repeated_picks_note(where, repeated, total, radius):
    """What both front ends say when ``merge_repeated_picks`` merged some of a picker's picks."""
    return (f"{where}: {repeated} of {total} picks repeat another pick of the same picker "
            f"within {radius:g} px; merged")


def same_picks(a, b, tolerance=0.5):
    """Whether two (n, 2) pick arrays hold the same picks, in any order, within ``tolerance``
    pixels (one picker's picks written in two formats)."""
    a = np.asarray(a, dtype=float).reshape(-1, 2)
    b = np.asarray(b, dtype=float).reshape(-1, 2)
    if a.shape != b.shape:
        return False
    a, b = a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]
    return bool(np.abs(a - b).max(initial=0) <= tolerance)


def check_training_positives(positives, min_votes, minimum=MIN_POSITIVES, where=""):
    """Enough candidates with ``min_votes`` votes (and their box inside the micrograph) to
    train on, counted from the picks before any work (and before a continued run discards the
    training it has)."""
    if positives < minimum:
        raise FieldError("min_votes", f"too few positives to train: {positives} candidates"
                                      f"{where} have at least {min_votes} votes and their box "
                                      f"inside the micrograph, {minimum} are needed; add "
                                      "micrographs or pickers, {fewer_votes}or score with an "
                                      "existing model ({existing_model})", named=False)
    return positives
