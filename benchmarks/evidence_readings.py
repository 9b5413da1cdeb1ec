"""Re-read finished runs' candidates with other combinations of who picked and the network.

    python benchmarks/evidence_readings.py [--sets NAMES] [--trained LABEL]
                                          [--empiar-trained DIR] [--empiar-shipped DIR]

Needs, per hard set (``benchmarks/hard_sets.py``), a trained run (``--label LABEL``, default
``defaults``) and a run of the shipped network without training (``--label pretrained_votes --
--model pretrained --skip-training``), which have the same candidates; for EMPIAR-10017 the
two ``benchmarks/empiar10017.py --out DIR`` folders. Nothing is trained or scored: the
readings are fitted on the stored network scores, kept at 0.5 with the run's duplicate radius,
and judged as the benchmarks judge (the kept set matched to the truth; the union ranked by
score, merged duplicates last). Prints F1 / ROC-AUC per reading:

- ``votes``: the defaults of a trained run (independent witnesses, the trained network);
- ``patterns``: who picked as one answer beside the trained network (``--picker-evidence
  patterns``);
- ``pattern link``: who picked and the trained network as one logistic model;
- ``shipped patterns``: who picked read by the shipped network, the trained one ranking within
  (the larger of the two readings: ``anchored`` until 2026-12-07);
- ``shipped network``: the shipped network's score alone;
- ``anchored``: the mean of the last three's log-odds (``--picker-evidence anchored``).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xmipp3_deepcons.core import evidence as ev  # noqa: E402
from xmipp3_deepcons.core.consensus import suppress_duplicates  # noqa: E402
from xmipp3_deepcons.core.metrics import (match_to_reference, precision_recall_f1,  # noqa: E402
                                          ranking_quality)
from xmipp3_deepcons.run.folder import RunFolder  # noqa: E402
from xmipp3_deepcons.run.keep import keep_mask  # noqa: E402

SETS = ("low_snr", "decoys", "correlated", "ice_gradient", "species", "all")
EMPIAR_MATCH_RADIUS = 54


def load(run_dir, truth_dir):
    """Per micrograph: candidates, who picked, network scores and truth; the duplicate radius."""
    run = RunFolder(run_dir)
    settings = run.settings()
    rows = []
    for stem in run.scored_stems(settings.views):
        table = run.candidates(stem)
        rows.append({"xy": table["xy"], "ranks": ev.presence_ranks(table["members"]),
                     "network": run.network_scores(stem, settings.views),
                     "truth": np.loadtxt(os.path.join(truth_dir, stem + ".csv"), delimiter=",",
                                         skiprows=1, ndmin=2)})
    return rows, settings.dedupe_radius_px


def judged(rows, scores, dedupe_px, radius):
    """(F1 of the kept set, ROC-AUC of the union, merged duplicates ranked last)."""
    matched = kept = truth = 0
    labels, ranked = [], []
    for row, score in zip(rows, scores):
        single = suppress_duplicates(row["xy"], score, dedupe_px)
        keep = keep_mask(row["xy"], score, dedupe_px, 0.5)
        matched += match_to_reference(np.round(row["xy"][keep]), row["truth"], radius).sum()
        kept += keep.sum()
        truth += len(row["truth"])
        labels.append(match_to_reference(row["xy"], row["truth"], radius))
        ranked.append(np.where(single, score, score - 1))
    f1 = precision_recall_f1(matched, kept, truth)[2]
    return f1, ranking_quality(np.concatenate(labels), np.concatenate(ranked))[0]


def readings(trained, shipped):
    """{name: scores per micrograph} of the readings above."""
    sizes = np.cumsum([len(r["network"]) for r in trained])[:-1]
    ranks = np.concatenate([r["ranks"] for r in trained])
    network = np.concatenate([r["network"] for r in trained])
    reference = np.concatenate([r["network"] for r in shipped])
    model = ev.fit_anchored_evidence(ranks, network, reference)
    found = {"votes": ev.combine_evidence(ranks, network),
             "patterns": ev.apply_evidence(ev.fit_joint_evidence(ranks, network), ranks,
                                           network),
             "pattern link": ev.apply_evidence(model["pattern_link"], ranks, network),
             "shipped patterns": ev.apply_evidence(model["shipped_patterns"], ranks, network,
                                                   reference),
             "shipped network": reference,
             "anchored": ev.apply_evidence(model, ranks, network, reference)}
    return {name: np.split(scores, sizes) for name, scores in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("bench_out", "hard"))
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--trained", default="defaults", help="label of the trained runs")
    parser.add_argument("--shipped", default="pretrained_votes",
                        help="label of the runs of the shipped network without training")
    parser.add_argument("--empiar-trained",
                        help="benchmarks/empiar10017.py --out of a trained run")
    parser.add_argument("--empiar-shipped",
                        help="the same, of the shipped network without training")
    args = parser.parse_args()
    data = []
    for name in filter(None, args.sets.split(",")):
        folder = os.path.join(args.out, name)
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        stats = manifest["stats"]
        inputs = (max(stats["picker_f1"].values()), stats["vote_f1"], stats["vote_auc"])
        data.append((name, inputs, manifest["particle_radius"], os.path.join(folder, "truth"),
                     os.path.join(folder, "screen_" + args.trained),
                     os.path.join(folder, "screen_" + args.shipped)))
    if args.empiar_trained and args.empiar_shipped:
        data.append(("EMPIAR-10017", None, EMPIAR_MATCH_RADIUS,
                     os.path.join(args.empiar_trained, "empiar10017", "truth"),
                     os.path.join(args.empiar_trained, "screen"),
                     os.path.join(args.empiar_shipped, "screen")))
    names = ["votes", "shipped patterns", "shared shares", "either"]
    print("| data | best picker F1, 2-of-3 F1, vote-count ROC-AUC | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for name, inputs, radius, truth, trained_dir, shipped_dir in data:
        trained, dedupe_px = load(trained_dir, truth)
        shipped, _ = load(shipped_dir, truth)
        if any(len(a["xy"]) != len(b["xy"]) or not np.allclose(a["xy"], b["xy"])
               for a, b in zip(trained, shipped)):
            raise SystemExit(f"{name}: the two runs do not have the same candidates")
        scores = readings(trained, shipped)
        cells = ["%.3f / %.3f" % judged(trained, scores[n], dedupe_px, radius) for n in names]
        given = ", ".join("%.3f" % v for v in inputs) if inputs else "see empiar10017.py"
        print(f"| {name} | {given} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
