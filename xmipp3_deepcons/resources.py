"""The resources that ship with the package: pretrained networks and precompiled negatives.

    <models>/pretrained/<noPhaseFlip|phaseFlip>/<small|medium|large>/manifest.json + model_0.keras
    <models>/negatives_<noPhaseFlip|phaseFlip>.npz

``<models>`` is ``$DEEPCONS_MODELS`` when set, else the package's ``models/`` folder. They are
made by ``scripts/train_shipped_models.py`` (ASPIRE-simulated micrographs, preprocessed and
extracted by this engine); each manifest says how. Pure Python: no Scipion, no TensorFlow.

Every model folder, shipped or trained, is checked against its manifest before it is used
(``verify_model_folder``): its ``files`` entry holds each network file's size and SHA-256.
"""
import hashlib
import json
import logging
import os

import numpy as np

from .constants import DEEP_PARTICLE_SIZE, size_band
from .errors import InputError

log = logging.getLogger("xmipp3_deepcons")
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "manifest.json"
FIX_MODEL = "retrain or copy the folder again"
_UNCHECKED = set()   # model folders without checksums already warned about
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


def file_record(path):
    """What a manifest keeps of a model file: {"bytes": size, "sha256": hex digest}."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def read_manifest(model_dir):
    """The manifest of a model folder; a missing, unreadable or malformed one raises
    ``InputError`` in one line that names it."""
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.isfile(path):
        raise InputError(f"{model_dir} is not a Deep Consensus model folder (no {MANIFEST}); "
                         "give the folder that training wrote")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:   # JSONDecodeError is a ValueError
        raise InputError(f"model folder {model_dir}: {MANIFEST} is not valid JSON ({error}); "
                         f"{FIX_MODEL}") from None
    except OSError as error:
        raise InputError(f"model folder {model_dir}: {MANIFEST} cannot be read "
                         f"({error.strerror or error}); {FIX_MODEL}") from None
    members = manifest.get("models") if isinstance(manifest, dict) else None
    if (not isinstance(members, list) or not members
            or not all(isinstance(m, dict) and isinstance(m.get("file"), str) for m in members)):
        raise InputError(f"model folder {model_dir}: {MANIFEST} does not list the networks (a "
                         f"'models' list with a 'file' for each); {FIX_MODEL}")
    files = manifest.get("files")
    if files is not None and not (isinstance(files, dict)
                                  and all(isinstance(r, dict) for r in files.values())):
        raise InputError(f"model folder {model_dir}: the 'files' of {MANIFEST} are not "
                         f"{{name: {{bytes, sha256}}}}; {FIX_MODEL}")
    for member in members:
        name = member["file"]
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise InputError(f"model folder {model_dir}: {MANIFEST} names the network file "
                             f"{name!r}, which is not a file of the folder; {FIX_MODEL}")
    return manifest


def verify_model_folder(model_dir, manifest=None):
    """Check that every network file of the folder is there and is the one its manifest
    records (size and SHA-256); returns the manifest. Folders written before manifests kept
    checksums have nothing to check against: a warning says so, once per folder."""
    if manifest is None:
        manifest = read_manifest(model_dir)
    records = manifest.get("files")
    for member in manifest["models"]:
        name = member["file"]
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise InputError(f"model folder {model_dir} is incomplete: {name} is missing; "
                             "train again or copy the whole folder")
        if records is None:
            continue
        record = records.get(name)
        if not record or not isinstance(record.get("sha256"), str):
            raise InputError(f"model folder {model_dir}: {name} has no checksum in "
                             f"{MANIFEST}; {FIX_MODEL}")
        if (record.get("bytes") not in (None, os.path.getsize(path))
                or file_record(path)["sha256"] != record["sha256"].lower()):
            raise InputError(f"model folder {model_dir}: {name} does not match its checksum in "
                             f"{MANIFEST} (changed or truncated); {FIX_MODEL}")
    if records is None:
        key = os.path.abspath(model_dir)
        if key not in _UNCHECKED:
            _UNCHECKED.add(key)
            log.warning(f"model folder {model_dir}: {MANIFEST} has no checksums (written by an "
                        "older version), so its network files cannot be checked")
    return manifest


def model_phase_flip(model_dir):
    """Whether the model in ``model_dir`` was trained on phase-flipped boxes (None: unknown)."""
    if not os.path.isfile(os.path.join(model_dir, MANIFEST)):
        return None
    manifest = read_manifest(model_dir)
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
    manifest = verify_model_folder(source)
    first = manifest["models"][0]
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    members, files = [], {}
    for i in range(n_models):
        name = "model_%d.keras" % i
        shutil.copyfile(os.path.join(source, first["file"]), os.path.join(tmp, name))
        members.append(dict(first, file=name))
        files[name] = file_record(os.path.join(tmp, name))
    manifest.update(models=members, n_models=n_models, replicated_from=os.path.abspath(source),
                    files=files)
    with open(os.path.join(tmp, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
