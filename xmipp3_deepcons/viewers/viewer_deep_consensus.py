"""Analyze Results of Deep Consensus: the particles and their scores, a subset by score, the
score histogram, the training curves, the best and the worst scored candidates.

Figures come from ``xmipp3_deepcons.plots``. The ``write*`` methods save them as PNGs in the
run's ``extra/plots`` (headless: Agg canvases, no pyplot); the ``_visualize*`` methods return
views that the Scipion GUI shows in pyworkflow's Plotter windows, with whatever matplotlib
backend the process has (TkAgg in the project window): nothing here switches it.

Subsets: with Xmipp's ShowJ installed, *Particles and their scores* opens it as the original
viewer did (select, then create a subset: XmippProtDeepConsSubSet). Without it, the same entry
opens Scipion's metadata viewer with the score column shown, and *Subset by score* opens a
dialog that launches XmippProtDeepConsScoreSubset in the project: neither needs Xmipp.

Every read of the run's files is in ``_RunReader`` below (through ``protocol.runFolder()``).
"""
import os

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, MessageView, ProtocolViewer, View

from .. import plots
from ..constants import SCORE_ATTRIBUTE
from ..protocols import XmippProtScreenDeepConsensus

TITLE = "Deep Consensus"


class _RunReader:
    """The only place where the viewer reads a Deep Consensus run: the public readers of its
    run folder (``protocol.runFolder()``, ``xmipp3_deepcons.run.folder.RunFolder``)."""

    def __init__(self, protocol):
        self.run = protocol.runFolder()
        self._settings = self._threshold = None
        self._final = {}
        self.unanchored = []    # stems shown with the run network's scores alone (see below)

    def settings(self):
        """The run's settings; None before the run has started."""
        if self._settings is None and self.run.has_settings():
            self._settings = self.run.settings()
        return self._settings

    def scoredMicrographs(self):
        """Stems of the scored micrographs, in arrival order."""
        settings = self.settings()
        return [] if settings is None else self.run.scored_stems(settings.views)

    def finalScores(self, stem):
        """The score every candidate of a micrograph carries in the outputs.

        An anchored evidence model (Combine with who picked, pickers may agree on junk) needs
        the shipped network's scores too; a run stopped (or still running) between the
        run's network and the shipped one has not written them for some micrographs. Those
        micrographs show the run network's score alone, and ``unanchored`` names them, so
        that the figures can say so."""
        if stem not in self._final:
            settings = self.settings()
            if settings.uses_reference and not self._hasReference(stem):
                self.unanchored.append(stem)
                scores = self.run.network_scores(stem, settings.views)
            else:
                scores = self.run.final_scores(stem, settings)
            self._final[stem] = np.asarray(scores, dtype=float)
        return self._final[stem]

    def _hasReference(self, stem):
        from ..errors import InputError
        from ..run.folder import REFERENCE
        try:
            return self.run.network_scores(stem, self.settings().views, REFERENCE) is not None
        except InputError:      # the shipped network is not installed
            return False

    def unanchoredNote(self, total):
        """The line the figures carry when some micrographs show the run network's score."""
        if not self.unanchored:
            return None
        return ("%d of %d micrographs not scored by the shipped network yet (run stopped or "
                "running):\ntheir candidates show this run's network score alone, not "
                "combined with who picked them" % (len(set(self.unanchored)), total))

    def votes(self, stem):
        """How many pickers picked each candidate of a micrograph."""
        return np.asarray(self.run.candidates(stem)["votes"])

    def keptMask(self, stem):
        """Which candidates of a micrograph the outputs hold (above the threshold, one per
        particle: duplicates merged)."""
        from ..run.keep import keep_mask
        return np.asarray(keep_mask(self.run.candidates(stem)["xy"], self.finalScores(stem),
                                    self.settings().dedupe_radius_px, self.threshold()),
                          dtype=bool)

    def threshold(self):
        """The threshold in use (-1: all kept; 'auto' resolved to the one chosen)."""
        if self._threshold is None and self.settings() is not None:
            final = [self.finalScores(stem) for stem in self.scoredMicrographs()]
            self._threshold = float(self.run.threshold(self.settings(), final)[0])
        return self._threshold

    def boxes(self, stem, indices):
        """The 128 px boxes of these candidates of a micrograph (its stack holds one box per
        candidate, in candidate order); read through a memory map, not the whole stack."""
        import mrcfile
        with mrcfile.mmap(self.run.particles(stem), mode="r", permissive=True) as mrc:
            data = mrc.data.reshape((-1,) + mrc.data.shape[-2:])
            return np.array(data[np.asarray(indices, dtype=int)], dtype=np.float32)

    def trainingHistories(self):
        """Per training pass in order (or the final model when the run did not train), the
        per-network Keras histories."""
        return self.run.training_curves()

    def trained(self):
        """Whether this run trained (else its curves are those of the networks it reused)."""
        return bool(self.run.passes())

    def plotsFolder(self):
        folder = self.run.path("plots")
        os.makedirs(folder, exist_ok=True)
        return folder


