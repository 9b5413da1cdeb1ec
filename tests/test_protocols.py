"""The Scipion protocols in a real (temporary) project, on generated data.

The session's shared project (``protocol_helpers.use_shared_project``, also used by
test_protocol_options) holds the imports; the New run trained in setUpClass is reused by the
PreviousRun, viewer, subset and stop-and-continue tests, so the file trains three times in all
(New, streaming, stopped-and-continued).
"""
import json
import os
import re
import shutil
import sys
import tempfile

# Protocols run in a subprocess started with $SCIPION_PYTHON (default: "python" on the PATH),
# which must be this interpreter, with this environment's packages.
os.environ.setdefault("SCIPION_PYTHON", sys.executable)

import numpy as np
import pytest
import pyworkflow
from pyworkflow.object import Pointer
from pyworkflow.protocol.constants import MODE_RESUME
from pyworkflow.tests import BaseTest

from protocol_helpers import (BOX, FAST, PICKERS, SAMPLING, SHARED_MICROGRAPHS,
                              import_coordinates, kept_by_rule, run_scores,
                              scored_by_the_shipped_network, scored_items, shared_finished_run,
                              use_shared_project, wait_for)
from xmipp3_deepcons.constants import DEEP_PARTICLE_SIZE
from xmipp3_deepcons.run.boxes import positive_mask
from xmipp3_deepcons.protocols import XmippProtDeepConsSubSet, XmippProtScreenDeepConsensus

pytestmark = pytest.mark.slow   # real Scipion protocol runs (three trainings)

pyworkflow.PYTHON = os.environ["SCIPION_PYTHON"]

THRESHOLD = 0.5
assert FAST["threshold"] == THRESHOLD
N_MICROGRAPHS = SHARED_MICROGRAPHS


def point(param, prot, output):
    """Make a pointer parameter point at a protocol's output, as the GUI does."""
    param.set(prot)
    param.setExtended(output)


