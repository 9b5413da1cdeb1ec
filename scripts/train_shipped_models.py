#!/usr/bin/env python
"""Regenerate the pretrained models and the precompiled negatives that ship with the plugin.

    pip install '.[sim]'                      # ASPIRE, the micrograph simulator
    python scripts/train_shipped_models.py    # ~25 min on 2 cores; writes xmipp3_deepcons/models/

Steps (everything seeded by --seed, so the same command gives the same corpus and models):

1. A synthetic corpus from ASPIRE (``xmipp3_deepcons/simulate.py``): --families volumes (several
   symmetries, particle diameters, pixel sizes and boxes of 128-220 px), --micrographs each
   with their own defocus, SNR, ice gradient and junk (aggregates, ice crystals, carbon edges).
2. Each micrograph preprocessed twice by the engine's own ``preprocess_micrograph`` (downsampled
   to 128 px boxes, normalised, inverted), once as is and once phase-flipped with its CTF; 128 px
   boxes cut by the engine's ``extract_boxes``: particles (true centres with the jitter of a
   consensus pick), background by the engine's ``pick_noise``, and junk. The last micrograph of
   every family is held out for testing.
3. For each preprocessing (noPhaseFlip, phaseFlip) and network size (small, medium, large): one
   network trained by ``core.training.train_ensemble`` (as the original's pretrained models, one
   member each), its weights rounded to bfloat16 precision and stored without optimiser
   state, its test ROC-AUC measured on the held-out micrographs; all recorded in its manifest.json.
4. The precompiled negatives: --negatives boxes of junk and background per preprocessing,
   8-bit per box (``xmipp3_deepcons/resources.py``), in negatives_<flip>.npz.

Output layout (what ``resources.py`` and the Scipion plugin read):
    <out>/pretrained/<noPhaseFlip|phaseFlip>/<small|medium|large>/{manifest.json,model_0.keras}
    <out>/negatives_<noPhaseFlip|phaseFlip>.npz
"""
import argparse
import json
import os
import shutil
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xmipp3_deepcons import resources, simulate  # noqa: E402
from xmipp3_deepcons.constants import DEEP_PARTICLE_SIZE  # noqa: E402

BANDS = ("small", "medium", "large")
ATTEMPTS = 3                 # trainings per network at most
MIN_VAL_ACCURACY = 0.7       # below it, a training counts as stalled (chance is 0.5)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "xmipp3_deepcons",
                                                 "models"))
    p.add_argument("--work", default=os.path.join(os.path.dirname(HERE), "build",
                                                  "shipped_corpus"),
                   help="where the corpus is cached (reused when the recipe settings match)")
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--families", type=int, default=12)
    p.add_argument("--micrographs", type=int, default=7, help="per family (the last is held out)")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--negatives", type=int, default=256, help="precompiled negatives per variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=("corpus", "negatives"), help="stop after this part")
    p.add_argument("--keep-existing", action="store_true",
                   help="keep the networks already made by this recipe version, seed and corpus "
                        "(to finish an interrupted run)")
    return p.parse_args(argv)


def corpus_settings(args):
    return {"recipe_version": simulate.RECIPE_VERSION, "seed": args.seed,
            "families": args.families, "micrographs_per_family": args.micrographs}


def build_corpus(args, log):
    """{variant: {split: {kind: boxes}}} with variant noPhaseFlip / phaseFlip, split train /
    test, kind positives / background / junk; cached as float16 under --work."""
    from xmipp3_deepcons.core.extract import extract_boxes
    from xmipp3_deepcons.core.micrograph import preprocess_micrograph
    from xmipp3_deepcons.core.noise import pick_noise
    settings = corpus_settings(args)
    cache = os.path.join(args.work, "corpus.npz")
    info_path = os.path.join(args.work, "corpus.json")
    if os.path.exists(cache) and os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if info["settings"] == settings:
            log(f"corpus cached in {cache}")
            with np.load(cache) as data:
                return _unflatten(data), info
    os.makedirs(args.work, exist_ok=True)
    parts = {}
    families = simulate.family_specs(args.families, args.seed)
    stats = {"micrographs": 0, "particles": 0, "junk": 0}
    started = time.time()
    for family in families:
        volume = simulate.make_volume(family)
        box, factor = family["box"], family["box"] / DEEP_PARTICLE_SIZE
        for spec in simulate.micrograph_specs(family, args.micrographs, args.seed):
            mic = simulate.projected_micrograph(volume, family, spec)
            split = "test" if spec["micrograph"] == args.micrographs - 1 else "train"
            rng = np.random.default_rng([args.seed, 3, family["family"], spec["micrograph"]])
            jitter = rng.normal(0, 0.04 * box, mic["particles"].shape)
            positives = mic["particles"] + jitter
            truth = np.concatenate([mic["particles"], mic["junk"]])
            background = pick_noise(mic["image"].shape, truth, box, len(mic["particles"]), rng)
            junk = mic["junk"]
            if split == "train" and len(junk):   # junk seen off-centre too, as pickers place it
                junk = np.concatenate([junk, junk + rng.normal(0, 0.08 * box, junk.shape)])
            for variant, ctf in (("noPhaseFlip", None), ("phaseFlip", mic["ctf"])):
                pre = preprocess_micrograph(mic["image"], factor, invert=True, ctf=ctf,
                                            pixel_size=mic["pixel_size"])
                for kind, xy in (("positives", positives), ("background", background),
                                 ("junk", junk)):
                    boxes = extract_boxes(pre, np.asarray(xy).reshape(-1, 2) / factor)
                    parts.setdefault((variant, split, kind), []).append(boxes.astype(np.float16))
            stats["micrographs"] += 1
            stats["particles"] += len(mic["particles"])
            stats["junk"] += len(mic["junk"])
        log(f"family {family['family'] + 1}/{len(families)} (box {box}, {family['symmetry']}, "
            f"{family['pixel_size']:.2f} Å/px): {stats['micrographs']} micrographs so far "
            f"({time.time() - started:.0f} s)")
    flat = {"/".join(k): np.concatenate(v) for k, v in parts.items()}
    counts = {k: int(len(v)) for k, v in flat.items()}
    info = {"settings": settings, "families": families, "stats": stats, "counts": counts,
            "seconds": round(time.time() - started, 1)}
    np.savez(cache, **flat)
    with open(info_path, "w") as f:
        json.dump(info, f, indent=1)
    log(f"corpus: {stats} -> {counts}")
    return _unflatten(flat), info


