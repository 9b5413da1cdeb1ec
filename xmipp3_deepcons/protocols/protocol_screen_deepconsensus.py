"""Deep Consensus screening of particle picks, as a streaming Scipion protocol.

A drop-in for Xmipp's ``XmippProtScreenDeepConsensus``: same class name, same form (attribute
names, types, enum values, defaults, conditions, expert levels), same outputs; the work is done
in process by this package's engine instead of Xmipp programs.

How the run is organised (the method's data flow, one micrograph at a time):

    inputs   several SetOfCoordinates (one per picker), growing or closed
    admit    a micrograph is taken when every picker has delivered its picks for it (or has
             closed its stream); its picks are saved and it is appended to the ledger
    prepare  consensus candidates, negatives, preprocessed micrograph, 128 px boxes
    train    passes of ``trainingBatch`` micrographs, each continuing the previous model, until
             the expected number of positives or the validation accuracy is reached, or the
             inputs end; then the last pass becomes the final model
    score    every candidate of every micrograph, once, with the final model; kept candidates
             (score above the threshold) are appended to the outputs, which stay open until
             the inputs are closed and all work is done

Files are the authority on progress, so that *Continue* finishes exactly as an uninterrupted
run would: Scipion forgets the dynamically inserted steps of a stopped run, and the scheduler
rebuilds them from what is on disk::

    extra/settings.json        fixed at the first step: box, downsampling, seed, warnings
    extra/micrographs.tsv      the ledger: admitted micrographs in arrival order
    extra/inputs/<mic>.npz     a micrograph's picks, one array per coordinate set
    extra/work/                engine work folder: preprocessed/, candidates/, scores/
    extra/particles/<mic>.mrcs 128 px box of every candidate (outputParticles point here)
    extra/training/pass_NNN/   one trained ensemble per pass (complete when manifest.json is)
    extra/model/               the final ensemble (what PreviousRun reuses)
    extra/counts.tsv           candidates and kept particles per scored micrograph
    extra/testing.json         test-set metrics (and testPredictions.txt)

Outputs are deduplicated by micrograph against the output sets themselves, so a micrograph
is never appended twice even when a run was killed between two writes.
"""
import json
import os
import re
import shutil
import time

import numpy as np

from pyworkflow import BETA
import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pyworkflow.protocol.constants import STATUS_NEW
from pwem.constants import ALIGN_NONE, RELATION_CTF
import pwem.objects as emobj
from pwem.protocols import ProtParticlePicking

from ..constants import (DEEP_PARTICLE_SIZE, DEFAULT_EPOCHS, DEFAULT_L2, DEFAULT_LEARNING_RATE,
                         DEFAULT_MIN_BATCHES,
                         DEFAULT_MAX_VAL_ACC, DEFAULT_MODELS, DEFAULT_RADIUS, DEFAULT_THRESHOLD,
                         DEFAULT_TRAIN_SIZE, DEFAULT_DEDUPE_RADIUS, MIN_POSITIVES, SCORE_ATTRIBUTE,
                         SCORE_LABEL, SELF_TRAINING_MIN_ACCEPTED, SELF_TRAINING_NEGATIVE,
                         SELF_TRAINING_POSITIVE, DEFAULT_VIEWS, VIEW_CHOICES, size_band)

CITATION = "Sanchez-Garcia2018"   # key in bibtex.py
MIN_VOTES = 2                 # pickers that must agree for a candidate to be a positive
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


