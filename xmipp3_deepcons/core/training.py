"""Training the ensemble as the original did: balanced, weighted batches with flips, quarter
turns and small rotations; 10 % held out for validation; learning-rate reduction and auto-stop
on validation accuracy; M networks one after another.

Each member's saved model is its best validation epoch, and the reported accuracy is that
epoch's (the original reported the last epoch's). A loss that becomes NaN or Inf stops training
with ``TrainingDiverged``; the manifest records each network file's size and SHA-256, checked
whenever the folder is loaded.
"""
import json
import math
import os
import time
from typing import NamedTuple

from . import tf_runtime  # noqa: F401  (TensorFlow first: quietly, with our threads)
import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage

from ..constants import (BATCH_SIZE, BATCHES_PER_KERAS_EPOCH, DEEP_PARTICLE_SIZE, MIN_POSITIVES,
                         VALIDATION_FRACTION, size_band)
from .. import checks
from ..errors import InputError, TrainingDiverged
from ..io.atomic import atomic_write
from ..resources import file_record
from .network import BANDS, build_network, compile_network, in_fast_layers

MANIFEST = "manifest.json"
HISTORY = "history.json"
MODEL_FILE = "model_{}.keras"
FORMAT = "xmipp3_deepcons ensemble 1"
MIN_NEGATIVES = 10        # so that validation holds at least one
MAX_ROTATION = 10.0       # degrees, either way
# A loss no working network reaches: cross-entropy is at most ~16 a box (Keras clips at 1e-7),
# so a larger one is exploded weights (the L2 term); WRONG_LOSS is confidently wrong on the
# balanced batches (0.69 is a guess).
LOSS_LIMIT = 1e4
WRONG_LOSS = 5.0


class WeightedBoxes(NamedTuple):
    """The boxes of one class that may be drawn (``index``), each with its draw probability."""
    boxes: np.ndarray
    index: np.ndarray
    probability: np.ndarray


