"""A trained ensemble on disk, and its score: the mean P(particle) of its members."""
import json
import os

import numpy as np

from ..errors import InputError

MANIFEST = "manifest.json"


class Ensemble:
    def __init__(self, models, manifest):
        self.models = models
        self.manifest = manifest

    @classmethod
    def load(cls, model_dir):
        import keras
        from . import fft_conv  # noqa: F401  registers FFTConv2D for loading
        manifest_path = os.path.join(model_dir, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise InputError(f"{model_dir} is not a Deep Consensus model folder (no {MANIFEST})")
        with open(manifest_path) as f:
            manifest = json.load(f)
        models = [keras.models.load_model(os.path.join(model_dir, m["file"]), compile=False)
                  for m in manifest["models"]]
        return cls(models, manifest)

    @property
    def n_models(self):
        return len(self.models)

    @property
    def band(self):
        return self.manifest.get("band")

    def score(self, boxes, batch_size=256):
        """Mean P(particle) over the members, float32 in [0, 1], for (n, 128, 128) boxes."""
        boxes = np.asarray(boxes, dtype=np.float32)
        total = np.zeros(len(boxes), np.float64)
        for start in range(0, len(boxes), batch_size):
            batch = boxes[start:start + batch_size, ..., None]
            for model in self.models:
                total[start:start + len(batch)] += np.asarray(model(batch, training=False))[:, 1]
        return (total / max(1, self.n_models)).astype(np.float32)


def evaluate_scores(labels, scores):
    """What the original printed in testing mode: accuracy at 0.5, ROC-AUC, and the
    precision, recall, accuracy and MCC at the threshold of best MCC (scanned 0..0.999)."""
    from sklearn.metrics import matthews_corrcoef, roc_auc_score
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    result = {"accuracy_at_0.5": float(np.mean((scores > 0.5) == labels)),
              "roc_auc": float(roc_auc_score(labels, scores))}
    best = max(np.arange(0, 1, 0.001),
               key=lambda t: matthews_corrcoef(labels, scores > t))
    predicted = scores > best
    true_positives = int(np.sum(predicted & (labels == 1)))
    result.update(best_threshold=float(best), mcc=float(matthews_corrcoef(labels, predicted)),
                  precision=true_positives / max(1, int(predicted.sum())),
                  recall=true_positives / max(1, int(labels.sum())),
                  accuracy=float(np.mean(predicted == labels)))
    return result
