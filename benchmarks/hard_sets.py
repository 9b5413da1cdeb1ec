"""Hard simulated screening sets with exact truth, from one seeded script (numpy only).

usage: python benchmarks/hard_sets.py [--out bench_out/hard] [--sets low_snr,decoys,...]
                                      [--seed N] [--pickers sharp,greedy,careful]
                                      [--generate-only] [--label NAME] [--model-of LABEL]
                                      [-- screen options]

Each set hardens one thing of a common base, and ``all`` hardens them together:

- ``low_snr``: SNR 0.004-0.008 (the base: 0.012-0.025);
- ``decoys``: particle-sized decoys (denatured-looking blob clusters of a particle's mass, no
  structure shared between two of them) that the pickers take for particles;
- ``correlated``: the pickers' mistakes come from one shared cause (a junk object one picker
  takes, the others take too), so they agree on junk;
- ``ice_gradient``: thick and uneven ice: the background level, the particles' attenuation and
  the noise follow a ramp plus a smooth random thickness field;
- ``species``: three particle species of different shapes and sizes (all of them particles);
- ``all``: every one of the above.

Micrographs are projections of Gaussian-blob volumes through an astigmatic CTF with an envelope,
with ice crystals, aggregates and carbon edges as in ``xmipp3_deepcons.simulate``. The pickers
are simulated from the truth: each object has a latent "looks like a particle" shared by every
picker (weighted by the set's correlation) and a part of each picker's own; a picker picks it when
the sum clears its bias for that kind of object, places it with its own jitter, adds background
picks, and writes its evidence as the figure of merit (_cost of Xmipp .pos). The manifest records
what fraction of the two-vote positives are real particles.

--seed draws other micrographs and picks from the same recipe (data that nothing was tuned on);
--pickers screens with some of the pickers only (the 2-of-N vote is then of those).

Without --generate-only, each set is screened with the options after ``--`` and one row per set
is printed: the best picker's and the 2-of-3 vote's F1, the screened F1, and the ROC-AUC of the
union ranked by vote count and by score.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from xmipp3_deepcons import simulate  # noqa: E402
from xmipp3_deepcons.core.ctf import CTFParams, ctf_image  # noqa: E402
from xmipp3_deepcons.io.coordinates import write_pos  # noqa: E402
from xmipp3_deepcons.io.images import write_mrc  # noqa: E402

RECIPE_VERSION = 1
SEED = 20261203
BASE = {
    "micrographs": 6, "size": 2048, "box": 128, "pixel_size": 1.6, "diameter": 84.0,
    "particles": (85, 110), "snr": (0.012, 0.025), "species": 1, "decoys": (4, 8),
    "crystals": (2, 5), "aggregates": (1, 3), "carbon": 0.4, "gradient": 0.5, "ice": 0.0,
    "correlation": 0.5, "decoy_bias": -0.5, "junk_bias": -0.3,
}
SETS = {
    "low_snr": {"snr": (0.004, 0.008)},
    "decoys": {"decoys": (35, 50), "decoy_bias": 0.6},
    "correlated": {"decoys": (30, 40), "crystals": (6, 10), "aggregates": (3, 5),
                   "correlation": 0.92, "junk_bias": 1.0, "decoy_bias": 1.0},
    "ice_gradient": {"gradient": 3.0, "ice": 1.0},
    "species": {"species": 3},
    "all": {"snr": (0.006, 0.012), "decoys": (30, 45), "decoy_bias": 0.6, "correlation": 0.9,
            "crystals": (4, 8), "junk_bias": 0.5, "gradient": 2.0, "ice": 0.8, "species": 3},
}
# Pickers: name, particle bias, how much it sees of the particle's signal, background picks per
# micrograph, jitter (px). A pick happens when bias + 1.6 * (latent) > 0.
PICKERS = (("sharp", 1.2, 1.0, 15, 2.0), ("greedy", 1.7, 0.6, 40, 4.0),
           ("careful", 0.6, 1.2, 8, 3.0))
SCALE = 1.6
SPECIES_SIZES = (1.0, 0.8, 1.2)        # diameters relative to the first species'


def settings_of(name):
    settings = dict(BASE)
    settings.update(SETS[name])
    return settings


# ----------------------------------------------------------------------------- volumes

def mass(volume):
    _, widths, weights = volume
    return float(np.sum(weights * widths ** 3))


# ----------------------------------------------------------------------------- micrographs

def spread(rng, n, size, margin, clearance, taken):
    """Up to n points at least ``clearance`` from each other and from ``taken``."""
    points = list(taken)
    start = len(points)
    for _ in range(100 * n):
        if len(points) - start >= n:
            break
        p = rng.uniform(margin, size - margin, 2)
        if not points or np.min(np.hypot(*(np.array(points) - p).T)) >= clearance:
            points.append(p)
    return np.array(points[start:]).reshape(-1, 2)


def thickness_field(rng, size, settings):
    """Ice thickness around 1: a ramp of ``gradient`` across and a smooth random field."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    field = ndimage.gaussian_filter(rng.normal(size=(size // 16, size // 16)), 4)
    field = ndimage.zoom(field / (field.std() + 1e-9), 16, order=1)[:size, :size]
    thickness = 1 + 0.3 * settings["gradient"] * ramp + 0.25 * settings["ice"] * field
    return np.clip(thickness, 0.3, None)


