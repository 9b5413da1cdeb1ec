"""A synthetic cryo-EM corpus made with ASPIRE, for the pretrained models and the precompiled
negatives that ship with the plugin (``scripts/train_shipped_models.py``).

Needs the optional extra ``pip install .[sim]`` (ASPIRE); nothing else in the package imports
this module, so the plugin and the command line stay light.

Each *family* is one synthetic volume (``aspire.volume``: asymmetric, Cn, Dn, T or O Gaussian-blob
maps) at its own pixel size, particle diameter and box size. Its micrographs place the family's
particles with ``aspire.source.MicrographSimulation`` (random views, amplitudes and positions,
crowded up to about one particle per box area, as on a good grid), and then get what real
micrographs also hold:

- junk: aggregates (3-6 projections of the particle overlapping), ice crystals (small, very
  dense round or hexagonal blobs) and carbon edges (a thicker half-plane with a straight or
  curved border);
- the microscope: the micrograph's CTF, astigmatic, with its envelope (a B-factor), and the
  detector's modulation transfer, applied to particles and junk alike;
- an ice-thickness gradient (a smooth ramp in the background) and noise at a signal-to-noise
  ratio drawn per micrograph, coloured as a detector's (white plus a low-frequency excess);
- for a share of the micrographs, what many pickers are given instead of the raw image: a
  denoised micrograph (smoothed at a fraction of the particle's size), contrast-stretched and
  stored in 8 bits. Recipe version 1 had none of these four and its networks ranked the real
  candidates of EMPIAR-10017 (denoised 8-bit images) at ROC-AUC 0.60.

The truth is exact: particle centres, and junk centres (aggregate and crystal centres, points
along each carbon edge) away from every particle. Micrographs have dark particles, as recorded;
the engine's preprocessing inverts them.

``blob_volume`` and ``project_volume`` need numpy alone: the hard benchmarks and the tests make
their particles with them.
"""
import numpy as np
import scipy.fft

RECIPE_VERSION = 2
DENOISED_SHARE = 0.4        # of the micrographs, given to the network as pickers often see them
VOLTAGE, CS, AMPLITUDE_CONTRAST = 300.0, 2.7, 0.1
SYMMETRIES = ("C1", "C1", "C2", "C3", "C4", "C6", "D2", "D3", "T", "O")


def family_specs(n_families, seed, boxes=(128, 150, 180, 220)):
    """Reproducible random settings of each family: one volume, one box, one pixel size."""
    rng = np.random.default_rng([seed, 1])
    specs = []
    for i in range(n_families):
        box = int(boxes[i % len(boxes)])
        specs.append({
            "family": i,
            "box": box,
            "symmetry": str(SYMMETRIES[rng.integers(len(SYMMETRIES))]),
            "blobs": int(rng.integers(20, 80)),
            # particle diameter as a fraction of the box (pickers' boxes are 1.3-2.2x the particle)
            "diameter": float(rng.uniform(0.45, 0.75)),
            "pixel_size": float(rng.uniform(0.9, 2.2)),
            "seed": int(rng.integers(2 ** 31)),
        })
    return specs


def micrograph_specs(family, n_micrographs, seed):
    """Per micrograph: defocus and astigmatism, envelope, detector, SNR, how crowded, which junk,
    denoised or raw."""
    rng = np.random.default_rng([seed, 2, family["family"]])
    specs = []
    for j in range(n_micrographs):
        specs.append({
            "micrograph": j,
            "defocus": float(rng.uniform(6000, 30000)),             # Å underfocus
            "astigmatism": float(rng.uniform(0, 1500)),             # Å, defocus U - V
            "astigmatism_angle": float(rng.uniform(0, 180)),        # degrees
            "b_factor": float(rng.uniform(30, 200)),                # Å^2, CTF envelope
            "mtf_cutoff": float(rng.uniform(0.25, 0.6)),            # cycles/px, detector
            "low_frequency_noise": float(rng.uniform(0.2, 1.0)),    # share of the noise power
            "snr": float(np.exp(rng.uniform(np.log(0.015), np.log(0.15)))),
            "size": int(family["box"] * 7),                          # micrograph side, px
            "particles": int(rng.integers(16, 60)),
            "aggregates": int(rng.integers(0, 4)),
            "crystals": int(rng.integers(0, 5)),
            "carbon": bool(rng.random() < 0.4),
            "gradient": float(rng.uniform(0, 1.5)),                 # ramp, in noise std units
            "denoised": bool(rng.random() < DENOISED_SHARE),
            "smoothing": float(rng.uniform(0.02, 0.08)),            # of the particle diameter
            "seed": int(rng.integers(2 ** 31)),
        })
    return specs


