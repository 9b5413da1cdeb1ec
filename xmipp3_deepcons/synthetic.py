"""A small synthetic screening problem with exact truth: the demo's data and the tests' data.

Micrographs hold dark, elongated particles (random in-plane rotation) and junk (small dense
ice-like spots and aggregates of blobs) in correlated noise. Three simulated pickers find most
particles with some position jitter, a share of the junk and some empty background, each in its
own file format, with a score per pick.
"""
import os

import numpy as np
from scipy import ndimage

PICKERS = (  # name, format, recall, junk picked, background picks per mic, jitter px
    ("pickerA", ".pos", 0.92, 0.5, 6, 3.0),
    ("pickerB", ".star", 0.85, 0.4, 10, 5.0),
    ("pickerC", ".box", 0.6, 0.6, 14, 6.0),
)


def particle_template(size, rng):
    """A dark asymmetric particle: two overlapping ellipses, randomly rotated."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    body = np.exp(-((u / (size * 0.22)) ** 2 + (v / (size * 0.13)) ** 2) ** 2)
    head = np.exp(-(((u - size * 0.18) / (size * 0.09)) ** 2 + (v / (size * 0.09)) ** 2) ** 2)
    return -(body + 0.8 * head)


def junk_template(size, rng):
    """Junk: a small very dense spot, or an aggregate of several blobs."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    if rng.random() < 0.5:
        r = size * rng.uniform(0.05, 0.09)
        return -2.5 * np.exp(-(xx ** 2 + yy ** 2) / (2 * r ** 2))
    out = np.zeros((size, size))
    for _ in range(rng.integers(4, 8)):
        cx, cy = rng.normal(0, size * 0.15, 2)
        r = size * rng.uniform(0.04, 0.08)
        out -= 1.2 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r ** 2))
    return out


def _place(image, template, x, y):
    size = template.shape[0]
    r0, c0 = int(round(y)) - size // 2, int(round(x)) - size // 2
    rs, cs = slice(max(r0, 0), min(r0 + size, image.shape[0])), slice(max(c0, 0), min(c0 + size, image.shape[1]))
    image[rs, cs] += template[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]


def _spread_points(rng, n, shape, margin, min_distance, avoid=None):
    points = [] if avoid is None else list(avoid)
    start = len(points)
    for _ in range(50 * n):
        if len(points) - start >= n:
            break
        p = rng.uniform(margin, np.array(shape[::-1]) - margin)
        if all(np.hypot(*(p - q)) >= min_distance for q in points):
            points.append(p)
    return np.array(points[start:]).reshape(-1, 2)


def generated_micrograph(rng, shape=(1536, 1536), n_particles=80, n_junk=20, box=128, noise=1.0):
    """Returns (image float32, particle centres (n,2) x,y, junk centres (m,2) x,y)."""
    size = int(box * 0.6)
    image = np.zeros(shape)
    particles = _spread_points(rng, n_particles, shape, box // 2, size * 1.1)
    junk = _spread_points(rng, n_junk, shape, box // 2, size * 1.1, avoid=particles)
    for x, y in particles:
        _place(image, particle_template(size, rng), x, y)
    for x, y in junk:
        _place(image, junk_template(size, rng), x, y)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    image += noise * grain / grain.std()
    return image.astype(np.float32), particles, junk


def simulate_picker(rng, particles, junk, shape, recall, junk_share, background, jitter, box):
    """Picks (n,2) and scores (n,): real particles score higher on average than mistakes."""
    found = particles[rng.random(len(particles)) < recall]
    bad = junk[rng.random(len(junk)) < junk_share]
    empty = _spread_points(rng, background, shape, box // 2, box * 0.5,
                           avoid=np.concatenate([particles, junk]))
    xy = np.concatenate([found, bad, empty])
    xy = xy + rng.normal(0, jitter, xy.shape)
    scores = np.concatenate([rng.uniform(0.4, 1.0, len(found)), rng.uniform(0.1, 0.8, len(bad) + len(empty))])
    return np.clip(xy, 0, np.array(shape[::-1]) - 1), scores


def make_dataset(folder, n_micrographs=6, seed=0, box=128, shape=(1536, 1536),
                 n_particles=80, n_junk=20, noise=1.0):
    """Write micrographs/, coords/<picker>/ (one format per picker) and truth/ under ``folder``.

    truth/<mic>.csv holds the particle centres, truth/<mic>_junk.csv the junk centres.
    """
    from .io.coordinates import write_coordinates_star, write_pos
    from .io.images import write_mrc
    rng = np.random.default_rng(seed)
    for sub in ["micrographs", "truth"] + [f"coords/{name}" for name, *_ in PICKERS]:
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for i in range(n_micrographs):
        stem = f"mic_{i:03d}"
        image, particles, junk = generated_micrograph(rng, shape, n_particles, n_junk, box, noise)
        write_mrc(os.path.join(folder, "micrographs", stem + ".mrc"), image, pixel_size=2.0)
        for kind, xy in (("", particles), ("_junk", junk)):
            np.savetxt(os.path.join(folder, "truth", stem + kind + ".csv"), xy, fmt="%.1f",
                       delimiter=",", header="x,y", comments="")
        for name, ext, recall, junk_share, background, jitter in PICKERS:
            xy, scores = simulate_picker(rng, particles, junk, shape, recall, junk_share,
                                         background, jitter, box)
            path = os.path.join(folder, "coords", name, stem + ext)
            if ext == ".pos":
                write_pos(path, xy, scores, score_label="cost")
            elif ext == ".star":
                write_coordinates_star(path, [stem + ".mrc"] * len(xy), xy, scores)
            else:
                corner = xy - box / 2.0
                np.savetxt(path, np.column_stack([corner, np.full((len(xy), 2), box), scores]),
                           fmt=["%.1f", "%.1f", "%d", "%d", "%.4f"], delimiter="\t")
    return folder


def write_pos_folders(folder):
    """Every picker's coordinates again as Xmipp .pos under ``folder``/pos/<picker>/, the
    format Scipion's coordinate import reads without other plugins; returns those folders."""
    from .io.coordinates import find_coordinate_file, read_coordinates, write_pos
    targets = []
    for name, *_ in PICKERS:
        source, target = (os.path.join(folder, sub, name) for sub in ("coords", "pos"))
        os.makedirs(target, exist_ok=True)
        for file_name in sorted(os.listdir(source)):
            stem = os.path.splitext(file_name)[0]
            picks = read_coordinates(find_coordinate_file(source, stem))
            write_pos(os.path.join(target, stem + ".pos"), picks.xy)
        targets.append(target)
    return targets