class XmippDeepConsensusViewer(ProtocolViewer):
    """Results of Deep Consensus: the particles with their scores (to make subsets), a subset
    by score, where the threshold falls in the score histogram, how training went, and what
    the best and the worst scored candidates look like."""
    _label = 'viewer deepConsensus'
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]
    _targets = [XmippProtScreenDeepConsensus]

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('visualizeParticles', params.LabelParam, important=True,
                      label="Particles and their scores (make a subset)",
                      help="The output particles with their score "
                           "(_xmipp_zScoreDeepLearning1). With Xmipp's ShowJ installed, "
                           "sorted by score, lowest first: select the ones to keep and save "
                           "them as a subset of coordinates. Otherwise in Scipion's metadata "
                           "viewer: sort by the score column, select rows and create a "
                           "subset.")
        form.addParam('visualizeSubset', params.LabelParam, important=True,
                      label="Subset by score",
                      help="Drag across the histogram of the output's scores (or type the "
                           "lowest and the highest score) to choose a range; "
                           "a 'deep consensus subset by score' run of the project keeps the "
                           "particles (or coordinates) in that range. Needs no Xmipp.")
        form.addParam('visualizeHistogram', params.IntParam, default=100,
                      label="Score histogram (number of bins)",
                      help="Scores of every candidate, by number of pickers that picked "
                           "it, with the threshold of the run. The title says how many the "
                           "outputs hold: those above the threshold, less the duplicates "
                           "merged (Duplicate radius). A valley between the two humps is a "
                           "good threshold.")
        form.addParam('visualizeTraining', params.LabelParam,
                      label="Training curves",
                      help="Accuracy and loss on the training and validation boxes, per "
                           "Keras epoch (50 batches), for each network (one colour each), "
                           "over all training passes. A run that did not train (Skip "
                           "training) shows the curves of the networks it reused, and says "
                           "so.")
        form.addParam('visualizeGallery', params.IntParam, default=32,
                      label="Best and worst scored candidates (how many)",
                      help="The highest and the lowest scored candidates with their scores, "
                           "in two windows.")

    def _getVisualizeDict(self):
        return {'visualizeParticles': self._visualizeParticles,
                'visualizeSubset': self._visualizeSubset,
                'visualizeHistogram': self._visualizeHistogram,
                'visualizeTraining': self._visualizeTraining,
                'visualizeGallery': self._visualizeGallery}

    def _reader(self):
        return _RunReader(self.protocol)

    # ---------------------------------------------------------------- views
    def _visualizeParticles(self, e=None):
        particles = getattr(self.protocol, 'outputParticles', None)
        if particles is None:
            return [self._message("There are no output particles yet.", TITLE)]
        if showjInstalled():
            return [self._showjView(particles)]
        return [ScoreMDView(particles, self.protocol, getattr(self.getProject(), 'port', None))]

    def _showjView(self, particles):
        """Xmipp's ShowJ, as the original viewer opened it: the particles sorted by score,
        subsets (XmippProtDeepConsSubSet) on the coordinates."""
        from pwem.viewers import ObjectView
        from pwem.viewers.showj import MODE, MODE_MD, ORDER, RENDER, SORT_BY, VISIBLE
        labels = 'id enabled _index _filename %s _micId _coordinate._x _coordinate._y' % (
            SCORE_ATTRIBUTE)
        viewParams = {ORDER: labels, VISIBLE: labels, RENDER: '_filename',
                      SORT_BY: '%s asc' % SCORE_ATTRIBUTE, MODE: MODE_MD}
        coordinates = getattr(self.protocol, 'outputCoordinates', None)
        if coordinates is not None:
            return ObjectView(self._project, coordinates.strId(), particles.getFileName(),
                              other='deepCons', viewParams=viewParams)
        return ObjectView(self._project, particles.strId(), particles.getFileName(),
                          viewParams=viewParams)

    def _visualizeSubset(self, e=None):
        outputs = [(name, getattr(self.protocol, name)) for name in
                   ('outputParticles', 'outputCoordinates') if hasattr(self.protocol, name)]
        if not outputs:
            return [self._message("There is no output to make a subset of yet.", TITLE)]
        return [ScoreSubsetView(self, outputs)]

    def _visualizeHistogram(self, e=None):
        refused = self._refusedCount('visualizeHistogram', "number of bins")
        if refused:
            return refused
        data = self.histogramData()
        if data is None:
            return self._nothingYet("Deep Consensus scores")
        return [FigureView(self._writeHistogram(data), "%s: score histogram" % TITLE,
                           plots.HISTOGRAM_SIZE, _histogramDrawer(data))]

    def _visualizeTraining(self, e=None):
        history = self.trainingHistory()
        if not history:
            return self._nothingYet("Deep Consensus training")
        title = self.trainingTitle()
        return [FigureView(self._writeTraining(history), title, plots.TRAINING_SIZE,
                           _trainingDrawer(history, title))]

    def _visualizeGallery(self, e=None):
        refused = self._refusedCount('visualizeGallery', "number of candidates")
        if refused:
            return refused
        galleries = self.galleryData()
        if not galleries:
            return self._nothingYet("Deep Consensus particles")
        return [FigureView(self._writeGallery(name, boxes, scores, title), title,
                           plots.gallery_size(len(boxes)),
                           _galleryDrawer(boxes, scores, title))
                for name, boxes, scores, title in galleries]

    def _refusedCount(self, name, what):
        """A message when a count of the form is below 1 (instead of quietly another one)."""
        value = getattr(self, name).get() if hasattr(self, name) else None
        if value is not None and value < 1:
            return [self._message("The %s must be at least 1 (it is %d): change it in the "
                                  "form and click the eye again." % (what, value), TITLE)]
        return None

    def _nothingYet(self, title):
        return [self._message("Nothing to show yet: the run has not scored or trained "
                              "anything.", title)]

    def _message(self, text, title):
        """A message over the viewer's form (without a parent, pyworkflow's dialog would make
        a Tk of its own, where the form's images do not exist)."""
        return MessageView(text, title, tkParent=self.getTkRoot())

    # ----------------------------------------------------------------- data
    def histogramData(self):
        """Keyword arguments of plots.draw_score_histogram: every scored candidate's score
        and votes, the threshold, and how many candidates the outputs hold. None before
        any score."""
        reader = self._reader()
        scores, votes, kept = [], [], 0
        for stem in reader.scoredMicrographs():
            micrographScores = reader.finalScores(stem)
            scores.append(micrographScores)
            votes.append(reader.votes(stem))
            kept += int(reader.keptMask(stem).sum())
        if not scores:
            return None
        bins = self.visualizeHistogram.get() if hasattr(self, 'visualizeHistogram') else None
        return {"scores": np.concatenate(scores), "votes": np.concatenate(votes),
                "threshold": reader.threshold(), "bins": bins or 100, "kept": kept,
                "note": reader.unanchoredNote(len(scores))}

    def trainingTitle(self):
        """The window's title; says whose curves they are when this run did not train."""
        if self._reader().trained():
            return "%s: training curves" % TITLE
        previous = None
        prot = self.protocol
        if prot.modelInitialization.get() == prot.ADD_MODEL_TRAIN_PREVRUN:
            previous = prot.continueRun.get()
        source = ("the previous run %s" % previous.getRunName() if previous is not None
                  else "the shipped pretrained network")
        return ("%s: training curves of %s (this run did not train: it scored with those "
                "networks)" % (TITLE, source))

    def trainingHistory(self):
        """Per network, the curves of every training pass one after another."""
        merged = []
        for passHistory in self._reader().trainingHistories():
            if isinstance(passHistory, dict):
                passHistory = passHistory.get("models", [])
            for i, member in enumerate(passHistory):
                if i == len(merged):
                    merged.append({})
                for key, values in member.items():
                    merged[i].setdefault(key, []).extend(values)
        return merged

    def galleryData(self):
        """[(file name, boxes, scores, title)] of the best and the worst scored candidates;
        empty before any score."""
        reader = self._reader()
        count = self.visualizeGallery.get() if hasattr(self, 'visualizeGallery') else None
        count = count or 32     # below 1 is refused by _visualizeGallery
        entries = []
        for stem in reader.scoredMicrographs():
            entries.extend((float(s), stem, i) for i, s in enumerate(reader.finalScores(stem)))
        if not entries:
            return []
        entries.sort(key=lambda entry: entry[0])
        count = min(count, len(entries))
        galleries = []
        for name, chosen, which in (("best_particles.png", entries[::-1][:count], "best"),
                                    ("worst_particles.png", entries[:count], "worst")):
            boxes = np.zeros((len(chosen), 0, 0), np.float32)
            byStem = {}
            for k, (_, stem, index) in enumerate(chosen):
                byStem.setdefault(stem, []).append((k, index))
            for stem, items in byStem.items():
                read = reader.boxes(stem, [index for _, index in items])
                if boxes.shape[1] == 0:
                    boxes = np.zeros((len(chosen),) + read.shape[1:], np.float32)
                for (k, _), box in zip(items, read):
                    boxes[k] = box
            title = "%s: the %d %s scored candidates" % (TITLE, len(chosen), which)
            note = reader.unanchoredNote(len(reader.scoredMicrographs()))
            if note:
                title += "\n(%s)" % note
            galleries.append((name, boxes, [entry[0] for entry in chosen], title))
        return galleries

    # -------------------------------------------------------------- figures
    def writeHistogram(self):
        """Histogram of every candidate's score; its path, or None before any score."""
        data = self.histogramData()
        return None if data is None else self._writeHistogram(data)

    def writeTrainingCurves(self):
        """Curves of every training pass one after another (or of the reused model)."""
        history = self.trainingHistory()
        return self._writeTraining(history) if history else None

    def writeGalleries(self):
        """The best and the worst scored candidates; their two paths (empty before scores)."""
        return [self._writeGallery(*gallery) for gallery in self.galleryData()]

    def _writeHistogram(self, data):
        path = self._plotPath("score_histogram.png")
        plots.save(_histogramDrawer(data)(plots.new_figure(plots.HISTOGRAM_SIZE)), path)
        return path

    def _writeTraining(self, history):
        path = self._plotPath("training_curves.png")
        plots.save(_trainingDrawer(history, self.trainingTitle())(
            plots.new_figure(plots.TRAINING_SIZE)), path)
        return path

    def _writeGallery(self, name, boxes, scores, title):
        path = self._plotPath(name)
        plots.gallery(path, boxes, scores, title)
        return path

    def _plotPath(self, name):
        return os.path.join(self._reader().plotsFolder(), name)

    # -------------------------------------------------------------- subsets
    def subsetScores(self, outputName):
        """The score of every item of one of the run's outputs."""
        output = getattr(self.protocol, outputName)
        return np.array([getattr(item, SCORE_ATTRIBUTE).get() for item in output.iterItems()],
                        dtype=float)

    def makeScoreSubset(self, lowest, highest, outputName='outputParticles', wait=False):
        """Create and launch a 'deep consensus subset by score' run of this project on one of
        the run's outputs; returns the new protocol. From Analyze Results of the project
        window it is launched and selected there, as ShowJ's subsets are; otherwise launched
        in the project (``wait``: until it ends)."""
        from ..protocols import XmippProtDeepConsScoreSubset
        project = self.getProject()
        prot = project.newProtocol(XmippProtDeepConsScoreSubset,
                                   minScore=float(lowest), maxScore=float(highest))
        # set after creation: pyworkflow 3.11.7's newProtocol drops objLabel
        prot.setObjLabel("deep consensus subset %g-%g" % (lowest, highest))
        prot.inputObject.set(self.protocol)
        prot.inputObject.setExtended(outputName)
        window = getattr(self, 'windows', None)
        if window is not None and hasattr(window, 'getViewWidget'):
            window.getViewWidget().executeProtocol(prot)
        else:
            project.launchProtocol(prot, wait=wait)
        return prot


