"""Micrograph preprocessing: the box becomes 128 px, particles white, zero mean, unit deviation.

Same order as the original program: Fourier downsampling, optional CTF phase flip at the new
pixel size, normalisation over the whole micrograph, contrast inversion. The network was trained
on boxes made this way, so every step and its order matter.
"""
import logging

import numpy as np
import scipy.fft
from scipy import ndimage

from ..constants import DEEP_PARTICLE_SIZE
from ..errors import InputError, UnusableMicrograph

log = logging.getLogger("xmipp3_deepcons")
# A non-finite pixel becomes the mean of the finite pixels in the square of this side around it.
REPAIR_WINDOW = 5
# Above this magnitude float32 sums overflow in the Fourier transforms; normalisation makes the
# scale irrelevant, so such an image is scaled down first.
SAFE_MAGNITUDE = 1e15


def repair_non_finite(image, name=None):
    """The image with each NaN or Inf pixel replaced, and how many were.

    A bad pixel becomes the mean of the finite pixels in the ``REPAIR_WINDOW`` square around
    it (those inside the image), or the mean of all finite pixels when that square has none.
    The count is logged as a warning when ``name`` (the micrograph's) is given. An image
    without finite pixels, or whose finite pixels are all equal, raises ``UnusableMicrograph``.
    """
    image = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(image)
    n_bad = int(finite.size - np.count_nonzero(finite))
    check_usable(image, name, finite if n_bad else None)
    if not n_bad:
        return image, 0
    values = np.where(finite, image, 0).astype(np.float64)
    weights = finite.astype(np.float64)
    sums = ndimage.uniform_filter(values, REPAIR_WINDOW, mode="constant", cval=0.0)
    counts = ndimage.uniform_filter(weights, REPAIR_WINDOW, mode="constant", cval=0.0)
    bad = ~finite
    local_sum, local_count = sums[bad], counts[bad]
    has_neighbours = local_count > 0.5 / REPAIR_WINDOW ** 2   # at least one finite pixel
    global_mean = values.sum() / weights.sum()
    repaired = image.copy()
    repaired[bad] = np.where(has_neighbours,
                             local_sum / np.where(has_neighbours, local_count, 1.0),
                             global_mean).astype(np.float32)
    if name is not None:
        log.warning(f"{name}: {n_bad} non-finite pixel{'s' if n_bad > 1 else ''} (NaN or Inf) "
                    f"replaced by the mean of the finite pixels around "
                    f"{'them' if n_bad > 1 else 'it'}")
    return repaired, n_bad


def check_usable(image, name=None, finite=None):
    """Raise ``UnusableMicrograph`` when the image has no finite pixel or its finite pixels are
    all equal (blank, constant: nothing to pick). ``finite``: its mask, when already known."""
    label = name if name is not None else "micrograph"
    if finite is None:
        low, high = float(image.min()), float(image.max())
        if np.isfinite(low) and np.isfinite(high):
            if low == high:
                raise UnusableMicrograph(f"{label}: every pixel is {low:g} (a blank "
                                         "micrograph); leave it out", name)
            return
        finite = np.isfinite(image)
    if not finite.any():
        raise UnusableMicrograph(f"{label}: every pixel is NaN or Inf; leave it out or export "
                                 "it again", name)
    kept = image[finite]
    if kept.min() == kept.max():
        raise UnusableMicrograph(f"{label}: every finite pixel is {float(kept[0]):g} (a blank "
                                 "micrograph); leave it out", name)


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
    micrograph it is and whether to skip it or warn. Values too large to square in float32
    are scaled down first (the result does not depend on the scale).
    """
    image = np.asarray(image, dtype=np.float32)
    centred = image - np.float32(image.mean(dtype=np.float64))
    std = float(np.sqrt(np.square(centred).mean(dtype=np.float64)))
    if not np.isfinite(std):
        peak = float(np.abs(centred).max())
        if not np.isfinite(peak):
            raise ValueError("normalize needs finite pixels; repair_non_finite them first")
        centred /= np.float32(peak)
        std = float(np.sqrt(np.square(centred).mean(dtype=np.float64)))
    if std == 0:
        return np.zeros_like(centred)
    centred /= np.float32(std)
    return centred


def preprocess_micrograph(image, factor, invert=True, ctf=None, pixel_size=None, name=None):
    """Downsample, phase-flip (when ``ctf`` is given), normalise and invert one micrograph.

    ``pixel_size`` is the micrograph's own (Å/px, before downsampling); the flip uses the pixel
    size after downsampling, as the original did. ``invert=False`` is for micrographs whose
    particles are already white. NaN / Inf pixels are repaired first (``repair_non_finite``;
    ``name`` is the micrograph's, for its warning and errors), so every output pixel is finite;
    a blank micrograph raises ``UnusableMicrograph``.
    """
    image, _ = repair_non_finite(image, name)
    peak = max(abs(float(image.min())), abs(float(image.max())))
    if peak > SAFE_MAGNITUDE:
        image = image * np.float32(1.0 / peak)
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
    if not np.isfinite(small).all():   # a bug, not the input: finite pixels were checked above
        raise ValueError(f"{name or 'micrograph'}: preprocessing gave non-finite pixels")
    return small
