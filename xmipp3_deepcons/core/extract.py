"""128-px boxes around particle centres, replicating the edge pixels beyond the borders."""
import numpy as np

from ..constants import DEEP_PARTICLE_SIZE


def extract_boxes(image, centres_xy, size=DEEP_PARTICLE_SIZE):
    """(n, size, size) float32 boxes centred on ``centres_xy`` (x = column, y = row).

    The centre pixel (index size // 2) is the rounded centre (the original truncated). Pixels
    outside the image take the nearest edge pixel, so no particle is dropped at a border.
    """
    centres = np.rint(np.asarray(centres_xy, dtype=float).reshape(-1, 2)).astype(int)
    offsets = np.arange(size) - size // 2
    rows = np.clip(centres[:, 1, None] + offsets, 0, image.shape[0] - 1)
    cols = np.clip(centres[:, 0, None] + offsets, 0, image.shape[1] - 1)
    return np.asarray(image[rows[:, :, None], cols[:, None, :]], dtype=np.float32)
