"""The protocol's optional paths in a real project: CTF phase flipping from a SetOfCTF relation,
custom negative coordinates as additional training data, a self-training round, and testing
after training.

One Deep Consensus run covers them all, in the session's shared project (its micrographs and
pickers' imports, as test_protocols uses them); its other inputs (CTFs, junk coordinates, test
particles) are made in the test with xmippLib (.ctfparam files) and the engine (test particles prepared exactly
as the protocol prepares its boxes).
"""
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("SCIPION_PYTHON", sys.executable)

import numpy as np
import pytest
import pyworkflow
from pyworkflow.object import Pointer
from pyworkflow.tests import BaseTest

from protocol_helpers import (BOX, SAMPLING, SHARED_MICROGRAPHS, import_coordinates,
                              scored_by_the_shipped_network, use_shared_project)
from xmipp3_deepcons.constants import DEEP_PARTICLE_SIZE
from xmipp3_deepcons.core.ctf import CTFParams
from xmipp3_deepcons.core.extract import extract_boxes
from xmipp3_deepcons.core.micrograph import preprocess_micrograph
from xmipp3_deepcons.io.coordinates import write_pos
from xmipp3_deepcons.io.images import read_micrograph, write_stack
from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus

pytestmark = pytest.mark.slow   # a Scipion project and a 10-epoch training

pyworkflow.PYTHON = os.environ["SCIPION_PYTHON"]

N_MICROGRAPHS = SHARED_MICROGRAPHS
FACTOR = BOX / DEEP_PARTICLE_SIZE
TEST_MICROGRAPHS = ("mic_004", "mic_005")


def ctf_of(index):
    """A different astigmatic CTF for each micrograph (defocus in Å, angle in degrees)."""
    return CTFParams(12000 + 1500 * index, 11000 + 1200 * index, 15 * index, 300, 2.7, 0.1)


def write_ctfparams(folder, stems):
    """One Xmipp .ctfparam per micrograph, written by xmippLib through Scipion's converter."""
    from pwem.objects import CTFModel
    from xmipp3.convert import writeCTFModel
    os.makedirs(folder, exist_ok=True)
    for index, stem in enumerate(stems):
        params = ctf_of(index)
        ctf = CTFModel()
        ctf.setStandardDefocus(params.defocus_u, params.defocus_v, params.defocus_angle)
        writeCTFModel(ctf, os.path.join(folder, stem + ".ctfparam"))
    return folder


def junk_centres(data, stem):
    return np.loadtxt(os.path.join(data, "truth", stem + "_junk.csv"), delimiter=",",
                      skiprows=1, ndmin=2)


def particle_centres(data, stem):
    return np.loadtxt(os.path.join(data, "truth", stem + ".csv"), delimiter=",", skiprows=1,
                      ndmin=2)


