"""A trained ensemble on disk and its score: the mean P(particle) of its members."""
import os
import zipfile

import numpy as np

from ..constants import DEEP_PARTICLE_SIZE, VIEW_CHOICES
from ..checks import non_finite_items
from ..errors import InputError
from ..resources import FIX_MODEL, MANIFEST, verify_model_folder  # noqa: F401

THRESHOLDS = np.arange(1000) / 1000.0   # the original's scan for the best-MCC threshold


class Ensemble:
    """The members of a model folder, with its manifest (see ``training.train_ensemble``)."""

    def __init__(self, models, manifest, views=1):
        if views not in VIEW_CHOICES:
            raise InputError(f"views {views}: use one of {', '.join(map(str, VIEW_CHOICES))}")
        self.models = list(models)
        self.manifest = manifest
        self.views = views
        self._partial = {}

    @classmethod
    def load(cls, model_dir, views=1):
        """The model folder's members; ``views``: mirror views each box is scored in.

        Each network file must match the size and SHA-256 its manifest records
        (``resources.verify_model_folder``); a file that does not, or that Keras cannot read,
        is refused in one line that names it.
        """
        if views not in VIEW_CHOICES:
            raise InputError(f"views {views}: use one of {', '.join(map(str, VIEW_CHOICES))}")
        manifest = verify_model_folder(model_dir)
        import keras
        from . import fast_layers, fft_conv  # noqa: F401  (registers our layers for loading)
        models = []
        for member in manifest["models"]:
            name = member["file"]
            path = os.path.join(model_dir, name)
            if not zipfile.is_zipfile(path):   # Keras would call it "File not found"
                raise InputError(f"model folder {model_dir}: {name} is not a whole .keras file "
                                 f"(truncated or damaged); {FIX_MODEL}")
            try:
                models.append(keras.models.load_model(path, compile=False))
            except Exception as error:   # Keras and h5py raise many types, all meaning this
                detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                raise InputError(f"model folder {model_dir}: {name} cannot be loaded "
                                 f"({detail}); {FIX_MODEL}") from error
        return cls(models, manifest, views)

    @property
    def n_models(self):
        return len(self.models)

    @property
    def band(self):
        return self.manifest.get("band")

    def partial_sum(self, boxes, members, views):
        """Sum of P(particle) over the members ``members`` (start, stop) in the views ``views``
        (start, stop) of each box, float64: the evaluations a scoring cascade adds to a look it
        has (``run/cascade.py``), and, over all of them, the whole score. Each scorer is built
        once and traces its graph on first use."""
        boxes = self._checked(boxes)
        from .scoring import Scorer
        total = np.zeros(len(boxes), np.float64)
        for member in range(*members):
            key = (member, *views)
            if key not in self._partial:
                self._partial[key] = Scorer(self.models[member], views[1], skip=views[0])
            total += self._partial[key](boxes) * (views[1] - views[0])
        return total

    def score(self, boxes):
        """Mean P(particle) of the members over the mirror views (``scoring.Scorer``), float32
        in [0, 1], one per (128, 128) box."""
        total = self.partial_sum(boxes, (0, self.n_models), (0, self.views))
        return (total / max(1, self.n_models * self.views)).astype(np.float32)

    @staticmethod
    def _checked(boxes):
        """(n, 128, 128) float32 boxes, or one line saying what is wrong with them."""
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim == 4 and boxes.shape[-1] == 1:
            boxes = boxes[..., 0]
        if boxes.ndim != 3 or boxes.shape[1:] != (DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE):
            raise InputError(f"boxes to score have shape {boxes.shape}, the network needs (n, "
                             f"{DEEP_PARTICLE_SIZE}, {DEEP_PARTICLE_SIZE}); extract them at "
                             f"{DEEP_PARTICLE_SIZE} px")
        bad = non_finite_items(boxes)
        if len(bad):
            raise InputError(f"boxes to score: {len(bad)} of {len(boxes)} have NaN or Inf "
                             "pixels; check the micrographs or particle images they come from")
        return boxes


def evaluate_scores(labels, scores):
    """What the original's testing mode printed: accuracy at 0.5, ROC-AUC, and precision,
    recall, accuracy and MCC at the threshold (0, 0.001, ... 0.999) of best MCC.

    A box counts as a particle when its score is above the threshold, as in screening.
    """
    from sklearn.metrics import matthews_corrcoef, roc_auc_score
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    both_classes = labels.any() and not labels.all()
    best = float(THRESHOLDS[np.argmax(_mcc_per_threshold(labels, scores))])
    predicted = scores > best
    true_positives = int(np.sum(predicted & labels))
    return {
        "accuracy_at_0.5": float(np.mean((scores > 0.5) == labels)),
        "roc_auc": float(roc_auc_score(labels, scores)) if both_classes else float("nan"),
        "best_threshold": best,
        "mcc": float(matthews_corrcoef(labels, predicted)),
        "precision": true_positives / max(1, int(predicted.sum())),
        "recall": true_positives / max(1, int(labels.sum())),
        "accuracy": float(np.mean(predicted == labels)),
    }


def _mcc_per_threshold(labels, scores):
    """Matthews correlation at every threshold at once (1000 scikit-learn calls are slow on
    the 10^5 scores of a real test set); 0 where it is undefined, as scikit-learn does."""
    def above(values):
        return (len(values) - np.searchsorted(np.sort(values), THRESHOLDS, side="right")).astype(float)

    tp, fp = above(scores[labels]), above(scores[~labels])
    fn, tn = labels.sum() - tp, (~labels).sum() - fp
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (tp * tn - fp * fn) / denominator, 0.0)
