"""Three simple pickers for benchmarks/simulated.py, none of them ours: each knows only the
particle radius, works on a binned, inverted, band-passed micrograph, and writes Xmipp .pos with
its figure of merit as _cost (the file format Xmipp's own pickers write).

- ``log_blobs``: scikit-image ``blob_log`` (Laplacian of Gaussian over a few scales around the
  particle's); it finds compact dense things, particles and ice crystals alike.
- ``template``: scikit-image ``match_template`` with a soft disk of the particle's size, then
  ``peak_local_max``; normalised correlation, so faint particles count as much as dark junk.
- ``local_variance``: peaks of the local variance in a particle-sized window; it sees texture,
  so it also fires on carbon edges, crystals and aggregates.

Their thresholds are plain rules on robust z-scores (median, MAD) of each response, picked once
for a particle-like balance of misses and false picks, not fitted to the truth.
"""
import glob
import os

import numpy as np
from scipy import ndimage
from skimage import feature

from xmipp3_deepcons.io.coordinates import write_pos
from xmipp3_deepcons.io.images import read_micrograph

BINNED_RADIUS = 9.0       # px after binning: enough to see a particle, fast to search


def binning(radius):
    return max(1, int(round(radius / BINNED_RADIUS)))


def bin_image(image, factor):
    h, w = (s // factor * factor for s in image.shape)
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def robust_z(values, reference=None):
    """(values - median) / (1.4826 MAD) of ``reference``: a threshold that ignores the peaks."""
    reference = values if reference is None else reference
    median = np.median(reference)
    mad = 1.4826 * np.median(np.abs(reference - median)) or 1.0
    return (values - median) / mad


def flatten(image, radius):
    """Particles bright on a flat background: inverted, the ice gradient and the carbon film's
    mean level removed (everything smoother than a few particles)."""
    inverted = -image
    return inverted - ndimage.gaussian_filter(inverted, radius * 3)


def low_pass(image, radius):
    """Noise smoothed away below the particle's size, in robust z units."""
    return robust_z(ndimage.gaussian_filter(image, radius / 4))


def log_blobs(image, radius, z_threshold=2.5):
    """blob_log around the particle's scale; score = the scale-normalised LoG response."""
    sigma = radius / np.sqrt(2)
    blobs = feature.blob_log(image, min_sigma=sigma * 0.7, max_sigma=sigma * 1.3, num_sigma=5,
                             threshold=None, threshold_rel=None, overlap=0.5,
                             exclude_border=int(radius))
    if not len(blobs):
        return np.zeros((0, 2)), np.zeros(0)
    sigmas = np.unique(blobs[:, 2])
    responses = np.array([-s ** 2 * ndimage.gaussian_laplace(image, s) for s in sigmas])
    rows, cols = blobs[:, 0].astype(int), blobs[:, 1].astype(int)
    score = responses[np.searchsorted(sigmas, blobs[:, 2]), rows, cols]
    z = robust_z(score, responses[len(sigmas) // 2])
    keep = z > z_threshold
    return np.column_stack([cols, rows])[keep], z[keep]


def template(image, radius, threshold=0.2):
    """Normalised cross-correlation with a soft bright disk of the particle's radius, on the
    binned image without a further low-pass (the disk is the matched filter)."""
    size = int(2 * radius + 1) | 1
    yy, xx = np.mgrid[:size, :size] - size // 2
    disk = 1 / (1 + np.exp((np.hypot(xx, yy) - radius * 0.8) / (radius * 0.15)))
    score = feature.match_template(image, disk, pad_input=True, mode="reflect")
    peaks = feature.peak_local_max(score, min_distance=int(radius * 1.2),
                                   threshold_abs=threshold, exclude_border=int(radius))
    return peaks[:, ::-1], score[peaks[:, 0], peaks[:, 1]]


def local_variance(image, radius, z_threshold=3.0):
    """Peaks of the variance in a particle-sized window: texture, wherever it comes from."""
    detail = image - ndimage.gaussian_filter(image, radius)
    variance = ndimage.gaussian_filter(detail ** 2, radius * 0.6)
    z = robust_z(variance)
    peaks = feature.peak_local_max(z, min_distance=int(radius * 1.2), threshold_abs=z_threshold,
                                   exclude_border=int(radius))
    return peaks[:, ::-1], z[peaks[:, 0], peaks[:, 1]]


PICKERS = {"logBlobs": log_blobs, "template": template, "localVariance": local_variance}
SMOOTHED = {"logBlobs": True, "template": False, "localVariance": True}


def pick_micrograph(path, radius):
    """Every picker's (xy, score) in the micrograph's own pixels."""
    factor = binning(radius)
    radius_binned = radius / factor
    flat = flatten(bin_image(read_micrograph(path), factor), radius_binned)
    smooth = low_pass(flat, radius_binned)
    picks = {}
    for name, picker in PICKERS.items():
        xy, score = picker(smooth if SMOOTHED[name] else flat, radius_binned)
        picks[name] = ((np.asarray(xy, float) + 0.5) * factor - 0.5, score)
    return picks


def pick_all(micrographs_dir, coords_dir, radius):
    """Write coords_dir/<picker>/<mic>.pos for every micrograph; returns the picker names."""
    for name in PICKERS:
        os.makedirs(os.path.join(coords_dir, name), exist_ok=True)
    for path in sorted(glob.glob(os.path.join(micrographs_dir, "*.mrc"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        for name, (xy, score) in pick_micrograph(path, radius).items():
            write_pos(os.path.join(coords_dir, name, stem + ".pos"), xy, score, score_label="cost")
    return list(PICKERS)
