"""Deep Consensus on simulated micrographs (exact truth) with three simple pickers, none ours.

usage: python benchmarks/simulated.py [--out bench_out/sim] [--sim-python PYTHON] [--label NAME]
                                      [--reuse] [--ablation] [-- extra screen options]

The twin of empiar10017.py on data whose answer is known exactly. It
1. simulates (once, cached under OUT/simulated) a few micrographs of one ASPIRE particle family
   with aggregates, ice crystals, carbon edges and an ice gradient (``xmipp3_deepcons.simulate``,
   which needs ASPIRE: the generation runs in --sim-python with --generate-only);
2. picks them with three scikit-image pickers (benchmarks/simulated_pickers.py): LoG blobs,
   template matching, local variance; each writes Xmipp .pos with its figure of merit as _cost;
3. runs `xmipp_deep_consensus screen` (plus any options after --) and prints the Markdown table
   of empiar10017.py: precision, recall and F1 (match radius = particle radius) of each picker,
   of the union, of the 2-of-3 vote and of the screened particles, the ROC-AUC and AP of the
   union's candidates ranked by votes vs by score, and the wall time of `screen`.

--ablation runs every setting of screen_benchmark.ABLATION instead and prints one row per
setting. Settings made only of output options (OUTPUT_ONLY) re-apply to the model trained by
the first setting (screen continues a finished run), the others train in a folder of their own.

Layout of OUT/simulated: micrographs/<mic>.mrc (dark particles), truth/<mic>.csv (x,y particle
centres; x = column, y = row of the MRC array), truth/<mic>_junk.csv, coords/<picker>/<mic>.pos.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from screen_benchmark import add_arguments, run  # noqa: E402

SIM_PYTHON = "/work/venv-sim/bin/python"
SIM_SEED, N_MICROGRAPHS, MIC_SIZE = 5, 8, 2048   # family 0 of seed 5: C1, box 128, 1.80 Å/px
PARTICLES = (80, 121)           # per micrograph (drawn), leaving room for junk between them
AGGREGATES, CRYSTALS = (2, 7), (2, 8)   # per micrograph (drawn), as many as room allows
SNR = (0.01, 0.04)              # log-uniform: low as recorded, yet simple pickers find most
CARBON_SHARE = 0.5

# ----------------------------------------------------------------------------- simulation

def simulation_recipe():
    """Everything the simulated set depends on: a cached set is reused only if it matches."""
    from xmipp3_deepcons import simulate
    return {"recipe": simulate.RECIPE_VERSION, "seed": SIM_SEED, "micrographs": N_MICROGRAPHS,
            "size": MIC_SIZE, "particles": PARTICLES, "aggregates": AGGREGATES,
            "crystals": CRYSTALS, "snr": SNR, "carbon": CARBON_SHARE}


def benchmark_specs():
    """The simulator's own family and micrograph specs, made larger and more crowded, with the
    junk scaled to the larger area and the SNR kept in a range simple pickers can work with."""
    from xmipp3_deepcons import simulate
    family = simulate.family_specs(1, SIM_SEED)[0]
    specs = simulate.micrograph_specs(family, N_MICROGRAPHS, SIM_SEED)
    for spec in specs:
        rng = np.random.default_rng([SIM_SEED, 3, spec["micrograph"]])
        spec.update(size=MIC_SIZE, particles=int(rng.integers(*PARTICLES)),
                    aggregates=int(rng.integers(*AGGREGATES)),
                    crystals=int(rng.integers(*CRYSTALS)),
                    carbon=bool(rng.random() < CARBON_SHARE),
                    snr=float(np.exp(rng.uniform(*np.log(SNR)))))
    return family, specs


def particle_radius(family):
    """Radius in pixels of the simulated particle: the match radius and the pickers' size."""
    return family["box"] * family["diameter"] / 2


def cached_manifest(folder):
    """The manifest of a simulated set in ``folder`` made with today's recipe, else None."""
    path = os.path.join(folder, "manifest.json")
    if not os.path.exists(path):
        return None
    manifest = json.load(open(path))
    return manifest if manifest["recipe"] == json.loads(json.dumps(simulation_recipe())) else None


def generate(folder):
    """Simulate the set into ``folder`` unless an identical one is there (needs ASPIRE)."""
    from xmipp3_deepcons import simulate
    from xmipp3_deepcons.io.images import write_mrc
    if cached_manifest(folder):
        print(f"simulated set already in {folder}")
        return
    for sub in ("micrographs", "truth"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    started = time.time()
    family, specs = benchmark_specs()
    volume = simulate.make_volume(family)
    for spec in specs:
        stem = f"sim_{spec['micrograph']:02d}"
        mic = simulate.projected_micrograph(volume, family, spec)
        write_mrc(os.path.join(folder, "micrographs", stem + ".mrc"), mic["image"],
                  pixel_size=family["pixel_size"])
        for suffix, xy in (("", mic["particles"]), ("_junk", mic["junk"])):
            np.savetxt(os.path.join(folder, "truth", stem + suffix + ".csv"), xy, fmt="%.2f",
                       delimiter=",", header="x,y", comments="")
        print(f"{stem}: {len(mic['particles'])} particles, {len(mic['junk'])} junk centres, "
              f"SNR {spec['snr']:.3f}, carbon {spec['carbon']}", flush=True)
    seconds = time.time() - started
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump({"recipe": simulation_recipe(), "family": family, "micrographs": specs,
                   "particle_radius": particle_radius(family), "seconds": seconds}, f, indent=1)
    print(f"simulated {len(specs)} micrographs in {seconds:.0f} s")


def simulated_set(sim_python, folder):
    """The cached set's manifest, simulated first in the interpreter that has ASPIRE (the
    project's venv has not) when the cache is missing or made with another recipe."""
    if not cached_manifest(folder):
        subprocess.run([sim_python, os.path.abspath(__file__), "--generate-only",
                        "--out", os.path.dirname(folder)], check=True)
    return cached_manifest(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("bench_out", "sim"))
    parser.add_argument("--sim-python", default=SIM_PYTHON,
                        help="a Python with ASPIRE and this package, for the simulation "
                             "(default %(default)s)")
    parser.add_argument("--generate-only", action="store_true",
                        help="only simulate the micrographs and truth (run by --sim-python)")
    add_arguments(parser)
    args = parser.parse_args()
    prepared = os.path.join(args.out, "simulated")
    if args.generate_only:
        generate(prepared)
        return
    from simulated_pickers import pick_all
    manifest = simulated_set(args.sim_python, prepared)
    box, radius = manifest["family"]["box"], manifest["particle_radius"]
    print(f"simulated set: {len(manifest['micrographs'])} micrographs, generated in "
          f"{manifest['seconds']:.0f} s; box {box} px, particle radius {radius:.1f} px")
    pickers = pick_all(os.path.join(prepared, "micrographs"), os.path.join(prepared, "coords"),
                       radius)
    run(args, prepared, pickers, box, radius)


if __name__ == "__main__":
    main()
