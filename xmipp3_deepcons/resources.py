"""The resources that ship with the package: pretrained networks and precompiled negatives.

    <models>/pretrained/<noPhaseFlip|phaseFlip>/<small|medium|large>/manifest.json + model_0.keras
    <models>/negatives_<noPhaseFlip|phaseFlip>.npz

``<models>`` is ``$DEEPCONS_MODELS`` when set, else the package's ``models/`` folder. They are
made by ``scripts/train_shipped_models.py`` (ASPIRE-simulated micrographs, preprocessed and
extracted by this engine); each manifest says how. Pure Python: no Scipion, no TensorFlow.
"""
import json
import os

import numpy as np

from .constants import DEEP_PARTICLE_SIZE, size_band
from .errors import InputError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MODELS_VAR = "DEEPCONS_MODELS"
BANDS = ("small", "medium", "large")
PRETRAINED = "pretrained"   # the word that --model takes


def flip_name(phase_flip):
    return "phaseFlip" if phase_flip else "noPhaseFlip"


def models_dir(*paths):
    return os.path.join(os.environ.get(MODELS_VAR) or os.path.join(PACKAGE_DIR, "models"), *paths)


def pretrained_model(phase_flip, size, root=None):
    """Folder of the shipped model for this preprocessing and size, None if not installed."""
    if size not in BANDS:
        raise InputError(f"unknown network size {size!r}: use one of {', '.join(BANDS)}")
    root = root or models_dir()
    folder = os.path.join(root, PRETRAINED, flip_name(phase_flip), size)
    return folder if os.path.isfile(os.path.join(folder, "manifest.json")) else None


def pretrained_size(train_size, network_size=None):
    """The original's choice: the size band of the expected training size (-1: the largest)."""
    if network_size:
        return network_size
    return size_band(train_size) if train_size and train_size > 0 else "large"


def negatives_path(phase_flip, root=None):
    path = os.path.join(root or models_dir(), "negatives_%s.npz" % flip_name(phase_flip))
    return path if os.path.isfile(path) else None


def model_phase_flip(model_dir):
    """Whether the model in ``model_dir`` was trained on phase-flipped boxes (None: unknown)."""
    path = os.path.join(model_dir, "manifest.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    if "phase_flip" in manifest:
        return bool(manifest["phase_flip"])
    extra = manifest.get("extra") or {}
    return bool(extra["phase_flip"]) if "phase_flip" in extra else None


def check_phase_flip(model_dir, phase_flip, how_to_fix=""):
    """Refuse a model trained with the other preprocessing: a network trained on phase-flipped
    boxes sees the CTF's sign reversals of unflipped ones as noise it never met, and the other
    way round, so its scores would be meaningless."""
    trained = model_phase_flip(model_dir)
    if trained is None or trained == bool(phase_flip):
        return
    if trained:
        raise InputError(f"the model in {model_dir} was trained on phase-flipped micrographs "
                         "(CTF applied), and this run does not phase-flip: its boxes would not "
                         "look like the ones the network learnt. " + (how_to_fix or
                         "Phase-flip this run too (give the CTFs), or use a model trained "
                         "without phase flipping."))
    raise InputError(f"the model in {model_dir} was trained without phase flipping, and this "
                     "run phase-flips the micrographs with their CTFs: its boxes would not look "
                     "like the ones the network learnt. " + (how_to_fix or
                     "Leave the CTFs out of this run, or use a model trained with phase "
                     "flipping."))


def save_negatives(path, boxes, info):
    """(n, 128, 128) boxes, 8 bits each with a per-box offset and step (a 16th of the file of
    float32, errors under 1/500 of the box's range), compressed."""
    boxes = np.asarray(boxes, dtype=np.float32)
    low = boxes.min(axis=(1, 2))
    step = np.maximum(boxes.max(axis=(1, 2)) - low, 1e-6) / 255.0
    codes = np.round((boxes - low[:, None, None]) / step[:, None, None]).astype(np.uint8)
    np.savez_compressed(path, codes=codes, low=low.astype(np.float32),
                        step=step.astype(np.float32), info=json.dumps(info))


def load_negatives(path):
    """The (n, 128, 128) float32 boxes of a negatives file (.npz as saved, or an image stack)."""
    if not path.endswith(".npz"):
        from .io.images import read_stack
        boxes = np.asarray(read_stack(path), dtype=np.float32)
    else:
        with np.load(path) as data:
            boxes = (data["codes"].astype(np.float32) * data["step"][:, None, None]
                     + data["low"][:, None, None])
    if boxes.ndim != 3 or boxes.shape[1:] != (DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE):
        raise InputError(f"{path}: negatives must be {DEEP_PARTICLE_SIZE} px boxes, found shape "
                         f"{boxes.shape}")
    return boxes


def replicate_model(source, target, n_models):
    """A copy of the one-network model in ``source`` as an ensemble of ``n_models`` identical
    members in ``target``, to be fine-tuned independently (the original's Pretrained mode
    copied its one pretrained network into every member)."""
    import shutil
    with open(os.path.join(source, "manifest.json")) as f:
        manifest = json.load(f)
    first = manifest["models"][0]
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    members = []
    for i in range(n_models):
        name = "model_%d.keras" % i
        shutil.copyfile(os.path.join(source, first["file"]), os.path.join(tmp, name))
        members.append(dict(first, file=name))
    manifest.update(models=members, n_models=n_models, replicated_from=os.path.abspath(source))
    manifest.pop("files", None)
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
