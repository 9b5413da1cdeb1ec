"""The Scipion side without running a protocol (the fast tier's look at it): the forms of the
three protocols in a real project and what they refuse, the workflow template filled in, the
citation, the plugin's shipped files, a micrograph converted for the engine, and the command line
started as ``python -m xmipp3_deepcons``. The protocol runs themselves are in test_protocols."""
import json
import os
import runpy
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("SCIPION_PYTHON", sys.executable)


@pytest.fixture(scope="module")
def project():
    from pyworkflow.project import Manager
    cwd = os.getcwd()
    project = Manager().createProject("deepcons_forms_%d" % int(time.time() * 1000))
    yield project
    os.chdir(cwd)


def test_empty_forms_say_what_to_choose(project):
    from xmipp3_deepcons.protocols import (XmippProtDeepConsScoreSubset,
                                           XmippProtDeepConsSubSet,
                                           XmippProtScreenDeepConsensus)
    screen = project.newProtocol(XmippProtScreenDeepConsensus)
    assert ("Choose the coordinate sets of at least one picker in 'Input coordinates'."
            in screen.validate())
    assert screen.summary() == ["No summary information."]      # no input, nothing ran yet
    assert screen.getParam("inputCoordinates").label.get() == "Input coordinates"
    subset = project.newProtocol(XmippProtDeepConsSubSet, sqliteFile="/nowhere/selection.txt,")
    assert "Selection file /nowhere/selection.txt not found." in subset.validate()
    scored = project.newProtocol(XmippProtDeepConsScoreSubset, minScore=0.8, maxScore=0.2)
    assert "The lowest score kept (0.8) is above the highest (0.2)." in scored.validate()


def test_workflow_template_fills_its_fields(tmp_path):
    from xmipp3_deepcons.headless import fill_template
    folders = {name: str(tmp_path / name) for name in ("mics", "a", "b", "c")}
    for folder in folders.values():
        os.makedirs(folder)
    values = {"micrographs": folders["mics"], "sampling": "1.5", "threshold": "0.3",
              "models": "1", "train_size": "1000", "box1": "160", "box2": "160", "box3": "170",
              "picker1": folders["a"], "picker2": folders["b"], "picker3": folders["c"]}
    with open(fill_template("deep_consensus_demo", values)) as f:
        text = f.read()
    protocols = json.loads(text)
    assert [p["object.className"] for p in protocols].count("ProtImportCoordinates") == 3
    for value in list(folders.values()) + ["170"]:
        assert value in text
    with pytest.raises(KeyError, match="no field 'nothing'"):
        fill_template("deep_consensus_demo", {"nothing": 1})


def test_the_citation_key_is_in_the_bibtex():
    from xmipp3_deepcons import bibtex
    from xmipp3_deepcons.protocols.protocol_screen_deepconsensus import CITATION
    assert "@article{%s," % CITATION in bibtex.__doc__
    assert "10.1107/S2052252518014392" in bibtex.__doc__


def test_the_plugin_finds_the_shipped_models():
    from xmipp3_deepcons.scipion_plugin import Plugin
    folder = Plugin.getPretrainedModel(False, "small")
    with open(os.path.join(folder, "manifest.json")) as f:
        assert json.load(f)["phase_flip"] is False
    assert os.path.exists(Plugin.getPrecompiledNegatives(True))


def test_a_micrograph_in_another_format_is_converted_once(tmp_path):
    from xmipp3_deepcons.io.images import read_micrograph, write_mrc
    from xmipp3_deepcons.protocols.screen_inputs import convert_micrograph
    image = np.random.default_rng(0).normal(size=(40, 60)).astype(np.float32)
    source = str(tmp_path / "mic.mrcs")
    write_mrc(source, image)
    target = str(tmp_path / "mic.mrc")
    assert convert_micrograph(source, target) == target
    np.testing.assert_allclose(read_micrograph(target), image, atol=1e-6)
    made = os.path.getmtime(target)
    os.utime(target, (made - 100, made - 100))
    convert_micrograph(source, target)                      # already there: left as it is
    assert os.path.getmtime(target) == made - 100


def test_python_dash_m_runs_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["xmipp_deep_consensus", "score", "--model", "pretrained"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("xmipp3_deepcons", run_name="__main__")
    assert exit.value.code == 2
    assert "-i" in capsys.readouterr().err


def test_the_viewer_of_a_run_not_started_has_nothing_to_show(project):
    """Analyze Results before any score: its entries are there, its data say 'nothing yet'."""
    from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    screen = project.newProtocol(XmippProtScreenDeepConsensus, modelInitialization=1,
                                 skipTraining=True)
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(screen)
    assert viewer.getParam("visualizeHistogram").label.get() == \
        "Score histogram (number of bins)"
    assert viewer.histogramData() is None
    assert viewer.trainingTitle().endswith(
        "training curves of the shipped pretrained network (this run did not train: it "
        "scored with those networks)")
    assert viewer.trainingHistory() == []