def group_weights(sizes, weights):
    """Draw weight of each group; a weight <= 0 means automatic.

    An automatic group weighs as much as all fixed groups of its class together, in whole
    numbers: max(1, floor(sum of the fixed groups' sizes / its size)).
    """
    fixed_total = sum(n for n, w in zip(sizes, weights) if w > 0)
    return [int(w) if w > 0 else max(1, fixed_total // n if n else 1)
            for n, w in zip(sizes, weights)]


def pool_groups(groups, what="training"):
    """Stack (boxes, weight) groups into one array; returns it and each box's draw probability.

    Boxes with NaN or Inf pixels are refused (``what`` names the set in the message): one
    would make the loss NaN and the trained network useless."""
    groups = [(np.asarray(boxes, dtype=np.float32), weight) for boxes, weight in groups]
    for boxes, weight in groups:
        if boxes.ndim != 3 or boxes.shape[1:] != (DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE):
            raise InputError(f"training boxes have shape {boxes.shape}, need (n, "
                             f"{DEEP_PARTICLE_SIZE}, {DEEP_PARTICLE_SIZE}); extract them at "
                             f"{DEEP_PARTICLE_SIZE} px")
        bad = checks.non_finite_items(boxes)
        if len(bad):
            raise InputError(f"{what} boxes: {len(bad)} of {len(boxes)} have NaN or Inf "
                             "pixels; check the micrographs or particle images they come from")
        if not (isinstance(weight, (int, float, np.number)) and math.isfinite(weight)):
            raise InputError(f"{what} boxes: weight {weight} is not a finite number; give a "
                             "number (0 or less: automatic)")
    groups = [(boxes, weight) for boxes, weight in groups if len(boxes)]
    if not groups:
        return np.zeros((0, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE), np.float32), np.zeros(0)
    weights = group_weights([len(b) for b, _ in groups], [w for _, w in groups])
    boxes = groups[0][0] if len(groups) == 1 else np.concatenate([b for b, _ in groups])
    per_box = np.concatenate([np.full(len(b), float(w)) for (b, _), w in zip(groups, weights)])
    return boxes, per_box / per_box.sum()


def split_validation(n, rng, fraction=VALIDATION_FRACTION):
    """Sorted (training, validation) index arrays: a random ``fraction`` is held out."""
    order = rng.permutation(n)
    n_validation = int(round(n * fraction))
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def augment(boxes, rng):
    """The original's augmentation, each step on half the batches: per box, left-right and
    up-down flips (p 1/2 each); quarter turns (k = 0..3); rotations within ±10° (p 1/2)."""
    boxes = boxes.copy()
    n = len(boxes)
    if rng.random() < 0.5:
        flip = rng.random(n) < 0.5
        boxes[flip] = boxes[flip, :, ::-1]
        flip = rng.random(n) < 0.5
        boxes[flip] = boxes[flip, ::-1, :]
    if rng.random() < 0.5:
        turns = rng.integers(0, 4, n)
        for k in (1, 2, 3):
            boxes[turns == k] = np.rot90(boxes[turns == k], k, axes=(1, 2))
    if rng.random() < 0.5:
        for i in np.flatnonzero(rng.random(n) < 0.5):
            angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
            boxes[i] = rotated(boxes[i], angle)
    return boxes


def rotated(box, angle):
    """``ndimage.rotate(box, angle, reshape=False, mode="reflect")`` of a float32 box, the
    same values bit for bit, in half the time: SciPy's spline interpolation is slower writing
    float32 than float64 (1.9x measured per 128x128 box), and the float64 result rounds to
    the same float32 values (tested)."""
    return ndimage.rotate(np.asarray(box, np.float64), angle, reshape=False,
                          mode="reflect").astype(np.float32)


class BalancedBatches:
    """Batches of half positives, half negatives, drawn by weight, augmented.

    Each class is an endless stream of passes; a pass draws as many boxes as the class has
    (with replacement, by probability), so a batch is fully determined by the seed and its
    number (``batches[number]``), whatever order it is asked for in.
    """

    def __init__(self, positives, negatives, seed, batch_size=BATCH_SIZE, augmented=True):
        self.classes = (negatives, positives)   # label 0, label 1
        self.seed = seed if isinstance(seed, (list, tuple)) else [seed]
        self.batch_size = batch_size
        self.augmented = augmented
        self._passes = {}

    def __getitem__(self, number):
        n_positive = self.batch_size // 2
        n_negative = self.batch_size - n_positive
        positive = self._draw(1, number * n_positive, n_positive)
        negative = self._draw(0, number * n_negative, n_negative)
        boxes = np.concatenate([positive, negative])
        if self.augmented:
            boxes = augment(boxes, np.random.default_rng([*self.seed, 2, number]))
        labels = np.zeros((self.batch_size, 2), np.float32)
        labels[:n_positive, 1] = 1
        labels[n_positive:, 0] = 1
        return boxes[..., None], labels

    def dataset(self, n_batches):
        """Batches 0 .. n_batches - 1 as one stream for ``fit(steps_per_epoch=...)``, the next
        batch made while the network trains on this one (see ``_without_autotune``)."""
        size = (self.batch_size, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE, 1)

        def batch(number):
            boxes, labels = tf.numpy_function(lambda n: self[int(n)], [number],
                                              (tf.float32, tf.float32), stateful=False)
            return tf.ensure_shape(boxes, size), tf.ensure_shape(labels, (self.batch_size, 2))
        return _without_autotune(tf.data.Dataset.range(n_batches).map(batch).prefetch(2))

    def _draw(self, label, start, count):
        """Boxes at positions start..start+count of the class's stream of passes."""
        members = self.classes[label]
        size = len(members.index)
        chosen = [self._pass(label, position // size)[position % size]
                  for position in range(start, start + count)]
        return members.boxes[members.index[chosen]]

    def _pass(self, label, number):
        key = (label, number)
        if key not in self._passes:
            members = self.classes[label]
            rng = np.random.default_rng([*self.seed, label, number])
            self._passes = {k: v for k, v in self._passes.items() if k[0] != label}
            self._passes[key] = rng.choice(len(members.index), len(members.index),
                                           p=members.probability)
        return self._passes[key]


class EpochRecorder(keras.callbacks.Callback):
    """Logs one line per Keras epoch and records its metrics with the learning rate it used.

    Listed before ReduceLROnPlateau, it reads the rate before that callback lowers it.
    """

    def __init__(self, log, member, n_members, n_epochs):
        super().__init__()
        self.log, self.member, self.n_members, self.n_epochs = log, member, n_members, n_epochs
        self.history = {key: [] for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
        self.diverged = None   # (epoch, metric, value) once a loss is NaN or Inf
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        for key, values in self.history.items():
            values.append(float(logs.get(key, float("nan"))))
        self.log(f"model {self.member}/{self.n_members} epoch {epoch + 1}/{self.n_epochs}: "
                 f"loss {logs.get('loss', math.nan):.4f} acc {logs.get('accuracy', math.nan):.4f} "
                 f"val_loss {logs.get('val_loss', math.nan):.4f} "
                 f"val_acc {logs.get('val_accuracy', math.nan):.4f} lr {logs['lr']:.1e} "
                 f"({time.time() - self._started:.0f} s)")
        for key in ("loss", "val_loss"):
            value = float(logs.get(key, 0.0))
            if not math.isfinite(value) or value > LOSS_LIMIT:   # the weights are lost
                self.diverged = (epoch + 1, key, value)
                self.model.stop_training = True
                break

    def divergence(self, learning_rate, chance=None):
        """The ``TrainingDiverged`` to raise when a loss became NaN, Inf or huge, or when the
        network ends confidently wrong (a training loss above ``WRONG_LOSS``) and never
        validated better than answering one class (``chance``: the larger class's share of
        the validation set); else None."""
        hint = (f"lower the learning rate (now {learning_rate:g}), e.g. to {learning_rate / 10:g}, "
                "and train again")
        if self.diverged is not None:
            epoch, key, value = self.diverged
            return TrainingDiverged(
                f"model {self.member}/{self.n_members}: training diverged at epoch {epoch} of "
                f"{self.n_epochs} ({key} {value:g}); {hint}")
        losses = self.history["loss"]
        accuracy = [a for a in self.history["val_accuracy"] if math.isfinite(a)]
        if (chance is not None and losses and losses[-1] > WRONG_LOSS
                and max(accuracy, default=0.0) <= chance + 0.01):
            return TrainingDiverged(
                f"model {self.member}/{self.n_members}: training diverged (loss "
                f"{losses[-1]:g} after {len(losses)} epochs, best validation accuracy "
                f"{max(accuracy, default=0.0):.3f}: no better than answering one class, "
                f"{chance:.3f}); {hint}")
        return None


def keras_epochs(epochs, n_positives, min_batches=0):
    """Keras epochs of 50 batches that make ``epochs`` passes over the training positives, and
    at least ``min_batches`` batches."""
    n_train_batches = int((1 - VALIDATION_FRACTION) * n_positives * 2 / BATCH_SIZE)
    return max(1, int(math.ceil(max(epochs * n_train_batches, min_batches)
                                / BATCHES_PER_KERAS_EPOCH)))


def train_ensemble(positives, negatives, model_dir, n_models=3, epochs=5.0, learning_rate=1e-4,
                   l2=1e-5, auto_stop=True, band=None, seed=None, init_model_dir=None,
                   log=print, metadata=None, min_positives=MIN_POSITIVES, min_batches=0):
    """Train ``n_models`` networks on (boxes, weight) groups; returns the manifest it writes.

    ``band`` defaults to the one the number of positives calls for. ``init_model_dir``
    continues a trained ensemble: member i starts from its model i (a new network where it
    has fewer). A given ``seed`` makes the run repeatable (deterministic TensorFlow ops).
    """
    n_models = checks.check_integer("the number of models", n_models, minimum=1)
    epochs = checks.check_positive("the epochs", epochs)
    learning_rate = checks.check_positive("the learning rate", learning_rate)
    l2 = checks.check_l2("the L2 strength", l2)
    pos_boxes, pos_probability = pool_groups(positives, "positive")
    neg_boxes, neg_probability = pool_groups(negatives, "negative")
    if len(pos_boxes) < min_positives:
        raise InputError(f"too few positives to train: found {len(pos_boxes)}, need at least "
                         f"{min_positives}; add micrographs or particles")
    if len(neg_boxes) < MIN_NEGATIVES:
        raise InputError(f"too few negatives to train: found {len(neg_boxes)}, need at least "
                         f"{MIN_NEGATIVES}; add micrographs or negative particles")
    if band is not None and band not in BANDS:
        raise InputError(f"unknown network size {band!r}: use one of {', '.join(BANDS)}")
    deterministic = seed is not None
    seed = int(np.random.default_rng().integers(2 ** 31)) if seed is None else int(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    rng = np.random.default_rng(seed)
    pos_train, pos_val = split_validation(len(pos_boxes), rng)
    neg_train, neg_val = split_validation(len(neg_boxes), rng)
    validation = _validation_set(pos_boxes[pos_val], neg_boxes[neg_val])
    chance = max(len(pos_val), len(neg_val)) / max(1, len(pos_val) + len(neg_val))
    train_positives = WeightedBoxes(pos_boxes, pos_train, _normalised(pos_probability[pos_train]))
    train_negatives = WeightedBoxes(neg_boxes, neg_train, _normalised(neg_probability[neg_train]))

    initial = _initial_models(init_model_dir, band)
    band = band or (initial.band if initial else size_band(len(pos_boxes)))
    n_epochs = keras_epochs(epochs, len(pos_boxes), min_batches)
    os.makedirs(model_dir, exist_ok=True)
    for stale in (MANIFEST, HISTORY):   # a folder with a manifest is a finished model
        if os.path.exists(os.path.join(model_dir, stale)):
            os.remove(os.path.join(model_dir, stale))
    log(f"training {n_models} {band} network(s) on {len(pos_train)} positives and "
        f"{len(neg_train)} negatives ({len(pos_val)} + {len(neg_val)} held out for validation), "
        f"up to {n_epochs} epochs of {BATCHES_PER_KERAS_EPOCH} batches, seed {seed}")

    members, histories = [], []
    for i in range(n_models):
        keras.utils.set_random_seed(seed + i)
        if initial and i < initial.n_models:
            model = compile_network(in_fast_layers(initial.models[i]), learning_rate, l2)
        else:
            model = build_network(band, l2, learning_rate)
        batches = BalancedBatches(train_positives, train_negatives, seed=[seed, i])
        recorder = EpochRecorder(log, i + 1, n_models, n_epochs)
        path = os.path.join(model_dir, MODEL_FILE.format(i))
        # The checkpoint is written under a temporary name and renamed when the network is
        # done: a full disk or a kill never leaves part of a network under its final name.
        partial = os.path.join(model_dir, "." + MODEL_FILE.format(i)[:-len(".keras")]
                               + ".partial.keras")
        try:
            model.fit(batches.dataset(n_epochs * BATCHES_PER_KERAS_EPOCH), epochs=n_epochs,
                      steps_per_epoch=BATCHES_PER_KERAS_EPOCH, validation_data=validation,
                      shuffle=False, verbose=0,
                      callbacks=_callbacks(recorder, partial, learning_rate, auto_stop))
            histories.append(recorder.history)
            diverged = recorder.divergence(learning_rate, chance)
            if diverged is not None:
                log(str(diverged))
                raise diverged
            if os.path.exists(partial):
                _sync(partial)
                os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        best = int(np.argmax(recorder.history["val_accuracy"]))
        members.append({"file": os.path.basename(path),
                        "val_accuracy": recorder.history["val_accuracy"][best],
                        "best_epoch": best + 1, "epochs_run": len(recorder.history["loss"])})
        log(f"model {i + 1}/{n_models}: best val_acc {members[-1]['val_accuracy']:.4f} at epoch "
            f"{best + 1} of {members[-1]['epochs_run']}, saved to {path}")

    manifest = {
        "format": FORMAT, "band": band, "n_models": n_models, "models": members,
        "mean_val_accuracy": float(np.mean([m["val_accuracy"] for m in members])),
        "n_positives": int(len(pos_boxes)), "n_negatives": int(len(neg_boxes)),
        "n_validation_positives": int(len(pos_val)), "n_validation_negatives": int(len(neg_val)),
        "epochs": float(epochs), "keras_epochs": n_epochs, "learning_rate": float(learning_rate),
        "l2": float(l2), "auto_stop": bool(auto_stop), "seed": seed,
        "deterministic": deterministic,
        "continued_from": os.path.abspath(init_model_dir) if init_model_dir else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "keras_version": keras.__version__, "extra": dict(metadata or {}),
        "files": {m["file"]: file_record(os.path.join(model_dir, m["file"])) for m in members},
    }
    _write_json(os.path.join(model_dir, HISTORY), histories)
    _write_json(os.path.join(model_dir, MANIFEST), manifest)   # last: the model is complete
    return manifest


def _sync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _callbacks(recorder, path, learning_rate, auto_stop):
    callbacks = [
        recorder,
        keras.callbacks.ModelCheckpoint(path, monitor="val_accuracy", mode="max",
                                        save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.1,
                                          patience=3, cooldown=1, min_lr=learning_rate * 1e-3),
    ]
    if auto_stop:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                       min_delta=0.001, patience=10))
    return callbacks


def _validation_set(positives, negatives):
    boxes = np.concatenate([positives, negatives])[..., None]
    labels = np.zeros((len(boxes), 2), np.float32)
    labels[:len(positives), 1] = 1
    labels[len(positives):, 0] = 1
    return _without_autotune(tf.data.Dataset.from_tensor_slices((boxes, labels)).batch(BATCH_SIZE))


def _without_autotune(dataset):
    """The dataset without tf.data's autotuning, whose thread an iterator waits for when it is
    deleted (measured: 10-40 s at the end of an epoch or of a network's training; Keras makes
    new iterators every epoch). Ours is a plain sequence; nothing is left to tune."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _initial_models(init_model_dir, band):
    if not init_model_dir:
        return None
    from .ensemble import Ensemble
    initial = Ensemble.load(init_model_dir)
    if band and initial.band and band != initial.band:
        raise InputError(f"network size {band} differs from the model in {init_model_dir} "
                         f"({initial.band}); leave the size out to continue that model")
    return initial


def _normalised(probability):
    return probability / probability.sum()


def _write_json(path, content):
    with atomic_write(path) as f:
        json.dump(content, f, indent=1)
