"""How far screening can go on EMPIAR-10017 against its reference: the ceiling of the evidence
and of the image, measured with the reference's own labels.

usage: python benchmarks/empiar10017_ceiling.py [--out bench_out]

Needs a finished default run of benchmarks/empiar10017.py in --out (its prepared data and
screen/ folder), with any of its picker sets (`--pickers weak3`, ...). Prints the screen's own
result and three measurements, each with the reference's labels that screening never sees, so
each is an upper bound rather than a method (candidates whose box leaves the micrograph are
never kept, as in the screen):
1. the evidence: a classifier fitted on three micrographs' labels (the run's network score, the
   shipped network's where the run has it, who picked, each picker's rank), applied to the
   fourth, at the best threshold;
2. the image: one network trained on two micrographs' reference labels (particles as positives,
   candidates far from every particle and background as negatives), scoring the other two; how
   well it ranks the best picker's picks and what filtering them with it gives;
3. where the best picker's unmatched picks lie: their distance to the nearest reference particle
   next to the spacing of neighbouring reference particles.
The best picker is the one of highest F1 against the reference (crYOLO with the default set).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from scipy.spatial import cKDTree  # noqa: E402

from xmipp3_deepcons.constants import DEFAULT_VIEWS  # noqa: E402
from xmipp3_deepcons.core.consensus import suppress_duplicates  # noqa: E402
from xmipp3_deepcons.core.evidence import picker_ranks  # noqa: E402
from xmipp3_deepcons.core.extract import box_inside  # noqa: E402
from xmipp3_deepcons.core.metrics import (match_to_reference, precision_recall_f1,  # noqa: E402
                                          ranking_quality)
from xmipp3_deepcons.run.folder import REFERENCE, RunFolder  # noqa: E402
from xmipp3_deepcons.run.keep import keep_mask  # noqa: E402

MATCH_RADIUS, BOX, DEDUPE = 54, 180, 0.3 * 180
THRESHOLDS = np.arange(0.05, 0.96, 0.05)


def load(out):
    """Per micrograph: candidates, the screen's scores and the reference labels; and the name
    of the best picker."""
    screened = os.path.join(out, "screen")
    work = RunFolder(screened)
    with open(work.path("inputs", "pickers.json")) as f:
        names = [os.path.basename(label.split()[-1].rstrip("/")) for label in json.load(f)]
    settings = work.settings()
    mics = []
    for stem in work.scored_stems():
        table = work.candidates(stem)
        truth = np.loadtxt(os.path.join(out, "empiar10017", "truth", stem + ".csv"),
                           delimiter=",", skiprows=1)
        mics.append({"stem": stem, "table": table, "truth": truth,
                     "inside": box_inside(table["xy"], table["micrograph_shape"], BOX),
                     "network": work.network_scores(stem, DEFAULT_VIEWS),
                     "shipped": (work.network_scores(stem, DEFAULT_VIEWS, REFERENCE)
                                 if settings.uses_reference else None),
                     "final": work.final_scores(stem, settings),
                     "label": match_to_reference(table["xy"], truth, MATCH_RADIUS)})
    if len(mics) != 4:
        sys.exit(f"{screened}: run benchmarks/empiar10017.py --out {out} first (found "
                 f"{len(mics)} scored micrographs of 4)")
    best = max(range(len(names)), key=lambda p: f1_of(
        mics, lambda m: m["table"]["members"][:, p] >= 0)[2])
    for m in mics:
        m["best"] = m["table"]["members"][:, best] >= 0
    ranks = picker_ranks(np.concatenate([m["table"]["picker_scores"] for m in mics]),
                         np.concatenate([m["table"]["members"] for m in mics]) >= 0)
    start = 0
    for m in mics:
        m["ranks"] = ranks[start:start + len(m["network"])]
        start += len(m["network"])
    return work, mics, names[best]


def f1_of(mics, keep):
    """Precision, recall, F1 over all micrographs of the candidates ``keep(mic)`` selects."""
    matched = picks = reference = 0
    for m in mics:
        chosen = keep(m)
        matched += match_to_reference(m["table"]["xy"][chosen], m["truth"], MATCH_RADIUS).sum()
        picks += chosen.sum()
        reference += len(m["truth"])
    return precision_recall_f1(matched, picks, reference)


def best_threshold(mics, key, within=None):
    """(F1, precision, recall, threshold) at the threshold of best F1 on these micrographs, of
    the candidates ``within(mic)`` selects (all by default), duplicates among them merged."""
    def kept(m, t):
        inside = m["inside"] & (within(m) if within else True)
        unique = np.zeros_like(inside)
        unique[inside] = suppress_duplicates(m["table"]["xy"][inside], m[key][inside], DEDUPE)
        return unique & (m[key] > t)
    best = (-1.0, 0.0, 0.0, 0.0)
    for t in THRESHOLDS:
        p, r, f = f1_of(mics, lambda m: kept(m, t))
        best = max(best, (f, p, r, t))
    return best


def is_best(m):
    return m["best"]


def evidence_ceiling(mics):
    from sklearn.linear_model import LogisticRegression

    def features(m):
        scores = [np.clip(m[k], 1e-4, 1 - 1e-4) for k in ("network", "shipped")
                  if m[k] is not None]
        return np.column_stack([np.log(s / (1 - s)) for s in scores]
                               + [m["table"]["members"] >= 0, m["ranks"]])
    for held_out in mics:
        train = [m for m in mics if m is not held_out]
        fit = LogisticRegression(max_iter=1000).fit(
            np.concatenate([features(m) for m in train]),
            np.concatenate([m["label"] for m in train]))
        held_out["supervised"] = fit.predict_proba(features(held_out))[:, 1]
    f, p, r, t = best_threshold(mics, "supervised")
    print(f"| evidence fitted to the reference (3 micrographs -> the 4th), best threshold {t:.2f} "
          f"| {p:.3f} | {r:.3f} | {f:.3f} |")


def image_ceiling(work, mics, out):
    from xmipp3_deepcons.core.ensemble import Ensemble
    from xmipp3_deepcons.core.extract import extract_boxes
    from xmipp3_deepcons.core.training import train_ensemble
    from xmipp3_deepcons.io.images import read_micrograph
    for m in mics:
        micrograph = read_micrograph(work.preprocessed(m["stem"]))
        factor = float(m["table"]["factor"])
        m["boxes"] = extract_boxes(micrograph, m["table"]["xy"] / factor, 128)
        m["background"] = extract_boxes(micrograph, m["table"]["negatives"] / factor, 128)
        m["far"] = cKDTree(m["truth"]).query(m["table"]["xy"])[0] > MATCH_RADIUS
    aucs = []
    for fold, (train, test) in enumerate(((mics[:2], mics[2:]), (mics[2:], mics[:2]))):
        model_dir = os.path.join(out, "ceiling", f"reference_labels_{fold}")
        if not os.path.exists(os.path.join(model_dir, "manifest.json")):
            train_ensemble([(np.concatenate([m["boxes"][m["label"]] for m in train]), 1)],
                           [(np.concatenate([m["background"] for m in train]), 1),
                            (np.concatenate([m["boxes"][m["far"]] for m in train]), 1)],
                           model_dir, n_models=1, epochs=5, band="medium", seed=1,
                           log=lambda line: None)
        ensemble = Ensemble.load(model_dir, views=DEFAULT_VIEWS)
        for m in test:
            m["reference_net"] = ensemble.score(m["boxes"])
            mine = is_best(m)
            aucs.append((ranking_quality(m["label"][mine], m["reference_net"][mine])[0],
                         ranking_quality(m["label"][mine], m["network"][mine])[0]))
    for what, within in (("all candidates", None), ("the best picker's picks", is_best)):
        f, p, r, t = best_threshold(mics, "reference_net", within)
        print(f"| {what} above a network trained on the reference (2 micrographs -> the "
              f"other 2), best threshold {t:.2f} | {p:.3f} | {r:.3f} | {f:.3f} |")
    reference_auc, screen_auc = np.array(aucs).T
    print(f"\nROC-AUC of the best picker's picks per micrograph: network trained on the reference "
          f"{_span(reference_auc)}, the screen's network {_span(screen_auc)}.")


def where_the_best_picker_misses(mics, best):
    spacing, misses = [], []
    for m in mics:
        spacing.append(cKDTree(m["truth"]).query(m["truth"], 2)[0][:, 1])
        picks = m["table"]["xy"][is_best(m)]
        unmatched = ~match_to_reference(picks, m["truth"], MATCH_RADIUS)
        misses.append(cKDTree(m["truth"]).query(picks[unmatched])[0])
    spacing, misses = np.concatenate(spacing), np.concatenate(misses)
    band = (misses > 70) & (misses <= 120)
    print(f"{best}'s {len(misses)} unmatched picks: median {np.median(misses):.0f} px from the "
          f"nearest reference particle, {band.mean():.0%} at 70-120 px; neighbouring reference "
          f"particles lie a median {np.median(spacing):.0f} px apart, "
          f"{((spacing > 70) & (spacing <= 120)).mean():.0%} at 70-120 px.")


def _span(values):
    return f"{values.min():.2f}-{values.max():.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args()
    work, mics, best = load(args.out)
    threshold = work.settings().threshold
    print("| selection (uses the reference's labels) | precision | recall | F1 |\n"
          "|---|---|---|---|")
    print(f"| {best} alone | %.3f | %.3f | %.3f |" % f1_of(mics, is_best))
    print(f"| {best} alone, boxes inside the micrograph | %.3f | %.3f | %.3f |"
          % f1_of(mics, lambda m: m["best"] & m["inside"]))
    print("| the screen (its own decisions: no labels) | %.3f | %.3f | %.3f |"
          % f1_of(mics, lambda m: keep_mask(m["table"]["xy"], m["final"], DEDUPE, threshold)))
    evidence_ceiling(mics)
    image_ceiling(work, mics, args.out)
    where_the_best_picker_misses(mics, best)


if __name__ == "__main__":
    main()
