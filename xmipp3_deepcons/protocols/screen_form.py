"""The form of XmippProtScreenDeepConsensus: the original's parameters (names, types, enum
values, defaults, conditions, expert levels), so that existing projects and workflow templates
load, and the additions of this plugin, each marked "not in Xmipp's form" in its help."""
import pyworkflow.protocol.params as params
from pwem.constants import RELATION_CTF

from ..constants import (DEFAULT_DEDUPE_RADIUS, DEFAULT_EPOCHS, DEFAULT_L2, DEFAULT_LEARNING_RATE,
                         DEFAULT_MAX_VAL_ACC, DEFAULT_MIN_BATCHES, DEFAULT_MODELS, DEFAULT_RADIUS,
                         DEFAULT_THRESHOLD, DEFAULT_TRAIN_SIZE, DEFAULT_VIEWS, MIN_POSITIVES,
                         SELF_TRAINING_MIN_ACCEPTED, SELF_TRAINING_NEGATIVE,
                         SELF_TRAINING_POSITIVE, VIEW_CHOICES)


def define_params(self, form):
    trains = "modelInitialization==%d or not skipTraining" % self.ADD_MODEL_TRAIN_NEW
    scoresOnly = "modelInitialization!=%d and skipTraining" % self.ADD_MODEL_TRAIN_NEW
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
                  label='Skip training?',
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
                       "network's score and which pickers picked the candidate, fitted once "
                       "on the training micrographs (kept in extra/evidence*.json). No: the "
                       "network's score alone, as the original (not in Xmipp's form).")
    form.addParam('pickersShareMistakes', params.BooleanParam, default=True,
                  condition='pickerEvidence', expertLevel=params.LEVEL_ADVANCED,
                  label="Pickers may agree on junk?",
                  help="Do your pickers tend to pick the same junk (ice, carbon edges, "
                       "aggregates, denatured particles)? Pickers trained on similar data "
                       "often do.\n"
                       "*Yes* (safe choice): how much to trust each combination of pickers "
                       "(say, picked by crYOLO and Topaz but not by the third) is learnt "
                       "together with this run's network, and also judged by the pretrained "
                       "network shipped with the plugin, which never learnt from your pickers "
                       "and so is not fooled by junk they agree on; the score combines both. "
                       "Every candidate is therefore also scored by that network (a little "
                       "more time).\n"
                       "*No*: each picker is trusted as far as it agrees with the others on "
                       "this data. Better when one picker is precise on its own and the "
                       "pickers make different mistakes; wrong when they make the same "
                       "ones.\n"
                       "When the run only scores with a pretrained or previous network (Skip "
                       "training), both choices work the same way. Not in Xmipp's form.")
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
    form.addParam('fullScoring', params.BooleanParam, default=False,
                  label="Score every candidate with the whole ensemble?",
                  expertLevel=params.LEVEL_ADVANCED,
                  help="No (default): each candidate gets one network's look in one view, "
                       "and the whole ensemble (and the shipped network) only where the "
                       "decision could still change: several times cheaper, nearly the same "
                       "particles (EMPIAR-10017: F1 0.877 against 0.878). Yes: every "
                       "network in every view for "
                       "every candidate (--full-scoring; not in Xmipp's form).")

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
                  help='Passes over the training particles in each training pass. '
                       'Training also runs at least "Minimum training batches" batches of '
                       '64 boxes (%d by default, Advanced level): with few particles, a few '
                       'epochs would be only a few dozen batches, so more are run. The log '
                       'counts in Keras epochs of 50 batches: "up to %d epochs of 50 '
                       'batches" is those %d batches, and at least one Keras epoch is '
                       'always run.' % (DEFAULT_MIN_BATCHES, -(-DEFAULT_MIN_BATCHES // 50),
                                        DEFAULT_MIN_BATCHES))
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
                  condition="%s or modelInitialization==%d" % (trains,
                                                              self.ADD_MODEL_TRAIN_PRETRAIN),
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
    form.addParam('noteNoTraining', params.LabelParam, condition=scoresOnly,
                  label='Not used: this run does not train (Skip training is Yes), it '
                        'scores with the networks as they are.',
                  help='Additional training data is used only when the run trains: with '
                       'the New model type, or Pretrained / PreviousRun with Skip training '
                       'No (Input tab).')
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
                  label='Custom data given as',
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
                  label="Positive coordinates (optional)",
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
                  label="Negative coordinates (optional)",
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
                  condition=trains,
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
                  label="Training batch size", condition=trains,
                  validators=[params.Positive],
                  help='Micrographs per training pass, in arrival order; each pass '
                       'continues the networks of the previous one. A pass takes more '
                       'micrographs when needed to reach the %d particles (candidates '
                       'of at least two pickers) that training needs.' % MIN_POSITIVES)
