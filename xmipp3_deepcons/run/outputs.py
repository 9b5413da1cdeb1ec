"""The command line's outputs of a scored run: the kept particles as RELION and Xmipp
coordinates, every candidate with its score, and the figures."""
import logging
import os

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write
from .folder import continue_or

log = logging.getLogger("xmipp3_deepcons")
# What write_outputs makes: removed with the model they came from (``remove_outputs``).
OUTPUT_FILES = ("coordinates.star", "candidates.star", "candidates.npz", "score_histogram.png",
                "training_curves.png")


def remove_outputs(run):
    """Remove the outputs of a model that no longer exists: a run whose training is discarded
    must not leave coordinates that no model of the folder gave."""
    import shutil
    removed = [name for name in OUTPUT_FILES if os.path.exists(run.path(name))]
    for name in removed:
        os.remove(run.path(name))
    if os.path.isdir(run.path("coordinates")):
        shutil.rmtree(run.path("coordinates"))
        removed.append("coordinates/")
    if removed:
        log.info(f"outputs of the discarded model removed: {', '.join(removed)}")


def write_outputs(run, settings=None):
    """Write the outputs into the run folder; returns the summary counts."""
    from .. import plots
    from .keep import unique_and_kept
    from ..io.coordinates import write_coordinates_star, write_pos
    settings = settings or run.settings()
    ledger = run.ledger()
    missing = [stem for stem, *_ in ledger if run.network_scores(stem, settings.views) is None]
    if missing:
        raise InputError(f"{len(missing)} of {len(ledger)} micrographs are not scored yet "
                         f"(first: {missing[0]}); score them first "
                         f"({continue_or(f'predict {run.root}')} on every shard)")
    tables = [run.candidates(stem) for stem, *_ in ledger]
    network = [run.network_scores(stem, settings.views) for stem, *_ in ledger]
    final = [run.final_scores(stem, settings) for stem, *_ in ledger]
    threshold, suggested = run.threshold(settings, final)
    log.info(f"suggested threshold (valley of the score histogram): {suggested:.3f}")
    pos_dir = run.path("coordinates")
    os.makedirs(pos_dir, exist_ok=True)
    names, unique, kept = [], [], []
    stale = set(os.listdir(pos_dir)) - {stem + ".pos" for stem, *_ in ledger}
    for name in sorted(n for n in stale if n.endswith(".pos")):
        os.remove(os.path.join(pos_dir, name))     # a micrograph this run no longer has
    for (stem, path, *_), table, scores in zip(ledger, tables, final):
        is_unique, keep = unique_and_kept(table["xy"], scores, settings.dedupe_radius_px,
                                          threshold)
        write_pos(os.path.join(pos_dir, stem + ".pos"), table["xy"][keep], scores[keep])
        names += [path] * len(scores)
        unique.append(is_unique)
        kept.append(keep)
    cat = np.concatenate
    empty2 = np.zeros((0, 2))
    names = np.array(names, dtype=str)
    xy = cat([empty2] + [t["xy"] for t in tables])
    votes = cat([np.zeros(0, int)] + [t["votes"] for t in tables])
    unique, kept = cat([np.zeros(0, bool)] + unique), cat([np.zeros(0, bool)] + kept)
    score = cat([np.zeros(0, np.float32)] + final)
    write_coordinates_star(run.path("coordinates.star"), names[kept], xy[kept], score[kept])
    write_coordinates_star(run.path("candidates.star"), names, xy, score)
    with atomic_write(run.path("candidates.npz"), "wb") as f:
        np.savez(f, micrograph=names, xy=xy, score=score,
                 network_score=cat([np.zeros(0, np.float32)] + network), votes=votes,
                 duplicate=~unique, kept=kept, threshold=threshold,
                 suggested_threshold=suggested)
    plots.score_histogram(run.path("score_histogram.png"), score, threshold, votes=votes)
    plots.training_curves_from_model(run.path("training_curves.png"), run.model_dir())
    return {"kept": int(kept.sum()), "candidates": len(score),
            "duplicates": int((~unique).sum()), "threshold": threshold}
