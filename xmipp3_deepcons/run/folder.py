"""The files of one run, one writer for them, and the readers that the viewer, the tests and
users may rely on.

    run.json                       the settings (``RunSettings``), fixed when the run starts
    inputs/ledger.tsv              admitted micrographs in arrival order: stem, file, id, name
    inputs/<stem>.npz              its picks per picker (and their scores, its CTF)
    inputs/closed                  no micrograph will be admitted any more
    additional/<name>.npy          extra training boxes (precompiled, custom) and test sets
    work/preprocessed/<stem>.mrc   downsampled, normalised, inverted (phase-flipped) micrograph
    work/candidates/<stem>.npz     consensus candidates, votes, pickers' scores, negatives, key
    particles/<stem>.mrcs          128 px box of every candidate (when asked: Scipion's output)
    initial_model/                 the start model copied (or replicated) for this run
    training/pass_NNN/             one ensemble per training pass (done when manifest.json is)
    model_round<r>/                after self-training round r
    model/                         the final ensemble; evidence_<views>.json beside its weights
    work/scores[_<v>views]/<stem>.npz   network score of every candidate, with its key
    work/scores_reference[...]/    the shipped network's scores (``--picker-evidence anchored``)

Every product records the key of what it was made from (the micrograph's bytes, its picks,
the settings that matter, the model), and a reader that finds another key, or a file it cannot
read, reports it as missing: the stage that makes it then makes it again, and says why.
Files are written to a temporary name in the same folder, then renamed, so a kill or a full
disk never leaves a file that looks complete.
"""
import hashlib
import json
import logging
import os
import shutil

import numpy as np

from ..errors import FieldError, InputError
from ..io.atomic import atomic_write
from .settings import RunSettings

log = logging.getLogger("xmipp3_deepcons")
SETTINGS_FILE = "run.json"
LOCK_FILE = "run.lock"      # held (flock) by the run writing into the folder
REFERENCE = "reference"     # the score source of the shipped network that anchors the evidence


def continue_or(command):
    """The remedy for a stage not yet done, for both front ends: only a broken run folder, or
    stage jobs run out of order, needs it."""
    return f"continue the run, or on the command line `xmipp_deep_consensus {command}`"


def per_views(name, views):
    """Scores of different numbers of mirror views never mix: one name per number (one view:
    the name itself)."""
    return name if views == 1 else f"{name}_{views}views"


def file_digest(path, chunk=1 << 22):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_digest(*parts):
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.dtype.str, part.shape)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


def write_json(path, content):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        json.dump(content, f, indent=1)


def write_npz(path, **arrays):
    """Arrays with a checksum of their content, so that a file altered afterwards is known."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    with atomic_write(path, "wb") as f:
        np.savez(f, _digest=np.array(_content_digest(arrays)), **arrays)


def _content_digest(arrays):
    return arrays_digest(*[part for k in sorted(arrays) if k != "_digest"
                           for part in (k, arrays[k])])


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as error:
        raise InputError(f"{path} cannot be read ({error}); remove it to make it again")


def load_npz(path):
    """The arrays of an .npz, or None when it is missing or unreadable (to be made again)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as error:   # truncated, not a zip, bad header: all mean "make it again"
        log.warning(f"{path} is damaged ({type(error).__name__}: {error}); making it again")
        return None
    if str(arrays.pop("_digest", "")) != _content_digest(arrays):
        log.warning(f"{path} does not match its checksum (altered); making it again")
        return None
    return arrays


