"""Analyze Results of Deep Consensus: score histogram, training curves, best and worst particles.

The figures are drawn with matplotlib (Agg) into the run's ``extra/plots`` folder by the
``write*`` methods, so they can be made headless; the ``_visualize*`` methods wrap them in views
that the Scipion GUI shows. The particle table sorted by score (ShowJ) is where subsets are made
(XmippProtDeepConsSubSet).
"""
import json
import os

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, MessageView, ProtocolViewer, View

from .. import plots
from ..constants import SCORE_ATTRIBUTE
from ..protocols import XmippProtScreenDeepConsensus


class XmippDeepConsensusViewer(ProtocolViewer):
    """Results of Deep Consensus: where the threshold falls in the score histogram, how
    training went, and what the best and the worst scored candidates look like. Select
    particles by score in the particle table and save them as a subset."""
    _label = 'viewer deepConsensus'
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _targets = [XmippProtScreenDeepConsensus]

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('visualizeParticles', params.LabelParam, important=True,
                      label="Particles sorted by score (make a subset)",
                      help="The output particles in a table sorted by "
                           "_xmipp_zScoreDeepLearning1, lowest first. Select the ones to "
                           "keep and save them as a subset of coordinates.")
        form.addParam('visualizeHistogram', params.IntParam, default=100,
                      label="Score histogram (number of bins)",
                      help="Scores of every candidate, by number of pickers that picked "
                           "it, with the threshold of the run. A valley between the two "
                           "humps is a good threshold.")
        form.addParam('visualizeTraining', params.LabelParam,
                      label="Training curves",
                      help="Accuracy and loss on the training and validation boxes, per "
                           "Keras epoch (50 batches), for each network, over all training "
                           "passes.")
        form.addParam('visualizeGallery', params.IntParam, default=32,
                      label="Best and worst scored particles (how many)",
                      help="The highest and the lowest scored candidates, with their "
                           "scores.")

    def _getVisualizeDict(self):
        return {'visualizeParticles': self._visualizeParticles,
                'visualizeHistogram': self._visualizeHistogram,
                'visualizeTraining': self._visualizeTraining,
                'visualizeGallery': self._visualizeGallery}

    # ---------------------------------------------------------------- views
    def _visualizeParticles(self, e=None):
        from pwem.viewers import ObjectView
        from pwem.viewers.showj import MODE, MODE_MD, ORDER, RENDER, SORT_BY, VISIBLE
        output = getattr(self.protocol, 'outputParticles', None)
        if output is None:
            return [MessageView("There are no output particles yet.", "Deep Consensus")]
        labels = 'id enabled _index _filename %s _micId _coordinate._x _coordinate._y' % (
            SCORE_ATTRIBUTE)
        return [ObjectView(self._project, output.strId(), output.getFileName(),
                           viewParams={ORDER: labels, VISIBLE: labels, RENDER: '_filename',
                                       SORT_BY: '%s asc' % SCORE_ATTRIBUTE, MODE: MODE_MD})]

    def _visualizeHistogram(self, e=None):
        return self._views(self.writeHistogram(), "Deep Consensus scores")

    def _visualizeTraining(self, e=None):
        return self._views(self.writeTrainingCurves(), "Deep Consensus training")

    def _visualizeGallery(self, e=None):
        return self._views(self.writeGalleries(), "Deep Consensus particles")

    def _views(self, paths, title):
        if not paths:
            return [MessageView("Nothing to show yet: the run has not scored or trained "
                                "anything.", title)]
        paths = paths if isinstance(paths, list) else [paths]
        return [FigureFileView(path, title) for path in paths]

    # -------------------------------------------------------------- figures
    def writeHistogram(self):
        """Histogram of every candidate's score; its path, or None before any score."""
        scores, votes = [], []
        for stem in self._scoredStems():
            scores.append(self.protocol._finalScores(stem))
            votes.append(self._work().load_candidates(stem)["votes"])
        if not scores:
            return None
        path = self._plotPath("score_histogram.png")
        bins = self.visualizeHistogram.get() or 100
        plots.score_histogram(path, np.concatenate(scores), self.protocol.threshold.get(),
                              votes=np.concatenate(votes), bins=bins)
        return path

    def writeTrainingCurves(self):
        """Curves of every training pass one after another (or of the reused model)."""
        histories = []
        for record in self.protocol._completedPasses():
            with open(os.path.join(record["dir"], "history.json")) as f:
                for i, member in enumerate(json.load(f)):
                    if i == len(histories):
                        histories.append({})
                    for key, values in member.items():
                        histories[i].setdefault(key, []).extend(values)
        path = self._plotPath("training_curves.png")
        if histories:
            plots.training_curves(path, histories)
            return path
        model = self.protocol._getExtraPath("model")
        return path if plots.training_curves_from_model(path, model) else None

    def writeGalleries(self):
        """The best and the worst scored candidates; their two paths (empty before scores)."""
        from ..io.images import read_stack
        count = max(1, self.visualizeGallery.get() or 32)
        entries = []
        for stem in self._scoredStems():
            scores = self.protocol._finalScores(stem)
            entries.extend((float(s), stem, i) for i, s in enumerate(scores))
        if not entries:
            return []
        entries.sort(key=lambda e: e[0])
        paths = []
        for name, chosen, title in (
                ("best_particles.png", entries[::-1][:count], "Best scored candidates"),
                ("worst_particles.png", entries[:count], "Worst scored candidates")):
            stacks, boxes = {}, []
            for _, stem, index in chosen:
                if stem not in stacks:
                    stacks[stem] = read_stack(self.protocol._stackFile(stem))
                boxes.append(stacks[stem][index])
            path = self._plotPath(name)
            plots.gallery(path, np.stack(boxes), [e[0] for e in chosen], title)
            paths.append(path)
        return paths

    # ---------------------------------------------------------------- utils
    def _work(self):
        return self.protocol._work()

    def _scoredStems(self):
        if not os.path.isdir(self.protocol._getExtraPath("work")):
            return []
        return self._work().scored_stems()

    def _plotPath(self, name):
        folder = self.protocol._getExtraPath("plots")
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, name)


class FigureFileView(View):
    """A figure saved as an image, shown in a matplotlib window."""

    def __init__(self, path, title=""):
        View.__init__(self)
        self.path, self.title = path, title

    def getPath(self):
        return self.path

    def show(self):
        from pyworkflow.gui.plotter import Plotter
        import matplotlib.pyplot as plt
        image = plt.imread(self.path)
        height, width = image.shape[:2]
        plotter = Plotter(windowTitle=self.title, figsize=(width / 100.0, height / 100.0))
        axes = plotter.figure.add_axes([0, 0, 1, 1])
        axes.imshow(image)
        axes.axis("off")
        plotter.show()