def make_volume(family):
    """The family's ASPIRE volume, its particle filling ``diameter`` of a box-sized cube."""
    from aspire.volume import (AsymmetricVolume, CnSymmetricVolume, DnSymmetricVolume,
                               OSymmetricVolume, TSymmetricVolume, Volume)
    box = family["box"]
    inner = int(round(box * family["diameter"])) // 2 * 2
    sym, seed, k = family["symmetry"], family["seed"], family["blobs"]
    common = dict(L=inner, C=1, K=k, seed=seed, dtype=np.float32)
    if sym == "C1":
        synthetic = AsymmetricVolume(**common)
    elif sym[0] == "C":
        synthetic = CnSymmetricVolume(order=int(sym[1:]), **common)
    elif sym[0] == "D":
        synthetic = DnSymmetricVolume(order=int(sym[1:]), **common)
    elif sym == "T":
        synthetic = TSymmetricVolume(**common)
    else:
        synthetic = OSymmetricVolume(**common)
    data = synthetic.generate().asnumpy()[0]
    pad = (box - inner) // 2
    data = np.pad(data, ((pad, box - inner - pad),) * 3)
    return Volume(data.astype(np.float32), pixel_size=family["pixel_size"])


def ctf_params(spec):
    """The micrograph's CTF as the engine reads it (what phase flipping uses)."""
    from .core.ctf import CTFParams
    half = spec.get("astigmatism", 0.0) / 2
    return CTFParams(defocus_u=spec["defocus"] + half, defocus_v=spec["defocus"] - half,
                     defocus_angle=spec.get("astigmatism_angle", 0.0), voltage=VOLTAGE,
                     spherical_aberration=CS, amplitude_contrast=AMPLITUDE_CONTRAST)


def through_microscope(density, pixel_size, params, b_factor=0.0, mtf_cutoff=None):
    """The recorded image of a density layer: its spectrum times the physical CTF (minus the
    engine's, ``core.ctf`` docstring), its envelope exp(-B k^2 / 4) and the detector's
    transfer (Gaussian, 1/e at ``mtf_cutoff`` cycles/px)."""
    from .core.ctf import ctf_image
    pad = max(density.shape) // 8        # edge padding: no fringes wrapping round the borders
    padded = np.pad(density, pad, mode="edge")
    transfer = -ctf_image(padded.shape, pixel_size, params)
    ky = scipy.fft.fftfreq(padded.shape[0])[:, None]
    kx = scipy.fft.rfftfreq(padded.shape[1])[None, :]
    k2 = kx * kx + ky * ky                                           # cycles/px, squared
    transfer = transfer * np.exp(-b_factor * k2 / pixel_size ** 2 / 4)
    if mtf_cutoff:
        transfer = transfer * np.exp(-k2 / mtf_cutoff ** 2)
    out = scipy.fft.irfft2(scipy.fft.rfft2(padded) * transfer, s=padded.shape)
    return out[pad:-pad, pad:-pad].astype(np.float32)


def detector_noise(shape, variance, low_frequency, rng):
    """Noise of the given variance: white, plus a share ``low_frequency`` of its power in a
    smooth excess below 0.1 cycles/px (ice, charging, the detector's own spectrum)."""
    white = rng.normal(size=shape)
    ky = scipy.fft.fftfreq(shape[0])[:, None]
    kx = scipy.fft.rfftfreq(shape[1])[None, :]
    smooth = scipy.fft.irfft2(scipy.fft.rfft2(rng.normal(size=shape))
                              * np.exp(-(kx * kx + ky * ky) / 0.1 ** 2), s=shape)
    smooth /= smooth.std()
    noise = np.sqrt(1 - low_frequency) * white + np.sqrt(low_frequency) * smooth
    return (np.sqrt(variance) * noise).astype(np.float32)