def showjInstalled():
    """Whether Xmipp's ShowJ can run here (scipion-em-xmipp and Xmipp's Java bindings)."""
    from ..scipion_plugin import xmipp_java_viewers_installed
    return xmipp_java_viewers_installed()


def _galleryDrawer(boxes, scores, title):
    return lambda figure: plots.draw_gallery(figure, boxes, scores, title)


def _histogramDrawer(data):
    """Draws the histogram of ``histogramData``, with its note (if any) under the title."""
    data = dict(data)
    note = data.pop("note", None)

    def draw(figure):
        plots.draw_score_histogram(figure, **data)
        if note:
            _addNote(figure, note)
        return figure
    return draw


def _trainingDrawer(history, title):
    def draw(figure):
        plots.draw_training_curves(figure, history)
        if "did not train" in title:
            _addNote(figure, title.split(": ", 1)[1].replace(" (this run", "\n(this run"))
        return figure
    return draw


def _addNote(figure, note):
    """Red text (its own line breaks) at the top of a figure, above the axes (a suptitle:
    the layout, done again when the window shows, leaves room for it)."""
    figure.suptitle(note, fontsize=8, color="darkred")
    figure.tight_layout()


def _plotter(title, figsize):
    """A pyworkflow Plotter (a window with the process's backend: TkAgg in the GUI).

    Plotter switches pyplot to Agg when no backend was chosen through it (Plotter.backend
    None, as outside the project window): telling it the current one keeps it as it is."""
    import matplotlib
    from pyworkflow.gui.plotter import Plotter
    if Plotter.backend is None:
        Plotter.backend = matplotlib.get_backend()
    return Plotter(windowTitle=title, figsize=figsize)