def background_centres(data, stem, shape=(1536, 1536)):
    """Grid points at least 3/4 of a box away from every planted particle and junk."""
    from scipy.spatial import cKDTree
    planted = np.concatenate([particle_centres(data, stem), junk_centres(data, stem)])
    step = BOX // 4
    y, x = np.mgrid[BOX // 2:shape[0] - BOX // 2:step, BOX // 2:shape[1] - BOX // 2:step]
    grid = np.column_stack([x.ravel(), y.ravel()]).astype(float)
    return grid[cKDTree(planted).query(grid)[0] > 0.75 * BOX]


class TestDeepConsensusOptions(BaseTest):

    @classmethod
    def setUpClass(cls):
        shared = use_shared_project(cls)      # one project (and imports) per test session
        cls.data, mics, coordImports = shared.data, shared.mics, shared.coordImports
        # what this class adds (CTFs, junk coordinates, test particles): its own folder
        cls.extra = tempfile.mkdtemp(prefix="deepcons_options_")
        cls.addClassCleanup(shutil.rmtree, cls.extra, True)
        cls.stems = ["mic_%03d" % i for i in range(N_MICROGRAPHS)]

        from pwem.protocols import ProtImportCTF
        ctfImport = cls.newProtocol(
            ProtImportCTF, importFrom=ProtImportCTF.IMPORT_FROM_XMIPP3,
            filesPath=write_ctfparams(os.path.join(cls.extra, "ctf"), cls.stems),
            filesPattern="*.ctfparam")
        ctfImport.inputMicrographs.set(mics)
        cls.launchProtocol(ctfImport)

        junkFolder = os.path.join(cls.extra, "pos", "junk")
        os.makedirs(junkFolder)
        for stem in cls.stems:
            write_pos(os.path.join(junkFolder, stem + ".pos"), junk_centres(cls.data, stem))
        junkImport = import_coordinates(cls, cls.extra, mics, "junk")

        cls.testSets = {kind: cls.importTestParticles(kind) for kind in ("true", "false")}
        prot = cls.newProtocol(
            XmippProtScreenDeepConsensus,
            objLabel="phase flip, custom negatives, self-training, testing",
            nEpochs=10.0, minBatches=0, nModels=1, toTrainDataSize=1000, randomSeed=5,
            threshold=0.5, extractingBatch=N_MICROGRAPHS, trainingBatch=N_MICROGRAPHS,
            addTrainingData=2, trainingDataType=1, trainNegWeight=1, ignoreCTF=False,
            doTesting=True, unlabeledNegatives=False, selfTrainingRounds=1,
            pickersShareMistakes=True)
        for source in coordImports:
            prot.inputCoordinates.append(Pointer(source, extended="outputCoordinates"))
        prot.ctfRelations.set(ctfImport.outputCTF)
        prot.trainFalseSetOfCoords.set(junkImport.outputCoordinates)
        prot.testTrueSetOfParticles.set(cls.testSets["true"])
        prot.testFalseSetOfParticles.set(cls.testSets["false"])
        cls.screen = cls.launchProtocol(prot)

    @classmethod
    def preprocessed(cls, stem):
        """A micrograph as the protocol should see it: downsampled, flipped with its CTF at
        the downsampled pixel size, normalised, inverted."""
        image = read_micrograph(os.path.join(cls.data, "micrographs", stem + ".mrc"))
        return preprocess_micrograph(image, FACTOR, invert=True,
                                     ctf=ctf_of(cls.stems.index(stem)), pixel_size=SAMPLING)

    @classmethod
    def importTestParticles(cls, kind):
        """Boxes at the planted particles (true) or on empty background (false) of two
        micrographs."""
        from pwem.protocols import ProtImportParticles
        centres = particle_centres if kind == "true" else background_centres
        boxes = np.concatenate([extract_boxes(cls.preprocessed(stem),
                                              centres(cls.data, stem) / FACTOR)
                                for stem in TEST_MICROGRAPHS])
        folder = os.path.join(cls.extra, "test_" + kind)
        os.makedirs(folder)
        write_stack(os.path.join(folder, "boxes.mrcs"), boxes, SAMPLING * FACTOR)
        prot = cls.newProtocol(ProtImportParticles, objLabel="test particles " + kind,
                               importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                               filesPath=folder, filesPattern="boxes.mrcs",
                               samplingRate=SAMPLING * FACTOR)
        return cls.launchProtocol(prot).outputParticles

    def test_micrographs_are_phase_flipped_with_their_own_ctf(self):
        work = self.screen.runFolder()
        for stem in ("mic_000", "mic_003"):
            done = read_micrograph(work.preprocessed(stem))
            np.testing.assert_allclose(done, self.preprocessed(stem), atol=1e-4)
        # A neighbour's CTF gives a visibly different micrograph: the match above is not luck.
        other = preprocess_micrograph(
            read_micrograph(os.path.join(self.data, "micrographs", "mic_000.mrc")), FACTOR,
            invert=True, ctf=ctf_of(1), pixel_size=SAMPLING)
        self.assertGreater(np.abs(read_micrograph(work.preprocessed("mic_000")) - other).max(),
                           0.1)

    def test_custom_negative_coordinates_join_training(self):
        expected = sum(len(junk_centres(self.data, stem)) for stem in self.stems)
        with open(self.screen.getLogPaths()[0]) as f:
            log = f.read()
        self.assertIn("additional negative coordinates on these micrographs: %d (weight 1)"
                      % expected, log)

    def test_pickers_agree_on_junk_takes_who_picked_as_one_answer(self):
        # three pickers and a trained network: who picked and the run's network, beside the shipped one
        run = self.screen.runFolder()
        self.assertEqual(run.settings().picker_evidence, "anchored")
        model = run.evidence()["model"]
        self.assertEqual(len(model["pattern_link"]["who_picked"][0]), 2 ** run.settings().n_pickers)
        self.assertTrue(scored_by_the_shipped_network(run))
        with open(self.screen.getLogPaths()[0]) as f:
            self.assertIn("pickers' evidence (anchored) fitted on", f.read())

    def test_unlabeled_candidates_stay_out_when_switched_off(self):
        # Switched off here so that the first pass is confident enough for a self-training
        # round; the default (on) is checked on the plain run of test_protocols.
        with open(self.screen.getLogPaths()[0]) as f:
            self.assertNotIn("unlabeled candidates as negatives", f.read())

    def test_self_training_continues_the_last_pass_into_the_final_model(self):
        def manifest(*path):
            with open(self.screen._getExtraPath(*path, "manifest.json")) as f:
                return json.load(f)
        round1 = manifest("model_round1")
        self.assertEqual(round1["continued_from"], os.path.abspath(self.screen.runFolder().pass_dir(1)))
        self.assertEqual(manifest("model")["created"], round1["created"])
        with open(self.screen.getLogPaths()[0]) as f:
            self.assertIn("self-training round 1 on %d micrographs" % N_MICROGRAPHS, f.read())

    def test_testing_reports_metrics_of_the_final_model(self):
        with open(self.screen._getExtraPath("testing.json")) as f:
            metrics = json.load(f)
        nTrue, nFalse = (self.testSets[k].getSize() for k in ("true", "false"))
        self.assertEqual((metrics["n_positive"], metrics["n_negative"]), (nTrue, nFalse))
        self.assertGreater(min(nTrue, nFalse), 20)
        self.assertGreater(metrics["roc_auc"], 0.9)
        for key in ("accuracy_at_0.5", "precision", "recall"):
            self.assertTrue(0 <= metrics[key] <= 1, key)
        predictions = np.loadtxt(self.screen._getExtraPath("testPredictions.txt"))
        self.assertEqual(predictions.shape, (nTrue + nFalse, 2))
        self.assertEqual(int(predictions[:, 0].sum()), nTrue)
        self.assertIn("Testing: accuracy", "\n".join(self.screen.summary()))