def _unflatten(flat):
    corpus = {}
    for key in flat.keys() if hasattr(flat, "keys") else flat:
        variant, split, kind = key.split("/")
        corpus.setdefault(variant, {}).setdefault(split, {})[kind] = np.asarray(
            flat[key], dtype=np.float32)
    return corpus


def train_variant(args, variant, data, info, log):
    from xmipp3_deepcons.core.ensemble import Ensemble
    from sklearn.metrics import roc_auc_score as roc_auc
    from xmipp3_deepcons.core.training import train_ensemble
    train, test = data["train"], data["test"]
    test_boxes = np.concatenate([test["positives"], test["background"], test["junk"]])
    test_labels = np.r_[np.ones(len(test["positives"])),
                        np.zeros(len(test["background"]) + len(test["junk"]))]
    n_junk_test = len(test["junk"])
    for number, band in enumerate(BANDS):
        folder = os.path.join(args.out, "pretrained", variant, band)
        if args.keep_existing and _is_current(folder, args):
            _mark_kept(folder)
            log(f"{variant}/{band}: kept (same recipe, seed and corpus)")
            continue
        tmp = folder + ".tmp"
        for attempt in range(ATTEMPTS):
            # A network can stall from a bad start (validation accuracy near chance): train it
            # again from the next seed. Chosen on validation accuracy, never on the test set.
            shutil.rmtree(tmp, ignore_errors=True)
            seed = args.seed + 10 * number + (5 if variant == "phaseFlip" else 0) + 1000 * attempt
            started = time.time()
            manifest = train_ensemble(
                [(train["positives"], 1)], [(train["background"], 1), (train["junk"], 1)], tmp,
                n_models=1, epochs=args.epochs, band=band, seed=seed, log=log,
                metadata={"phase_flip": variant == "phaseFlip", "inverted_input": False,
                          "pretrained": True})
            seconds = time.time() - started
            if manifest["mean_val_accuracy"] >= MIN_VAL_ACCURACY:
                break
            log(f"{variant}/{band}: validation accuracy {manifest['mean_val_accuracy']:.3f} "
                f"under {MIN_VAL_ACCURACY} (seed {seed}): training again from another seed")
        compact_models(tmp, manifest)
        scores = Ensemble.load(tmp).score(test_boxes)
        junk_scores = scores[len(scores) - n_junk_test:]
        manifest.update({
            "phase_flip": variant == "phaseFlip",
            "recipe": {"script": "scripts/train_shipped_models.py",
                       "version": simulate.RECIPE_VERSION, "seed": args.seed,
                       "training_seed": seed, "attempts": attempt + 1,
                       "min_val_accuracy": MIN_VAL_ACCURACY, "epochs": args.epochs,
                       "simulator": "ASPIRE " + _aspire_version(),
                       "corpus": {"families": args.families,
                                  "micrographs": info["stats"]["micrographs"],
                                  "particles": info["stats"]["particles"],
                                  "junk": info["stats"]["junk"],
                                  "train_positives": int(len(train["positives"])),
                                  "train_negatives": int(len(train["background"]) +
                                                         len(train["junk"])),
                                  "train_junk": int(len(train["junk"]))},
                       "training_seconds": round(seconds, 1)},
            "test": {"micrographs": args.families, "positives": int(test_labels.sum()),
                     "negatives": int((test_labels == 0).sum()),
                     "roc_auc": round(float(roc_auc(test_labels, scores)), 4),
                     "accuracy_at_0.5": round(float(np.mean((scores > 0.5) == test_labels)), 4),
                     "junk_above_0.5": round(float(np.mean(junk_scores > 0.5)), 4)
                     if n_junk_test else None},
            "weights": "rounded to bfloat16 precision after training (test measured after), no "
                       "optimiser state",
            "created": manifest["created"][:10],
            "continued_from": None,
        })
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        os.remove(os.path.join(tmp, "history.json"))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        log(f"{variant}/{band}: val_acc {manifest['mean_val_accuracy']:.4f}, test ROC-AUC "
            f"{manifest['test']['roc_auc']:.4f}, {seconds:.0f} s")