class FigureView(View):
    """A figure of plots.py: saved as a PNG (getPath) and shown in a Plotter window."""

    def __init__(self, path, title, figsize, draw):
        View.__init__(self)
        self.path, self.title, self.figsize, self.draw = path, title, figsize, draw

    def getPath(self):
        return self.path

    def show(self):
        plotter = _plotter(self.title, self.figsize)
        self.draw(plotter.getFigure())
        plotter.show()
        placeOnScreen(getattr(plotter.getFigure().canvas.manager, "window", None))
        return plotter


_placed = [0]


def placeOnScreen(window):
    """Put a figure window on the right of the screen, each next one a little lower and to
    the left, and all of it on the screen (Tk windows otherwise open where the window
    manager puts them: over the Analyze Results form, or past the screen's bottom)."""
    try:
        window.update_idletasks()
        screenWidth, screenHeight = window.winfo_screenwidth(), window.winfo_screenheight()
        width, height = window.winfo_reqwidth(), window.winfo_reqheight()
    except Exception:        # not a Tk window (another backend): leave it where it is
        return
    step = 40 * (_placed[0] % 6)
    _placed[0] += 1
    x = max(0, min(screenWidth - width - 20 - step, screenWidth - width))
    y = max(0, min(20 + step, screenHeight - height - 60))
    window.geometry("+%d+%d" % (x, y))