def as_denoised(image, sigma):
    """What a picker given a denoised micrograph sees: the image smoothed (Gaussian, ``sigma``
    px), contrast-stretched between its 0.5 and 99.5 percentiles and stored in 8 bits."""
    from scipy.ndimage import gaussian_filter
    smooth = gaussian_filter(image, sigma)
    low, high = np.percentile(smooth, [0.5, 99.5])
    stretched = np.clip((smooth - low) / max(high - low, 1e-12), 0, 1)
    return np.round(stretched * 255).astype(np.float32)


def simulate_micrograph(volume, family, spec):
    """One micrograph: dict with image (float32, dark particles), particles and junk (n, 2)
    x, y centres in its pixels, ctf (CTFParams), pixel_size, box."""
    from aspire.source import MicrographSimulation
    from aspire.utils import Rotation

    box, size, pixel_size = family["box"], spec["size"], family["pixel_size"]
    rng = np.random.default_rng(spec["seed"])
    params = ctf_params(spec)
    microscope = dict(pixel_size=pixel_size, params=params, b_factor=spec["b_factor"],
                      mtf_cutoff=spec["mtf_cutoff"])
    radius = box * family["diameter"] / 2
    sim = MicrographSimulation(
        volume, micrograph_size=size, micrograph_count=1,
        particles_per_micrograph=spec["particles"], pixel_size=pixel_size,
        seed=spec["seed"] % (2 ** 31),
        interparticle_distance=int(radius * 1.7))   # neighbours may touch, not overlap much
    projections = np.asarray(sim.clean_images[0].asnumpy()[0], dtype=np.float32)
    clean = through_microscope(projections, **microscope)
    particles = np.asarray(sim.centers[0], dtype=float)[:, ::-1]   # ASPIRE: (row, col)

    # Signal power: over the particles' discs, as the SNR of particle images is defined.
    yy, xx = np.mgrid[:size, :size]
    inside = np.zeros((size, size), bool)
    for x, y in particles:
        r0, r1 = int(max(y - radius, 0)), int(min(y + radius + 1, size))
        c0, c1 = int(max(x - radius, 0)), int(min(x + radius + 1, size))
        inside[r0:r1, c0:c1] |= ((yy[r0:r1, c0:c1] - y) ** 2 + (xx[r0:r1, c0:c1] - x) ** 2
                                 <= radius ** 2)
    signal_power = float(np.var(clean[inside])) if inside.any() else float(np.var(clean))

    # Junk density, imaged through the same CTF. Its centres keep clear of the particles.
    density = np.zeros((size, size), np.float32)
    junk = []

    def free_point(margin, clearance):
        for _ in range(200):
            p = rng.uniform(margin, size - margin, 2)
            if not len(particles) or np.min(np.hypot(*(particles - p).T)) >= clearance:
                if not junk or np.min(np.hypot(*(np.array(junk) - p).T)) >= box * 0.5:
                    return p
        return None

    # Unit of junk density: the peak of a projection of the particle (its thickest view).
    unit = float(np.max(volume.project(Rotation.generate_random_rotations(
        2, seed=family["seed"] % (2 ** 31), dtype=np.float32)).asnumpy()))
    for _ in range(spec["aggregates"]):
        centre = free_point(box, box * 0.9)
        if centre is None:
            continue
        n = int(rng.integers(3, 7))
        rotations = Rotation.generate_random_rotations(n, seed=int(rng.integers(2 ** 31)),
                                                       dtype=np.float32)
        views = volume.project(rotations).asnumpy()
        for view in views:
            offset = rng.normal(0, box * family["diameter"] * 0.3, 2)
            add_patch(density, view * rng.uniform(0.8, 1.3), *(centre + offset))
        junk.append(centre)
    for _ in range(spec["crystals"]):
        centre = free_point(box // 2, box * 0.8)
        if centre is None:
            continue
        r = box * rng.uniform(0.08, 0.3)
        blob = crystal(int(2.5 * r) | 1, r, rng) * unit * rng.uniform(1.5, 4.0)
        add_patch(density, blob, *centre)
        junk.append(centre)
    if spec["carbon"]:
        edge_points = carbon_film(density, rng, unit * rng.uniform(0.4, 1.0))
        for p in edge_points[rng.permutation(len(edge_points))]:
            if (np.min(np.hypot(*(particles - p).T)) >= box * 0.8 and
                    (not junk or np.min(np.hypot(*(np.array(junk) - p).T)) >= box * 0.5)):
                junk.append(p)
    image = clean + through_microscope(density, **microscope)

    noise_var = signal_power / spec["snr"]
    # Ice thickness: a smooth ramp of the background, in units of the noise.
    ramp_angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ramp_angle) * xx + np.sin(ramp_angle) * yy) / size - 0.5
    image += (spec["gradient"] * np.sqrt(noise_var) * ramp).astype(np.float32)
    image += detector_noise(image.shape, noise_var, spec["low_frequency_noise"], rng)
    if spec["denoised"]:
        image = as_denoised(image, spec["smoothing"] * 2 * radius)
    return {"image": image, "particles": particles,
            "junk": np.array(junk, dtype=float).reshape(-1, 2), "ctf": params,
            "pixel_size": pixel_size, "box": box}


