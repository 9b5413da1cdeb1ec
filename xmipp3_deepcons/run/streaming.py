"""Streaming: which micrographs to admit as picks arrive, and what work to queue next.

The protocol reads Scipion's growing sets and hands what it reads to ``Admission``; it asks
``next_work`` what to queue. Neither knows about Scipion, so both are tested on plain values.
"""
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Set

import numpy as np

from . import schedule


def merge_repeated(picks, radius, name):
    """Each coordinate set's picks of a micrograph with its repeated picks (within ``radius``
    px) merged, as the command line's inputs are (``checks.merge_repeated_picks``); and a
    warning for each set that had some."""
    from ..checks import merge_repeated_picks, repeated_picks_note
    merged, warnings = [], []
    for i, xy in enumerate(picks):
        kept, _, repeated = merge_repeated_picks(xy, radius)
        if repeated:
            warnings.append(repeated_picks_note(f"{name}: coordinate set {i + 1}", repeated,
                                                len(kept) + repeated, radius))
        merged.append(kept)
    return merged, warnings


class Admission:
    """Picks of several coordinate streams, held until their micrograph is complete.

    A micrograph is admitted when every coordinate set has delivered picks for it or has
    closed; it must be among the first set's micrographs (the ones that are preprocessed),
    and have a CTF when the run phase-flips. Coordinate sets refer to micrographs by their
    id in their own micrograph set; names join them.
    """

    def __init__(self, mic_sets, scales, with_ctf=False):
        self.mic_sets = list(mic_sets)                  # per coordinate set: its micrograph set
        self.scales = list(scales)                      # per coordinate set: to the first's px
        self.names = {key: {} for key in self.mic_sets}  # micrograph set -> {id: name}
        self.ids = {key: {} for key in self.mic_sets}    # micrograph set -> {name: id}
        self.reference = {}                             # name -> (id, file) in the first set
        self.picks = [{} for _ in self.mic_sets]        # per coordinate set: id -> [(x, y)]
        self.coordinates_closed = [False] * len(self.mic_sets)
        self.micrographs_closed = {key: False for key in self.mic_sets}
        self.ctfs = {} if with_ctf else None
        self.ctfs_closed = False
        self.admitted, self.skipped = set(), set()

    # what arrives ------------------------------------------------------------------------
    def add_micrograph(self, mic_set, mic_id, name, path):
        self.names[mic_set][mic_id] = name
        self.ids[mic_set][name] = mic_id
        if mic_set == self.mic_sets[0]:
            self.reference[name] = (mic_id, os.path.abspath(path))

    def add_pick(self, index, mic_id, x, y):
        name = self.names[self.mic_sets[index]].get(mic_id)
        if name is None or name not in self.admitted:   # late picks of an admitted one: dropped
            self.picks[index].setdefault(mic_id, []).append((x, y))

    def reset_picks(self, index):
        """A stream read again from its start."""
        self.picks[index].clear()

    def add_ctf(self, name, values):
        if self.ctfs is not None:
            self.ctfs[name] = tuple(float(v) for v in values)

    # what is ready -----------------------------------------------------------------------
    def inputs_done(self):
        """Every coordinate stream closed and every micrograph with picks admitted or left
        out."""
        return all(self.coordinates_closed) and not any(self.picks)

    def ready(self, warn=print):
        """[(id, name, file, picks per set, ctf)] of the micrographs complete now, in id
        order; they count as admitted from now on."""
        self._drop_unknown(warn)
        ready = []
        for name in sorted(self._pending_names()):
            if name in self.admitted:
                self._drop(name)
                continue
            reference = self.reference.get(name)
            if reference is None:
                if self.micrographs_closed[self.mic_sets[0]]:
                    self._skip(name, "it is not among the micrographs of the first coordinate "
                                     "set", warn)
                continue
            if not all(self.coordinates_closed[i] or self._has_picks(i, name)
                       for i in range(len(self.mic_sets))):
                continue
            ctf = None
            if self.ctfs is not None:
                ctf = self.ctfs.get(name)
                if ctf is None:
                    if self.ctfs_closed:
                        self._skip(name, "no CTF was estimated for it", warn)
                    continue
            ready.append((reference[0], name, reference[1], ctf))
        admitted = []
        for mic_id, name, path, ctf in sorted(ready):
            picks = [self._picks_of(i, name) * self.scales[i] for i in range(len(self.mic_sets))]
            self.admitted.add(name)
            self._drop(name)
            admitted.append((mic_id, name, path, picks, ctf))
        return admitted

    def _pending_names(self):
        names = set()
        for i, picks in enumerate(self.picks):
            for mic_id in picks:
                name = self.names[self.mic_sets[i]].get(mic_id)
                if name is not None:
                    names.add(name)
        return names

    def _has_picks(self, index, name):
        mic_id = self.ids[self.mic_sets[index]].get(name)
        return mic_id is not None and mic_id in self.picks[index]

    def _picks_of(self, index, name):
        mic_id = self.ids[self.mic_sets[index]].get(name)
        return np.array(self.picks[index].get(mic_id, []), dtype=float).reshape(-1, 2)

    def _drop(self, name):
        for i, picks in enumerate(self.picks):
            picks.pop(self.ids[self.mic_sets[i]].get(name), None)

    def _skip(self, name, reason, warn):
        if name not in self.skipped:
            warn(f"micrograph {name} is left out: {reason}")
            self.skipped.add(name)
        self._drop(name)

    def _drop_unknown(self, warn):
        """Picks on micrographs that their (closed) micrograph set does not have."""
        for i, picks in enumerate(self.picks):
            if self.micrographs_closed[self.mic_sets[i]]:
                for mic_id in [m for m in picks if m not in self.names[self.mic_sets[i]]]:
                    warn(f"coordinate set {i + 1} has picks on micrograph id {mic_id}, which is "
                         "not in its micrographs: they are ignored")
                    del picks[mic_id]