def micrograph(rng, settings, species):
    """One micrograph: image (dark particles), particles (n, 2), their species, junk (m, 2),
    junk kinds, the local thickness at each particle."""
    size, box, diameter = settings["size"], settings["box"], settings["diameter"]
    view = int(box * 0.9)
    particles = spread(rng, int(rng.integers(*settings["particles"])), size, box / 2,
                       diameter * 1.05, [])
    kinds = rng.integers(len(species), size=len(particles))
    density = np.zeros((size, size), np.float32)
    peak = 0.0
    for (x, y), kind in zip(particles, kinds):
        patch = simulate.project_volume(species[kind], rng, view)
        peak = max(peak, patch.max())
        simulate.add_patch(density, patch.astype(np.float32), x, y)
    signal = density.copy()
    junk, junk_kinds = [], []
    for x, y in spread(rng, int(rng.integers(*settings["decoys"])), size, box / 2,
                       diameter * 1.05, particles):
        # A denatured decoy: a particle's mass in blobs with no structure.
        decoy = simulate.blob_volume(rng, diameter * rng.uniform(0.85, 1.15),
                                     elongation=rng.uniform(0.7, 1.4))
        patch = simulate.project_volume(decoy, rng, view) * mass(species[0]) / mass(decoy)
        simulate.add_patch(density, patch.astype(np.float32), x, y)
        junk.append((x, y))
        junk_kinds.append("decoy")
    taken = np.vstack([particles, np.array(junk).reshape(-1, 2)])
    for x, y in spread(rng, int(rng.integers(*settings["crystals"])), size, box / 2,
                       diameter, taken):
        r = box * rng.uniform(0.08, 0.25)
        crystal = simulate.crystal(int(2.5 * r) | 1, r, rng) * peak * rng.uniform(1.5, 3.5)
        simulate.add_patch(density, crystal, x, y)
        junk.append((x, y))
        junk_kinds.append("crystal")
    taken = np.vstack([particles, np.array(junk).reshape(-1, 2)])
    for x, y in spread(rng, int(rng.integers(*settings["aggregates"])), size, box,
                       diameter * 1.5, taken):
        for _ in range(int(rng.integers(3, 7))):
            dx, dy = rng.normal(0, 0.3 * diameter, 2)
            patch = simulate.project_volume(species[int(rng.integers(len(species)))], rng, view)
            simulate.add_patch(density, patch.astype(np.float32), x + dx, y + dy)
        junk.append((x, y))
        junk_kinds.append("aggregate")
    if rng.random() < settings["carbon"]:
        taken = np.vstack([particles, np.array(junk).reshape(-1, 2)])
        for p in simulate.carbon_film(density, rng, peak * rng.uniform(0.4, 0.9)):
            if np.min(np.hypot(*(taken - p).T)) >= diameter:
                junk.append(tuple(p))
                junk_kinds.append("carbon")
                taken = np.vstack([taken, p])

    defocus = rng.uniform(8000, 25000)
    ctf = CTFParams(defocus_u=defocus + rng.uniform(0, 800), defocus_v=defocus,
                    defocus_angle=rng.uniform(0, 180), voltage=300.0,
                    spherical_aberration=2.7, amplitude_contrast=0.1)
    bfactor = rng.uniform(60, 160)
    thickness = thickness_field(rng, size, settings).astype(np.float32)
    attenuation = np.exp(-(thickness - 1))        # thicker ice, less elastic signal
    image = recorded(density, settings["pixel_size"], ctf, bfactor) * attenuation
    clean_particles = recorded(signal, settings["pixel_size"], ctf, bfactor)
    inside = signal > 0.05 * peak
    snr = float(np.exp(rng.uniform(*np.log(settings["snr"]))))
    noise_std = np.sqrt(clean_particles[inside].var() / snr)
    image += (0.3 * noise_std * settings["gradient"] * (thickness - 1)).astype(np.float32)
    noise = rng.normal(size=(size, size)).astype(np.float32)
    noise += 0.5 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 6).astype(np.float32) * 6
    image += noise_std * noise * np.sqrt(thickness)
    at = np.clip(np.rint(particles).astype(int), 0, size - 1)
    return {"image": image.astype(np.float32), "particles": particles, "species": kinds,
            "junk": np.array(junk, float).reshape(-1, 2), "junk_kinds": junk_kinds,
            "thickness": thickness[at[:, 1], at[:, 0]], "snr": snr, "defocus": defocus}


