"""Micrographs and particle stacks on disk: MRC through mrcfile, TIFF and 8-bit images too."""
import os

import mrcfile
import numpy as np

from ..errors import InputError


def read_micrograph(path):
    """2-D float32 array, rows = y, columns = x as stored (first slice of a 3-D MRC or TIFF)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such micrograph file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".mrc", ".mrcs", ".map", ".st"):
            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    raise ValueError("no image data")
                data = np.asarray(mrc.data)
        elif ext in (".tif", ".tiff"):
            import tifffile
            data = tifffile.imread(path, key=0)
        else:
            from PIL import Image
            with Image.open(path) as image:
                data = np.asarray(image.convert("L"))
    except InputError:
        raise
    except Exception as error:  # every reader has its own exceptions; the user needs the path
        raise InputError(f"{path}: cannot read the micrograph ({error})") from error
    if data.ndim == 3:
        data = data[0]
    if data.ndim != 2 or min(data.shape) < 2:
        raise InputError(f"{path}: not a 2-D micrograph (shape {data.shape})")
    return np.array(data, dtype=np.float32)


def read_pixel_size(path):
    """Å/px from an MRC header, None when absent or unknown."""
    if os.path.splitext(path)[1].lower() not in (".mrc", ".mrcs"):
        return None
    try:
        with mrcfile.open(path, permissive=True, header_only=True) as mrc:
            size = float(mrc.voxel_size.x)
    except Exception:
        return None
    return size if size > 0 else None


def write_mrc(path, array, pixel_size=None):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(array, dtype=np.float32))
        if pixel_size:
            mrc.voxel_size = pixel_size


def write_stack(path, boxes, pixel_size=None):
    """A particle stack (.mrcs); boxes (n, h, w)."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(boxes, dtype=np.float32).reshape((-1,) + np.shape(boxes)[-2:]))
        mrc.header.ispg = 0  # an image stack, not a volume
        if pixel_size:
            mrc.voxel_size = pixel_size


def read_stack(path):
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float32)
    return data.reshape((-1,) + data.shape[-2:])