def stem_for(name, mic_id, taken):
    """A file-safe, unique name for a micrograph in the run folder."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(os.path.basename(name))[0])
    return f"{stem}_{mic_id}" if stem in taken else stem


@dataclass
class Queued:
    """What this process has queued (Scipion forgets dynamic steps of a stopped run, so after
    a restart the files say what is done and the rest is queued again)."""
    prepare: Set[str] = field(default_factory=set)
    score: Set[str] = field(default_factory=set)
    training: bool = False          # a training or finalising step is queued and not done
    testing: bool = False


@dataclass
class Work:
    prepare: List[List[str]] = field(default_factory=list)
    train: Optional[schedule.Plan] = None
    score: List[List[str]] = field(default_factory=list)
    test: bool = False
    close: bool = False


def next_work(ledger, prepared, has_model, plan, queued, inputs_done, batch, score_batch_max,
              testing=False, tested=False, steps_pending=False):
    """What to queue now.

    ``prepared``: the set of prepared micrographs; ``plan``: the training plan
    (``stages.plan_training``) or None when no training step may be queued now.
    Prepare in batches of ``batch`` micrographs (the rest once the inputs end); train pass
    after pass; once the model is final, score in arrival order, in batches of at most
    ``score_batch_max``; close when nothing more can come and everything is done.
    """
    work = Work()
    todo = [s for s in ledger if s not in queued.prepare and s not in prepared]
    while todo and (len(todo) >= batch or inputs_done):
        work.prepare.append(todo[:batch])
        todo = todo[batch:]
    if not has_model and not queued.training and plan is not None \
            and plan.action != schedule.WAIT:
        work.train = plan
    if has_model:
        ready = [s for s in ledger if s not in queued.score and s in prepared]
        size = max(1, min(batch, score_batch_max))
        work.score = [ready[i:i + size] for i in range(0, len(ready), size)]
        work.test = testing and not tested and not queued.testing
    scored_all = all(s in queued.score for s in ledger)
    work.close = (inputs_done and not steps_pending and not work.prepare and not work.score
                  and work.train is None and not work.test and scored_all
                  and (has_model or not ledger))
    return work
