"""Deep Consensus screening of particle picks, as a streaming Scipion protocol.

A drop-in for Xmipp's ``XmippProtScreenDeepConsensus``: same class name, same form (attribute
names, types, enum values, defaults, conditions, expert levels), same outputs. The heavy work
runs as the original's did, through ``runJob``: the stage commands of ``xmipp_deep_consensus``
(``prepare``, ``fit``, ``predict``, ``evaluate``) on the run folder ``extra/``, the same engine
and the same rules as the command line's ``screen``. So Scipion's queue can send each stage to
a cluster, the GPU list reaches it the Scipion way, and a crash in TensorFlow fails a step, not
the protocol.

The form is ``screen_form``'s; the form as a run request, checked by the engine's rules
(``run.request``), is ``screen_request``'s. This class keeps the summary, the reading of the
input streams and the output sets. The run folder (``xmipp3_deepcons.run.folder``) is the
authority on progress, so that *Continue* finishes exactly as an uninterrupted run would:
Scipion forgets the dynamically inserted steps of a stopped run, and the scheduler rebuilds
them from what is on disk. Outputs are deduplicated by micrograph against the output sets
themselves, so a micrograph is never appended twice, even when a run was killed between two
writes.
"""
import os

import numpy as np

from pyworkflow import BETA
import pyworkflow.object as pwobj
import pyworkflow.utils as pwutils
from pyworkflow.protocol.constants import STATUS_NEW
from pwem.constants import ALIGN_NONE
import pwem.objects as emobj
from pwem.protocols import ProtParticlePicking

from ..constants import DEEP_PARTICLE_SIZE, SCORE_ATTRIBUTE, SCORE_LABEL
from ..run import schedule
from ..run.folder import RunFolder, read_json, write_json
from ..run.keep import kept_by_source
from ..run.streaming import Queued, merge_repeated, next_work, stem_for
from . import screen_form, screen_inputs, screen_request
from .labels import DeepConsLabel

CITATION = "Sanchez-Garcia2018"   # key in bibtex.py
SCORE_BATCH_MAX = 20          # micrographs per scoring step, at most
ENGINE_FORMATS = (".mrc", ".mrcs", ".map", ".st", ".tif", ".tiff")

OUTPUT_COORDINATES = "outputCoordinates"
OUTPUT_PARTICLES = "outputParticles"
PRELIMINARY_COORDINATES = "preliminarOutputCoordinates"
PRELIMINARY_PARTICLES = "preliminarOutputParticles"
OUTPUT_FILES = {OUTPUT_COORDINATES: "coordinates.sqlite",
                OUTPUT_PARTICLES: "particles.sqlite",
                PRELIMINARY_COORDINATES: "coordinates_preliminary.sqlite",
                PRELIMINARY_PARTICLES: "particles_preliminary.sqlite"}


