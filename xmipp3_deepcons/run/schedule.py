"""Which micrographs the next training pass takes, and when training is over: the one rule for
the command line (all inputs at once) and the protocol (inputs arriving while it runs).

Pure functions of what the run folder holds, so the streaming protocol can decide what to queue
without running anything, and a pass continued after a stop is recognised as the same pass.
"""
from dataclasses import dataclass
from typing import List, Optional

from ..constants import MIN_POSITIVES

TRAIN, FINALIZE, WAIT = "train", "finalize", "wait"


@dataclass
class Plan:
    action: str                          # TRAIN, FINALIZE or WAIT
    stems: Optional[List[str]] = None    # TRAIN: the pass's micrographs
    number: int = 0                      # TRAIN: the pass number (from 1)
    reason: str = ""


def training_goal_reached(passes, settings):
    """Why training ends after these passes ('' while it goes on)."""
    if not passes:
        return ""
    used = sum(p["positives"] for p in passes)
    accuracy = passes[-1]["mean_val_accuracy"]
    if accuracy > settings.max_val_acc:
        return f"mean validation accuracy {accuracy:.4f} is above {settings.max_val_acc:g}"
    if settings.train_size >= 0 and settings.train_size - used < MIN_POSITIVES:
        return f"{used} positives used for training (expected {settings.train_size})"
    return ""


def next_pass(ledger, positives, passes, settings, inputs_closed):
    """The next step of training.

    ``ledger``: micrographs in arrival order; ``positives``: {stem: training positives} of the
    prepared ones (absent: not prepared yet); ``passes``: the finished passes, in order.
    A pass takes the next untrained micrographs in arrival order until it has
    ``training_batch`` of them (all, when 0), or the positives that ``train_size`` still asks
    for, and at least MIN_POSITIVES positives; the last, shorter pass waits for the inputs to
    close. (A pass never reads more micrographs than its positives need: their unlabeled
    candidates are held in memory, and they are scored for the pickers' evidence.) Training ends when the goal is reached or
    the inputs end with too few positives for another pass.
    """
    reason = training_goal_reached(passes, settings)
    if reason:
        return Plan(FINALIZE, reason=reason)
    trained = {stem for p in passes for stem in p["micrographs"]}
    per_pass = settings.training_batch if settings.training_batch > 0 else len(ledger) + 1
    budget = (settings.train_size - sum(p["positives"] for p in passes)
              if settings.train_size >= 0 else float("inf"))
    chosen, found = [], 0
    for stem in ledger:
        if stem in trained:
            continue
        if stem not in positives:
            return Plan(WAIT, reason=f"micrograph {stem} is not prepared yet")
        chosen.append(stem)
        found += positives[stem]
        if found >= MIN_POSITIVES and (len(chosen) >= per_pass or found >= budget):
            return Plan(TRAIN, chosen, len(passes) + 1)
    if not inputs_closed:
        return Plan(WAIT, reason="waiting for more micrographs")
    if passes and found < MIN_POSITIVES:
        return Plan(FINALIZE, reason=(f"the last {len(chosen)} micrographs ({found} positives) "
                                      "are too few for another pass" if chosen else
                                      "every micrograph was trained on"))
    if not chosen:
        return Plan(FINALIZE if passes else WAIT, reason="no micrograph to train on")
    return Plan(TRAIN, chosen, len(passes) + 1)


def evidence_micrographs(ledger, passes, settings):
    """The micrographs the pickers' evidence is fitted on: those trained on; without training,
    the first ``training_batch`` of the ledger (all when 0). Later micrographs never change
    it, so a micrograph's score does not depend on what arrived after it."""
    trained = [stem for p in passes for stem in p["micrographs"]]
    if trained:
        return trained
    return list(ledger[:settings.training_batch] if settings.training_batch > 0 else ledger)


def shard(stems, spec):
    """The micrographs of shard ``I/N`` (1-based): every N-th, starting at the I-th."""
    index, count = spec
    return [stem for i, stem in enumerate(stems) if i % count == index - 1]


def parse_shard(text):
    from ..errors import InputError
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: give I/N, e.g. 1/4 for the first of 4 shards")
    if not 1 <= index <= count:
        raise InputError(f"--shard {text}: I must be between 1 and N")
    return index, count