def _scoreMDView():
    from pwem.viewers.mdviewer.viewer import MDView

    class ScoreMDView(MDView):
        """pwem's MDView (Scipion's metadata viewer in its own process) with this plugin's
        extension of the viewer (``mdviewer_extension``): opened sorted by score, highest
        first, at a zoom that shows several rows, and a range selected after a sort stays
        open (pwem's viewer closes: see that module)."""

        EXTENSION = os.path.join(os.path.dirname(__file__), "mdviewer_extension.py")

        def arguments(self, extension=None):
            """The metadata viewer's command line arguments (as pwem's MDView gives them,
            with this plugin's extension, or ``extension``)."""
            visible, order, render = self.getVisibleAndOrderLabels()
            order = order.replace(' _filename', ' stack', 1)
            render = render.replace(' _filename', ' stack', 1)
            if ' _filename' in visible and ' stack' not in render:
                render += ' stack'
            return ["--extensionpath", extension or self.EXTENSION, self._emSet.getFileName(),
                    "--visiblelabels", visible, "--orderlabels", order,
                    "--renderlabels", render]

        def show(self):
            import subprocess
            from pwem.viewers.mdviewer.sqlite_dao import SCIPION_OBJECT_ID, SCIPION_PORT
            from pyworkflow import PYTHON
            if self.port:
                os.environ[SCIPION_PORT] = str(self.port)
                os.environ[SCIPION_OBJECT_ID] = str(self._emSet.getObjId())
            self.process = subprocess.Popen([PYTHON, "-m", "metadataviewer"]
                                            + self.arguments())
            return self.process
    return ScoreMDView


