"""Micrograph preprocessing: the box becomes 128 px, particles white, zero mean, unit deviation.

Order as in the original program: Fourier downsampling, optional CTF phase flip (at the new pixel
size), normalisation over the whole micrograph, contrast inversion.
"""
import numpy as np
import scipy.fft

from ..constants import DEEP_PARTICLE_SIZE
from ..errors import InputError


def downsample_factor(box_size):
    """How much the micrographs shrink so that the box becomes 128 px."""
    if box_size < DEEP_PARTICLE_SIZE:
        raise InputError(f"box size {box_size} px is under {DEEP_PARTICLE_SIZE} px: are the "
                         f"micrographs already downsampled? give the box in the micrographs' "
                         f"own pixels")
    return float(box_size) / DEEP_PARTICLE_SIZE


def fourier_downsample(image, factor):
    """Keep the frequencies the smaller grid can hold: no aliasing, mean and low frequencies kept.

    Output shape is floor(size / factor) on each axis.
    """
    image = np.asarray(image, dtype=np.float32)
    if factor == 1:
        return image.copy()
    rows, cols = image.shape
    new_rows, new_cols = int(rows // factor), int(cols // factor)
    spectrum = scipy.fft.rfft2(image, workers=-1)
    kept_rows = np.r_[0:(new_rows + 1) // 2, rows - new_rows // 2:rows]
    cropped = spectrum[kept_rows, :new_cols // 2 + 1]
    small = scipy.fft.irfft2(cropped, s=(new_rows, new_cols), workers=-1)
    small *= (new_rows * new_cols) / float(rows * cols)
    return small.astype(np.float32)


def normalize(image):
    """Zero mean, unit standard deviation (a flat image becomes zeros)."""
    image = np.asarray(image, dtype=np.float32)
    std = float(image.std())
    centred = image - np.float32(image.mean())
    return centred / np.float32(std) if std > 0 else centred


def preprocess_micrograph(image, factor, invert=True, ctf=None, pixel_size=None):
    """Downsample, phase-flip (when ``ctf`` is given), normalise and invert one micrograph.

    ``pixel_size`` is the micrograph's own (Å/px, before downsampling).
    """
    small = fourier_downsample(image, factor)
    if ctf is not None:
        from .ctf import phase_flip
        if not pixel_size:
            raise InputError("phase flipping needs the micrographs' pixel size (--sampling)")
        small = phase_flip(small, pixel_size * factor, ctf)
    small = normalize(small)
    return -small if invert else small
