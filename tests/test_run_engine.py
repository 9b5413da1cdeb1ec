"""The run engine without TensorFlow or Scipion: the training-pass rule, streaming admission and
queueing, and a run folder that redoes exactly what changed inputs invalidate."""
import os

import numpy as np
import pytest

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.cli import main
from xmipp3_deepcons.constants import MIN_POSITIVES
from xmipp3_deepcons.errors import InputError
from xmipp3_deepcons.run import schedule, stages
from xmipp3_deepcons.run.folder import RunFolder
from xmipp3_deepcons.run.boxes import positive_mask
from xmipp3_deepcons.run.keep import final_scores, keep_mask
from xmipp3_deepcons.run.outputs import write_outputs
from xmipp3_deepcons.run.settings import RunSettings
from xmipp3_deepcons.run.streaming import Admission, Queued, next_work, stem_for

PICKERS = [name for name, *_ in synthetic.PICKERS]


def settings(**kwargs):
    return RunSettings(**dict(dict(box_size=128, n_pickers=3), **kwargs))


def finished(stems, positives, accuracy=0.8):
    return {"micrographs": list(stems), "positives": positives, "mean_val_accuracy": accuracy}


# ---------------------------------------------------------------------- training passes
def test_a_pass_takes_the_batch_and_enough_positives_in_arrival_order():
    rule = settings(training_batch=2, train_size=-1)
    ledger = ["a", "b", "c", "d", "e"]
    few = MIN_POSITIVES // 4
    plan = schedule.next_pass(ledger, dict.fromkeys(ledger, few), [], rule, False)
    assert (plan.action, plan.stems, plan.number) == ("train", ["a", "b", "c", "d"], 1)
    # a micrograph not prepared yet stops the pass there: passes follow arrival order
    plan = schedule.next_pass(ledger, {"a": 400}, [], rule, False)
    assert plan.action == "wait" and "b" in plan.reason
    # the last, short pass waits for the inputs to close, then trains or ends training
    passes = [finished(["a", "b"], 800)]
    positives = {"a": 400, "b": 400, "c": 50}
    assert schedule.next_pass(["a", "b", "c"], positives, passes, rule, False).action == "wait"
    plan = schedule.next_pass(["a", "b", "c"], positives, passes, rule, True)
    assert plan.action == "finalize" and "too few" in plan.reason


def test_training_ends_at_the_goal():
    rule = settings(training_batch=1, train_size=1000, max_val_acc=0.95)
    ledger = ["a", "b", "c"]
    positives = dict.fromkeys(ledger, 400)
    assert schedule.next_pass(ledger, positives, [finished(["a"], 400, 0.96)], rule,
                              False).action == "finalize"
    # 1000 - 800 = 200 left: fewer than a pass needs
    plan = schedule.next_pass(ledger, positives, [finished(["a"], 400), finished(["b"], 400)],
                              rule, False)
    assert plan.action == "finalize" and "800 positives" in plan.reason
    plan = schedule.next_pass(ledger, positives, [finished(["a"], 400)], rule, False)
    assert (plan.action, plan.stems, plan.number) == ("train", ["b"], 2)
    # without a training batch, one pass takes every micrograph once the inputs are closed
    rule = settings(train_size=-1)
    assert schedule.next_pass(ledger, positives, [], rule, False).action == "wait"
    assert schedule.next_pass(ledger, positives, [], rule, True).stems == ledger


def test_shards_split_the_ledger_without_overlap():
    stems = [f"m{i}" for i in range(7)]
    parts = [schedule.shard(stems, (i, 3)) for i in (1, 2, 3)]
    assert parts[0] == ["m0", "m3", "m6"]
    assert sorted(sum(parts, [])) == stems
    for text in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            schedule.parse_shard(text)


# ---------------------------------------------------------------------- streaming
def test_admission_waits_for_every_picker_or_its_closed_stream():
    warnings = []
    admission = Admission(["mics", "mics"], [1.0, 2.0])
    admission.add_micrograph("mics", 1, "a.mrc", "/data/a.mrc")
    admission.add_micrograph("mics", 2, "b.mrc", "/data/b.mrc")
    admission.add_pick(0, 1, 10, 20)
    admission.add_pick(0, 2, 30, 40)
    assert admission.ready(warnings.append) == []          # picker 2 has not delivered
    admission.add_pick(1, 1, 5, 5)
    (ready,) = admission.ready(warnings.append)
    assert ready[:3] == (1, "a.mrc", os.path.abspath("/data/a.mrc"))
    np.testing.assert_array_equal(ready[3][1], [[10, 10]])   # scaled to the first set's px
    admission.add_pick(1, 1, 6, 6)                           # late: a.mrc is admitted
    assert admission.ready(warnings.append) == []
    admission.coordinates_closed = [True, True]
    (ready,) = admission.ready(warnings.append)
    assert ready[1] == "b.mrc" and len(ready[3][1]) == 0
    assert admission.inputs_done() and warnings == []