def ScoreMDView(particles, protocol, port):
    """The view of 'Particles and their scores' without Xmipp (see _scoreMDView)."""
    return _scoreMDView()(particles, protocol, port)


class ScoreSubsetView(View):
    """The Subset by score dialog of a viewer (see subset_dialog.py)."""

    def __init__(self, viewer, outputs):
        View.__init__(self)
        self.viewer, self.outputs = viewer, outputs

    def show(self):
        from .subset_dialog import ScoreSubsetDialog
        name = self.outputs[0][0]
        dialog = ScoreSubsetDialog(self.viewer.getTkRoot(),
                                   self.viewer.protocol.getRunName(),
                                   self.viewer.subsetScores(name),
                                   self.viewer._reader().threshold(),
                                   [n for n, _ in self.outputs],
                                   self.viewer.makeScoreSubset)
        return dialog.created


def _registerScoreColumn():
    """Scipion's own particle table (its metadata viewer) shows the columns registered for
    SetOfParticles: add the Deep Consensus score after the file, so that it shows for the
    particles of a Deep Consensus run (sets without it are not affected)."""
    try:
        from pwem.objects import SetOfParticles
        from pwem.viewers.showj import ORDER, VISIBLE
        from pwem.viewers.viewers_data import RegistryViewerConfig
    except ImportError:
        return
    config = RegistryViewerConfig.getConfig(SetOfParticles)
    if not config:
        return
    for key in (ORDER, VISIBLE):
        labels = config.get(key, '').split()
        if labels and SCORE_ATTRIBUTE not in labels:
            after = labels.index('_filename') + 1 if '_filename' in labels else len(labels)
            labels.insert(after, SCORE_ATTRIBUTE)
            config[key] = ' '.join(labels)


_registerScoreColumn()