def copy_folder(source, target):
    """Replace ``target`` with a copy of ``source``, atomically for readers of ``target``; a
    copy that fails (a full disk) leaves no ``.tmp`` folder behind."""
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(source, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


_PREPROCESSED_OK = {}   # preprocessed micrograph -> stat signature last found intact
_INTACT = {}   # model folder -> the stat signature of its files when last found intact


def _model_signature(folder):
    signature = []
    for name in sorted(os.listdir(folder)):
        stat = os.stat(os.path.join(folder, name))
        signature.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
    return signature


def intact_model(folder):
    """Whether a model folder is finished and whole: its manifest readable, every network file
    there with the size and SHA-256 the manifest records. Checked again only when a file's
    size, times or inode changed (a checksum of every network on each call would cost more
    than the call)."""
    from ..resources import verify_model_folder
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        return False
    key = os.path.abspath(folder)
    try:
        signature = _model_signature(folder)
        if _INTACT.get(key) == signature:
            return True
        verify_model_folder(folder)
    except (InputError, OSError):
        _INTACT.pop(key, None)
        return False
    _INTACT[key] = signature
    return True


_WARNED = set()


def _warn_once(message):
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


class RunLock:
    """This process's hold on a run folder (``RunFolder.lock``): released by ``release`` or
    when the process ends, however it ends (the kernel drops an ``flock`` with its file)."""

    def __init__(self, fd):
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class RunFolder:
    """One run's files (see the module docstring)."""

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    # settings ---------------------------------------------------------------------------
    def settings(self):
        content = read_json(self.path(SETTINGS_FILE))
        if content is None:
            raise InputError(f"{self.root} is not a Deep Consensus run folder (no "
                             f"{SETTINGS_FILE}); give the folder of a run (a Scipion protocol's "
                             "extra/ folder), or start one with `xmipp_deep_consensus screen` "
                             "or `init`")
        return RunSettings.from_json(content)

    def lock(self, name="-o"):
        """Hold the folder for one run at a time: two runs writing the same files would mix
        (or corrupt) them. The second is refused in one line naming the first one's PID."""
        import fcntl
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{name} {self.root}: the folder is in use by PID {holder} (another "
                             "run writes into it); wait for that run to end, or give another "
                             "output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return RunLock(fd)

    def has_settings(self):
        return os.path.exists(self.path(SETTINGS_FILE))

    def has_training(self):
        """Whether a network was trained (or a model put) here: a finished training pass, a
        self-training round or a final model."""
        number = 1
        while os.path.isdir(self.pass_dir(number)):   # not passes(): it logs damaged ones,
            if intact_model(self.pass_dir(number)):  # and the run's log is not open yet
                return True
            number += 1
        return intact_model(self.round_dir(1)) or self.has_model()

    def write_settings(self, settings):
        """Start the run, or check that a stopped one continues with the same settings
        (output options may change and are updated; training options too while no network
        was trained)."""
        if self.has_settings():
            settings.check_continues(self.settings(), self.root, self.has_training())
        write_json(self.path(SETTINGS_FILE), settings.to_json())

    # inputs -----------------------------------------------------------------------------
    def ledger(self):
        """[(stem, micrograph file, micrograph id, micrograph name)] in arrival order."""
        path = self.path("inputs", "ledger.tsv")
        entries = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    fields = line.rstrip("\n").split("\t")
                    if len(fields) == 4 and os.path.exists(self.inputs_file(fields[0])):
                        entries.append((fields[0], fields[1], int(fields[2]), fields[3]))
        return entries

    def stems(self):
        return [entry[0] for entry in self.ledger()]

    def inputs_file(self, stem):
        return self.path("inputs", stem + ".npz")

    def write_inputs(self, stem, picks, picker_scores=None, ctf=None):
        """A micrograph's picks per picker (x, y in its pixels), their scores and its CTF."""
        arrays = {f"picks_{i}": np.asarray(p, np.float64).reshape(-1, 2)
                  for i, p in enumerate(picks)}
        for i, scores in enumerate(picker_scores or []):
            if scores is not None:
                arrays[f"scores_{i}"] = np.asarray(scores, np.float64).reshape(-1)
        if ctf is not None:
            arrays["ctf"] = np.asarray(ctf, np.float64)
        write_npz(self.inputs_file(stem), **arrays)

    def admit(self, stem, micrograph, picks, picker_scores=None, ctf=None, mic_id=0,
              mic_name=None):
        """Streaming: save a micrograph's inputs, then append it to the ledger (a kill in
        between leaves inputs that no ledger line points to: harmless)."""
        self.write_inputs(stem, picks, picker_scores, ctf)
        with open(self.path("inputs", "ledger.tsv"), "a") as f:
            f.write(f"{stem}\t{os.path.abspath(micrograph)}\t{int(mic_id)}\t"
                    f"{mic_name or os.path.basename(micrograph)}\n")

    def replace_ledger(self, entries):
        """The command line's inputs, all at once: the ledger is exactly these."""
        os.makedirs(self.path("inputs"), exist_ok=True)
        with atomic_write(self.path("inputs", "ledger.tsv")) as f:
            for stem, micrograph, mic_id, name in entries:
                f.write(f"{stem}\t{os.path.abspath(micrograph)}\t{int(mic_id)}\t{name}\n")

    def micrograph_digest(self, stem, path):
        """The micrograph's content digest, hashed again only when its size, modification
        time, inode change time or inode changed (as git does: reading every micrograph on
        each call would cost more than preparing it). A file replaced by another of the same
        size and modification time (``cp -p``, ``touch -r``) still gets a new inode or change
        time, which no user can set back, so it is hashed again."""
        stat = os.stat(path)
        cache_path = self.path("work", "digests", stem + ".json")
        cached = read_json(cache_path) if os.path.exists(cache_path) else None
        signature = [os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                     stat.st_ino]
        if cached and cached.get("signature") == signature:
            return cached["sha1"]
        digest = file_digest(path)
        write_json(cache_path, {"signature": signature, "sha1": digest})
        return digest

    def load_inputs(self, stem):
        with np.load(self.inputs_file(stem)) as data:
            n = len([k for k in data.files if k.startswith("picks_")])
            return {"picks": [data[f"picks_{i}"] for i in range(n)],
                    "scores": [data[f"scores_{i}"] if f"scores_{i}" in data.files else None
                               for i in range(n)],
                    "ctf": data["ctf"] if "ctf" in data.files else None}

    def close_inputs(self):
        with open(self.path("inputs", "closed"), "w"):
            pass

    def inputs_closed(self):
        return os.path.exists(self.path("inputs", "closed"))

    # preparation ------------------------------------------------------------------------
    def preprocessed(self, stem):
        return self.path("work", "preprocessed", stem + ".mrc")

    def candidates_file(self, stem):
        return self.path("work", "candidates", stem + ".npz")

    def particles(self, stem):
        return self.path("particles", stem + ".mrcs")

    def candidates(self, stem, key=None):
        """The micrograph's candidate table: ``xy`` (micrograph pixels), ``votes``,
        ``members`` (index of each picker's pick, -1 if none), ``picker_scores``,
        ``negatives`` (background centres), ``factor`` and ``key``. None when not prepared,
        or (``key`` given) prepared from other inputs."""
        table = load_npz(self.candidates_file(stem))
        if table is None or (key is not None and str(table.get("key")) != key):
            return None
        return table


    def candidate_key(self, stem):
        table = self.candidates(stem)
        return None if table is None else str(table["key"])

    def preprocessed_record(self, stem):
        """What the candidate table keeps of the preprocessed micrograph just written: its
        SHA-1 and the size, times and inode it was written with."""
        path = self.preprocessed(stem)
        stat = os.stat(path)
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        _PREPROCESSED_OK[path] = signature
        return {"preprocessed_sha1": np.array(file_digest(path)),
                "preprocessed_stat": np.array(signature, np.int64)}

    def preprocessed_intact(self, stem, table):
        """Whether the preprocessed micrograph is the one the candidate table was made with:
        a damaged or truncated one is made again. Hashed only when its size, times or inode
        differ from what was recorded (or last checked)."""
        path = self.preprocessed(stem)
        if not os.path.exists(path):
            return False
        if "preprocessed_sha1" not in table:
            return True          # prepared by a version that kept no checksum
        stat = os.stat(path)
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        if signature in (list(table["preprocessed_stat"]), _PREPROCESSED_OK.get(path)):
            return True
        if file_digest(path) == str(table["preprocessed_sha1"]):
            _PREPROCESSED_OK[path] = signature
            return True
        _warn_once(f"{path} does not match its checksum (damaged or truncated); preparing "
                   f"{stem} again")
        return False

    def is_prepared(self, stem):
        table = self.candidates(stem)
        if table is not None and "skipped" in table:
            return True
        return (table is not None and self.preprocessed_intact(stem, table)
                and (not self.settings().write_particles or not len(table["xy"])
                     or os.path.exists(self.particles(stem))))

    def positives(self, stem, settings):
        from .boxes import positive_mask
        return int(positive_mask(self.candidates(stem), settings.min_votes,
                                 settings.edge_box).sum())

    # models -----------------------------------------------------------------------------
    def pass_dir(self, number):
        return self.path("training", "pass_%03d" % number)

    def round_dir(self, number):
        return self.path(f"model_round{number}")

    def model_dir(self):
        return self.path("model")

    def initial_model_dir(self):
        folder = self.path("initial_model")
        return folder if os.path.exists(os.path.join(folder, "manifest.json")) else None

    def has_model(self):
        return os.path.exists(os.path.join(self.model_dir(), "manifest.json"))

    def model_key(self, folder=None):
        path = os.path.join(folder or self.model_dir(), "manifest.json")
        return file_digest(path) if os.path.exists(path) else None

    def passes(self):
        """Finished training passes in order: number, folder, micrographs, the keys of their
        candidates, positives used and mean validation accuracy."""
        found, number = [], 1
        while True:
            if not intact_model(self.pass_dir(number)):
                if os.path.exists(os.path.join(self.pass_dir(number), "manifest.json")):
                    _warn_once(f"{self.pass_dir(number)} is damaged (a network file or the "
                               "manifest does not match); training that pass again")
                return found
            manifest = read_json(os.path.join(self.pass_dir(number), "manifest.json"))
            extra = manifest.get("extra", {})
            found.append({"number": number, "dir": self.pass_dir(number),
                          "micrographs": list(extra.get("micrographs", [])),
                          "keys": list(extra.get("candidate_keys", [])),
                          "positives": int(extra.get("micrograph_positives", 0)),
                          "mean_val_accuracy": float(manifest["mean_val_accuracy"])})
            number += 1

    def training_curves(self):
        """Per pass (or the final model when it was not trained here): the per-network
        histories, for the training-curve plot."""
        folders = [p["dir"] for p in self.passes()] or [self.model_dir()]
        return [h for h in (read_json(os.path.join(d, "history.json")) for d in folders) if h]

    # scores -----------------------------------------------------------------------------
    def source_model(self, source):
        """The model folder a score source comes from: the final model, a training pass (its
        folder relative to the run) or the shipped reference network."""
        if source == "final":
            return self.model_dir()
        if source == REFERENCE:
            from ..resources import pretrained_model
            folder = pretrained_model(self.settings().phase_flip, "large")
            if folder is None:
                raise FieldError("picker_evidence", "the pickers' evidence 'anchored' needs "
                                 "the shipped large network, which is not installed; reinstall "
                                 "the plugin, or choose {other_evidence}", named=False)
            return folder
        return self.path(source)

    def scores_file(self, stem, views, source="final"):
        folder = "scores" if source == "final" else f"scores_{source}"
        return self.path("work", per_views(folder, views), stem + ".npz")

    def network_scores(self, stem, views=None, source="final"):
        """The network's score of every candidate of a micrograph, None when not scored (or
        scored from other candidates or by another model)."""
        views = views or self.settings().views
        stored = load_npz(self.scores_file(stem, views, source))
        if stored is None:
            return None
        model = self.source_model(source)
        if (str(stored["candidate_key"]) != self.candidate_key(stem)
                or str(stored["model_key"]) != self.model_key(model)):
            return None
        return stored["scores"]

    def write_network_scores(self, stem, views, scores, source="final", context=None):
        """``context``: what a scoring cascade decided these scores for (``run/cascade.py``);
        None for whole scores of every candidate."""
        model = self.source_model(source)
        extra = {} if context is None else {"context": np.array(context)}
        write_npz(self.scores_file(stem, views, source), scores=np.asarray(scores, np.float32),
                  candidate_key=self.candidate_key(stem), model_key=self.model_key(model),
                  **extra)

    def scores_context(self, stem, views=None, source="final"):
        """What the stored scores were decided for by the cascade; None for whole scores."""
        stored = load_npz(self.scores_file(stem, views or self.settings().views, source))
        return None if stored is None or "context" not in stored else str(stored["context"])

    def scored_stems(self, views=None):
        return [s for s in self.stems() if self.network_scores(s, views) is not None]

    def evidence_file(self, views):
        return os.path.join(self.model_dir(), per_views("evidence", views) + ".json")

    def evidence(self, views=None):
        return read_json(self.evidence_file(views or self.settings().views))

    def final_scores(self, stem, settings=None):
        """What the outputs carry: the network's score, or its combination with the pickers'
        evidence (see ``stages.fit_picker_evidence``). None before the micrograph is scored."""
        from .keep import final_scores
        settings = settings or self.settings()
        network = self.network_scores(stem, settings.views)
        if network is None:
            return None
        reference = (self.network_scores(stem, settings.views, REFERENCE)
                     if settings.uses_reference else None)
        return final_scores(settings, self.evidence(settings.views), self.candidates(stem),
                            network, reference)

    def threshold(self, settings=None, final=None):
        """(threshold in use, suggested threshold): 'auto' takes the suggested one, the valley
        of the histogram of every scored candidate's final score."""
        from ..core.evidence import suggest_threshold
        settings = settings or self.settings()
        if final is None:
            final = [s for s in (self.final_scores(stem, settings) for stem in self.stems())
                     if s is not None]
        suggested = suggest_threshold(np.concatenate([np.zeros(0)] + list(final)))
        used = suggested if settings.threshold == "auto" else float(settings.threshold)
        return used, suggested

    def kept(self, stem, settings=None, threshold=None):
        """Which candidates of a scored micrograph are output (see ``keep.keep_mask``)."""
        from .keep import keep_mask
        settings = settings or self.settings()
        scores = self.final_scores(stem, settings)
        if scores is None:
            return None
        if threshold is None:
            threshold = (self.threshold(settings)[0] if settings.threshold == "auto"
                         else float(settings.threshold))
        return keep_mask(self.candidates(stem)["xy"], scores, settings.dedupe_radius_px,
                         threshold)

    def counts(self):
        """{stem: (candidates, kept)} of the scored micrographs."""
        settings, counts = self.settings(), {}
        for stem in self.stems():
            kept = self.kept(stem, settings)
            if kept is not None:
                counts[stem] = (len(kept), int(kept.sum()))
        return counts
