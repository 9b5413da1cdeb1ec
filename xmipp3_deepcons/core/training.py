"""Training the ensemble, as the original did it: balanced weighted batches with flips, quarter
turns and small rotations, 10 % validation, learning-rate reduction and auto-stop on validation
accuracy, M models one after another. The saved model of each member is its best validation
epoch, and the reported accuracy is that epoch's (the original reported the last epoch's).
"""
import json
import math
import os
import time

import keras
import numpy as np
from scipy import ndimage

from ..constants import (BATCH_SIZE, BATCHES_PER_KERAS_EPOCH, MIN_POSITIVES, VALIDATION_FRACTION,
                         size_band)
from ..errors import InputError
from .network import band_of, build_network

MANIFEST = "manifest.json"
HISTORY = "history.json"


def group_weights(sizes, weights):
    """Per-group draw weights; a weight <= 0 means automatic: as much as the fixed groups together.

    automatic w = max(1, floor(sum of the sizes of the groups with w > 0 / this group's size)).
    """
    fixed_total = sum(n for n, w in zip(sizes, weights) if w > 0)
    return [w if w > 0 else max(1, int(fixed_total // n)) if n else 1 for n, w in zip(sizes, weights)]


def pool_groups(groups):
    """Concatenate (boxes, weight) groups; returns boxes and the draw probability of each."""
    groups = [(np.asarray(b, dtype=np.float32), w) for b, w in groups if len(b)]
    if not groups:
        return np.zeros((0, 128, 128), np.float32), np.zeros(0)
    weights = group_weights([len(b) for b, _ in groups], [w for _, w in groups])
    boxes = np.concatenate([b for b, _ in groups])
    probability = np.concatenate([np.full(len(b), float(w)) for (b, _), w in zip(groups, weights)])
    return boxes, probability / probability.sum()


def split_validation(n, rng, fraction=VALIDATION_FRACTION):
    """Random (train, validation) index arrays."""
    order = rng.permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def augment(boxes, rng):
    """The original's augmentation, one draw per batch: flips, quarter turns, ±10° rotations."""
    boxes = boxes.copy()
    n = len(boxes)
    if rng.random() < 0.5:
        lr, ud = rng.random(n) < 0.5, rng.random(n) < 0.5
        boxes[lr] = boxes[lr, :, ::-1]
        boxes[ud] = boxes[ud, ::-1, :]
    if rng.random() < 0.5:
        turns = rng.integers(0, 4, n)
        for k in (1, 2, 3):
            boxes[turns == k] = np.rot90(boxes[turns == k], k, axes=(1, 2))
    if rng.random() < 0.5:
        chosen = np.flatnonzero(rng.random(n) < 0.5)
        if len(chosen):
            boxes[chosen] = rotate_small(boxes[chosen], rng.uniform(-10, 10, len(chosen)))
    return boxes


def rotate_small(boxes, degrees):
    """Rotate each box about its centre (bilinear, reflected borders), all in one call."""
    n, size = len(boxes), boxes.shape[1]
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size] - centre
    theta = np.deg2rad(degrees)[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    src_y = cos * yy + sin * xx + centre
    src_x = -sin * yy + cos * xx + centre
    index = np.broadcast_to(np.arange(n)[:, None, None], src_y.shape)
    return ndimage.map_coordinates(boxes, [index, src_y, src_x], order=1, mode="mirror").astype(np.float32)


class BalancedBatches(keras.utils.PyDataset):
    """Endless balanced batches: half positives, half negatives, each drawn by its weight."""

    def __init__(self, positives, pos_probability, negatives, neg_probability, seed,
                 batches=BATCHES_PER_KERAS_EPOCH, batch_size=BATCH_SIZE, augmented=True):
        super().__init__()
        self.positives, self.pos_probability = positives, pos_probability
        self.negatives, self.neg_probability = negatives, neg_probability
        self.seed, self.batches, self.batch_size, self.augmented = seed, batches, batch_size, augmented
        self.epoch = 0

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        # One generator per (epoch, batch): reproducible whatever order Keras asks in.
        rng = np.random.default_rng([self.seed, self.epoch, index])
        half = self.batch_size // 2
        pos = rng.choice(len(self.positives), half, p=self.pos_probability)
        neg = rng.choice(len(self.negatives), self.batch_size - half, p=self.neg_probability)
        boxes = np.concatenate([self.positives[pos], self.negatives[neg]])
        if self.augmented:
            boxes = augment(boxes, rng)
        labels = np.zeros((len(boxes), 2), np.float32)
        labels[:half, 1] = 1
        labels[half:, 0] = 1
        return boxes[..., None], labels

    def on_epoch_end(self):
        self.epoch += 1


class ProgressLog(keras.callbacks.Callback):
    """One line per Keras epoch through the caller's logger."""

    def __init__(self, log, member, n_members, n_epochs):
        super().__init__()
        self.log, self.member, self.n_members, self.n_epochs = log, member, n_members, n_epochs
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.log(f"model {self.member}/{self.n_members} epoch {epoch + 1}/{self.n_epochs}: "
                 f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f} "
                 f"val_loss {logs.get('val_loss', float('nan')):.4f} "
                 f"val_acc {logs.get('val_accuracy', float('nan')):.4f} lr {lr:.1e} "
                 f"({time.time() - self.started:.0f} s)")


def keras_epochs(epochs, n_positives):
    """Keras epochs of 50 batches that make ``epochs`` passes over the training positives."""
    n_train_batches = int((1 - VALIDATION_FRACTION) * n_positives * 2 / BATCH_SIZE)
    return max(1, int(math.ceil(epochs * n_train_batches / BATCHES_PER_KERAS_EPOCH)))


def train_ensemble(positives, negatives, model_dir, n_models=3, epochs=5.0, learning_rate=1e-4,
                   l2=1e-5, auto_stop=True, band=None, seed=None, init_model_dir=None,
                   log=print, metadata=None):
    """Train M networks on (boxes, weight) groups; writes the model folder, returns the manifest.

    ``init_model_dir`` continues from a trained ensemble (its members are reused in turn);
    ``band`` defaults to the size the number of positives calls for.
    """
    pos_boxes, pos_probability = pool_groups(positives)
    neg_boxes, neg_probability = pool_groups(negatives)
    if len(pos_boxes) < MIN_POSITIVES:
        raise InputError(f"too few positives to train: found {len(pos_boxes)}, need at least "
                         f"{MIN_POSITIVES}; add micrographs or training data")
    if len(neg_boxes) < MIN_POSITIVES // 4:
        raise InputError(f"too few negatives to train: found {len(neg_boxes)}, need at least "
                         f"{MIN_POSITIVES // 4}")
    seed = 0 if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    pos_train, pos_val = split_validation(len(pos_boxes), rng)
    neg_train, neg_val = split_validation(len(neg_boxes), rng)
    val_x = np.concatenate([pos_boxes[pos_val], neg_boxes[neg_val]])[..., None]
    val_y = np.zeros((len(val_x), 2), np.float32)
    val_y[:len(pos_val), 1] = 1
    val_y[len(pos_val):, 0] = 1

    init = load_members(init_model_dir) if init_model_dir else None
    band = band or (band_of(init[0]) if init else size_band(len(pos_boxes)))
    n_epochs = keras_epochs(epochs, len(pos_train))
    os.makedirs(model_dir, exist_ok=True)
    log(f"training {n_models} {band} network(s) on {len(pos_train)} positives and "
        f"{len(neg_train)} negatives ({len(pos_val)}+{len(neg_val)} for validation), "
        f"{n_epochs} epochs of {BATCHES_PER_KERAS_EPOCH} batches")

    members, histories = [], []
    for i in range(n_models):
        keras.utils.set_random_seed(seed + i)
        model = build_network(band, l2, learning_rate)
        if init:
            model.set_weights(init[i % len(init)].get_weights())
        batches = BalancedBatches(pos_boxes[pos_train], _renormalise(pos_probability[pos_train]),
                                  neg_boxes[neg_train], _renormalise(neg_probability[neg_train]),
                                  seed=[seed, i])
        path = os.path.join(model_dir, f"model_{i}.keras")
        callbacks = [
            keras.callbacks.ModelCheckpoint(path, monitor="val_accuracy", mode="max", save_best_only=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.1, patience=3,
                                              cooldown=1, min_lr=learning_rate * 1e-3),
            ProgressLog(log, i + 1, n_models, n_epochs),
        ]
        if auto_stop:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                           min_delta=0.001, patience=10))
        history = model.fit(batches, epochs=n_epochs, validation_data=(val_x, val_y),
                            batch_size=BATCH_SIZE, callbacks=callbacks, verbose=0)
        record = {k: [float(v) for v in values] for k, values in history.history.items()}
        histories.append(record)
        best = int(np.argmax(record["val_accuracy"]))
        members.append({"file": os.path.basename(path), "val_accuracy": record["val_accuracy"][best],
                        "best_epoch": best + 1, "epochs_run": len(record["val_accuracy"])})
        log(f"model {i + 1}/{n_models}: best val_acc {members[-1]['val_accuracy']:.4f} "
            f"at epoch {best + 1}")

    manifest = {
        "format": "xmipp3_deepcons ensemble 1", "band": band, "n_models": n_models,
        "models": members,
        "mean_val_accuracy": float(np.mean([m["val_accuracy"] for m in members])),
        "n_positives": int(len(pos_boxes)), "n_negatives": int(len(neg_boxes)),
        "epochs": epochs, "learning_rate": learning_rate, "l2": l2, "seed": seed,
        "continued_from": os.path.abspath(init_model_dir) if init_model_dir else None,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "extra": metadata or {},
    }
    with open(os.path.join(model_dir, HISTORY), "w") as f:
        json.dump(histories, f)
    with open(os.path.join(model_dir, MANIFEST), "w") as f:  # last: marks the folder complete
        json.dump(manifest, f, indent=1)
    return manifest


def _renormalise(probability):
    return probability / probability.sum()


def load_members(model_dir):
    from .ensemble import Ensemble
    return Ensemble.load(model_dir).models