class XmippProtScreenDeepConsensus(ProtParticlePicking):
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
        self._runtime = None       # per-process scheduler state, built on first use
        self._ensembleCache = None
        self._evidenceCache = None

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        trains = "modelInitialization==%d or not skipTraining" % self.ADD_MODEL_TRAIN_NEW
        custom = "(%s) and addTrainingData==%d" % (trains, self.ADD_DATA_TRAIN_CUST)

        form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                       expertLevel=params.LEVEL_ADVANCED,
                       label="Use GPU (vs CPU)",
                       help="Train and score on a GPU. Without one (or with No) the CPU is "
                            "used, which is much slower for training.")
        form.addHidden(params.GPU_LIST, params.StringParam, default='0',
                       expertLevel=params.LEVEL_ADVANCED,
                       label="Choose GPU ID",
                       help="Index of the GPU to use (0 is the first one). Only the first "
                            "index of a list is used: the networks are trained one after "
                            "another on one GPU. It is passed to TensorFlow as "
                            "CUDA_VISIBLE_DEVICES.")
        form.addParallelSection(threads=2, mpi=1)

        form.addSection(label='Input')
        form.addParam('modelInitialization', params.EnumParam,
                      choices=self.ADD_MODEL_TRAIN_TYPES,
                      default=self.ADD_MODEL_TRAIN_NEW,
                      label='Select model type',
                      help='*New*: train new networks on these picks.\n'
                           '*Pretrained*: start from the networks shipped with the plugin, '
                           'trained on simulated micrographs (ASPIRE) with and without phase '
                           'flipping; the one matching \'Ignore CTF\' is used, its size '
                           'chosen by the expected number of particles (as the original). '
                           'The DEEPCONS_MODELS variable can point to other ones.\n'
                           '*PreviousRun*: start from the final networks of another Deep '
                           'Consensus run of this project.\n'
                           'With Pretrained or PreviousRun the networks can score directly '
                           '(skip training) or be trained further on these picks.')
        form.addParam('continueRun', params.PointerParam,
                      pointerClass=self.getClassName(),
                      condition='modelInitialization==%d' % self.ADD_MODEL_TRAIN_PREVRUN,
                      allowsNull=True,
                      label='Select previous run',
                      help='A finished Deep Consensus run of this project whose final '
                           'networks are reused. Its micrographs should have been '
                           'preprocessed the same way (same CTF phase flipping and contrast).')
        form.addParam('skipTraining', params.BooleanParam, default=False,
                      condition='modelInitialization!=%d' % self.ADD_MODEL_TRAIN_NEW,
                      label='Skip training and score directly with pretrained model?',
                      help='*Yes*: score the candidates with the pretrained or previous '
                           'networks as they are; one coordinate set is then enough.\n'
                           '*No*: train them further on these picks first.')
        form.addParam('inputCoordinates', params.MultiPointerParam,
                      pointerClass='SetOfCoordinates', allowsNull=False,
                      label="Input coordinates",
                      help='The coordinates of each picker (one set per picker, all on the '
                           'same micrographs, matched by micrograph name). The box size of '
                           'the first set is the particle box: it must be at least 128 px, '
                           'and micrographs are downsampled so that it becomes 128 px.')
        form.addParam('consensusRadius', params.FloatParam, default=DEFAULT_RADIUS,
                      label="Relative Radius", expertLevel=params.LEVEL_ADVANCED,
                      validators=[params.Positive],
                      help="Picks of different pickers closer than this fraction of the box "
                           "size are taken as the same particle.")
        form.addParam('threshold', params.FloatParam, default=DEFAULT_THRESHOLD,
                      label='Tolerance threshold',
                      expertLevel=params.LEVEL_ADVANCED,
                      help='Every candidate gets a score between 0 (not a particle) and 1 '
                           '(particle); the outputs keep those scoring above this value. '
                           'Use -1 to keep all candidates and choose later from the score '
                           'histogram (Analyze Results) or with a subset.')
        form.addParam('dedupeRadius', params.FloatParam, default=DEFAULT_DEDUPE_RADIUS,
                      label="Duplicate radius", expertLevel=params.LEVEL_ADVANCED,
                      validators=[params.GE(0)],
                      help="Output candidates closer than this fraction of the box size are "
                           "one particle: only the best scored is output. Two pickers often "
                           "place one particle further apart than the relative radius, and "
                           "the original protocol then output it twice. 0 outputs both, as "
                           "the original did (not in Xmipp's form).")
        form.addParam('pickerEvidence', params.BooleanParam, default=True,
                      label="Combine with who picked?", expertLevel=params.LEVEL_ADVANCED,
                      help="Yes: the score is the probability of a particle given the "
                           "network's score and which pickers picked the candidate, each "
                           "witness weighted by how reliable it proves on this data (Dawid-"
                           "Skene, fitted once on the training micrographs and kept in "
                           "extra/evidence*.json). No: the network's score alone, as the "
                           "original (not in Xmipp's form).")
        form.addParam('scoringViews', params.EnumParam,
                      default=VIEW_CHOICES.index(DEFAULT_VIEWS),
                      choices=['1 (the original)', '4', '8'],
                      display=params.EnumParam.DISPLAY_HLIST,
                      label="Views scored per box", expertLevel=params.LEVEL_ADVANCED,
                      help="The network scores each box as it is (1), also flipped left-right, "
                           "up-down and both (4), and also transposed (8); the score is the "
                           "mean. Training shows the network these mirrors, so each view is "
                           "as valid as the first, and their mean ranks candidates better "
                           "(measured: higher F1 on real and simulated data). "
                           "Each view costs one more scoring pass. A run continued with "
                           "another value scores anew (not in Xmipp's form).")

        form.addSection(label='Preprocess')
        form.addParam('notePreprocess', params.LabelParam,
                      label='How particles are extracted from the micrographs',
                      help='Each micrograph is processed as a whole, in this order:\n'
                           '1) Fourier downsampling so that the box size of the first '
                           'coordinate set becomes 128 px;\n'
                           '2) optionally, CTF phase flipping of the whole micrograph at '
                           'the new pixel size (see Ignore CTF);\n'
                           '3) normalisation to zero mean and unit standard deviation over '
                           'the whole micrograph, and contrast inversion so that particles '
                           'are white (unless the micrographs are already inverted);\n'
                           '4) extraction of a 128 x 128 px box around every candidate; '
                           'pixels beyond the micrograph edge repeat the edge pixel. Boxes '
                           'are not normalised again.\n'
                           'Additional or test particles given as particle sets must have '
                           'been prepared in the same way.')
        form.addParam('skipInvert', params.BooleanParam, default=False,
                      label='Did you invert the micrographs contrast (particles are bright '
                            'now)?',
                      help='The networks work on white particles on a dark background. '
                           'Select *Yes* if the particles in these micrographs are already '
                           'white, *No* (usual for cryo-EM) to invert the contrast.')
        form.addParam('ignoreCTF', params.BooleanParam, default=True,
                      label='Ignore CTF',
                      help='*No*: phase-flip each micrograph with its CTF before extracting '
                           'the particles (needs a CTF estimation of these micrographs).')
        form.addParam('ctfRelations', params.RelationParam, allowsNull=True,
                      relationName=RELATION_CTF, condition="not ignoreCTF",
                      attributeName='_getInputMicrographs',
                      label='CTF estimation',
                      help='CTF estimation of the input micrographs, used for phase '
                           'flipping. Micrographs are matched by name; a micrograph without '
                           'CTF waits for it while the CTF stream is open and is left out '
                           'once it is closed.')

        form.addSection(label='Training')
        form.addParam('nEpochs', params.FloatParam, default=DEFAULT_EPOCHS,
                      label="Number of epochs", condition=trains,
                      help='Passes over the training particles in each training pass (at '
                           'least one Keras epoch of 50 batches of 64 boxes is run).')
        form.addParam('minBatches', params.IntParam, default=DEFAULT_MIN_BATCHES,
                      label="Minimum training batches", expertLevel=params.LEVEL_ADVANCED,
                      condition=trains, validators=[params.GE(0)],
                      help='Each training pass runs at least this many batches of 64 boxes, '
                           'whatever the number of epochs gives: epochs are passes over the '
                           'positives, so a small training set otherwise gets a few dozen '
                           'batches and an undertrained network. 0: as the original (not in '
                           "Xmipp's form).")
        form.addParam('learningRate', params.FloatParam, default=DEFAULT_LEARNING_RATE,
                      label="Learning rate", condition=trains,
                      help='Initial learning rate of the Adam optimiser.')
        form.addParam('auto_stopping', params.BooleanParam, default=True,
                      label='Auto stop training when convergency is detected?',
                      condition=trains,
                      help='Whatever the choice, the learning rate is divided by 10 after 3 '
                           'Keras epochs (of 50 batches) without a better validation '
                           'accuracy, down to 1/1000 of the initial rate, and each network '
                           'keeps the weights of its best validation epoch.\n'
                           '*Yes*: also stop training a network when its validation '
                           'accuracy has not improved by at least 0.001 for 10 Keras '
                           'epochs.\n*No*: always run all the epochs.')
        form.addParam('maxValAcc', params.FloatParam, default=DEFAULT_MAX_VAL_ACC,
                      label="Training mean val_acc threshold", condition=trains,
                      help='Training ends after the first training pass whose networks '
                           'reach, on average, a validation accuracy above this value.')
        form.addParam('l2RegStrength', params.FloatParam, default=DEFAULT_L2,
                      label="Regularization strength",
                      expertLevel=params.LEVEL_ADVANCED, condition=trains,
                      help='L2 regularisation of the network weights. Raise it (typical '
                           'values 1e-6 to 1e-1) if the training accuracy grows while the '
                           'validation accuracy falls (overfitting).')
        form.addParam('nModels', params.IntParam, default=DEFAULT_MODELS,
                      label="Number of models for ensemble",
                      expertLevel=params.LEVEL_ADVANCED,
                      condition="modelInitialization==%d or (not skipTraining and "
                                "modelInitialization==%d)" % (self.ADD_MODEL_TRAIN_NEW,
                                                             self.ADD_MODEL_TRAIN_PRETRAIN),
                      help='Networks trained independently; the score is their mean. '
                           'Typical values 1 to 5; each one adds its training time.')
        form.addParam('toTrainDataSize', params.IntParam, default=DEFAULT_TRAIN_SIZE,
                      label="Expected number of particles to use for training",
                      help='Training stops once this many positive particles have been '
                           'used (-1: no limit, train on every micrograph). A new network '
                           'is sized by the positives of its first training pass (under 1500 '
                           'small, under 20000 medium, otherwise large); the original sized '
                           'it by this value, so its default always built the large one. '
                           'Pretrained models are chosen by this value.')
        form.addParam('unlabeledNegatives', params.BooleanParam, default=True,
                      label="Unlabeled candidates as negatives?",
                      expertLevel=params.LEVEL_ADVANCED, condition=trains,
                      help='Train also against the candidates that fewer pickers found than '
                           'a positive needs, weighted like the background negatives. They '
                           'are unlabeled, mostly junk on real data, and harder than empty '
                           "background. Measured, it keeps better particles on real and "
                           "simulated data. No: the original method (not in Xmipp's form).")
        form.addParam('selfTrainingRounds', params.IntParam, default=0,
                      label="Self-training rounds", expertLevel=params.LEVEL_ADVANCED,
                      condition=trains,
                      help='Once trained, score the training micrographs, take the confident '
                           'acceptances (score >= %s, duplicates merged) as positives and the '
                           'confident rejections (<= %s) as extra negatives, and continue '
                           'the model on them; that many times. A round needs %d confident '
                           'acceptances; with fewer (a small or hard set) it keeps the model '
                           'as it is and says so in the log. 0: the original method.'
                           % (SELF_TRAINING_POSITIVE, SELF_TRAINING_NEGATIVE,
                              SELF_TRAINING_MIN_ACCEPTED))
        form.addParam('randomSeed', params.IntParam, default=-1,
                      label="Random seed", expertLevel=params.LEVEL_ADVANCED,
                      condition=trains,
                      help='Seed of every random choice (negatives, validation split, '
                           'batches, initial weights). -1 draws one for this run (it is '
                           'written in the log). The same inputs and seed give the same '
                           'scores, and a stopped run continues with the same seed.')
        form.addParam('doTesting', params.BooleanParam, default=False,
                      label='Perform testing after training?',
                      expertLevel=params.LEVEL_ADVANCED, condition=trains,
                      help='Score two sets of known particles and non-particles with the '
                           'final networks and report accuracy, ROC-AUC, and precision and '
                           'recall at the best threshold (log and extra/testing.json).')
        form.addParam('testTrueSetOfParticles', params.PointerParam,
                      label="Set of positive test particles",
                      expertLevel=params.LEVEL_ADVANCED,
                      pointerClass='SetOfParticles', condition='doTesting',
                      help='Known particles: 128 px, prepared as described in '
                           'Preprocess.')
        form.addParam('testFalseSetOfParticles', params.PointerParam,
                      label="Set of negative test particles",
                      expertLevel=params.LEVEL_ADVANCED,
                      pointerClass='SetOfParticles', condition='doTesting',
                      help='Known non-particles: 128 px, prepared as described in '
                           'Preprocess.')

        form.addSection(label='Additional training data')
        form.addParam('addTrainingData', params.EnumParam,
                      condition=trains,
                      choices=self.ADD_DATA_TRAIN_TYPES,
                      default=self.ADD_DATA_TRAIN_PRECOMP,
                      label='Additional training data',
                      help='Training uses the candidates picked by at least two pickers as '
                           'particles and random background positions as non-particles.\n'
                           '*None*: only those.\n'
                           '*Precompiled*: also the set of non-particles shipped with the '
                           'plugin (junk and background of simulated micrographs, with or '
                           'without phase flipping as this run), each box as likely to be '
                           'drawn as each of the run\'s own non-particles (weight 1, as the '
                           'original).\n*Custom*: also particles or coordinates of your '
                           'own.')
        form.addParam('trainingDataType', params.EnumParam,
                      condition=custom,
                      choices=self.ADD_DATA_TRAIN_CUSTOM_OPT,
                      default=self.ADD_DATA_TRAIN_CUSTOM_OPT_COORS,
                      label='Additional training data',
                      help='*Coordinates*: picked on the same micrographs as the inputs; '
                           'their boxes are extracted like the candidates.\n*Particles*: '
                           'particle sets of 128 px prepared as described in Preprocess '
                           '(white particles, same phase flipping).')
        form.addParam('trainTrueSetOfParticles', params.PointerParam,
                      label="Positive train particles 128px (optional)",
                      pointerClass='SetOfParticles', allowsNull=True,
                      condition="%s and trainingDataType==%d"
                                % (custom, self.ADD_DATA_TRAIN_CUSTOM_OPT_PARTS),
                      help='Additional particles (128 px, prepared as described in '
                           'Preprocess).')
        form.addParam('trainTrueSetOfCoords', params.PointerParam,
                      label="Positive coordinates(optional)",
                      pointerClass='SetOfCoordinates', allowsNull=True,
                      condition="%s and trainingDataType==%d"
                                % (custom, self.ADD_DATA_TRAIN_CUSTOM_OPT_COORS),
                      help='Additional particle coordinates on the input micrographs.')
        form.addParam('trainPosWeight', params.IntParam, default=1,
                      label="Weight of positive additional train data",
                      condition=custom, allowsNull=True,
                      help='How much more often an additional particle is drawn than a '
                           'consensus particle (weight 1). -1 gives the additional set as '
                           'a whole the same weight as the consensus particles.')
        form.addParam('trainFalseSetOfParticles', params.PointerParam,
                      label="Negative train particles 128px (optional)",
                      pointerClass='SetOfParticles', allowsNull=True,
                      condition="%s and trainingDataType==%d"
                                % (custom, self.ADD_DATA_TRAIN_CUSTOM_OPT_PARTS),
                      help='Additional non-particles (128 px, prepared as described in '
                           'Preprocess).')
        form.addParam('trainFalseSetOfCoords', params.PointerParam,
                      label="Negative coordinates(optional)",
                      pointerClass='SetOfCoordinates', allowsNull=True,
                      condition="%s and trainingDataType==%d"
                                % (custom, self.ADD_DATA_TRAIN_CUSTOM_OPT_COORS),
                      help='Coordinates of non-particles (ice, carbon, aggregates...) on '
                           'the input micrographs.')
        form.addParam('trainNegWeight', params.IntParam, default=1,
                      label="Weight of negative additional train data",
                      condition=custom, allowsNull=True,
                      help='How much more often an additional non-particle is drawn than a '
                           'background position (weight 1). -1 gives the additional set as '
                           'a whole the same weight as the background positions.')

        form.addSection(label='Streaming')
        form.addParam('doPreliminarPredictions', params.BooleanParam, default=False,
                      label="Perform preliminar predictions with on training CNN",
                      help='After every training pass that does not end training, score '
                           'all candidates so far with the networks of that pass and '
                           'publish them as preliminarOutputCoordinates and '
                           'preliminarOutputParticles (replaced at every pass). The final '
                           'outputs are scored with the final networks only.')
        form.addParam('extractingBatch', params.IntParam, default=5,
                      label="Extraction batch size",
                      validators=[params.Positive],
                      help='Micrographs per preprocessing step and per scoring step. While '
                           'the inputs are open, preprocessing waits until this many '
                           'micrographs have arrived.')
        form.addParam('trainingBatch', params.IntParam, default=5,
                      label="Training batch size",
                      validators=[params.Positive],
                      help='Micrographs per training pass, in arrival order; each pass '
                           'continues the networks of the previous one. A pass takes more '
                           'micrographs when needed to reach the %d particles (candidates '
                           'of at least two pickers) that training needs.' % MIN_POSITIVES)

    # -------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        init = self._insertFunctionStep(self.initializeStep, needsGPU=False)
        # Waits until the scheduler (_stepsCheck) sees the inputs closed and all work done.
        self._insertFunctionStep(self.closeStep, prerequisites=[init], wait=True,
                                 needsGPU=False)

    def _stepsCheck(self):
        """Every few seconds while the run is alive: read what arrived, queue the work."""
        if not os.path.exists(self._settingsFile()):
            return
        state = self._state()
        if state.closing:
            return
        try:
            self._pollInputs(state)
        except Exception as error:   # an input database busy being written: try next time
            self.warning("could not read the inputs now (%s); trying again" % error)
            return
        self._admitReadyMicrographs(state)
        self._queueWork(state)

    # -------------------------- STEPS functions -----------------------------
    def initializeStep(self):
        """Folders and the fixed settings of the run; the starting model when one is reused."""
        for folder in ("inputs", "particles", "training", "additional"):
            pwutils.makePath(self._getExtraPath(folder))
        settings = self._readSettings() or {}
        warnings = []
        if not settings.get("seed"):
            seed = self.randomSeed.get()
            if seed is None or seed < 0:
                seed = int.from_bytes(os.urandom(4), "little") & 0x3FFFFFFF
            settings["seed"] = int(seed)
        coords = self.inputCoordinates[0].get()
        mics = coords.getMicrographs()
        box = int(coords.getBoxSize())
        settings.update(box_size=box, factor=box / float(DEEP_PARTICLE_SIZE),
                        pixel_size=float(mics.getSamplingRate()),
                        phase_flip=not self.ignoreCTF.get(),
                        inverted=bool(self.skipInvert.get()),
                        radius=float(self.consensusRadius.get()))
        self.info("box %d px, micrographs downsampled by %.3f to %d px boxes; seed %d"
                  % (box, settings["factor"], DEEP_PARTICLE_SIZE, settings["seed"]))

        if self._justPredict():
            self._finalizeModel(self._startingModel())
        elif self.modelInitialization.get() == self.ADD_MODEL_TRAIN_PRETRAIN:
            # As the original: every member of the ensemble starts from the pretrained network.
            from .. import resources
            resources.replicate_model(self._startingModel(), self._getExtraPath("initial_model"),
                                      max(1, self.nModels.get()))
        elif self.modelInitialization.get() != self.ADD_MODEL_TRAIN_NEW:
            self._copyModel(self._startingModel(), self._getExtraPath("initial_model"))

        if self._trains():
            if self.addTrainingData.get() == self.ADD_DATA_TRAIN_PRECOMP:
                negatives = self._precompiledNegatives()
                if negatives is None:
                    warnings.append("Additional training data is Precompiled, but no "
                                    "precompiled negative particles are installed (%s): "
                                    "trained without them."
                                    % self._deepconsPlugin().getModelsDir())
                else:
                    self._cacheParticles(negatives, "precompiled_negatives")
            elif self.addTrainingData.get() == self.ADD_DATA_TRAIN_CUST:
                self._cacheCustomTrainingData()
            if self.doTesting.get():
                self._cacheParticleSet(self.testTrueSetOfParticles.get(), "test_true")
                self._cacheParticleSet(self.testFalseSetOfParticles.get(), "test_false")
        for message in warnings:
            self.warning(message)
        settings["warnings"] = warnings
        _writeJson(self._settingsFile(), settings)

    def prepareStep(self, stems):
        """Consensus, negatives, preprocessing and 128 px boxes of a batch of micrographs."""
        from ..core import pipeline
        from ..io.images import read_micrograph, write_stack
        from ..core.extract import extract_boxes
        work = self._work()
        settings = self._readSettings()
        for stem in stems:
            mic = self._micrographInput(stem)
            screen = self._screenSettings(settings, stem)
            started = time.time()
            table = pipeline.prepare_micrograph(mic, screen, work, self._pickerLabels())
            stack = self._stackFile(stem)
            if len(table["xy"]) and not os.path.exists(stack):
                boxes = extract_boxes(read_micrograph(work.preprocessed(stem)),
                                      table["xy"] / float(table["factor"]), DEEP_PARTICLE_SIZE)
                tmp = stack + ".tmp.mrcs"
                write_stack(tmp, boxes, settings["pixel_size"] * settings["factor"])
                os.replace(tmp, stack)
            votes = np.bincount(table["votes"], minlength=len(self.inputCoordinates) + 1)[1:]
            self.info("prepared %s: %d candidates (by number of pickers: %s), %d negatives "
                      "(%.1f s)" % (stem, len(table["votes"]), " ".join(map(str, votes)),
                                    len(table["negatives"]), time.time() - started))

    def trainStep(self, number, stems):
        """One training pass on a batch of micrographs, continuing the previous pass."""
        self._setupComputeDevice()
        from ..core.pipeline import collect_training_boxes, unlabeled_boxes
        from ..core.training import train_ensemble
        from ..errors import InputError
        settings = self._readSettings()
        passes = [p for p in self._completedPasses() if p["number"] < number]
        used = sum(p["positives"] for p in passes)
        target = self.toTrainDataSize.get()
        budget = max(target - used, 0) if target >= 0 else -1
        seed = settings["seed"] + number
        positives, negatives = collect_training_boxes(self._work(), stems, MIN_VOTES,
                                                      budget, seed)
        self.info("training pass %d on %d micrographs (%s): %d particles, %d background boxes"
                  % (number, len(stems), ", ".join(stems), len(positives), len(negatives)))
        posGroups, negGroups = [(positives, 1)], [(negatives, 1)]
        self._addTrainingExtras(posGroups, negGroups, stems)
        if self.unlabeledNegatives.get():
            unlabeled = unlabeled_boxes(self._work(), stems, MIN_VOTES)
            negGroups.append((unlabeled, 1))
            self.info("unlabeled candidates as negatives: %d (weight 1)" % len(unlabeled))
        init = passes[-1]["dir"] if passes else self._initialModelDir()
        passDir = self._passDir(number)
        try:
            manifest = train_ensemble(
                posGroups, negGroups, passDir, n_models=self._numberOfModels(init),
                epochs=self.nEpochs.get(), min_batches=self.minBatches.get() or 0,
                learning_rate=self.learningRate.get(),
                l2=self.l2RegStrength.get(), auto_stop=self.auto_stopping.get(),
                band=None, seed=seed, init_model_dir=init,
                log=self.info, metadata={"pass": number, "micrographs": list(stems),
                                         "micrograph_positives": int(len(positives))})
        except InputError as error:
            raise InputError("training pass %d (%d micrographs) cannot train: %s. Training "
                             "needs candidates picked by at least %d pickers: add "
                             "micrographs or pickers, raise 'Training batch size', or score "
                             "with an existing model (PreviousRun with skip training)."
                             % (number, len(stems), error, MIN_VOTES)) from error
        self.info("training pass %d done: mean validation accuracy %.4f"
                  % (number, manifest["mean_val_accuracy"]))
        record = self._completedPasses()[-1]
        if self._trainingReachedGoal(record, used + record["positives"]):
            self._finalizeModel(passDir)

    def finalizeModelStep(self, source):
        self._finalizeModel(source)

    def preliminaryOutputStep(self, number):
        """Score everything prepared so far with a pass that did not end training."""
        if self._hasFinalModel() or not os.path.exists(os.path.join(self._passDir(number),
                                                                     "manifest.json")):
            return
        self._setupComputeDevice()
        from ..core.ensemble import Ensemble
        from ..io.images import read_stack
        ensemble = Ensemble.load(self._passDir(number), self._views())
        work = self._work()
        scored = {}
        for stem in self._state().ledger:
            if work.is_prepared(stem) and os.path.exists(self._stackFile(stem)):
                scored[stem] = ensemble.score(read_stack(self._stackFile(stem)))
        with self._lock:
            for name in (PRELIMINARY_COORDINATES, PRELIMINARY_PARTICLES):
                pwutils.cleanPath(self._getPath(OUTPUT_FILES[name]))
            coords = self._openOutput(PRELIMINARY_COORDINATES)
            parts = self._openOutput(PRELIMINARY_PARTICLES)
            kept = 0
            for stem, scores in scored.items():
                kept += self._appendMicrograph(stem, scores, coords, parts)
            self._defineOutput(PRELIMINARY_COORDINATES, coords, pwobj.Set.STREAM_CLOSED)
            self._defineOutput(PRELIMINARY_PARTICLES, parts, pwobj.Set.STREAM_CLOSED)
        self.info("preliminary outputs of pass %d: %d of %d candidates above the threshold"
                  % (number, kept, sum(len(s) for s in scored.values())))

    def scoreStep(self, stems):
        """Final scores of a batch of micrographs, appended to the outputs."""
        from ..core.pipeline import score_micrograph
        ensemble = self._finalEnsemble()
        work = self._work()
        for stem in stems:
            score_micrograph(work, stem, ensemble)
        self._fitEvidence(stems, ensemble)
        for stem in stems:
            scores = self._finalScores(stem)
            self.info("scored %s: %d candidates, %d above the threshold"
                      % (stem, len(scores), int(self._keep(stem, scores).sum())))
        self._publish(stems)

    def testingStep(self):
        """Accuracy, ROC-AUC and precision/recall of the final model on the test sets."""
        from ..core.ensemble import evaluate_scores
        ensemble = self._finalEnsemble()
        positives = np.load(self._getExtraPath("additional", "test_true.npy"))
        negatives = np.load(self._getExtraPath("additional", "test_false.npy"))
        scores = ensemble.score(np.concatenate([positives, negatives]))
        labels = np.r_[np.ones(len(positives), int), np.zeros(len(negatives), int)]
        metrics = evaluate_scores(labels, scores)
        metrics.update(n_positive=int(len(positives)), n_negative=int(len(negatives)))
        np.savetxt(self._getExtraPath("testPredictions.txt"), np.c_[labels, scores],
                   fmt=["%d", "%.6f"], header="label score")
        _writeJson(self._getExtraPath("testing.json"), metrics)
        self.info("testing on %d particles and %d non-particles: accuracy at 0.5 %.4f, "
                  "ROC-AUC %.4f; at the best threshold %.3f: precision %.4f, recall %.4f, "
                  "accuracy %.4f, MCC %.4f"
                  % (len(positives), len(negatives), metrics["accuracy_at_0.5"],
                     metrics["roc_auc"], metrics["best_threshold"], metrics["precision"],
                     metrics["recall"], metrics["accuracy"], metrics["mcc"]))

    def closeStep(self):
        """Inputs closed and every micrograph scored: close the output streams."""
        with self._lock:
            for name in (OUTPUT_COORDINATES, OUTPUT_PARTICLES):
                self._defineOutput(name, self._openOutput(name), pwobj.Set.STREAM_CLOSED)
        counts = self._counts()
        self.info("done: %d micrographs, %d candidates scored, %d kept"
                  % (len(counts), sum(c[0] for c in counts.values()),
                     sum(c[1] for c in counts.values())))

    # -------------------------- Scheduler -----------------------------------
    def _state(self):
        if self._runtime is None:
            self._runtime = _Runtime(self)
        return self._runtime

    def _pollInputs(self, state):
        for path, reader in state.micReaders.items():
            reader.poll(lambda mic, path=path: state.addMicrograph(path, mic))
        for i, reader in enumerate(state.coordReaders):
            reader.poll(lambda coord, i=i: state.addPick(i, coord),
                        reset=lambda i=i: state.resetPicks(i))
        if state.ctfReader is not None:
            state.ctfReader.poll(state.addCTF)

    def _admitReadyMicrographs(self, state):
        """Ledger every micrograph whose picks are complete: every picker delivered or closed."""
        ready, scales = [], state.scales()
        state.dropUnknown(self.warning)
        for name in state.pendingNames():
            if name in state.ledgerNames:
                state.dropPicks(name)
                continue
            ref = state.refMics.get(name)
            if ref is None:
                if state.refReader.closed:
                    self._skip(state, name, "it is not among the micrographs of the first "
                                            "coordinate set")
                continue
            if not all(state.coordReaders[i].closed or state.hasPicks(i, name)
                       for i in range(len(state.coordReaders))):
                continue
            ctf = None
            if state.ctfReader is not None:
                ctf = state.ctfs.get(name)
                if ctf is None:
                    if state.ctfReader.closed:
                        self._skip(state, name, "no CTF was estimated for it")
                    continue
            ready.append((ref[0], name, ctf))
        for micId, name, ctf in sorted(ready):
            picks = [state.picksOf(i, name) * scales[i] for i in range(len(state.coordReaders))]
            state.admit(name, picks, ctf)

    def _skip(self, state, name, reason):
        if name not in state.skipped:
            self.warning("micrograph %s is left out: %s" % (name, reason))
            state.skipped.add(name)
        state.dropPicks(name)

    def _queueWork(self, state):
        work = self._work()
        inputsDone = state.inputsDone()
        batch = max(1, self.extractingBatch.get())

        # Prepare: batches of extractingBatch micrographs (the rest once the inputs end).
        toPrepare = []
        for stem in state.ledger:
            if stem not in state.queued["prepare"]:
                if work.is_prepared(stem) and self._stackReady(stem):
                    state.queued["prepare"].add(stem)     # done by an earlier process
                else:
                    toPrepare.append(stem)
        while toPrepare and (len(toPrepare) >= batch or inputsDone):
            chunk, toPrepare = toPrepare[:batch], toPrepare[batch:]
            state.queued["prepare"].update(chunk)
            self._queueStep(state, self.prepareStep, chunk)

        # Train, pass by pass, until the model is final.
        if not self._hasFinalModel() and not state.busy("train") and self._trains():
            self._queueTraining(state, inputsDone)

        # Score with the final model, in arrival order.
        if self._hasFinalModel():
            toScore = [s for s in state.ledger if s not in state.queued["score"]
                       and state.isPrepared(s, work)]
            size = min(batch, SCORE_BATCH_MAX)
            for start in range(0, len(toScore), size):
                chunk = toScore[start:start + size]
                state.queued["score"].update(chunk)
                self._queueStep(state, self.scoreStep, chunk)
            if (self._trains() and self.doTesting.get() and not state.queued["testing"]
                    and not os.path.exists(self._getExtraPath("testing.json"))):
                state.queued["testing"] = True
                self._queueStep(state, self.testingStep)

        # Close when nothing can come any more and everything queued is done.
        if (inputsDone and not state.pendingSteps()
                and all(s in state.queued["score"] for s in state.ledger)
                and (self._hasFinalModel() or not state.ledger)):
            if not state.ledger:
                self.warning("no micrograph had picks: the outputs are empty")
            state.closing = True
            close = self._steps[self._closeStepIndex() - 1]
            close.addPrerequisites(*state.dynamicSteps)
            close.setStatus(STATUS_NEW)
            self.updateSteps()

    def _queueTraining(self, state, inputsDone):
        passes = self._completedPasses()
        used = sum(p["positives"] for p in passes)
        if passes and self._trainingReachedGoal(passes[-1], used):
            return self._queueFinalize(state, passes[-1]["dir"])
        target = self.toTrainDataSize.get()
        if passes and target >= 0 and target - used < MIN_POSITIVES:
            return self._queueFinalize(state, passes[-1]["dir"])
        trained = set()
        for p in passes:
            trained.update(p["micrographs"])
        work = self._work()
        chosen, positives = [], 0
        for stem in state.ledger:
            if stem in trained:
                continue
            if not state.isPrepared(stem, work):
                return None          # passes follow the ledger order: wait for this one
            chosen.append(stem)
            positives += state.positives(stem, work)
            if len(chosen) >= self.trainingBatch.get() and positives >= MIN_POSITIVES:
                break
        else:
            if not inputsDone:
                return None
            if passes and positives < MIN_POSITIVES:
                if chosen:
                    self.info("the last %d micrographs (%d particles) are too few for "
                              "another training pass" % (len(chosen), positives))
                return self._queueFinalize(state, passes[-1]["dir"])
            if not chosen:
                return None
        number = len(passes) + 1
        self._queueStep(state, self.trainStep, number, chosen, kind="train")
        if self.doPreliminarPredictions.get():
            self._queueStep(state, self.preliminaryOutputStep, number, kind="train")
        return None

    def _queueFinalize(self, state, source):
        self._queueStep(state, self.finalizeModelStep, source, kind="train")

    def _queueStep(self, state, func, *args, kind=None):
        previous = state.lastStep.get(kind) if kind else None
        prerequisites = [self._initStepIndex()] + ([previous] if previous else [])
        index = self._insertFunctionStep(func, *args, prerequisites=prerequisites,
                                         needsGPU=func.__name__ != "prepareStep")
        state.dynamicSteps.append(index)
        if kind:
            state.lastStep[kind] = index
        self.updateSteps()
        return index

    def _initStepIndex(self):
        return 1

    def _closeStepIndex(self):
        return 2

    # -------------------------- Outputs -------------------------------------
    def _publish(self, stems):
        """Append the kept candidates of scored micrographs, once per micrograph and output."""
        state = self._state()
        with self._lock:
            coords = self._openOutput(OUTPUT_COORDINATES)
            parts = self._openOutput(OUTPUT_PARTICLES)
            have = {name: state.publishedIds(name, output)
                    for name, output in ((OUTPUT_COORDINATES, coords),
                                         (OUTPUT_PARTICLES, parts))}
            work = self._work()
            for stem in stems:
                micId = state.ledgerInfo[stem]["micId"]
                scores = self._finalScores(stem)
                kept = self._appendMicrograph(
                    stem, scores, None if micId in have[OUTPUT_COORDINATES] else coords,
                    None if micId in have[OUTPUT_PARTICLES] else parts)
                for name in have:
                    have[name].add(micId)
                state.recordCounts(stem, len(scores), kept)
            self._defineOutput(OUTPUT_COORDINATES, coords, pwobj.Set.STREAM_OPEN)
            self._defineOutput(OUTPUT_PARTICLES, parts, pwobj.Set.STREAM_OPEN)

    def _appendMicrograph(self, stem, scores, coords, parts):
        """Append the candidates of one micrograph scoring above the threshold; returns
        how many were kept. ``coords`` or ``parts`` None: that output already has them."""
        info = self._state().ledgerInfo[stem]
        table = self._work().load_candidates(stem)
        keep = np.flatnonzero(self._keep(stem, scores, table))
        stack = self._stackFile(stem)
        sampling = self._particleSampling()
        for index in keep:
            x, y = (int(v) for v in np.rint(table["xy"][index]))
            score = float(scores[index])
            coord = emobj.Coordinate()
            coord.setPosition(x, y)
            coord.setMicId(info["micId"])
            coord.setMicName(info["micName"])
            setattr(coord, SCORE_ATTRIBUTE, pwobj.Float(score))
            if coords is not None:
                coords.append(coord)
            if parts is not None:
                particle = emobj.Particle()
                particle.setLocation(int(index) + 1, stack)
                particle.setSamplingRate(sampling)
                coord.cleanObjId()
                particle.setCoordinate(coord)
                particle.setMicId(info["micId"])
                setattr(particle, SCORE_ATTRIBUTE, pwobj.Float(score))
                parts.append(particle)
        return len(keep)

    def _finalScores(self, stem):
        """What the outputs carry: the network's score, or (Combine with who picked) the
        posterior given it and who picked the candidate; None before the micrograph is scored.
        Scipion's coordinate sets carry no picker scores, so the evidence is presence only."""
        scores = self._work().load_scores(stem)
        path = self._evidencePath()
        if scores is None or not self.pickerEvidence.get() or not os.path.exists(path):
            return scores     # (a run made before this option has no evidence model)
        from ..core.evidence import apply_evidence
        if self._evidenceCache is None:
            with open(path) as f:
                self._evidenceCache = json.load(f)
        return apply_evidence(self._evidenceCache, self._whoPicked(stem),
                              scores).astype(np.float32)

    def _evidencePath(self):
        """Fitted on the network's scores, so one per number of views, as the scores are."""
        from ..core.pipeline import per_views
        return self._getExtraPath(per_views("evidence", self._views()) + ".json")

    def _fitEvidence(self, stems, ensemble):
        """Fit the evidence model once, on the training micrographs (without training, on the
        first scored batch); later batches reuse it, so a micrograph's score never depends on
        what arrived after it, nor on the batch sizes."""
        path = self._evidencePath()
        if not self.pickerEvidence.get() or os.path.exists(path):
            return
        from ..core.evidence import fit_evidence
        from ..core.pipeline import score_micrograph
        work = self._work()
        stems = [s for p in self._completedPasses() for s in p["micrographs"]] or list(stems)
        scores = [score_micrograph(work, stem, ensemble) for stem in stems]
        model = fit_evidence(np.concatenate([self._whoPicked(s) for s in stems]),
                             np.concatenate(scores))
        model["micrographs"] = stems
        _writeJson(path, model)
        self.info("evidence model fitted on %d micrographs: prior %.3f"
                  % (len(stems), model["prior"]))

    def _whoPicked(self, stem):
        from ..core.evidence import presence_ranks
        return presence_ranks(self._work().load_candidates(stem)["members"])

    def _keep(self, stem, scores, table=None):
        """Which candidates of a micrograph are output: one per particle (duplicates merged),
        scoring above the threshold (any score with -1)."""
        from ..core.consensus import suppress_duplicates
        table = self._work().load_candidates(stem) if table is None else table
        radius = (self.dedupeRadius.get() or 0) * self.inputCoordinates[0].get().getBoxSize()
        keep = suppress_duplicates(table["xy"], scores, radius)
        threshold = self.threshold.get()
        return keep if threshold < 0 else keep & (scores > threshold)

    def _openOutput(self, name):
        """The output set of that name, opened for appending (created when absent)."""
        path = self._getPath(OUTPUT_FILES[name])
        isCoordinates = name in (OUTPUT_COORDINATES, PRELIMINARY_COORDINATES)
        SetClass = emobj.SetOfCoordinates if isCoordinates else emobj.SetOfParticles
        if os.path.exists(path):
            output = SetClass(filename=path)
            output.loadAllProperties()
            output.enableAppend()
        else:
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
        settings = self._readSettings()
        return settings["pixel_size"] * settings["factor"]

    # -------------------------- Models --------------------------------------
    def _justPredict(self):
        return (self.modelInitialization.get() != self.ADD_MODEL_TRAIN_NEW
                and bool(self.skipTraining.get()))

    def _trains(self):
        return not self._justPredict()

    def _hasFinalModel(self):
        return os.path.exists(self._getExtraPath("model", "manifest.json"))

    def _finalizeModel(self, source):
        """The final model: a copy of the last training pass (or of the reused model), after
        the self-training rounds if any."""
        if self._hasFinalModel():
            return
        if self._trains():
            source = self._selfTrain(source)
        self._copyModel(source, self._getExtraPath("model"))
        self.info("final model: %s" % source)

    def _selfTrain(self, source):
        """Continue ``source`` on its own confident answers on the training micrographs, round
        after round; returns the last round's model. A finished round is not redone."""
        from ..core.ensemble import Ensemble
        from ..core.pipeline import score_candidates, self_training_boxes
        from ..core.training import train_ensemble
        passes = self._completedPasses()
        stems = [stem for p in passes for stem in p["micrographs"]]
        work, settings = self._work(), self._readSettings()
        radius = (self.dedupeRadius.get() or 0) * self.inputCoordinates[0].get().getBoxSize()
        for number in range(1, (self.selfTrainingRounds.get() or 0) + 1):
            target = self._getExtraPath("model_round%d" % number)
            if not os.path.exists(os.path.join(target, "manifest.json")):
                ensemble = Ensemble.load(source, self._views())
                scores = [(stem, score_candidates(work, stem, ensemble)) for stem in stems]
                positives, rejected, background = self_training_boxes(work, scores, radius)
                if len(positives) < SELF_TRAINING_MIN_ACCEPTED:
                    self.info("self-training round %d: only %d confident acceptances, keeping "
                              "the model as it is" % (number, len(positives)))
                    break
                self.info("self-training round %d on %d micrographs: %d confident "
                          "acceptances, %d confident rejections, %d background boxes"
                          % (number, len(stems), len(positives), len(rejected), len(background)))
                train_ensemble([(positives, 1)], [(background, 1), (rejected, 1)], target,
                               n_models=self._numberOfModels(source), epochs=self.nEpochs.get(),
                               min_batches=self.minBatches.get() or 0,
                               learning_rate=self.learningRate.get(),
                               l2=self.l2RegStrength.get(), auto_stop=self.auto_stopping.get(),
                               seed=settings["seed"] + 1000 * number, init_model_dir=source,
                               log=self.info, metadata={"self_training_round": number},
                               min_positives=SELF_TRAINING_MIN_ACCEPTED)
            source = target
        return source

    @staticmethod
    def _copyModel(source, target):
        tmp = target + ".tmp"
        pwutils.cleanPath(tmp)
        shutil.copytree(source, tmp)
        pwutils.cleanPath(target)
        os.replace(tmp, target)

    def _finalEnsemble(self):
        if self._ensembleCache is None:
            self._setupComputeDevice()
            from ..core.ensemble import Ensemble
            self._ensembleCache = Ensemble.load(self._getExtraPath("model"), self._views())
        return self._ensembleCache

    def _startingModel(self):
        """Folder of the model reused by Pretrained or PreviousRun (None for New)."""
        mode = self.modelInitialization.get()
        if mode == self.ADD_MODEL_TRAIN_PREVRUN:
            previous = self.continueRun.get()
            return None if previous is None else previous._getExtraPath("model")
        if mode == self.ADD_MODEL_TRAIN_PRETRAIN:
            from .. import resources
            return self._deepconsPlugin().getPretrainedModel(
                not self.ignoreCTF.get(), resources.pretrained_size(self.toTrainDataSize.get()))
        return None

    def _initialModelDir(self):
        folder = self._getExtraPath("initial_model")
        return folder if os.path.exists(os.path.join(folder, "manifest.json")) else None

    def _networkSize(self):
        size = self.toTrainDataSize.get()
        return size_band(size) if size and size > 0 else None

    def _numberOfModels(self, init):
        if init and self.modelInitialization.get() == self.ADD_MODEL_TRAIN_PREVRUN:
            with open(os.path.join(init, "manifest.json")) as f:
                return int(json.load(f)["n_models"])
        return max(1, self.nModels.get())

    def _completedPasses(self):
        """Finished training passes, in order: their micrographs and positives."""
        passes = []
        number = 1
        while os.path.exists(os.path.join(self._passDir(number), "manifest.json")):
            with open(os.path.join(self._passDir(number), "manifest.json")) as f:
                manifest = json.load(f)
            extra = manifest.get("extra", {})
            passes.append({"number": number, "dir": self._passDir(number),
                           "micrographs": extra.get("micrographs", []),
                           "positives": int(extra.get("micrograph_positives", 0)),
                           "mean_val_accuracy": float(manifest["mean_val_accuracy"])})
            number += 1
        return passes

    def _trainingReachedGoal(self, record, used):
        target = self.toTrainDataSize.get()
        if record["mean_val_accuracy"] > self.maxValAcc.get():
            self.info("mean validation accuracy %.4f is above %.4f: training ends"
                      % (record["mean_val_accuracy"], self.maxValAcc.get()))
            return True
        if 0 <= target <= used:
            self.info("%d particles used for training (expected %d): training ends"
                      % (used, target))
            return True
        return False

    def _passDir(self, number):
        return self._getExtraPath("training", "pass_%03d" % number)

    def _setupComputeDevice(self):
        """GPU choice and CPU threads, set before TensorFlow starts in this process."""
        if getattr(self, "_deviceReady", False):
            return
        if self.useGpu.get():
            gpus = self.getGpuList()
            device = str(gpus[0]) if gpus else "0"
        else:
            device = "-1"
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        from ..cli.common import set_threads
        threads = max(1, self.numberOfThreads.get() or 1)
        set_threads(threads)
        try:
            import tensorflow as tf
            visible = [d.name for d in tf.config.list_physical_devices("GPU")]
        except (ImportError, RuntimeError):
            visible = []
        self.info("CUDA_VISIBLE_DEVICES=%s, GPUs seen by TensorFlow: %s, CPU threads %d"
                  % (device, ", ".join(visible) or "none", threads))
        self._deviceReady = True

    # -------------------------- Additional data -----------------------------
    def _precompiledNegatives(self):
        return self._deepconsPlugin().getPrecompiledNegatives(not self.ignoreCTF.get())

    def _cacheCustomTrainingData(self):
        if self.trainingDataType.get() == self.ADD_DATA_TRAIN_CUSTOM_OPT_PARTS:
            for pointer, name in ((self.trainTrueSetOfParticles, "train_true"),
                                  (self.trainFalseSetOfParticles, "train_false")):
                if pointer.get() is not None:
                    self._cacheParticleSet(pointer.get(), name)
        else:
            for pointer, name in ((self.trainTrueSetOfCoords, "coords_true"),
                                  (self.trainFalseSetOfCoords, "coords_false")):
                if pointer.get() is not None:
                    self._cacheCoordinates(pointer.get(), name)

    def _cacheParticleSet(self, particles, name):
        """The images of a particle set as one (n, 128, 128) array."""
        from pwem.emlib.image import ImageHandler
        handler = ImageHandler()
        images = [np.asarray(handler.read(p.getLocation()).getData(), dtype=np.float32)
                  for p in particles.iterItems()]
        boxes = np.stack(images) if images else np.zeros((0, DEEP_PARTICLE_SIZE,
                                                          DEEP_PARTICLE_SIZE), np.float32)
        np.save(self._getExtraPath("additional", name + ".npy"), boxes.reshape(
            (-1, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE)))
        self.info("%s: %d particles from %s" % (name, len(boxes), particles.getFileName()))

    def _cacheParticles(self, path, name):
        from .. import resources
        boxes = resources.load_negatives(path)
        np.save(self._getExtraPath("additional", name + ".npy"), boxes)
        self.info("%s: %d boxes from %s" % (name, len(boxes), path))

    def _cacheCoordinates(self, coordSet, name):
        """Additional coordinates by micrograph name, in the first input set's pixels."""
        refSampling = self.inputCoordinates[0].get().getMicrographs().getSamplingRate()
        scale = coordSet.getMicrographs().getSamplingRate() / refSampling
        names = {m.getObjId(): m.getMicName() for m in coordSet.getMicrographs().iterItems()}
        byMic = {}
        for coord in coordSet.iterItems():
            micName = names.get(coord.getMicId(), coord.getMicName())
            byMic.setdefault(micName, []).append((coord.getX() * scale, coord.getY() * scale))
        np.savez(self._getExtraPath("additional", name + ".npz"),
                 **{"mic_%d" % i: np.array(xy) for i, xy in enumerate(byMic.values())},
                 names=np.array(list(byMic.keys())))
        self.info("%s: %d coordinates on %d micrographs" % (
            name, sum(len(v) for v in byMic.values()), len(byMic)))

    def _addTrainingExtras(self, posGroups, negGroups, stems):
        """Custom particles or coordinates, and precompiled negatives, with their weights."""
        from ..core.extract import extract_boxes
        from ..io.images import read_micrograph
        folder = self._getExtraPath("additional")
        weights = {"true": self.trainPosWeight.get() or 1, "false": self.trainNegWeight.get() or 1}
        for kind, groups in (("true", posGroups), ("false", negGroups)):
            particles = os.path.join(folder, "train_%s.npy" % kind)
            if os.path.exists(particles):
                boxes = np.load(particles)
                groups.append((boxes, weights[kind]))
                self.info("additional %s particles: %d (weight %s)"
                          % ("positive" if kind == "true" else "negative", len(boxes),
                             weights[kind]))
            coordinates = os.path.join(folder, "coords_%s.npz" % kind)
            if os.path.exists(coordinates):
                state, work = self._state(), self._work()
                with np.load(coordinates) as data:
                    index = {str(n): "mic_%d" % i for i, n in enumerate(data["names"])}
                    boxes = []
                    for stem in stems:
                        key = index.get(state.ledgerInfo[stem]["micName"])
                        if key is None:
                            continue
                        factor = float(work.load_candidates(stem)["factor"])
                        boxes.append(extract_boxes(read_micrograph(work.preprocessed(stem)),
                                                   data[key] / factor, DEEP_PARTICLE_SIZE))
                if boxes:
                    boxes = np.concatenate(boxes)
                    groups.append((boxes, weights[kind]))
                    self.info("additional %s coordinates on these micrographs: %d (weight %s)"
                              % ("positive" if kind == "true" else "negative", len(boxes),
                                 weights[kind]))
        precompiled = os.path.join(folder, "precompiled_negatives.npy")
        if os.path.exists(precompiled):
            boxes = np.load(precompiled)
            negGroups.append((boxes, 1))
            self.info("precompiled negatives: %d (weight 1)" % len(boxes))

    # -------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        if len(self.inputCoordinates) == 0:
            return ["Choose the coordinate sets of at least one picker in 'Input "
                    "coordinates'."]
        first = self.inputCoordinates[0].get()
        box = first.getBoxSize() if first is not None else None
        if box is not None and box < DEEP_PARTICLE_SIZE:
            errors.append("The box size of the first input coordinates is %d px, under the "
                          "%d px that Deep Consensus needs. Were these coordinates picked "
                          "on downsampled micrographs? Use coordinates on the original "
                          "micrographs, with the box size in their pixels."
                          % (box, DEEP_PARTICLE_SIZE))
        if (self.selfTrainingRounds.get() or 0) < 0:
            errors.append("'Self-training rounds' is %d: give 0 (off) or a number of rounds."
                          % self.selfTrainingRounds.get())
        if not self.ignoreCTF.get() and self.ctfRelations.get() is None:
            errors.append("Phase flipping needs the CTFs of the micrographs: choose a CTF "
                          "estimation in 'CTF estimation', or set 'Ignore CTF' to Yes.")
        custom = (self._trains() and self.addTrainingData.get() == self.ADD_DATA_TRAIN_CUST)
        usesParticles = custom and (self.trainingDataType.get()
                                    == self.ADD_DATA_TRAIN_CUSTOM_OPT_PARTS)
        testing = self._trains() and self.doTesting.get()
        for pointer, label, used in (
                (self.trainTrueSetOfParticles, "Positive train particles", usesParticles),
                (self.trainFalseSetOfParticles, "Negative train particles", usesParticles),
                (self.testTrueSetOfParticles, "Set of positive test particles", testing),
                (self.testFalseSetOfParticles, "Set of negative test particles", testing)):
            particles = pointer.get()
            if used and particles is not None and particles.getXDim() != DEEP_PARTICLE_SIZE:
                errors.append("'%s' has %s px particles; they must be %d px, extracted "
                              "and preprocessed as described in the Preprocess tab."
                              % (label, particles.getXDim(), DEEP_PARTICLE_SIZE))
        if len(self.inputCoordinates) == 1 and self._trains():
            errors.append("Only one coordinate set is given, but training needs at least "
                          "two pickers (particles are the candidates they agree on). Add "
                          "another coordinate set, or choose a Pretrained or PreviousRun "
                          "model with 'Skip training' set to Yes to score these coordinates "
                          "directly.")
        target = self.toTrainDataSize.get()
        if self._trains() and target is not None and 0 <= target < MIN_POSITIVES:
            errors.append("'Expected number of particles to use for training' is %d: "
                          "training needs at least %d particles; give at least %d, or -1 to "
                          "use all." % (target, MIN_POSITIVES, MIN_POSITIVES))
        mode = self.modelInitialization.get()
        if mode == self.ADD_MODEL_TRAIN_PREVRUN:
            previous = self.continueRun.get()
            if previous is None:
                errors.append("Model type is PreviousRun: choose the run whose model is "
                              "reused in 'Select previous run'.")
            elif not os.path.exists(previous._getExtraPath("model", "manifest.json")):
                errors.append("The previous run %s has no trained model (it has not "
                              "finished training): wait for it to finish, or choose another "
                              "run or the New model type." % previous.getRunName())
            else:
                errors += self._phaseFlipErrors(previous._getExtraPath("model"),
                                                previous._getExtraPath("settings.json"))
        elif mode == self.ADD_MODEL_TRAIN_PRETRAIN:
            if self._startingModel() is None:
                from .. import resources
                errors.append("Model type is Pretrained, but no pretrained %s model for %s "
                              "micrographs is installed in %s (the plugin ships them; "
                              "regenerate them with scripts/train_shipped_models.py). Choose "
                              "New, or PreviousRun to reuse a model trained in this project."
                              % (resources.pretrained_size(self.toTrainDataSize.get()),
                                 "phase-flipped" if not self.ignoreCTF.get() else "unflipped",
                                 self._deepconsPlugin().getModelsDir()))
            else:
                errors += self._phaseFlipErrors(self._startingModel())
        if testing and (self.testTrueSetOfParticles.get() is None
                        or self.testFalseSetOfParticles.get() is None):
            errors.append("Testing needs both test sets: choose the positive and the "
                          "negative test particles, or set 'Perform testing' to No.")
        if custom:
            given = ((self.trainTrueSetOfParticles, self.trainFalseSetOfParticles)
                     if usesParticles else
                     (self.trainTrueSetOfCoords, self.trainFalseSetOfCoords))
            if all(p.get() is None for p in given):
                errors.append("Additional training data is Custom but no %s are given: "
                              "choose a positive or a negative set, or set Additional "
                              "training data to None."
                              % ("particles" if usesParticles else "coordinates"))
        return errors

    def _phaseFlipErrors(self, modelDir, settingsFile=None):
        """A model trained with phase flipping cannot score unflipped boxes, nor the other way
        round: say so instead of running."""
        from .. import resources
        from ..errors import InputError
        trained = resources.model_phase_flip(modelDir)
        if trained is None and settingsFile and os.path.exists(settingsFile):
            with open(settingsFile) as f:
                trained = json.load(f).get("phase_flip")
        if trained is None or bool(trained) == (not self.ignoreCTF.get()):
            return []
        try:
            resources.check_phase_flip(modelDir, not self.ignoreCTF.get(), "Set 'Ignore CTF' "
                                       "to %s as in the run that trained it, or choose another "
                                       "model." % ("No" if trained else "Yes"))
        except InputError as error:
            return [str(error)]
        # Only the previous run's settings knew: the same refusal, worded here.
        return ["The model of the previous run was trained %s phase flipping, and this run %s: "
                "set 'Ignore CTF' to %s as in that run, or choose another model."
                % ("with" if trained else "without",
                   "does not phase-flip" if trained else "phase-flips",
                   "No" if trained else "Yes")]

    def _warnings(self):
        warnings = []
        if (self._trains() and self.addTrainingData.get() == self.ADD_DATA_TRAIN_PRECOMP
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
        settings = self._readSettings()
        if settings:
            summary.append("Relative radius %g (%.0f px); box %d px, downsampled by %.3f"
                           % (settings["radius"], settings["radius"] * settings["box_size"],
                              settings["box_size"], settings["factor"]))
            summary.extend("WARNING: %s" % w for w in settings.get("warnings", []))
        counts = self._counts()
        if counts:
            threshold = self.threshold.get()
            summary.append("%d micrographs scored: %d candidates, %d kept %s"
                           % (len(counts), sum(c[0] for c in counts.values()),
                              sum(c[1] for c in counts.values()),
                              "(all, threshold -1)" if threshold < 0
                              else "with a score above %g" % threshold))
        passes = self._completedPasses()
        if passes:
            summary.append("Training: %d pass(es) on %d micrographs, %d particles; mean "
                           "validation accuracy reached %.4f (stop at %g)"
                           % (len(passes), sum(len(p["micrographs"]) for p in passes),
                              sum(p["positives"] for p in passes),
                              passes[-1]["mean_val_accuracy"], self.maxValAcc.get()))
        if self._hasFinalModel():
            with open(self._getExtraPath("model", "manifest.json")) as f:
                manifest = json.load(f)
            if not passes:
                summary.append("Scored with a reused model (no training); its mean "
                               "validation accuracy was %.4f" % manifest["mean_val_accuracy"])
            summary.append("Final model: %d %s network(s)" % (manifest["n_models"],
                                                             manifest.get("band")))
        testing = self._getExtraPath("testing.json")
        if os.path.exists(testing):
            with open(testing) as f:
                m = json.load(f)
            summary.append("Testing: accuracy %.3f, ROC-AUC %.3f; at threshold %.3f "
                           "precision %.3f, recall %.3f"
                           % (m["accuracy_at_0.5"], m["roc_auc"], m["best_threshold"],
                              m["precision"], m["recall"]))
        summary.append("Each output item has its score in _xmipp_%s; Analyze Results shows "
                       "the histogram and the best and worst particles." % SCORE_LABEL)
        return summary

    def _citations(self):
        return [CITATION]

    def _methods(self):
        settings = self._readSettings()
        if not settings:
            return []
        counts = self._counts()
        methods = [
            "The picks of %d particle pickers were screened with Deep Consensus [%s]: picks "
            "closer than %g of the %d px box were merged into candidates; candidates found by "
            "at least two pickers were used as particles and random background positions as "
            "non-particles to train an ensemble of convolutional networks on 128 px boxes "
            "(micrographs downsampled by %.2f%s), which scored every candidate."
            % (len(self.inputCoordinates), CITATION, settings["radius"],
               settings["box_size"], settings["factor"],
               ", phase-flipped" if settings.get("phase_flip") else "")]
        if counts:
            threshold = self.threshold.get()
            methods.append("%d of %d candidates were kept%s."
                           % (sum(c[1] for c in counts.values()),
                              sum(c[0] for c in counts.values()),
                              "" if threshold < 0 else " (score above %g)" % threshold))
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

    def _settingsFile(self):
        return self._getExtraPath("settings.json")

    def _readSettings(self):
        path = self._settingsFile()
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def _work(self):
        from ..core.pipeline import WorkFolder
        return WorkFolder(self._getExtraPath("work"), self._views())

    def _views(self):
        return VIEW_CHOICES[self.scoringViews.get()]

    def _stackFile(self, stem):
        return self._getExtraPath("particles", stem + ".mrcs")

    def _stackReady(self, stem):
        return (os.path.exists(self._stackFile(stem))
                or len(self._work().load_candidates(stem)["xy"]) == 0)

    def _pickerLabels(self):
        return ["coordinate set %d (%s)" % (i + 1, p.getExtended() or "")
                for i, p in enumerate(self.inputCoordinates)]

    def _micrographInput(self, stem):
        """The engine's view of a ledgered micrograph: its file and each picker's picks."""
        from ..core.pipeline import MicrographInput
        from ..io.coordinates import Coordinates
        info = self._state().ledgerInfo[stem]
        path = info["path"]
        if os.path.splitext(path)[1].lower() not in ENGINE_FORMATS:
            from pwem.emlib.image import ImageHandler
            converted = self._getTmpPath(stem + ".mrc")
            if not os.path.exists(converted):
                ImageHandler().convert(path, converted)
            path = converted
        with np.load(self._getExtraPath("inputs", stem + ".npz")) as data:
            picks = [Coordinates(data["picks_%d" % i], None)
                     for i in range(len(self.inputCoordinates))]
        return MicrographInput(stem=stem, path=path, picks=picks)

    def _screenSettings(self, settings, stem):
        from ..core.pipeline import ScreenSettings
        ctf = None
        if settings["phase_flip"]:
            from ..core.ctf import CTFParams
            with np.load(self._getExtraPath("inputs", stem + ".npz")) as data:
                ctf = {stem: CTFParams(*[float(v) for v in data["ctf"]])}
        return ScreenSettings(box_size=settings["box_size"], radius=settings["radius"],
                              min_votes=MIN_VOTES, inverted=settings["inverted"], ctf=ctf,
                              pixel_size=settings["pixel_size"],
                              train_size=self.toTrainDataSize.get(), seed=settings["seed"])

    def _counts(self):
        """{stem: (candidates, kept)} of every published micrograph."""
        path = self._getExtraPath("counts.tsv")
        counts = {}
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        counts[parts[0]] = (int(parts[1]), int(parts[2]))
        return counts


class _Runtime:
    """What the scheduler knows in this process: the inputs read so far, the ledger, and the
    steps it queued. Rebuilt from the files when a stopped run continues."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.closing = False
        self.queued = {"prepare": set(), "score": set(), "testing": False}
        self.dynamicSteps = []
        self.lastStep = {}
        self.skipped = set()
        self._positives = {}
        self._prepared = set()
        self._published = {}
        self._counted = set(protocol._counts())

        pointers = list(protocol.inputCoordinates)
        coordSets = [p.get() for p in pointers]
        micSets = [c.getMicrographs() for c in coordSets]
        refSampling = micSets[0].getSamplingRate()
        self._scales = [m.getSamplingRate() / refSampling for m in micSets]
        self.micReaders, self.micNames, self.micIds, self._setOfMics = {}, {}, {}, []
        for mics in micSets:
            path = mics.getFileName()
            if path not in self.micReaders:
                self.micReaders[path] = _StreamReader(emobj.SetOfMicrographs, path)
                self.micNames[path], self.micIds[path] = {}, {}
            self._setOfMics.append(path)
        self.refReader = self.micReaders[self._setOfMics[0]]
        self.refMics = {}              # micName -> (micId, absolute path) in the first set
        self.coordReaders = [_StreamReader(emobj.SetOfCoordinates, c.getFileName())
                             for c in coordSets]
        self.picks = [{} for _ in coordSets]   # per set: micId -> list of (x, y)
        self.ctfReader, self.ctfs = None, {}
        if not protocol.ignoreCTF.get() and protocol.ctfRelations.get() is not None:
            self.ctfReader = _StreamReader(emobj.SetOfCTF, protocol.ctfRelations.get().getFileName())
            acquisition = micSets[0].getAcquisition()
            self._acquisition = (acquisition.getVoltage(), acquisition.getSphericalAberration(),
                                 acquisition.getAmplitudeContrast())

        self.ledger, self.ledgerInfo, self.ledgerNames = [], {}, set()
        ledgerPath = protocol._getExtraPath("micrographs.tsv")
        if os.path.exists(ledgerPath):
            with open(ledgerPath) as f:
                for line in f:
                    fields = line.rstrip("\n").split("\t")
                    if len(fields) == 4 and os.path.exists(
                            protocol._getExtraPath("inputs", fields[0] + ".npz")):
                        self._remember(fields[0], int(fields[1]), fields[2], fields[3])
            protocol.info("continuing: %d micrographs already admitted" % len(self.ledger))

    # inputs ------------------------------------------------------------------
    def addMicrograph(self, setPath, mic):
        micId, name = mic.getObjId(), mic.getMicName()
        self.micNames[setPath][micId] = name
        self.micIds[setPath][name] = micId
        if setPath == self._setOfMics[0]:
            self.refMics[name] = (micId, os.path.abspath(mic.getFileName()))

    def scales(self):
        return self._scales

    def _micName(self, setIndex, micId):
        return self.micNames[self._setOfMics[setIndex]].get(micId)

    def addPick(self, setIndex, coord):
        micId = coord.getMicId()
        name = self._micName(setIndex, micId)
        if name is not None and name in self.ledgerNames:
            return             # late picks of a micrograph already taken
        self.picks[setIndex].setdefault(micId, []).append((coord.getX(), coord.getY()))

    def resetPicks(self, setIndex):
        self.picks[setIndex].clear()

    def addCTF(self, ctf):
        try:
            name = ctf.getMicrograph().getMicName()
        except AttributeError:
            name = None
        if name is None:
            name = self.micNames[self._setOfMics[0]].get(ctf.getObjId())
        phase = ctf.getPhaseShift()
        self.ctfs[name] = (ctf.getDefocusU(), ctf.getDefocusV(), ctf.getDefocusAngle(),
                           *self._acquisition, float(phase) if phase else 0.0)

    def pendingNames(self):
        names = set()
        for i, picks in enumerate(self.picks):
            for micId in picks:
                name = self._micName(i, micId)
                if name is not None:
                    names.add(name)
        return names

    def hasPicks(self, setIndex, name):
        micId = self.micIds[self._setOfMics[setIndex]].get(name)
        return micId is not None and micId in self.picks[setIndex]

    def picksOf(self, setIndex, name):
        micId = self.micIds[self._setOfMics[setIndex]].get(name)
        xy = self.picks[setIndex].get(micId, [])
        return np.array(xy, dtype=float).reshape(-1, 2)

    def dropPicks(self, name):
        for i, picks in enumerate(self.picks):
            micId = self.micIds[self._setOfMics[i]].get(name)
            picks.pop(micId, None)

    def dropUnknown(self, warn):
        """Picks on micrographs that their (closed) micrograph set does not have."""
        for i, picks in enumerate(self.picks):
            reader = self.micReaders[self._setOfMics[i]]
            if reader.closed:
                for micId in [m for m in picks if self._micName(i, m) is None]:
                    warn("coordinate set %d has picks on micrograph id %s, which is not in "
                         "its micrographs: they are ignored" % (i + 1, micId))
                    del picks[micId]

    def inputsDone(self):
        """Every coordinate stream closed and every micrograph with picks taken or left out."""
        return (all(r.closed for r in self.coordReaders)
                and not any(self.picks))

    # ledger --------------------------------------------------------------------
    def admit(self, name, picks, ctf):
        """Save a micrograph's picks and append it to the ledger (in that order)."""
        protocol = self.protocol
        micId, path = self.refMics[name]
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(os.path.basename(name))[0])
        if stem in self.ledgerInfo:
            stem = "%s_%d" % (stem, micId)
        arrays = {"picks_%d" % i: p for i, p in enumerate(picks)}
        if ctf is not None:
            arrays["ctf"] = np.array(ctf, dtype=float)
        inputs = protocol._getExtraPath("inputs", stem + ".npz")
        np.savez(inputs + ".tmp.npz", **arrays)
        os.replace(inputs + ".tmp.npz", inputs)
        with open(protocol._getExtraPath("micrographs.tsv"), "a") as f:
            f.write("%s\t%d\t%s\t%s\n" % (stem, micId, name, path))
        self._remember(stem, micId, name, path)
        self.dropPicks(name)

    def _remember(self, stem, micId, name, path):
        self.ledger.append(stem)
        self.ledgerInfo[stem] = {"micId": micId, "micName": name, "path": path}
        self.ledgerNames.add(name)

    def isPrepared(self, stem, work):
        """Prepared with its boxes written (remembered once true: it never changes back)."""
        if stem not in self._prepared:
            if not (work.is_prepared(stem) and self.protocol._stackReady(stem)):
                return False
            self._prepared.add(stem)
        return True

    def positives(self, stem, work):
        if stem not in self._positives:
            self._positives[stem] = int((work.load_candidates(stem)["votes"] >= MIN_VOTES).sum())
        return self._positives[stem]

    # steps ---------------------------------------------------------------------
    def busy(self, kind):
        index = self.lastStep.get(kind)
        return index is not None and not self.protocol._steps[index - 1].isFinished()

    def pendingSteps(self):
        steps = self.protocol._steps
        return any(not steps[i - 1].isFinished() for i in self.dynamicSteps)

    # outputs -------------------------------------------------------------------
    def publishedIds(self, name, output):
        """Micrograph ids already in an output (read from the set once per process)."""
        if name not in self._published:
            self._published[name] = (set(output.getUniqueValues("_micId"))
                                     if output.getSize() else set())
        return self._published[name]

    def recordCounts(self, stem, candidates, kept):
        if stem not in self._counted:
            with open(self.protocol._getExtraPath("counts.tsv"), "a") as f:
                f.write("%s\t%d\t%d\n" % (stem, candidates, kept))
            self._counted.add(stem)


