"""Shared pieces of the Scipion protocol tests: synthetic data and the imports that feed it.

Data come from ``xmipp3_deepcons.synthetic``: micrographs of 1536 px at 2 A/px and three
simulated pickers, all written as Xmipp .pos files so that Scipion's Xmipp coordinate import
(which works without Xmipp's binaries) reads them.

``use_shared_project`` gives the protocol test classes one project per test session with those
data imported (the micrographs and the three pickers' coordinates): each class adds its own
runs and only reads the imports. ``shared_finished_run`` adds one finished Deep Consensus run
to it, which test_protocols and test_gui read.
"""
import os
import time
import types

from xmipp3_deepcons import synthetic
from xmipp3_deepcons.constants import SCORE_ATTRIBUTE

PICKERS = [name for name, *_ in synthetic.PICKERS]
SAMPLING = 2.0
BOX = 160            # original pixels: micrographs are downsampled by 160 / 128 = 1.25


class Launcher:
    """What the import helpers below need of a test class, on a plain project (pytest
    fixtures, where no ``BaseTest`` class holds the project)."""

    def __init__(self, project):
        self.project = project

    def newProtocol(self, cls, **kwargs):
        return self.project.newProtocol(cls, **kwargs)

    def launchProtocol(self, prot):
        self.project.launchProtocol(prot, wait=True)
        assert prot.isFinished(), "%s: %s" % (prot.getObjLabel(), prot.getErrorMessage())
        return prot


def make_data(folder, n_micrographs=6, seed=3):
    """Synthetic micrographs plus one folder of .pos files per picker; returns the folder."""
    synthetic.make_dataset(folder, n_micrographs=n_micrographs, seed=seed, n_particles=90,
                           n_junk=20)
    synthetic.write_pos_folders(folder)
    return folder


SHARED_MICROGRAPHS = 6
_shared = {}


def use_shared_project(cls):
    """Point a ``BaseTest`` class at the session's project (made on first use: generated data
    in its folder, the micrographs and the three pickers imported), as ``setupTestProject``
    points it at a new one; returns what was imported: ``data`` (the folder), ``micImport``,
    ``mics`` (its output) and ``coordImports`` (one per picker). Tests add their own runs
    and never change the imports; the data folder goes with the project."""
    if not _shared:
        from pyworkflow.tests import BaseTest, setupTestProject
        holder = type("DeepConsensusSharedData", (BaseTest,), {})
        setupTestProject(holder)
        data = make_data(os.path.join(holder.outputPath, "generated_data"), SHARED_MICROGRAPHS)
        micImport = import_micrographs(holder, data)
        coordImports = [import_coordinates(holder, data, micImport.outputMicrographs, picker)
                        for picker in PICKERS]
        _shared.update(holder=holder, imported=types.SimpleNamespace(
            data=data, micImport=micImport, mics=micImport.outputMicrographs,
            coordImports=coordImports))
    holder = _shared["holder"]
    cls.proj, cls.projName, cls.outputPath = holder.proj, holder.projName, holder.outputPath
    os.chdir(cls.outputPath)
    return _shared["imported"]


# The shared project's finished Deep Consensus run: New model, fast training (one Keras
# epoch, one network), three pickers, GPU 1 asked for (no GPU here: the choice must still
# reach TensorFlow).
SHARED_RUN_LABEL = "new model"
FAST = dict(nEpochs=1.0, minBatches=0, nModels=1, toTrainDataSize=1000, randomSeed=11,
            threshold=0.5, extractingBatch=2, trainingBatch=3, numberOfThreads=2,
            addTrainingData=0, gpuList="1")


def shared_finished_run():
    """(project, run): the session's finished Deep Consensus run (``FAST``, the three pickers'
    imports) in the shared project, made on first use. test_protocols and test_gui only read
    it; they add their own runs beside it."""
    imported = use_shared_project(types.SimpleNamespace())
    holder = _shared["holder"]
    if "run" not in _shared:
        from pyworkflow.object import Pointer
        from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
        prot = holder.newProtocol(XmippProtScreenDeepConsensus, objLabel=SHARED_RUN_LABEL,
                                  **FAST)
        for source in imported.coordImports:
            prot.inputCoordinates.append(Pointer(source, extended="outputCoordinates"))
        _shared["run"] = holder.launchProtocol(prot)
    return holder.proj, _shared["run"]


def import_micrographs(test, folder):
    from pwem.protocols import ProtImportMicrographs
    prot = test.newProtocol(ProtImportMicrographs, objLabel="micrographs",
                            filesPath=os.path.join(folder, "micrographs"),
                            filesPattern="*.mrc", samplingRate=SAMPLING, voltage=300,
                            sphericalAberration=2.7, amplitudeContrast=0.1)
    return test.launchProtocol(prot)


def import_coordinates(test, folder, micrographs, picker, box=BOX):
    from pwem.protocols import ProtImportCoordinates
    prot = test.newProtocol(ProtImportCoordinates, objLabel=picker,
                            importFrom=ProtImportCoordinates.IMPORT_FROM_XMIPP,
                            filesPath=os.path.join(folder, "pos", picker),
                            filesPattern="*.pos", boxSize=box)
    prot.inputMicrographs.set(micrographs)
    return test.launchProtocol(prot)


def scored_items(output):
    """{(micId, x, y): score} of a set of coordinates or particles."""
    items = {}
    for item in output.iterItems():
        coord = item if hasattr(item, "getX") else item.getCoordinate()
        items[(coord.getMicId(), coord.getX(), coord.getY())] = float(
            getattr(item, SCORE_ATTRIBUTE).get())
    return items


def run_scores(prot, network=False):
    """{micrograph stem: scores of all its candidates}: those the outputs carry, or the
    network's, through the run folder's public readers."""
    run = prot.runFolder()
    return {stem: run.network_scores(stem) if network else run.final_scores(stem)
            for stem in run.scored_stems()}


def kept_by_rule(prot):
    """How many candidates the protocol should output, by the engine's keep rule."""
    run = prot.runFolder()
    return sum(int(run.kept(stem).sum()) for stem in run.scored_stems())


def scored_by_the_shipped_network(run):
    """Every micrograph's candidates also have the shipped network's scores (``anchored``)."""
    from xmipp3_deepcons.run.folder import REFERENCE
    for stem in run.stems():
        reference = run.network_scores(stem, source=REFERENCE)
        if reference is None or len(reference) != len(run.network_scores(stem)):
            return False
    return True


def wait_for(condition, timeout, step=1.0):
    """Poll until condition() is true; fails the test on timeout."""
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(step)
    raise AssertionError("timed out after %d s" % timeout)
