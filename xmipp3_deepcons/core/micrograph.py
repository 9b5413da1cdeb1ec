"""Micrograph preprocessing: the box becomes 128 px, particles white, zero mean, unit deviation.

Same order as the original program: Fourier downsampling, optional CTF phase flip at the new
pixel size, normalisation over the whole micrograph, contrast inversion. The network was trained
on boxes made this way, so every step and its order matter.
"""
import numpy as np
import scipy.fft

from ..constants import DEEP_PARTICLE_SIZE
from ..errors import InputError


def downsample_factor(box_size):
    """How much the micrographs shrink so that the user's box becomes 128 px."""
    if box_size < DEEP_PARTICLE_SIZE:
        raise InputError(f"box size {box_size} px is under {DEEP_PARTICLE_SIZE} px: are the "
                         f"micrographs already downsampled? give the box in the micrographs' "
                         f"own pixels")
    return float(box_size) / DEEP_PARTICLE_SIZE


def fourier_downsample(image, factor):
    """Shrink by keeping only the frequencies the smaller grid can hold: no aliasing, and the
    mean and the kept frequencies keep their amplitude.

    The output is floor(size / factor) on each axis, as in the original; so its pixel pitch is
    size / new_size original pixels, within one pixel of ``factor`` across the micrograph.
    Where the new size is even, both halves of its Nyquist frequency are summed into the one
    Nyquist bin (as scipy.signal.resample does), so a cosine at that frequency is sampled
    exactly and the result is the trigonometric interpolant sampled on the coarse grid.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"fourier_downsample needs a 2D image, not shape {image.shape}")
    if not factor >= 1:
        raise ValueError(f"downsampling factor {factor} is under 1")
    if factor == 1:
        return image.copy()
    rows, cols = image.shape
    new_rows, new_cols = int(rows // factor), int(cols // factor)
    if new_rows < 1 or new_cols < 1:
        raise ValueError(f"an image of shape {image.shape} cannot shrink by {factor}")
    spectrum = scipy.fft.rfft2(image, workers=-1)[:, :new_cols // 2 + 1]
    cropped = _keep_low_rows(spectrum, new_rows)
    if new_cols % 2 == 0 and new_cols < cols:
        _fold_nyquist_column(cropped)
    small = scipy.fft.irfft2(cropped, s=(new_rows, new_cols), workers=-1, overwrite_x=True)
    small *= np.float32(new_rows * new_cols / (rows * cols))
    return small.astype(np.float32, copy=False)


def _keep_low_rows(spectrum, new_rows):
    """The rows of an fft axis that a grid of ``new_rows`` holds, in that grid's fft order."""
    rows = spectrum.shape[0]
    positive, negative = (new_rows + 1) // 2, new_rows // 2
    kept = np.empty((new_rows, spectrum.shape[1]), dtype=spectrum.dtype)
    kept[:positive] = spectrum[:positive]
    kept[positive:] = spectrum[rows - negative:]
    if new_rows % 2 == 0 and new_rows < rows:
        # +new_rows/2 is the same frequency as -new_rows/2 on the small grid.
        kept[positive] += spectrum[negative]
    return kept


def _fold_nyquist_column(spectrum):
    """Add the implicit (-ky, -Nyquist) half of the last rfft column, which lands on the same
    bin of the small grid; irfft2 would otherwise keep only half of it."""
    rows = spectrum.shape[0]
    column = spectrum[:, -1]
    spectrum[:, -1] = column + np.conj(column[(-np.arange(rows)) % rows])


def normalize(image):
    """Zero mean, unit standard deviation over the whole image.

    A flat image (std 0) comes back as zeros instead of raising: only the caller knows which
    micrograph it is and whether to skip it or warn.
    """
    image = np.asarray(image, dtype=np.float32)
    centred = image - np.float32(image.mean(dtype=np.float64))
    std = float(np.sqrt(np.square(centred).mean(dtype=np.float64)))
    if std == 0:
        return np.zeros_like(centred)
    centred /= np.float32(std)
    return centred


def preprocess_micrograph(image, factor, invert=True, ctf=None, pixel_size=None):
    """Downsample, phase-flip (when ``ctf`` is given), normalise and invert one micrograph.

    ``pixel_size`` is the micrograph's own (Å/px, before downsampling); the flip uses the pixel
    size after downsampling, as the original did. ``invert=False`` is for micrographs whose
    particles are already white.
    """
    small = fourier_downsample(image, factor)
    if ctf is not None:
        if not pixel_size or pixel_size <= 0:
            raise InputError("pixel size: phase flipping needs the micrographs' pixel size in "
                             "Å/px; give the sampling rate of the micrographs")
        from .ctf import phase_flip
        small = phase_flip(small, pixel_size * factor, ctf)
    small = normalize(small)
    if invert:
        np.negative(small, out=small)
    return small