def blob_volume(rng, diameter, elongation=1.0, blobs=(18, 32), reach=0.36):
    """A Gaussian-blob particle made with numpy alone (the hard benchmarks, the tests):
    (k, 3) centres, widths and weights, in pixels."""
    k = int(rng.integers(*blobs))
    centres = rng.normal(0, 0.17 * diameter, (k, 3)) * [elongation, 1, 1 / elongation]
    centres *= np.minimum(1, reach * diameter / np.linalg.norm(centres, axis=1))[:, None]
    return centres, rng.uniform(0.05, 0.1, k) * diameter, rng.uniform(0.5, 1.0, k)


def project_volume(volume, rng, size):
    """A ``blob_volume``'s projection in a random orientation on a size x size patch."""
    from scipy.spatial.transform import Rotation as Rotations
    centres, widths, weights = volume
    xy = Rotations.random(random_state=int(rng.integers(2 ** 31))).apply(centres)[:, :2]
    axis = np.arange(size) - (size - 1) / 2.0
    image = np.zeros((size, size))
    for (x, y), s, w in zip(xy, widths, weights):
        image += w * s * np.outer(np.exp(-(axis - y) ** 2 / (2 * s * s)),
                                  np.exp(-(axis - x) ** 2 / (2 * s * s)))
    return image


def add_patch(image, patch, x, y):
    """Add ``patch`` centred at (x, y), clipped at the borders."""
    h, w = patch.shape
    r0, c0 = int(round(y)) - h // 2, int(round(x)) - w // 2
    rs = slice(max(r0, 0), min(r0 + h, image.shape[0]))
    cs = slice(max(c0, 0), min(c0 + w, image.shape[1]))
    if rs.start < rs.stop and cs.start < cs.stop:
        image[rs, cs] += patch[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]


def crystal(size, radius, rng):
    """A dense round or hexagonal blob with a soft edge (projected thickness ~ constant)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    if rng.random() < 0.5:
        distance = np.hypot(xx, yy)
    else:
        angle = rng.uniform(0, np.pi / 3)
        distance = np.max([np.abs(np.cos(angle + k * np.pi / 3) * xx +
                                  np.sin(angle + k * np.pi / 3) * yy) for k in range(3)],
                          axis=0) / np.cos(np.pi / 6)
    return (1 / (1 + np.exp((distance - radius) / max(radius * 0.08, 0.7)))).astype(np.float32)


def carbon_film(density, rng, thickness):
    """A carbon film over part of the micrograph, its border straight or gently curved; adds it
    to ``density`` and returns points along the border."""
    size = density.shape[0]
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    offset = rng.uniform(-0.3, 0.3) * size          # of the border from the centre
    curvature = rng.uniform(-1.5, 1.5) / size
    along = -np.sin(angle) * (xx - size / 2) + np.cos(angle) * (yy - size / 2)
    signed = (normal[0] * (xx - size / 2) + normal[1] * (yy - size / 2) - offset
              - curvature * along ** 2)
    film = 0.5 * (1 + np.tanh(signed / 6.0))
    density += (thickness * film).astype(np.float32)
    # Points on the border: where |signed| is smallest along lines across it.
    points = []
    for t in np.linspace(-size, size, 80):
        # the border point whose coordinate along the border is t
        p = (np.array([size / 2, size / 2]) + t * np.array([-np.sin(angle), np.cos(angle)])
             + (offset + curvature * t ** 2) * normal)
        if np.all(p > 0) and np.all(p < size - 1):
            points.append(p)
    return np.array(points).reshape(-1, 2)
