"""128-px boxes around particle centres, replicating the edge pixels beyond the borders.

Coordinates move between the user's micrographs and the preprocessed (downsampled) ones as
floats (``xy / factor``): the original truncated them to integers on the way, losing up to
``factor`` pixels.
"""
import numpy as np

from ..constants import DEEP_PARTICLE_SIZE
from ..errors import InputError


def extract_boxes(image, centres_xy, size=DEEP_PARTICLE_SIZE):
    """(n, size, size) float32 boxes, centres_xy (n, 2) in this image's pixels (x = column,
    y = row).

    The box's centre pixel (index size // 2) is the centre rounded half up (the original
    truncated). Pixels beyond the image take the nearest edge pixel, so a particle at a border
    is kept rather than dropped; boxes are not normalised one by one (the micrograph was).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"extract_boxes needs a 2D image, not shape {image.shape}")
    centres = _pixel_centres(centres_xy)
    offsets = np.arange(size) - size // 2
    rows = np.clip(centres[:, 1, None] + offsets, 0, image.shape[0] - 1)
    cols = np.clip(centres[:, 0, None] + offsets, 0, image.shape[1] - 1)
    return image[rows[:, :, None], cols[:, None, :]].astype(np.float32, copy=False)


def box_inside(centres_xy, shape, box_size):
    """Which boxes of ``box_size`` px around these centres lie whole inside a micrograph of
    ``shape`` (rows, columns). A box that leaves it cannot be extracted whole: junk whoever
    picked it (the micrograph's edge, a denoiser's border stripes), or a cut particle."""
    xy = np.asarray(centres_xy, dtype=float).reshape(-1, 2)
    half = box_size / 2.0
    rows, cols = shape
    return ((xy[:, 0] >= half) & (xy[:, 0] <= cols - half)
            & (xy[:, 1] >= half) & (xy[:, 1] <= rows - half))


def _pixel_centres(centres_xy):
    """(n, 2) integer pixel centres; rounded half up so .5 never depends on parity."""
    centres = np.asarray(centres_xy, dtype=float)
    if centres.size == 0:
        return np.zeros((0, 2), dtype=np.intp)
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(f"particle centres must be an (n, 2) array of x, y, not shape "
                         f"{centres.shape}")
    if not np.isfinite(centres).all():
        raise InputError("particle coordinates: some are not finite numbers (nan or inf); "
                         "check the coordinate files")
    return np.floor(centres + 0.5).astype(np.intp)