class _StreamReader:
    """The items of a set that may still be growing, each handed over once.

    Each poll costs O(new items): items are read past the highest id seen. Should ids not
    grow with insertion (the count falls short of the set size), the whole set is read again
    after ``reset``. ``closed`` is read before the items, so once it is True every item has
    been handed over.
    """

    def __init__(self, SetClass, filename):
        self.SetClass, self.filename = SetClass, filename
        self.lastId, self.count, self.closed = 0, 0, False

    def poll(self, onItem, reset=None):
        if self.closed:
            return False
        items = self.SetClass(filename=self.filename)
        try:
            items.loadProperty("_streamState")
            items.loadProperty("_size")
            closed, size = items.isStreamClosed(), items.getSize() or 0
            if size == self.count and not closed:
                return False
            for item in items.iterItems(where="id > %d" % self.lastId):
                onItem(item)
                self.lastId = max(self.lastId, item.getObjId())
                self.count += 1
            if self.count < size:
                if reset is not None:
                    reset()
                self.lastId, self.count = 0, 0
                for item in items.iterItems():
                    onItem(item)
                    self.lastId = max(self.lastId, item.getObjId())
                    self.count += 1
        finally:
            items.close()
        self.closed = closed
        return True


def _writeJson(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=1)
    os.replace(tmp, path)