def test_admission_leaves_out_micrographs_it_cannot_use_and_says_which():
    warnings = []
    admission = Admission(["mics"], [1.0], with_ctf=True)
    admission.add_micrograph("mics", 1, "a.mrc", "a.mrc")
    admission.add_pick(0, 1, 1, 1)
    admission.add_pick(0, 9, 1, 1)                           # no such micrograph yet
    admission.coordinates_closed = [True]
    assert admission.ready(warnings.append) == []            # waits for its CTF
    admission.ctfs_closed = True
    admission.micrographs_closed["mics"] = True
    assert admission.ready(warnings.append) == []
    assert warnings == ["coordinate set 1 has picks on micrograph id 9, which is not in its "
                        "micrographs: they are ignored",
                        "micrograph a.mrc is left out: no CTF was estimated for it"]
    assert admission.inputs_done()


def test_stems_are_file_safe_and_unique():
    assert stem_for("my mic (1).mrc", 4, set()) == "my_mic__1_"
    assert stem_for("dir/a.tif", 7, {"a"}) == "a_7"


def test_work_is_queued_in_batches_and_the_run_closes_when_all_is_done():
    ledger = ["a", "b", "c"]
    work = next_work(ledger, set(), False, None, Queued(), False, 2, 20)
    assert work.prepare == [["a", "b"]] and not work.close
    queued = Queued(prepare={"a", "b"})
    assert next_work(ledger, set(), False, None, queued, True, 2, 20).prepare == [["c"]]
    plan = schedule.Plan("train", ["a", "b"], 1)
    assert next_work(ledger, {"a", "b"}, False, plan, queued, False, 2, 20).train is plan
    work = next_work(ledger, set(ledger), True, None, Queued(prepare=set(ledger)), True, 2, 1)
    assert work.score == [["a"], ["b"], ["c"]] and not work.close
    done = Queued(prepare=set(ledger), score=set(ledger))
    assert next_work(ledger, set(ledger), True, None, done, True, 2, 20).close
    assert not next_work(ledger, set(ledger), True, None, done, True, 2, 20,
                         steps_pending=True).close
    assert not next_work(ledger, set(ledger), True, None, done, False, 2, 20).close


# ---------------------------------------------------------------------- keep rule
def test_one_picker_scores_with_the_network_alone():
    table = {"members": np.zeros((3, 1), int), "xy": np.array([[0, 0], [100, 0], [300, 0]])}
    evidence = {"mode": "votes", "model": {"prior": 0.9, "witnesses": [[[0.0] * 6] * 2,
                                                                       [[0.0] * 10] * 2]}}
    network = np.array([0.2, 0.6, 0.9], np.float32)
    alone = final_scores(settings(n_pickers=1), evidence, table, network)
    np.testing.assert_array_equal(alone, network)
    kept = keep_mask(table["xy"], alone, 128 * 0.3, 0.5)
    np.testing.assert_array_equal(kept, [False, True, True])
    np.testing.assert_array_equal(keep_mask(table["xy"], alone, 128 * 0.3, -1), [1, 1, 1])


