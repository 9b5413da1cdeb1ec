"""Figures people would rather look at than read: score histogram, training curves, galleries.

Plain matplotlib on the Agg backend, so they are written the same way headless, from the command
line and from the Scipion viewer.
"""
import json
import os

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def score_histogram(path, scores, threshold, votes=None, bins=50):
    """Histogram of candidate scores with the threshold; stacked by number of votes if given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    scores = np.asarray(scores, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    if votes is not None:
        votes = np.asarray(votes)
        groups = [(scores[votes == v], f"{v} vote{'s' if v > 1 else ''}") for v in np.unique(votes)]
        ax.hist([g for g, _ in groups], bins=edges, stacked=True, label=[lab for _, lab in groups])
        ax.legend(title="picked by")
    else:
        ax.hist(scores, bins=edges)
    if threshold is not None and threshold >= 0:
        ax.axvline(threshold, color="k", linestyle="--")
        kept = int((scores > threshold).sum())
        ax.set_title(f"{kept} of {len(scores)} candidates above threshold {threshold:g}")
    ax.set_xlabel("Deep Consensus score (P particle)")
    ax.set_ylabel("candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(path, history):
    """Accuracy and loss per Keras epoch for each model of the ensemble.

    ``history``: list (one per model) of dicts of lists, as written to history.json.
    """
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for i, h in enumerate(history):
        for key, style in (("accuracy", "-"), ("val_accuracy", "--")):
            if key in h:
                ax_acc.plot(np.arange(1, len(h[key]) + 1), h[key], style, label=f"model {i + 1} {key}")
        for key, style in (("loss", "-"), ("val_loss", "--")):
            if key in h:
                ax_loss.plot(np.arange(1, len(h[key]) + 1), h[key], style, label=f"model {i + 1} {key}")
    ax_acc.set_xlabel("Keras epoch (50 batches)")
    ax_acc.set_ylabel("accuracy")
    ax_loss.set_xlabel("Keras epoch (50 batches)")
    ax_loss.set_ylabel("loss")
    ax_acc.legend(fontsize=7)
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves_from_model(path, model_dir):
    """training_curves from a model folder's history.json; False when there is none."""
    history_file = os.path.join(model_dir, "history.json")
    if not os.path.exists(history_file):
        return False
    with open(history_file) as f:
        history = json.load(f)
    training_curves(path, history if isinstance(history, list) else history.get("models", []))
    return True


def gallery(path, boxes, scores, title, columns=8):
    """A grid of particle boxes with their scores (best or worst scored, say)."""
    plt = _pyplot()
    n = len(boxes)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.3 + 0.4))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(boxes[k], cmap="gray")
            ax.set_title(f"{scores[k]:.3f}", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