def recorded(density, pixel_size, ctf, bfactor):
    """The density through the physical CTF with a B-factor envelope."""
    import scipy.fft
    pad = density.shape[0] // 8
    padded = np.pad(density, pad, mode="edge")
    spectrum = scipy.fft.rfft2(padded)
    ky = scipy.fft.fftfreq(padded.shape[0], d=pixel_size)[:, None]
    kx = scipy.fft.rfftfreq(padded.shape[1], d=pixel_size)[None, :]
    envelope = np.exp(-bfactor * (kx * kx + ky * ky) / 4)
    spectrum *= -ctf_image(padded.shape, pixel_size, ctf) * envelope
    return scipy.fft.irfft2(spectrum, s=padded.shape)[pad:-pad, pad:-pad].astype(np.float32)


# ----------------------------------------------------------------------------- pickers

def pick(rng, mic, settings):
    """Every picker's (xy, figure of merit) on this micrograph."""
    size, diameter = settings["size"], settings["diameter"]
    rho = settings["correlation"]
    n_particles, n_junk = len(mic["particles"]), len(mic["junk"])
    # Particles: how visible each is (the SNR, thin ice, its species' size) is seen by every
    # picker.
    size_factor = np.array(SPECIES_SIZES)[mic["species"]]
    visible = (rng.normal(size=n_particles) - 1.5 * (mic["thickness"] - 1)
               + 0.8 * np.log(mic["snr"] / 0.018) + 2.0 * (size_factor - 1))
    shared_junk = rng.normal(size=n_junk)
    junk_bias = np.array([settings["decoy_bias"] if k == "decoy" else settings["junk_bias"]
                          for k in mic["junk_kinds"]])
    everything = np.vstack([mic["particles"], mic["junk"]])
    picks = {}
    for name, bias, sight, background, jitter in PICKERS:
        latent_p = sight * 0.7 * visible + 0.7 * rng.normal(size=n_particles)
        latent_j = np.sqrt(rho) * shared_junk + np.sqrt(1 - rho) * rng.normal(size=n_junk)
        take_p = bias + SCALE * latent_p > 0
        take_j = junk_bias + SCALE * latent_j > 0
        xy = [mic["particles"][take_p] + rng.normal(0, jitter, (take_p.sum(), 2)),
              mic["junk"][take_j] + rng.normal(0, jitter * 1.5, (take_j.sum(), 2))]
        merit = [latent_p[take_p], latent_j[take_j]]
        empty = spread(rng, int(rng.poisson(background)), size, diameter / 2, diameter * 0.6,
                       everything)
        xy.append(empty)
        merit.append(rng.normal(-0.8, 0.7, len(empty)))
        xy, merit = np.vstack(xy), np.concatenate(merit) + rng.normal(0, 0.3, sum(map(len, merit)))
        inside = np.all((xy >= 0) & (xy <= size - 1), axis=1)
        picks[name] = (xy[inside], merit[inside])
    return picks