def _is_current(folder, args):
    path = os.path.join(folder, "manifest.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        manifest = json.load(f)
    recipe = manifest.get("recipe", {})
    return (recipe.get("version") == simulate.RECIPE_VERSION and recipe.get("seed") == args.seed
            and recipe.get("epochs") == args.epochs
            and recipe.get("corpus", {}).get("families") == args.families
            and recipe.get("corpus", {}).get("micrographs") == args.families * args.micrographs
            and manifest["mean_val_accuracy"] >= MIN_VAL_ACCURACY)


def _mark_kept(folder):
    """A kept network's manifest says what this recipe records (attempts: it passed first)."""
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    recipe = manifest["recipe"]
    if "attempts" not in recipe:
        recipe["attempts"] = 1 + (recipe["training_seed"] - recipe["seed"]) // 1000
        recipe["min_val_accuracy"] = MIN_VAL_ACCURACY
        with open(path, "w") as f:
            json.dump(manifest, f, indent=1)


def compact_models(folder, manifest):
    """Weights rounded to bfloat16 precision and saved in plain Keras layers (readable without
    this package; the engine moves them into its fast layers when it loads them), no optimiser
    state, the archive deflated; the manifest's checksums follow (``Ensemble.load`` checks
    them)."""
    import keras
    from xmipp3_deepcons.core import fast_layers, fft_conv  # noqa: F401  (registers our layers)
    from xmipp3_deepcons.core.network import band_of, build_network
    for member in manifest["models"]:
        path = os.path.join(folder, member["file"])
        model = keras.models.load_model(path, compile=False)
        plain = build_network(band_of(model), fast=False)
        plain.set_weights([round_to_bfloat16(weight) for weight in model.get_weights()])
        raw = path + ".raw.keras"
        plain.save(raw)
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED,
                                                          compresslevel=9) as dst:
            for item in src.infolist():
                info = zipfile.ZipInfo(item.filename, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(info, src.read(item.filename))
        os.remove(raw)
    manifest["files"] = {m["file"]: resources.file_record(os.path.join(folder, m["file"]))
                         for m in manifest["models"]}
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def round_to_bfloat16(values):
    """float32 values rounded (to nearest even) to 8 significant bits, the bfloat16 grid: the
    low 16 bits of each become zero, which halves the deflated file."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def _aspire_version():
    import aspire
    return aspire.__version__


def write_negatives(args, variant, data, log):
    """Junk and background boxes of the training micrographs, half and half where possible."""
    train = data["train"]
    rng = np.random.default_rng([args.seed, 4, variant == "phaseFlip"])
    n_junk = min(len(train["junk"]), args.negatives // 2)
    junk = train["junk"][np.sort(rng.choice(len(train["junk"]), n_junk, replace=False))]
    n_background = min(args.negatives - n_junk, len(train["background"]))
    background = train["background"][np.sort(rng.choice(len(train["background"]),
                                                        n_background, replace=False))]
    boxes = np.concatenate([junk, background])
    path = os.path.join(args.out, f"negatives_{variant}.npz")
    resources.save_negatives(path, boxes, {
        "phase_flip": variant == "phaseFlip", "junk": int(n_junk),
        "background": int(n_background), "recipe_version": simulate.RECIPE_VERSION,
        "seed": args.seed})
    log(f"{path}: {len(boxes)} boxes ({n_junk} junk, {n_background} background), "
        f"{os.path.getsize(path) / 1e6:.2f} MB")


def main(argv=None):
    args = parse_args(argv)
    args.out, args.work = os.path.abspath(args.out), os.path.abspath(args.work)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    os.chdir(args.work)   # ASPIRE writes its logs/ and aspire.err.log in the working folder
    import aspire  # noqa: F401  (before our logger: importing it reconfigures logging)
    from xmipp3_deepcons.cli import common
    common.set_threads(args.threads)
    logger = common.setup_logging(os.path.join(args.work, "train_shipped_models.log"))
    log = logger.info
    log(f"recipe version {simulate.RECIPE_VERSION}, seed {args.seed}")
    corpus, info = build_corpus(args, log)
    if args.only == "corpus":
        return 0
    for variant in ("noPhaseFlip", "phaseFlip"):
        write_negatives(args, variant, corpus[variant], log)
    if args.only == "negatives":
        return 0
    for variant in ("noPhaseFlip", "phaseFlip"):
        train_variant(args, variant, corpus[variant], info, log)
    total = sum(os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(args.out) for name in names)
    log(f"done: {total / 1e6:.1f} MB under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
