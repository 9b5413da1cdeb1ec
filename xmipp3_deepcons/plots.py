"""Figures people would rather look at than read: score histogram, training curves, galleries.

Each figure has a ``draw_*`` function that draws on a ``matplotlib.figure.Figure`` given to it,
and a file writer that draws on a new Figure with its own Agg canvas and saves it. Nothing here
imports pyplot or changes the process's matplotlib backend: the command line writes files
headless, and the Scipion GUI (TkAgg, set by pyworkflow's project window) draws the same
figures in its own windows (``pyworkflow.gui.plotter.Plotter``), whose backend stays as it was.
"""
import json
import os

import numpy as np

DPI = 100
HISTOGRAM_SIZE = (7, 4)
TRAINING_SIZE = (10, 4)


def new_figure(figsize):
    """A Figure drawn by the Agg canvas only (no pyplot, no window, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save(figure, path):
    figure.savefig(path, dpi=DPI)


def histogram_title(scores, threshold, kept=None):
    """What the outputs hold against the candidates: kept, above the threshold, merged.

    ``kept``: how many candidates the outputs hold (duplicates merged); None if unknown.
    """
    total = len(scores)
    has_threshold = threshold is not None and threshold >= 0
    above = int((np.asarray(scores) > threshold).sum()) if has_threshold else total
    if kept is None:
        if has_threshold:
            return "%d of %d candidates above threshold %g" % (above, total, threshold)
        return "%d candidates (threshold -1: all kept)" % total
    merged = above - kept
    rule = "above threshold %g" % threshold if has_threshold else "threshold -1"
    title = "%d of %d candidates kept (%s" % (kept, total, rule)
    if merged > 0:
        title += ": %d, of which %d merged as duplicates" % (above, merged)
    return title + ")"


def draw_score_histogram(figure, scores, threshold, votes=None, bins=50, kept=None):
    """Histogram of candidate scores with the threshold; stacked by number of votes if given."""
    ax = figure.add_subplot(1, 1, 1)
    scores = np.asarray(scores, dtype=float)
    edges = np.linspace(0, 1, max(1, int(bins)) + 1)
    if votes is not None and len(scores):
        votes = np.asarray(votes)
        groups = [(scores[votes == v], "%d vote%s" % (v, "s" if v > 1 else ""))
                  for v in np.unique(votes)]
        ax.hist([g for g, _ in groups], bins=edges, stacked=True,
                label=[label for _, label in groups])
        ax.legend(title="picked by", fontsize=8)
    else:
        ax.hist(scores, bins=edges)
    if threshold is not None and threshold >= 0:
        ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_title(histogram_title(scores, threshold, kept), fontsize=10)
    ax.set_xlabel("Deep Consensus score (P particle)")
    ax.set_ylabel("candidates")
    ax.set_xlim(0, 1)
    figure.tight_layout()
    return figure


def score_histogram(path, scores, threshold, votes=None, bins=50, kept=None):
    save(draw_score_histogram(new_figure(HISTOGRAM_SIZE), scores, threshold, votes, bins,
                              kept), path)


def draw_training_curves(figure, history):
    """Accuracy and loss per Keras epoch for each model of the ensemble.

    ``history``: list (one per model) of dicts of lists, as written to history.json.
    """
    ax_acc, ax_loss = figure.subplots(1, 2)
    for i, h in enumerate(history):
        for ax, keys in ((ax_acc, ("accuracy", "val_accuracy")), (ax_loss, ("loss", "val_loss"))):
            for key, style in zip(keys, ("-", "--")):   # one colour per model
                if key in h:
                    few = len(h[key]) < 10      # markers: one epoch is a point, not a line
                    ax.plot(np.arange(1, len(h[key]) + 1), h[key], style,
                            color="C%d" % (i % 10), marker="o" if few else None,
                            markersize=4, label="model %d %s" % (i + 1, key))
    for ax, name in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("Keras epoch (50 batches)")
        ax.set_ylabel(name)
        if ax.lines:
            ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def training_curves(path, history):
    save(draw_training_curves(new_figure(TRAINING_SIZE), history), path)


def load_history(model_dir):
    """The per-model histories of a model folder's history.json; None when there is none."""
    history_file = os.path.join(model_dir, "history.json")
    if not os.path.exists(history_file):
        return None
    with open(history_file) as f:
        history = json.load(f)
    return history if isinstance(history, list) else history.get("models", [])


def training_curves_from_model(path, model_dir):
    """training_curves from a model folder's history.json; False when there is none."""
    history = load_history(model_dir)
    if history is None:
        return False
    training_curves(path, history)
    return True


def gallery_size(count, columns=8):
    rows = max(1, int(np.ceil(count / columns)))
    return columns * 1.2, rows * 1.3 + 0.5


def gallery_label(rank, score):
    """A box's title in a gallery: its rank and its score with 4 decimals (scores of the best
    candidates often agree to 3)."""
    return "#%d  %.4f" % (rank, score)


def draw_gallery(figure, boxes, scores, title, columns=8):
    """A grid of particle boxes with their rank and score (best or worst scored, say)."""
    n = len(boxes)
    rows = max(1, int(np.ceil(n / columns)))
    axes = figure.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(boxes[k], cmap="gray")
            ax.set_title(gallery_label(k + 1, scores[k]), fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def gallery(path, boxes, scores, title, columns=8):
    save(draw_gallery(new_figure(gallery_size(len(boxes), columns)), boxes, scores, title,
                      columns), path)