def generate(folder, name, seed=SEED):
    """Write the set ``name`` into ``folder`` unless the same recipe is there already."""
    settings = settings_of(name)
    recipe = {"version": RECIPE_VERSION, "seed": seed, "set": name, "settings": settings}
    manifest_path = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest_path):
        old = json.load(open(manifest_path))
        if old["recipe"] == json.loads(json.dumps(recipe)):
            return old
    started = time.time()
    rng = np.random.default_rng([seed, sorted(SETS).index(name)])
    species = [simulate.blob_volume(rng, settings["diameter"] * s, elongation=e)
               for s, e in zip(SPECIES_SIZES, (1.0, 1.6, 0.8))][:settings["species"]]
    for sub in ["micrographs", "truth"] + [f"coords/{p[0]}" for p in PICKERS]:
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    stats = {"particles": 0, "junk": 0, "two_vote": 0, "two_vote_real": 0}
    matched = {p[0]: [0, 0] for p in PICKERS}
    union_labels, union_votes = [], []
    from xmipp3_deepcons.core.consensus import coordinate_consensus
    from xmipp3_deepcons.core.metrics import (match_to_reference, precision_recall_f1,
                                              ranking_quality)
    for i in range(settings["micrographs"]):
        stem = f"{name}_{i:02d}"
        mic = micrograph(rng, settings, species)
        write_mrc(os.path.join(folder, "micrographs", stem + ".mrc"), mic["image"],
                  pixel_size=settings["pixel_size"])
        for suffix, xy in (("", mic["particles"]), ("_junk", mic["junk"])):
            np.savetxt(os.path.join(folder, "truth", stem + suffix + ".csv"), xy, fmt="%.2f",
                       delimiter=",", header="x,y", comments="")
        picks = pick(rng, mic, settings)
        for picker, (xy, merit) in picks.items():
            write_pos(os.path.join(folder, "coords", picker, stem + ".pos"), xy, merit,
                      score_label="cost")
        vote = coordinate_consensus([xy for xy, _ in picks.values()], 0.1 * settings["box"])
        two = vote.xy[vote.votes >= 2]
        radius = settings["diameter"] / 2
        for picker, (xy, _) in picks.items():
            matched[picker][0] += int(match_to_reference(xy, mic["particles"], radius).sum())
            matched[picker][1] += len(xy)
        union_labels.append(match_to_reference(vote.xy, mic["particles"], radius))
        union_votes.append(vote.votes)
        stats["particles"] += len(mic["particles"])
        stats["junk"] += len(mic["junk"])
        stats["two_vote"] += len(two)
        stats["two_vote_real"] += int(match_to_reference(two, mic["particles"],
                                                         settings["diameter"] / 2).sum())
    stats["two_vote_purity"] = stats["two_vote_real"] / max(stats["two_vote"], 1)
    stats["picker_f1"] = {p: round(precision_recall_f1(m, n, stats["particles"])[2], 3)
                          for p, (m, n) in matched.items()}
    stats["vote_f1"] = round(precision_recall_f1(stats["two_vote_real"], stats["two_vote"],
                                                 stats["particles"])[2], 3)
    stats["vote_auc"] = round(ranking_quality(np.concatenate(union_labels),
                                              np.concatenate(union_votes))[0], 3)
    manifest = {"recipe": recipe, "stats": stats, "seconds": round(time.time() - started, 1),
                "particle_radius": settings["diameter"] / 2, "box": settings["box"]}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{name}: {stats['particles']} particles, {stats['junk']} junk objects, two-vote "
          f"positives {stats['two_vote']} of which real {stats['two_vote_purity']:.0%}; "
          f"F1 pickers {stats['picker_f1']}, 2-of-3 {stats['vote_f1']}, vote ROC-AUC "
          f"{stats['vote_auc']} ({manifest['seconds']:.0f} s)", flush=True)
    return manifest


def screen_row(folder, out, extra, manifest, pickers=None):
    """Screen one set with ``pickers`` (default: all) and return its row of numbers."""
    from screen_benchmark import evaluate, run_screen
    from xmipp3_deepcons.core.metrics import precision_recall_f1
    everyone = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "coords", "*")))
    pickers = pickers or everyone
    seconds = run_screen(folder, out, extra, pickers, manifest["box"])
    rows, vote_rank, score_rank = evaluate(folder, out, pickers, manifest["box"],
                                           manifest["particle_radius"])
    f1 = {name: precision_recall_f1(*counts)[2] for name, counts in rows.items()}
    # the manifest's purity is of every picker's two-vote positives
    purity = (f"{manifest['stats']['two_vote_purity']:.2f}" if sorted(pickers) == everyone
              else "n/a")
    return {"purity": purity,
            "best_picker": max(f1[p] for p in pickers),
            "vote_f1": f1[f"2-of-{len(pickers)} vote"],
            "f1": f1["Deep Consensus"], "vote_auc": vote_rank[0], "auc": score_rank[0],
            "kept": rows["Deep Consensus"][1], "seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("bench_out", "hard"))
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--pickers", help="comma-separated subset of " +
                        ",".join(p[0] for p in PICKERS))
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--label", default="defaults")
    parser.add_argument("--model-of", metavar="LABEL",
                        help="re-apply output options (--picker-evidence, --threshold...) to the "
                             "run of that label instead of training anew")
    parser.add_argument("extra", nargs="*", help="options passed to screen (after --)")
    args = parser.parse_args()
    names = args.sets.split(",")
    pickers = args.pickers.split(",") if args.pickers else None
    manifests = {n: generate(os.path.join(args.out, n), n, args.seed) for n in names}
    if args.generate_only:
        return
    print(f"\n{args.label} ({' '.join(args.extra) or 'defaults'})\n\n"
          "| set | 2-vote real | best picker F1 | 2-of-N F1 | F1 | vote ROC-AUC | ROC-AUC "
          "| kept | s |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    for name in names:
        folder = os.path.join(args.out, name)
        row = screen_row(folder, os.path.join(folder, "screen_" + (args.model_of or args.label)),
                         args.extra, manifests[name], pickers)
        print(f"| {name} | {row['purity']} | {row['best_picker']:.3f} | "
              f"{row['vote_f1']:.3f} | **{row['f1']:.3f}** | {row['vote_auc']:.3f} | "
              f"**{row['auc']:.3f}** | {row['kept']} | {row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
