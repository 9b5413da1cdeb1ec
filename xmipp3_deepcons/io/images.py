"""Micrographs and particle stacks on disk: MRC through mrcfile, TIFF and 8/16-bit images too.

Arrays are float32 with rows = y and columns = x exactly as stored: no flip, so picker
coordinates (x = column, y = row) index them directly. Files are written atomically (see
``atomic``): a reader never finds half of one.
"""
import os
import warnings

import mrcfile
import numpy as np

from ..errors import InputError
from .atomic import atomic_path

MRC_EXTENSIONS = (".mrc", ".mrcs", ".map", ".st", ".rec")
TIFF_EXTENSIONS = (".tif", ".tiff")
PICTURE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def read_micrograph(path):
    """A 2-D float32 micrograph, every pixel finite.

    NaN / Inf pixels are replaced by the mean of their finite neighbours, with a warning that
    names the file and says how many (``core.micrograph.repair_non_finite``). A file that holds
    several frames (an MRC with nz > 1, a multi-page TIFF: a movie) is refused, not summed:
    frames must be aligned before they are summed, by motion correction. A micrograph without
    finite pixels, or with all of them equal, raises ``UnusableMicrograph`` (an ``InputError``
    that names the file) so that a caller screening many may skip it.
    """
    from ..core.micrograph import repair_non_finite
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such micrograph file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in MRC_EXTENSIONS + TIFF_EXTENSIONS + PICTURE_EXTENSIONS:
        raise InputError(f"{path}: unknown micrograph format '{ext}'; give .mrc, .tif or .png")
    try:
        if ext in MRC_EXTENSIONS:
            data = _mrc_image(path)
        elif ext in TIFF_EXTENSIONS:
            data = _tiff_image(path)
        else:
            data = _read_picture(path)
    except InputError:
        raise
    except Exception as error:  # each reader raises its own types; the user needs the path
        raise InputError(f"{path}: cannot read the micrograph ({error})") from error
    if data.ndim != 2 or min(data.shape) < 2:
        raise InputError(f"{path}: not a 2-D micrograph (shape {data.shape})")
    data, _ = repair_non_finite(np.array(data, dtype=np.float32), path)
    return data


def read_micrograph_shape(path):
    """A micrograph's (rows, columns) from its header alone (the checks before any work read
    no pixels); a movie or stack is refused as ``read_micrograph`` refuses it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such micrograph file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in MRC_EXTENSIONS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with mrcfile.open(path, permissive=True, header_only=True) as mrc:
                    header = mrc.header
                    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            if nz > 1:
                _refuse_frames(path, nz)
            return ny, nx
        if ext in TIFF_EXTENSIONS:
            import tifffile
            with tifffile.TiffFile(path) as tif:
                if len(tif.pages) > 1:
                    _refuse_frames(path, len(tif.pages))
                shape = tif.pages[0].shape
            return tuple(shape[:2]) if len(shape) == 3 and shape[-1] in (3, 4) else shape[-2:]
        if ext in PICTURE_EXTENSIONS:
            from PIL import Image
            with Image.open(path) as picture:
                return picture.size[1], picture.size[0]
    except InputError:
        raise
    except Exception as error:   # each reader raises its own types; the user needs the path
        raise InputError(f"{path}: cannot read the micrograph ({error})") from error
    raise InputError(f"{path}: unknown micrograph format '{ext}'; give .mrc, .tif or .png")


def _refuse_frames(path, n_frames):
    raise InputError(f"{path}: holds {n_frames} frames (a movie or a stack), not one "
                     "micrograph; give aligned and summed micrographs (motion-corrected), one "
                     "image per file")


def _open_mrc(path, mmap=False):
    """Strict first; a header that other programs wrote sloppily is then read permissively."""
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        return opener(path, mode="r")
    except ValueError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = opener(path, mode="r", permissive=True)
        if mrc.data is None:
            mrc.close()
            raise ValueError("the MRC header does not describe the data that follows it")
        return mrc


def _mrc_image(path):
    with _open_mrc(path, mmap=True) as mrc:  # mapped: a movie's frames are never read
        data = mrc.data
        if data.ndim == 3:
            if data.shape[0] != 1:
                _refuse_frames(path, data.shape[0])
            data = data[0]
        return np.array(data)


def _tiff_image(path):
    import tifffile
    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) > 1:
            _refuse_frames(path, len(tif.pages))
        data = tif.pages[0].asarray()
    if data.ndim == 3 and data.shape[0] > 1 and data.shape[-1] not in (3, 4):
        _refuse_frames(path, data.shape[0])
    return data


def _read_picture(path):
    from PIL import Image
    with Image.open(path) as picture:
        if picture.mode not in ("L", "I", "F", "I;16", "I;16B", "I;16L"):
            picture = picture.convert("L")  # colour or palette: luminance
        return np.asarray(picture)


def read_pixel_size(path):
    """Å/px from an MRC header, None when the header has none (0) or the file is not MRC."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in MRC_EXTENSIONS:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, permissive=True, header_only=True) as mrc:
                size = float(mrc.voxel_size.x)
    except (OSError, ValueError):
        return None
    return size if np.isfinite(size) and size > 0 else None


def write_mrc(path, array, pixel_size=None):
    """A float32 MRC: a 2-D image, or a 3-D array written as an image stack (not a volume)."""
    data = np.asarray(array, dtype=np.float32)
    if data.ndim not in (2, 3):
        raise ValueError(f"an MRC image must be 2-D or a 3-D stack, not shape {data.shape}")
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(data)
        if data.ndim == 3:
            mrc.set_image_stack()
        if pixel_size:
            mrc.voxel_size = float(pixel_size)


def write_stack(path, boxes, pixel_size=None):
    """A particle stack (.mrcs) from boxes (n, h, w); Xmipp reads image i as ``i@path``."""
    boxes = np.asarray(boxes, dtype=np.float32)
    write_mrc(path, boxes.reshape((-1,) + boxes.shape[-2:]), pixel_size)


def read_stack(path):
    """Every image of an MRC stack as (n, h, w) float32 (a single image gives n = 1)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such image stack")
    try:
        with _open_mrc(path) as mrc:
            data = np.array(mrc.data, dtype=np.float32)
    except Exception as error:
        raise InputError(f"{path}: cannot read the image stack ({error})") from error
    return data.reshape((-1,) + data.shape[-2:])


