"""The facts every layer shares: one place for each."""

# The network always sees boxes of this many pixels; micrographs are downsampled so that the
# user's box becomes this size.
DEEP_PARTICLE_SIZE = 128

# Xmipp metadata label (and Scipion attribute) that carries the Deep Consensus score.
SCORE_LABEL = "zScoreDeepLearning1"
SCORE_ATTRIBUTE = "_xmipp_" + SCORE_LABEL

# Original protocol defaults (spec §1).
DEFAULT_RADIUS = 0.1          # consensus radius, fraction of the box size
DEFAULT_THRESHOLD = 0.5
# The original's 5 epochs trained EMPIAR-10017's 2460 positives for 350 batches per network,
# 80 % of a `screen` after the scoring cascade; 2 (150 batches, with DEFAULT_MIN_BATCHES) keep
# F1 and ROC-AUC within 0.01 on it, on the weak-picker set and on the demo
# (docs/measurements.md, "Training for fewer batches" and "The evidence fit for less").
DEFAULT_EPOCHS = 2.0
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_L2 = 1e-5
DEFAULT_MODELS = 3
DEFAULT_TRAIN_SIZE = 20000    # expected number of positives used for training
DEFAULT_MAX_VAL_ACC = 0.95
DEFAULT_DEDUPE_RADIUS = 0.3   # output candidates closer than this fraction of the box are one
# A candidate's score is the mean over this many mirror views of its box (1: the original's one
# view; 4: also flipped left-right, up-down and both; 8: and transposed). Training sees these
# views as augmentation, so each is as valid as the original; the mean ranks candidates better
# (F1 with 1 -> 4 views, two trainings each: simulated 0.845 -> 0.850 and 0.847 -> 0.858,
# EMPIAR-10017 0.871 -> 0.876 and 0.874 -> 0.876).
VIEW_CHOICES = (1, 4, 8)
DEFAULT_VIEWS = 4
# Self-training: a round's scores at or above / at or below these become its pseudo-labels.
SELF_TRAINING_POSITIVE = 0.9
SELF_TRAINING_NEGATIVE = 0.1
# A round continues a trained model, so it needs fewer examples than training from scratch
# (MIN_POSITIVES); with fewer confident acceptances than this it is skipped.
SELF_TRAINING_MIN_ACCEPTED = 100

# Network size bands by number of training positives (spec §5.1).
SIZE_BANDS = ((1500, "small"), (20000, "medium"), (float("inf"), "large"))

# Training loop constants (spec §5.2, §5.3).
BATCH_SIZE = 64
VALIDATION_FRACTION = 0.1
BATCHES_PER_KERAS_EPOCH = 50
# The original's epochs are passes over the positives, so a small set got a few dozen batches:
# on a simulated set of 736 positives its 5 epochs gave 150 batches and validation accuracy
# 0.80-0.88, against 0.94 after 300. Training runs at least this many (0: the original); 200
# since the scoring cascade, 150 since the evidence fit for less (docs/measurements.md).
DEFAULT_MIN_BATCHES = 150
MIN_POSITIVES = 320


def size_band(n_positives):
    """Network size for a training set of n positives (small / medium / large)."""
    for limit, name in SIZE_BANDS:
        if n_positives < limit:
            return name
    return SIZE_BANDS[-1][1]