def test_a_box_that_leaves_the_micrograph_is_never_a_positive_nor_kept():
    # 1000 x 800 px micrograph (rows, columns), box 128: centres 64 px from an edge fit
    xy = np.array([[64, 64], [63, 400], [400, 737], [736, 736], [400, 400]], float)
    table = {"xy": xy, "votes": np.array([3, 3, 2, 2, 1]), "members": np.zeros((5, 3), int),
             "micrograph_shape": np.array([800, 1000]), "shape": np.array([569, 711]),
             "factor": np.array(1.406)}
    np.testing.assert_array_equal(positive_mask(table, 2, 128), [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(positive_mask(table, 2, None), [1, 1, 1, 1, 0])
    network = np.full(5, 0.9, np.float32)
    np.testing.assert_array_equal(final_scores(settings(n_pickers=1), None, table, network),
                                  np.float32([0.9, 0, 0, 0.9, 0.9]))
    kept = final_scores(settings(n_pickers=1, keep_edge_boxes=True), None, table, network)
    np.testing.assert_array_equal(kept, network)
    # a table prepared before the micrograph's shape was stored: preprocessed shape x factor
    del table["micrograph_shape"]
    np.testing.assert_array_equal(positive_mask(table, 2, 128), [1, 0, 0, 1, 0])


# ---------------------------------------------------------------------- run folder
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("engine") / "data")
    synthetic.make_dataset(folder, n_micrographs=3, seed=5, n_particles=40, n_junk=10)
    return folder


def init_argv(data, out, *extra):
    argv = ["init", "--micrographs", os.path.join(data, "micrographs", "*.mrc"),
            "--box-size", "128", "--seed", "1", "-o", str(out)]
    for name in PICKERS:
        argv += ["--coordinates", os.path.join(data, "coords", name)]
    return argv + list(extra)


def test_changed_inputs_redo_exactly_what_depends_on_them(dataset, tmp_path, capsys):
    import shutil
    data = str(tmp_path / "data")
    shutil.copytree(dataset, data)
    out = tmp_path / "run"
    assert main(init_argv(data, out)) == 0
    run = RunFolder(out)
    stems = run.stems()
    stages.prepare(run, stems)
    keys = {s: run.candidate_key(s) for s in stems}
    mtimes = {s: os.path.getmtime(run.candidates_file(s)) for s in stems}

    # one picker's file of one micrograph changes: only that micrograph is prepared again
    pick_file = os.path.join(data, "coords", PICKERS[0], stems[1] + ".pos")
    rows = open(pick_file).read().splitlines()
    with open(pick_file, "w") as f:
        f.write("\n".join(rows[:-3]) + "\n")
    assert main(init_argv(data, out)) == 0
    capsys.readouterr()
    stages.prepare(run, stems)      # the engine logs to the terminal that `init` set up
    said = capsys.readouterr().out
    assert f"{stems[1]}: its micrograph, picks or settings changed" in said
    assert f"prepared 2/3 {stems[1]}" in said and "prepared 1/3" not in said
    assert run.candidate_key(stems[1]) != keys[stems[1]]
    for stem in (stems[0], stems[2]):
        assert run.candidate_key(stem) == keys[stem]
        assert os.path.getmtime(run.candidates_file(stem)) == mtimes[stem]

    # a damaged work file is detected, said, and made again
    with open(run.candidates_file(stems[0]), "r+b") as f:
        f.truncate(100)
    stages.prepare(run, stems)
    said = capsys.readouterr().out
    assert f"{run.candidates_file(stems[0])} is damaged" in said
    assert f"prepared 1/3 {stems[0]}" in said
    assert run.candidate_key(stems[0]) == keys[stems[0]]


def test_a_continued_run_refuses_other_settings_but_not_other_paths(dataset, tmp_path,
                                                                    capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(init_argv(dataset, out)) == 0
    # the same data by a relative path is the same run
    monkeypatch.chdir(os.path.dirname(dataset))
    assert main(init_argv(os.path.basename(dataset), out)) == 0
    capsys.readouterr()
    assert main(init_argv(dataset, out, "--radius", "0.2")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"xmipp_deep_consensus init: error: {out} holds a run made with other "
                     "settings (radius 0.1 -> 0.2); give a new output folder, or remove it to "
                     "start over"]
    # training options may change while no network was trained (issue 30: a diverged
    # training is continued with a lower learning rate)
    assert main(init_argv(dataset, out, "--epochs", "7")) == 0
    assert RunFolder(out).settings().epochs == 7
    # output options may change
    assert main(init_argv(dataset, out, "--threshold", "0.7")) == 0
    assert RunFolder(out).settings().threshold == 0.7


def test_a_stage_run_out_of_order_says_what_to_do_in_both_front_ends(dataset, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    assert main(init_argv(dataset, out)) == 0
    capsys.readouterr()
    assert main(["fit", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "xmipp_deep_consensus fit: error: training cannot start: micrograph mic_000 is not "
        "prepared yet; prepare every micrograph first (continue the run, or on the command "
        "line `xmipp_deep_consensus prepare`), and check the coordinates")
    with pytest.raises(InputError, match=r"not scored yet .*; score them first \(continue the "
                                         r"run, or on the command line `xmipp_deep_consensus "
                                         r"predict .*` on every shard\)"):
        write_outputs(RunFolder(out))


def _run_files(root):
    """{relative path: modification time} of every file of a run folder but its lock and log."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("run.lock", "screen.log")}


def _log_since(run_root, start):
    with open(run_root / "screen.log") as f:
        return f.read()[start:]


@pytest.mark.slow      # reads the session's trained run (conftest.small_trained_run)
def test_stale_training_is_discarded_by_the_step_that_says_so(small_run_data,
                                                              small_trained_run, tmp_path):
    """A finished run whose picks of one micrograph changed: planning only reads (it names the
    stale pass); ``discard_stale_training`` removes that pass, every later one, the models and
    the outputs made from them, logs why, and leaves the inputs and every micrograph's work."""
    import shutil
    from cli_helpers import small_run_argv
    from xmipp3_deepcons.cli.common import setup_logging
    from xmipp3_deepcons.run.outputs import OUTPUT_FILES
    data, root = tmp_path / "data", tmp_path / "run"
    shutil.copytree(small_run_data, data)
    shutil.copytree(small_trained_run, root)
    run = RunFolder(root)
    setup_logging(str(root / "screen.log"))          # as a stage does: the copy's own log
    stems = run.stems()
    first_pass = run.passes()[0]
    assert [p["number"] for p in run.passes()] == [1] and first_pass["micrographs"] == stems

    # A pass the rule no longer gives (left by a run stopped while it trained more): the pass
    # before it stays valid.
    shutil.copytree(run.pass_dir(1), run.pass_dir(2))
    settings = run.settings()
    before = _run_files(root)
    start = os.path.getsize(root / "screen.log")
    assert stages.training_state(run, settings)[2:] == ([first_pass], 2)
    assert _run_files(root) == before                    # planning only reads
    assert stages.discard_stale_training(run, settings) == [first_pass]
    gone = {name for name in before if name not in _run_files(root)}
    assert gone == {n for n in before if n.startswith(("training/pass_002/", "model/",
                                                       "coordinates/")) or n in OUTPUT_FILES}
    assert "coordinates.star" in gone and "model/manifest.json" in gone
    kept = {n: t for n, t in before.items() if n not in gone}
    assert {n: t for n, t in _run_files(root).items() if n in kept} == kept   # untouched
    assert any(n.startswith("training/pass_001/") for n in kept)
    said = _log_since(root, start)
    assert ("training pass 2 was made from other micrographs or picks than the run now has: "
            "discarding it, the passes after it and the models made from them, and training "
            "again from there") in said
    assert "outputs of the discarded model removed: " in said
    assert said.count("discarding it") == 1

    # The picks of one micrograph change: its candidates change, and so does pass 1's key.
    pick_file = next((data / "coords" / PICKERS[0]).glob(stems[1] + ".*"))
    rows = pick_file.read_text().splitlines()
    pick_file.write_text("\n".join(rows[:-3]) + "\n")
    assert main(small_run_argv(data, root, command="init")) == 0
    stages.prepare(run, stems)
    before = _run_files(root)
    start = os.path.getsize(root / "screen.log")
    assert stages.training_state(run, settings)[2:] == ([], 1)
    assert _run_files(root) == before
    assert stages.discard_stale_training(run, settings) == []
    after = _run_files(root)
    assert not (root / "training" / "pass_001").exists()
    assert {n for n in before if not n.startswith("training/")} <= set(after)
    for name in ("run.json", "inputs/ledger.tsv", f"work/candidates/{stems[0]}.npz",
                 f"work/preprocessed/{stems[2]}.mrc"):
        assert after[name] == before[name], name          # the inputs and the work stay
    said = _log_since(root, start)
    assert "training pass 1 was made from other micrographs or picks than the run now has" in said
    # nothing left to discard: the step says nothing and keeps everything
    assert stages.discard_stale_training(run, settings) == []
    assert _run_files(root) == after and "discarding" not in _log_since(root, len(said) + start)


def test_a_pass_stops_at_the_positives_train_size_asks_for():
    rule = settings(train_size=700)                       # --training-batch 0: one pass
    ledger = ["a", "b", "c", "d"]
    plan = schedule.next_pass(ledger, dict.fromkeys(ledger, 400), [], rule, False)
    assert (plan.action, plan.stems) == ("train", ["a", "b"])


def test_gpu_ids_are_positions_in_what_the_scheduler_gave():
    from xmipp3_deepcons.cli.common import visible_devices
    assert visible_devices("0", None) == "0"
    assert visible_devices("1,0", "5,7") == "7,5"         # Slurm gave GPUs 5 and 7
    assert visible_devices("-1", "5,7") == "-1"
    assert visible_devices("3", "5,7") == "3"             # not a position: taken as given