class XmippProtScreenDeepConsensus(DeepConsLabel, ProtParticlePicking):
    """Screens the picks of several particle pickers with Deep Consensus
    (Sanchez-Garcia et al. 2018).

    The picks of all pickers are merged into candidates; candidates that at least two pickers
    agree on are taken as particles and random background positions as non-particles to train
    an ensemble of convolutional networks, which then scores every candidate between 0 (not a
    particle) and 1 (particle). The output keeps the candidates that score above the threshold,
    as coordinates on the original micrographs and as 128 px particles, each with its score
    (_xmipp_zScoreDeepLearning1). Works in streaming: micrographs are processed as their picks
    arrive and the outputs grow until the inputs are closed.
    """
    _label = 'deep consensus picking'
    _devStatus = BETA
    _stepsCheckSecs = 3
    _possibleOutputs = {OUTPUT_COORDINATES: emobj.SetOfCoordinates,
                        OUTPUT_PARTICLES: emobj.SetOfParticles}

    # Enum values of the form, as in the original protocol.
    ADD_MODEL_TRAIN_TYPES = ["New", "Pretrained", "PreviousRun"]
    ADD_MODEL_TRAIN_NEW = 0
    ADD_MODEL_TRAIN_PRETRAIN = 1
    ADD_MODEL_TRAIN_PREVRUN = 2

    ADD_DATA_TRAIN_TYPES = ["None", "Precompiled", "Custom"]
    ADD_DATA_TRAIN_NONE = 0
    ADD_DATA_TRAIN_PRECOMP = 1
    ADD_DATA_TRAIN_CUST = 2

    ADD_DATA_TRAIN_CUSTOM_OPT = ["Particles", "Coordinates"]
    ADD_DATA_TRAIN_CUSTOM_OPT_PARTS = 0
    ADD_DATA_TRAIN_CUSTOM_OPT_COORS = 1


    def __init__(self, **kwargs):
        ProtParticlePicking.__init__(self, **kwargs)
        self._admission = None     # per-process state of the scheduler, built on first use
        self._queued = Queued()
        self._dynamicSteps, self._trainStep = [], None
        self._positives, self._prepared, self._published = {}, set(), {}

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        screen_form.define_params(self, form)

    # -------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        init = self._insertFunctionStep(self.initializeStep, needsGPU=False)
        # Waits until the scheduler (_stepsCheck) sees the inputs closed and all work done.
        self._insertFunctionStep(self.closeStep, prerequisites=[init], wait=True,
                                 needsGPU=False)

    def _stepsCheck(self):
        """Every few seconds while the run is alive: read what arrived, queue the work."""
        if not self.runFolder().has_settings() or self._queued is None:
            return
        try:
            self._pollInputs()
        except Exception as error:   # an input database busy being written: try next time
            self.warning("could not read the inputs now (%s); trying again" % error)
            return
        self._admitReadyMicrographs()
        self._queueWork()

    # -------------------------- STEPS functions -----------------------------
    def initializeStep(self):
        """The run's settings (the continue check), the model to start from, and the extra
        training data read from Scipion sets."""
        run = self.runFolder()
        settings = screen_request.form_settings(self, run)
        run.write_settings(settings)
        self.info("box %d px, micrographs downsampled by %.3f to %d px boxes; seed %d"
                  % (settings.box_size, settings.factor, DEEP_PARTICLE_SIZE, settings.seed))
        from ..run.stages import start_model
        start_model(run, settings)
        warnings = []
        if not settings.skip_training:
            if settings.precompiled_negatives and self._precompiledNegatives() is None:
                warnings.append("Additional training data is Precompiled, but no precompiled "
                                "negative particles are installed (%s): trained without them."
                                % self._deepconsPlugin().getModelsDir())
            elif self.addTrainingData.get() == self.ADD_DATA_TRAIN_CUST:
                screen_inputs.cache_custom_training_data(self, run)
            if self.doTesting.get():
                for pointer, name in ((self.testTrueSetOfParticles, "test_true"),
                                      (self.testFalseSetOfParticles, "test_false")):
                    screen_inputs.cache_particles(pointer.get(), run.path("additional",
                                                                          name + ".npy"))
        for message in warnings:
            self.warning(message)
        write_json(run.path("warnings.json"), warnings)

    def prepareStep(self, stems):
        """Consensus, negatives, preprocessing and 128 px boxes of a batch of micrographs."""
        self._runStage("prepare", "--micrographs", *stems, gpu=False)
        run = self.runFolder()
        self._checkDone([s for s in stems if not run.is_prepared(s)], "prepared")

    def trainStep(self, number):
        """Training pass ``number`` (or the final model, when the rule ends training)."""
        self._runStage("fit", "--one-pass")
        run = self.runFolder()
        self._checkDone([] if len(run.passes()) >= number or run.has_model()
                        else ["training pass %d" % number], "trained")

    def finalizeModelStep(self):
        """The final model: self-training rounds, the pickers' evidence."""
        self._runStage("fit", "--one-pass")
        self._checkDone([] if self.runFolder().has_model() else ["the final model"], "made")

    def preliminaryOutputStep(self, number):
        """Score everything prepared so far with a pass that did not end training."""
        run = self.runFolder()
        source = os.path.relpath(run.pass_dir(number), run.root)
        if run.has_model() or not os.path.exists(os.path.join(run.pass_dir(number),
                                                               "manifest.json")):
            return
        stems = [s for s in run.stems() if run.is_prepared(s)]
        self._runStage("predict", "--model-pass", str(number), "--micrographs", *stems)
        settings = run.settings()
        with self._lock, screen_request.form_wording():
            for name in (PRELIMINARY_COORDINATES, PRELIMINARY_PARTICLES):
                pwutils.cleanPath(self._getPath(OUTPUT_FILES[name]))
            coords = self._openOutput(PRELIMINARY_COORDINATES)
            parts = self._openOutput(PRELIMINARY_PARTICLES)
            kept = total = 0
            for stem, scores, keep in kept_by_source(run, stems, settings, source):
                kept += self._appendMicrograph(stem, scores, keep, coords, parts)
                total += len(scores)
            self._defineOutput(PRELIMINARY_COORDINATES, coords, pwobj.Set.STREAM_CLOSED)
            self._defineOutput(PRELIMINARY_PARTICLES, parts, pwobj.Set.STREAM_CLOSED)
        self.info("preliminary outputs of pass %d: %d of %d candidates above the threshold"
                  % (number, kept, total))

    def scoreStep(self, stems):
        """Final scores of a batch of micrographs, appended to the outputs."""
        self._runStage("predict", "--micrographs", *stems)
        run = self.runFolder()
        self._checkDone([s for s in stems if run.network_scores(s) is None], "scored")
        self._publish(stems)

    def testingStep(self):
        """Accuracy, ROC-AUC and precision/recall of the final model on the test sets."""
        self._runStage("evaluate")
        self._checkDone([] if os.path.exists(self.runFolder().path("testing.json"))
                        else ["the test sets"], "scored")

    def _checkDone(self, missing, done):
        """A job sent to a queue counts as finished when it leaves the queue, whatever its
        exit status: what it should have made is checked here."""
        if missing:
            raise RuntimeError("%s not %s: the job failed; its messages are in this run's "
                               "log and in %s" % (", ".join(missing[:3]), done,
                                                  self.runFolder().path("screen.log")))

    def closeStep(self):
        """Inputs closed and every micrograph scored: close the output streams."""
        with self._lock:
            for name in (OUTPUT_COORDINATES, OUTPUT_PARTICLES):
                self._defineOutput(name, self._openOutput(name), pwobj.Set.STREAM_CLOSED)
        counts = self.runFolder().counts()
        self.info("done: %d micrographs, %d candidates scored, %d kept"
                  % (len(counts), sum(c[0] for c in counts.values()),
                     sum(c[1] for c in counts.values())))

    def _runStage(self, stage, *arguments, gpu=True):
        """One stage of the engine as a job: ``xmipp_deep_consensus STAGE extra/ ...``, with
        this run's threads and (``%(GPU)s``, filled in by Scipion's executor) GPUs."""
        args = [stage, self._getExtraPath()] + list(arguments)
        args += ["--threads", str(max(1, self.numberOfThreads.get() or 1))]
        if gpu:
            args += ["--gpu", "%(GPU)s" if self.useGpu.get() else "-1"]
        self.runJob(self._deepconsPlugin().getProgram(),
                    " ".join(pwutils.quoteStr(a) if " " in a else a for a in args),
                    env=self._deepconsPlugin().getEnviron(), numberOfThreads=1)

    # -------------------------- Scheduler -----------------------------------
    def runFolder(self):
        """The engine's run folder of this protocol (``xmipp3_deepcons.run.folder``): its
        readers give the candidates, scores, kept particles, passes and model."""
        return RunFolder(self._getExtraPath())

    def _pollInputs(self):
        if self._admission is None:
            self._admission, self._readers = screen_inputs.open_streams(self)
            known = {entry[3] for entry in self.runFolder().ledger()}
            self._admission.admitted.update(known)
            if known:
                self.info("continuing: %d micrographs already admitted" % len(known))
        screen_inputs.poll_streams(self._admission, self._readers)

    def _admitReadyMicrographs(self):
        run = self.runFolder()
        stems = set(run.stems())
        settings = run.settings()
        for micId, name, path, picks, ctf in self._admission.ready(self.warning):
            picks, warnings = merge_repeated(picks, settings.radius * settings.box_size, name)
            for warning in warnings:
                self.warning(warning)
            stem = stem_for(name, micId, stems)
            if os.path.splitext(path)[1].lower() not in ENGINE_FORMATS:
                path = screen_inputs.convert_micrograph(path, run.path("inputs", stem + ".mrc"))
            run.admit(stem, path, picks, ctf=ctf, mic_id=micId, mic_name=name)
            stems.add(stem)
        if self._admission.inputs_done() and not run.inputs_closed():
            run.close_inputs()

    def _queueWork(self):
        run, settings = self.runFolder(), None
        ledger = run.stems()
        for stem in ledger:
            if stem not in self._prepared and run.is_prepared(stem):
                self._prepared.add(stem)
        hasModel = run.has_model()
        trainBusy = (self._trainStep is not None
                     and not self._steps[self._trainStep - 1].isFinished())
        self._queued.training = trainBusy
        plan = None
        if not hasModel and not trainBusy:
            from ..run.stages import plan_training
            settings = run.settings()
            plan = plan_training(run, settings, self._positives)
        pending = any(not self._steps[i - 1].isFinished() for i in self._dynamicSteps)
        work = next_work(ledger, self._prepared, hasModel, plan, self._queued,
                         run.inputs_closed(), max(1, self.extractingBatch.get()),
                         SCORE_BATCH_MAX, testing=bool(self.doTesting.get())
                         and not (settings or run.settings()).skip_training,
                         tested=os.path.exists(run.path("testing.json")), steps_pending=pending)
        for chunk in work.prepare:
            self._queued.prepare.update(chunk)
            self._queueStep(self.prepareStep, chunk, needsGPU=False)
        if work.train is not None:
            if work.train.action == schedule.TRAIN:
                self._trainStep = self._queueStep(self.trainStep, work.train.number,
                                                  after=self._trainStep)
                if self.doPreliminarPredictions.get():
                    self._queueStep(self.preliminaryOutputStep, work.train.number,
                                    after=self._trainStep)
            else:
                self._trainStep = self._queueStep(self.finalizeModelStep, after=self._trainStep)
        for chunk in work.score:
            self._queued.score.update(chunk)
            self._queueStep(self.scoreStep, chunk)
        if work.test:
            self._queued.testing = True
            self._queueStep(self.testingStep)
        if work.close:
            if not ledger:
                self.warning("no micrograph had picks: the outputs are empty")
            self._queued = None          # nothing more is queued
            close = self._steps[1]
            close.addPrerequisites(*self._dynamicSteps)
            close.setStatus(STATUS_NEW)
            self.updateSteps()

    def _queueStep(self, func, *args, after=None, needsGPU=True):
        prerequisites = [1] + ([after] if after else [])   # 1: initializeStep
        index = self._insertFunctionStep(func, *args, prerequisites=prerequisites,
                                         needsGPU=needsGPU)
        self._dynamicSteps.append(index)
        self.updateSteps()
        return index

    # -------------------------- Outputs -------------------------------------
    def _publish(self, stems):
        """Append the kept candidates of scored micrographs, once per micrograph and output."""
        run = self.runFolder()
        settings = run.settings()
        with self._lock, screen_request.form_wording():     # the scores read in this process
            coords = self._openOutput(OUTPUT_COORDINATES)
            parts = self._openOutput(OUTPUT_PARTICLES)
            have = {name: self._publishedIds(name, output)
                    for name, output in ((OUTPUT_COORDINATES, coords),
                                         (OUTPUT_PARTICLES, parts))}
            info = self._ledgerInfo()
            for stem in stems:
                micId = info[stem][0]
                scores = run.final_scores(stem, settings)
                keep = run.kept(stem, settings)
                kept = self._appendMicrograph(
                    stem, scores, keep, None if micId in have[OUTPUT_COORDINATES] else coords,
                    None if micId in have[OUTPUT_PARTICLES] else parts)
                for name in have:
                    have[name].add(micId)
                self.info("scored %s: %d candidates, %d kept" % (stem, len(scores), kept))
            self._defineOutput(OUTPUT_COORDINATES, coords, pwobj.Set.STREAM_OPEN)
            self._defineOutput(OUTPUT_PARTICLES, parts, pwobj.Set.STREAM_OPEN)

    def _publishedIds(self, name, output):
        """Micrograph ids already in an output (read from the set once per process)."""
        if name not in self._published:
            self._published[name] = (set(output.getUniqueValues("_micId"))
                                     if output.getSize() else set())
        return self._published[name]

    def _ledgerInfo(self):
        return {stem: (micId, name) for stem, _, micId, name in self.runFolder().ledger()}

    def _appendMicrograph(self, stem, scores, keep, coords, parts):
        """Append the kept candidates of one micrograph; returns how many. ``coords`` or
        ``parts`` None: that output already has them."""
        run = self.runFolder()
        micId, micName = self._ledgerInfo()[stem]
        table = run.candidates(stem)
        stack = run.particles(stem)
        sampling = self._particleSampling()
        kept = np.flatnonzero(keep)
        for index in kept:
            x, y = (int(v) for v in np.rint(table["xy"][index]))
            score = float(scores[index])
            coord = emobj.Coordinate()
            coord.setPosition(x, y)
            coord.setMicId(micId)
            coord.setMicName(micName)
            setattr(coord, SCORE_ATTRIBUTE, pwobj.Float(score))
            if coords is not None:
                coords.append(coord)
            if parts is not None:
                particle = emobj.Particle()
                particle.setLocation(int(index) + 1, stack)
                particle.setSamplingRate(sampling)
                coord.cleanObjId()
                particle.setCoordinate(coord)
                particle.setMicId(micId)
                setattr(particle, SCORE_ATTRIBUTE, pwobj.Float(score))
                parts.append(particle)
        return len(kept)

    def _openOutput(self, name):
        """The output set of that name, opened for appending (created when absent)."""
        path = self._getPath(OUTPUT_FILES[name])
        isCoordinates = name in (OUTPUT_COORDINATES, PRELIMINARY_COORDINATES)
        SetClass = emobj.SetOfCoordinates if isCoordinates else emobj.SetOfParticles
        output = None
        if os.path.exists(path):
            output = SetClass(filename=path)
            output.loadAllProperties()
            if output.getSize():
                output.enableAppend()
            else:
                # Made, then stopped before anything was kept in it: pyworkflow reads no id
                # count from an empty set (its next append fails), and there is nothing to keep.
                output.close()
                os.remove(path)
                output = None
        if output is None:
            output = SetClass(filename=path, indexes=['_micId'])
        output.setStreamState(output.STREAM_OPEN)
        refCoords = self.inputCoordinates[0].get()
        if isCoordinates:
            output.setMicrographs(self._micrographsPointer())
            output.setBoxSize(refCoords.getBoxSize())
        else:
            mics = refCoords.getMicrographs()
            output.setAcquisition(mics.getAcquisition().clone())
            output.setSamplingRate(self._particleSampling())
            output.setHasCTF(False)
            output.setAlignment(ALIGN_NONE)
        return output

    def _micrographsPointer(self):
        """Pointer to the first coordinate set's micrographs, as protocol + output name when
        it can be found (Scipion's advice for streaming), else as the input has it."""
        if getattr(self, "_micsPointer", None) is None:
            pointer = self.inputCoordinates[0].get().getMicrographs(asPointer=True)
            if not pointer.hasExtended():
                mics = pointer.get()
                try:
                    parent = self.getMapper().getParent(mics)
                    name = parent.findAttributeName(mics) if parent is not None else None
                    if name:
                        pointer = pwobj.Pointer(parent, extended=name)
                except Exception:
                    pass
            self._micsPointer = pointer
        return self._micsPointer

    def _defineOutput(self, name, output, state):
        isNew = not self.hasAttribute(name)
        self._updateOutputSet(name, output, state)
        if isNew:
            for pointer in self.inputCoordinates:
                self._defineSourceRelation(pointer, getattr(self, name))

    def _particleSampling(self):
        settings = self.runFolder().settings()
        return (settings.pixel_size or 1.0) * settings.factor

    # -------------------------- Plugin resources ----------------------------
    def _precompiledNegatives(self):
        return self._deepconsPlugin().getPrecompiledNegatives(not self.ignoreCTF.get())

    # -------------------------- INFO functions ------------------------------
    def _validate(self):
        return screen_request.form_problems(self)

    def _warnings(self):
        warnings = []
        if (screen_request.trains(self)
                and self.addTrainingData.get() == self.ADD_DATA_TRAIN_PRECOMP
                and self._precompiledNegatives() is None):
            warnings.append("Additional training data is Precompiled, but no precompiled "
                            "negative particles are installed (%s): the run trains without "
                            "them (as with None)." % self._deepconsPlugin().getModelsDir())
        return warnings

    def _summary(self):
        summary = []
        for i, pointer in enumerate(self.inputCoordinates):
            coords = pointer.get()
            parent = self.getMapper().getParent(coords) if coords is not None else None
            summary.append("Data source %d: %s" % (
                i + 1, parent.getRunName() if parent is not None else pointer.getExtended()))
        run = self.runFolder()
        if not run.has_settings():
            return summary
        settings = run.settings()
        summary.append("Relative radius %g (%.0f px); box %d px, downsampled by %.3f"
                       % (settings.radius, settings.radius * settings.box_size,
                          settings.box_size, settings.factor))
        summary.extend("WARNING: %s" % w for w in read_json(run.path("warnings.json")) or [])
        counts = self.runFolder().counts()
        if counts:
            summary.append("%d micrographs scored: %d candidates, %d kept %s"
                           % (len(counts), sum(c[0] for c in counts.values()),
                              sum(c[1] for c in counts.values()),
                              "(all, threshold -1)" if settings.threshold < 0
                              else "with a score above %g" % settings.threshold))
        passes = run.passes()
        if passes:
            summary.append("Training: %d pass(es) on %d micrographs, %d particles; mean "
                           "validation accuracy reached %.4f (stop at %g)"
                           % (len(passes), sum(len(p["micrographs"]) for p in passes),
                              sum(p["positives"] for p in passes),
                              passes[-1]["mean_val_accuracy"], settings.max_val_acc))
        manifest = read_json(os.path.join(run.model_dir(), "manifest.json"))
        if manifest:
            if not passes:
                summary.append("Scored with a reused model (no training); its mean "
                               "validation accuracy was %.4f" % manifest["mean_val_accuracy"])
            summary.append("Final model: %d %s network(s)" % (manifest["n_models"],
                                                             manifest.get("band")))
        m = read_json(run.path("testing.json"))
        if m:
            summary.append("Testing: accuracy %.3f, ROC-AUC %.3f; at threshold %.3f "
                           "precision %.3f, recall %.3f"
                           % (m["accuracy_at_0.5"], m["roc_auc"], m["best_threshold"],
                              m["precision"], m["recall"]))
        summary.append("Each output item carries its score (Xmipp label %s); Analyze Results "
                       "shows the histogram and the best and worst particles." % SCORE_LABEL)
        return summary

    def _citations(self):
        return [CITATION]

    def _methods(self):
        run = self.runFolder()
        if not run.has_settings():
            return []
        settings = run.settings()
        counts = self.runFolder().counts()
        methods = [
            "The picks of %d particle pickers were screened with Deep Consensus [%s]: picks "
            "closer than %g of the %d px box were merged into candidates; candidates found by "
            "at least two pickers were used as particles and random background positions as "
            "non-particles to train an ensemble of convolutional networks on 128 px boxes "
            "(micrographs downsampled by %.2f%s), which scored every candidate."
            % (len(self.inputCoordinates), CITATION, settings.radius, settings.box_size,
               settings.factor, ", phase-flipped" if settings.phase_flip else "")]
        if counts:
            methods.append("%d of %d candidates were kept%s."
                           % (sum(c[1] for c in counts.values()),
                              sum(c[0] for c in counts.values()),
                              "" if settings.threshold < 0
                              else " (score above %g)" % settings.threshold))
        return methods

    # -------------------------- UTILS functions -----------------------------
    def _getInputMicrographs(self):
        """Micrographs of the first coordinate set (the CTF relation is looked up on them)."""
        if len(self.inputCoordinates) == 0 or self.inputCoordinates[0].get() is None:
            return None
        return self.inputCoordinates[0].get().getMicrographs()

    def getInputMicrographsPointer(self):
        return self.inputCoordinates[0].get().getMicrographs(asPointer=True)

    def getInputMicrographs(self):
        return self._getInputMicrographs()

    def _deepconsPlugin(self):
        from ..scipion_plugin import Plugin
        return Plugin