class TestDeepConsensus(BaseTest):

    @classmethod
    def setUpClass(cls):
        shared = use_shared_project(cls)      # one project (and imports) per test session
        cls.data, cls.micImport, cls.mics = shared.data, shared.micImport, shared.mics
        cls.coordImports = shared.coordImports
        cls.newRun = shared_finished_run()[1]     # "new model": FAST, the three pickers

    @classmethod
    def deepConsensus(cls, label, inputs=None, launch=True, **kwargs):
        prot = cls.newProtocol(XmippProtScreenDeepConsensus, objLabel=label, **kwargs)
        for source in inputs or cls.coordImports:
            prot.inputCoordinates.append(Pointer(source, extended="outputCoordinates"))
        return cls.launchProtocol(prot) if launch else prot

    def assertSameOutputs(self, prot, reference):
        """Same scored candidates as the reference run: same items, same scores."""
        for name in ("outputCoordinates", "outputParticles"):
            mine, theirs = getattr(prot, name), getattr(reference, name)
            self.assertTrue(mine.isStreamClosed())
            items, expected = scored_items(mine), scored_items(theirs)
            self.assertEqual(len(items), mine.getSize(), "an item was written twice")
            self.assertEqual(set(items), set(expected))
            keys = sorted(expected)
            np.testing.assert_allclose([items[k] for k in keys], [expected[k] for k in keys],
                                       atol=1e-5)

    # ------------------------------------------------------------------ New
    def test_new_model_outputs(self):
        prot = self.newRun
        scores = run_scores(prot)
        self.assertEqual(len(scores), N_MICROGRAPHS)          # every micrograph scored
        allScores = np.concatenate(list(scores.values()))
        kept = kept_by_rule(prot)
        self.assertLessEqual(kept, int((allScores > THRESHOLD).sum()))
        self.assertGreater(len(allScores), 500)
        self.assertTrue(((allScores >= 0) & (allScores <= 1)).all())
        self.assertTrue(0 < kept < len(allScores))
        # the outputs carry the score combined with who picked (fitted on the training micrographs)
        run = prot.runFolder()
        evidence = run.evidence()
        self.assertEqual(list(evidence["micrographs"]),
                         [s for p in run.passes() for s in p["micrographs"]])
        self.assertTrue(0 < evidence["model"]["prior"] < 1)
        # three pickers: the shipped network scored every candidate, beside the run's
        self.assertEqual(evidence["mode"], "anchored")
        self.assertEqual(len(evidence["model"]["pattern_link"]["who_picked"][0]), 2 ** len(PICKERS))
        self.assertTrue(scored_by_the_shipped_network(run))
        network = np.concatenate(list(run_scores(prot, network=True).values()))
        self.assertGreater(np.abs(allScores - network).max(), 0.01)

        coords, parts = prot.outputCoordinates, prot.outputParticles
        self.assertTrue(coords.isStreamClosed() and parts.isStreamClosed())
        self.assertEqual(coords.getSize(), kept)
        self.assertEqual(parts.getSize(), kept)
        self.assertEqual(coords.getBoxSize(), BOX)
        self.assertEqual(coords.getMicrographs().getObjId(), self.mics.getObjId())
        self.assertAlmostEqual(parts.getSamplingRate(), SAMPLING * BOX / DEEP_PARTICLE_SIZE)
        self.assertEqual(parts.getXDim(), DEEP_PARTICLE_SIZE)
        items = scored_items(coords)
        self.assertEqual(items, scored_items(parts))
        self.assertTrue(all(THRESHOLD < s <= 1 for s in items.values()))

        # Coordinates in the original frame: each kept item lies on a candidate of its
        # micrograph (the consensus centres, in original pixels), over the whole micrograph.
        work = prot.runFolder()
        names = {m.getObjId(): os.path.splitext(m.getMicName())[0] for m in self.mics}
        for (micId, x, y) in list(items)[:100]:
            centres = work.candidates(names[micId])["xy"]
            self.assertLess(np.hypot(*(centres - (x, y)).T).min(), 1.0)
        xy = np.array([k[1:] for k in items])
        self.assertGreater(xy.max(), 1536 / (BOX / DEEP_PARTICLE_SIZE))
        self.assertLess(xy.max(), 1536)

        # The form's GPU choice reaches TensorFlow (set before it starts in the run's process).
        with open(prot.getLogPaths()[0]) as f:
            self.assertIn("CUDA_VISIBLE_DEVICES=1,", f.read())

        summary = "\n".join(prot.summary())
        self.assertIn("%d kept" % kept, summary)
        self.assertIn("mean validation accuracy reached", summary)
        methods = "\n".join(prot.methods())
        self.assertIn("Deep Consensus", methods)
        self.assertIn("Sanchez-Garcia", methods)
        self.assertIn("IUCrJ", methods)

    def test_command_line_screen_gives_the_same_particles(self):
        """The same inputs, seed and settings through `screen` and through the protocol (New
        model, all inputs at once): the same candidates, scores and kept particles."""
        from xmipp3_deepcons.cli import main
        out = tempfile.mkdtemp(prefix="deepcons_cli_")
        self.addCleanup(shutil.rmtree, out, True)
        argv = ["screen", "--micrographs", os.path.join(self.data, "micrographs", "*.mrc"),
                "--box-size", str(BOX), "--sampling", str(SAMPLING), "--epochs", "1",
                "--min-batches", "0", "--models", "1", "--train-size", "1000", "--seed", "11",
                "--threshold", str(THRESHOLD), "--training-batch", "3", "--threads", "2",
                "-o", out]
        for picker in PICKERS:
            argv += ["--coordinates", os.path.join(self.data, "pos", picker)]
        self.assertEqual(main(argv), 0)
        cli = np.load(os.path.join(out, "candidates.npz"))
        stems = np.array([os.path.splitext(os.path.basename(m))[0] for m in cli["micrograph"]])
        run = self.newRun.runFolder()
        self.assertEqual(sorted(set(stems)), sorted(run.stems()))
        for stem in run.stems():
            mine = stems == stem
            np.testing.assert_array_equal(cli["xy"][mine], run.candidates(stem)["xy"])
            np.testing.assert_allclose(cli["score"][mine], run.final_scores(stem), atol=1e-5)
            np.testing.assert_array_equal(cli["kept"][mine], run.kept(stem))
        self.assertEqual(int(cli["kept"].sum()), self.newRun.outputCoordinates.getSize())

    def test_unlabeled_candidates_join_the_negatives_by_default(self):
        prot = self.newRun
        work = prot.runFolder()
        with open(prot.getLogPaths()[0]) as f:
            log = f.read()
        passes = work.passes()
        self.assertGreater(len(passes), 0)
        settings = work.settings()
        for trainingPass in passes:   # the candidates that are not positives: too few votes,
            # or a box that leaves the micrograph
            expected = sum(int((~positive_mask(work.candidates(stem), 2,
                                               settings.edge_box)).sum())
                           for stem in trainingPass["micrographs"])
            self.assertGreater(expected, 0)
            self.assertIn("unlabeled candidates and candidates whose box leaves the micrograph "
                          "as negatives: %d boxes (weight 1)" % expected, log)

    def test_previous_run_skip_training_keeps_what_that_run_kept(self):
        # all micrographs in one batch (the New run had batches of 2): one prepare job, one
        # scoring job
        prot = self.deepConsensus("previous run, no training", launch=False,
                                  **dict(FAST, modelInitialization=2, skipTraining=True,
                                         extractingBatch=N_MICROGRAPHS))
        prot.continueRun.set(self.newRun)
        prot = self.launchProtocol(prot)
        mine, reference = run_scores(prot, network=True), run_scores(self.newRun, network=True)
        self.assertEqual(set(mine), set(reference))
        for stem in reference:
            np.testing.assert_allclose(mine[stem], reference[stem], atol=1e-6)
        self.assertFalse(os.path.exists(prot._getExtraPath("training", "pass_001")))
        # The same model, the same inputs: the same particles, with the same scores (the
        # pickers' evidence comes with the model, fitted on the same micrographs).
        self.assertSameOutputs(prot, self.newRun)
        self.assertEqual(prot.runFolder().evidence(), self.newRun.runFolder().evidence())

    # --------------------------------------------------- viewer and subsets
    def test_viewer_writes_figures(self):
        from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
        viewer = XmippDeepConsensusViewer(project=self.proj)
        viewer.setProtocol(self.newRun)          # what the GUI does before showing the form
        histogram = viewer.writeHistogram()
        curves = viewer.writeTrainingCurves()
        galleries = viewer.writeGalleries()
        self.assertEqual(len(galleries), 2)
        for path in [histogram, curves] + galleries:
            self.assertTrue(os.path.getsize(path) > 1000, path)
        views = viewer._visualizeHistogram()
        self.assertEqual(views[0].getPath(), histogram)

    def test_subset_from_selection(self):
        source = self.newRun.outputCoordinates
        chosen = [c.getObjId() for c in source.iterItems()][::7]
        for inputName in ("outputCoordinates", "outputParticles"):
            inputSet = getattr(self.newRun, inputName)
            ids = chosen if inputName == "outputCoordinates" else \
                [p.getObjId() for p in inputSet.iterItems()][::7]
            selection = os.path.abspath(self.proj.getTmpPath("selection_%s.txt" % inputName))
            with open(selection, "w") as f:
                f.write(" ".join(map(str, ids)))
            prot = self.newProtocol(XmippProtDeepConsSubSet, sqliteFile=selection + ",",
                                    outputClassName="SetOfCoordinates")
            point(prot.inputObject, self.newRun, inputName)
            prot = self.launchProtocol(prot)
            output = prot.outputCoordinates
            self.assertEqual(output.getSize(), len(ids))
            self.assertEqual(output.getBoxSize(), BOX)
            self.assertEqual(output.getMicrographs().getObjId(), self.mics.getObjId())
            subset = scored_items(output)
            everything = scored_items(source)
            self.assertTrue(set(subset) <= set(everything))

    # ------------------------------------------------------------ validation
    def test_validation_errors(self):
        small = import_coordinates(self, self.data, self.mics, PICKERS[0], box=100)
        particles = self._importParticles(64)

        def errors(inputs=None, **kwargs):
            prot = self.deepConsensus("invalid", inputs=inputs, launch=False,
                                      **dict(FAST, **kwargs))
            return "\n".join(prot.validate())

        self.assertEqual(errors(), "")
        self.assertIn("'Box size of the first input coordinates' 100: under 128 px",
                      errors(inputs=[small] + self.coordImports[1:]))
        self.assertIn("Phase flipping needs the CTFs", errors(ignoreCTF=False))
        self.assertIn("training needs at least two coordinate sets",
                      errors(inputs=self.coordImports[:1]))
        self.assertIn("at least 320", errors(toTrainDataSize=100))
        self.assertEqual(errors(modelInitialization=1), "")     # the shipped models

        prot = self.deepConsensus("custom 64 px", launch=False, **dict(
            FAST, addTrainingData=2, trainingDataType=0, doTesting=True))
        for name in ("trainTrueSetOfParticles", "trainFalseSetOfParticles",
                     "testTrueSetOfParticles", "testFalseSetOfParticles"):
            point(getattr(prot, name), particles, "outputParticles")
        messages = prot.validate()
        for label in ("Positive train particles", "Negative train particles",
                      "Set of positive test particles", "Set of negative test particles"):
            self.assertTrue(any(label in m and "64 px" in m for m in messages), label)

        unfinished = self.deepConsensus("never run", launch=False, **FAST)
        self.saveProtocol(unfinished)
        prot = self.deepConsensus("previous without model", launch=False,
                                  **dict(FAST, modelInitialization=2, skipTraining=True))
        prot.continueRun.set(unfinished)
        self.assertIn("has no trained model", "\n".join(prot.validate()))

        # A model trained without phase flipping is refused for a run that flips.
        prot = self.deepConsensus("previous, other flip", launch=False,
                                  **dict(FAST, modelInitialization=2, skipTraining=True,
                                         ignoreCTF=False))
        prot.continueRun.set(self.newRun)
        self.assertIn("trained without phase flipping", "\n".join(prot.validate()))

        # The original default (Precompiled additional data): shipped with the plugin.
        prot = self.deepConsensus("precompiled", launch=False, **dict(FAST, addTrainingData=1))
        self.assertEqual(prot.validate(), [])
        self.assertEqual(prot.warnings(), [])

    # ------------------------------------------------------------ Pretrained
    def test_pretrained_skip_training_with_one_picker(self):
        prot = self.deepConsensus("pretrained", inputs=self.coordImports[:1],
                                  **dict(FAST, modelInitialization=1, skipTraining=True,
                                         extractingBatch=N_MICROGRAPHS))   # one scoring job
        self.assertEqual(len(run_scores(prot)), N_MICROGRAPHS)
        self.assertGreater(prot.outputCoordinates.getSize(), 0)
        with open(prot._getExtraPath("model", "manifest.json")) as f:
            manifest = json.load(f)
        # toTrainDataSize 1000: the small network, the one for unflipped micrographs
        self.assertEqual((manifest["band"], manifest["phase_flip"]), ("small", False))
        # a shipped network scoring without training: who picked is read as one answer
        self.assertEqual(prot.runFolder().settings().picker_evidence, "patterns")

    def _importParticles(self, size):
        from pwem.protocols import ProtImportParticles
        from xmipp3_deepcons.io.images import write_stack
        folder = os.path.abspath(self.proj.getTmpPath("particles_%d" % size))  # not the data
        os.makedirs(folder, exist_ok=True)
        stack = os.path.join(folder, "particles_%d.mrcs" % size)
        write_stack(stack, np.random.default_rng(0).normal(size=(4, size, size)), SAMPLING)
        prot = self.newProtocol(ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                                filesPath=folder, filesPattern="particles_%d.mrcs" % size,
                                samplingRate=SAMPLING)
        return self.launchProtocol(prot)

    # ------------------------------------------------------------- streaming
    def test_streaming_scores_every_micrograph_and_closes(self):
        from pwem.protocols.protocol_create_stream_data import (ProtCreateStreamData,
                                                                SET_OF_COORDINATES)
        streams = []
        for i, source in enumerate(self.coordImports):
            stream = self.newProtocol(ProtCreateStreamData, objLabel="stream %d" % i,
                                      setof=SET_OF_COORDINATES, nDim=N_MICROGRAPHS,
                                      creationInterval=2 + i)
            point(stream.inputCoordinates, source, "outputCoordinates")
            self.proj.launchProtocol(stream, wait=False)
            streams.append(stream)
        for stream in streams:
            self._waitOutput(stream, "outputCoordinates", sleepTime=1)
        prot = self.deepConsensus("streaming", inputs=streams, launch=False,
                                  **dict(FAST, doPreliminarPredictions=True,
                                         toTrainDataSize=20000))
        self.proj.launchProtocol(prot, wait=False)
        # While the inputs still grow, an output that exists must be open.
        while True:
            run = self._reload(prot)
            if not run.isActive():
                break
            inputsOpen = any(not self._reload(s).outputCoordinates.isStreamClosed()
                             for s in streams)
            if inputsOpen and run.hasAttribute("outputCoordinates"):
                self.assertTrue(run.outputCoordinates.isStreamOpen())
            wait_for(lambda: True, 1)
        prot = self._reload(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())

        scores = run_scores(prot)
        self.assertEqual(len(scores), N_MICROGRAPHS)
        kept = kept_by_rule(prot)
        for name in ("outputCoordinates", "outputParticles"):
            output = getattr(prot, name)
            self.assertTrue(output.isStreamClosed(), name)
            self.assertEqual(output.getSize(), kept)
        # Scored by the final model only: one pass of 4 micrographs, then the last 2 were
        # too few for another pass; the pass was published as preliminary output first.
        with open(prot._getExtraPath("model", "manifest.json")) as f:
            manifest = json.load(f)
        self.assertEqual(len(manifest["extra"]["micrographs"]), 4)
        # Sized by the positives it had (a few hundred), not by the expected 20000 (large).
        self.assertEqual(manifest["band"], "small")
        self.assertTrue(prot.hasAttribute("preliminarOutputCoordinates"))
        self.assertTrue(prot.preliminarOutputCoordinates.isStreamClosed())

    def _reload(self, prot):
        """The protocol as its run database has it now."""
        from pyworkflow.protocol import getProtocolFromDb
        loaded = getProtocolFromDb(self.proj.path, prot.getDbPath(), prot.getObjId())
        loaded.getProject().closeMapper()
        loaded.closeMappers()
        return loaded

    # ------------------------------------------------------ stop and continue
    def test_stop_and_continue_gives_the_same_outputs(self):
        # batches of 3 (the New run had 2): fewer prepare and scoring jobs than batches of 1
        prot = self.deepConsensus("stopped and continued", launch=False,
                                  **dict(FAST, extractingBatch=3))
        self.proj.launchProtocol(prot, wait=False)
        # Stop while training (the pass folder exists, its manifest does not yet).
        passDir = prot._getExtraPath("training", "pass_001")
        wait_for(lambda: os.path.isdir(passDir), 300, step=0.2)
        self.proj.stopProtocol(prot)
        self.assertFalse(os.path.exists(os.path.join(passDir, "manifest.json")))
        self.assertFalse(os.path.exists(prot._getExtraPath("model")))

        # Continue, and stop again once scoring has started.
        log = prot.getLogPaths()[0]

        def published():      # the first micrograph appended to the outputs
            with open(log) as f:
                return re.search(r"scored \S+: \d+ candidates, \d+ kept", f.read())
        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=False)
        wait_for(lambda: published() or not self._reload(prot).isActive(), 300, step=0.1)
        self.proj.stopProtocol(prot)

        prot.runMode.set(MODE_RESUME)
        prot = self.launchProtocol(prot)
        counts = prot.runFolder().counts()
        self.assertEqual(len(counts), N_MICROGRAPHS)                   # nothing missing
        self.assertEqual(sum(kept for _, kept in counts.values()),     # nothing twice
                         prot.outputCoordinates.getSize())
        self.assertSameOutputs(prot, self.newRun)

    # -------------------------------------------------------------- template
    def test_workflow_template_loads(self):
        from xmipp3_deepcons.headless import fill_template
        from xmipp3_deepcons.scipion_plugin import Plugin
        self.assertEqual([t.name for t in Plugin().getTemplates()], ["deep_consensus_demo"])
        values = {"micrographs": os.path.join(self.data, "micrographs"), "sampling": "2.0",
                  "threshold": "0.3", "models": "1", "train_size": "1000"}
        values.update({"box%d" % (i + 1): str(BOX) for i in range(3)})
        values.update({"picker%d" % (i + 1): os.path.join(self.data, "pos", p)
                       for i, p in enumerate(PICKERS)})
        workflow = fill_template("deep_consensus_demo", values)
        before = {p.getObjId() for p in self.proj.getRuns()}
        self.proj.loadProtocols(workflow)
        created = [p for p in self.proj.getRuns(refresh=True) if p.getObjId() not in before]
        classes = sorted(p.getClassName() for p in created)
        self.assertEqual(classes, ["ProtImportCoordinates"] * 3 + ["ProtImportMicrographs",
                                                                 "XmippProtScreenDeepConsensus"])
        imports = [p for p in created if p.getClassName() == "ProtImportCoordinates"]
        self.assertEqual([p.boxSize.get() for p in imports], [BOX] * 3)
        self.assertEqual(sorted(p.filesPath.get() for p in imports),
                         sorted(values["picker%d" % (i + 1)] for i in range(3)))
        screen = next(p for p in created if p.getClassName() == "XmippProtScreenDeepConsensus")
        self.assertEqual(len(screen.inputCoordinates), 3)
        self.assertEqual({p.getExtended() for p in screen.inputCoordinates},
                         {"outputCoordinates"})
        self.assertAlmostEqual(screen.threshold.get(), 0.3)
        self.assertEqual(screen.addTrainingData.get(), 1)       # the original default
