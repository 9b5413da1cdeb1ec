"""A subset of a Deep Consensus output by score range, made from Analyze Results.

Analyze Results of a Deep Consensus run has *Subset by score*: a dialog shows the scores of the
run's output, the user chooses a range, and the dialog launches this protocol on the output, so
that the subset is an ordinary run of the project (its range in its form, rerunnable, usable in
workflows). It needs nothing outside this package: no Xmipp, no ShowJ.

The output has the type and the name of the input (``outputParticles`` or
``outputCoordinates``), with the same items, ids and scores; an item is kept when its
``_xmipp_zScoreDeepLearning1`` lies in [lowest, highest] (both included).
"""
import pwem.objects as emobj
from pwem.protocols import EMProtocol
from pyworkflow.protocol import params

from ..constants import SCORE_ATTRIBUTE
from .labels import DeepConsLabel

OUTPUT_NAMES = {emobj.SetOfParticles: "outputParticles",
                emobj.SetOfCoordinates: "outputCoordinates"}


def score_of(item):
    """The Deep Consensus score an item carries, None without one."""
    value = getattr(item, SCORE_ATTRIBUTE, None)
    return None if value is None or value.get() is None else float(value.get())


def in_range(score, lowest, highest):
    return score is not None and lowest <= score <= highest


class XmippProtDeepConsScoreSubset(DeepConsLabel, EMProtocol):
    """Keeps the particles or coordinates of a Deep Consensus run whose score lies in a range
    (for example 0.8 to 1 for the most confident ones). Made from Analyze Results of the run
    (Subset by score), or from this form."""
    _label = 'deep consensus subset by score'
    _possibleOutputs = {"outputParticles": emobj.SetOfParticles,
                        "outputCoordinates": emobj.SetOfCoordinates}

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputObject', params.PointerParam,
                      pointerClass='SetOfParticles,SetOfCoordinates',
                      label='Scored particles or coordinates',
                      help='The outputParticles or the outputCoordinates of a Deep Consensus '
                           'run (each item carries its score in _xmipp_zScoreDeepLearning1).')
        form.addParam('minScore', params.FloatParam, default=0.5,
                      label='Lowest score kept',
                      help='Items scoring at least this are kept (scores are between 0, not '
                           'a particle, and 1, a particle).')
        form.addParam('maxScore', params.FloatParam, default=1.0,
                      label='Highest score kept',
                      help='Items scoring at most this are kept: 1 keeps the best ones; a '
                           'lower value selects a band, for example the doubtful ones to '
                           'inspect.')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createSubsetStep)

    def createSubsetStep(self):
        source = self.inputObject.get()
        lowest, highest = self.minScore.get(), self.maxScore.get()
        if isinstance(source, emobj.SetOfCoordinates):
            output = self._createSetOfCoordinates(source.getMicrographs(asPointer=True))
            output.setBoxSize(source.getBoxSize())
        else:
            output = self._createSetOfParticles()
            output.copyInfo(source)
        total = 0
        for item in source.iterItems():
            total += 1
            if in_range(score_of(item), lowest, highest):
                output.append(item)
        self._defineOutputs(**{self._outputName(source): output})
        self._defineSourceRelation(self.inputObject, output)
        self.summaryVar.set("%d of %d items with a score in [%g, %g]"
                            % (output.getSize(), total, lowest, highest))

    # ------------------------------------------------------------------------
    @staticmethod
    def _outputName(source):
        for setClass, name in OUTPUT_NAMES.items():
            if isinstance(source, setClass):
                return name
        raise TypeError("not a set of particles or coordinates: %s" % type(source).__name__)

    def _validate(self):
        errors = []
        if self.minScore.get() > self.maxScore.get():
            errors.append("The lowest score kept (%g) is above the highest (%g)."
                          % (self.minScore.get(), self.maxScore.get()))
        source = self.inputObject.get()
        if source is not None:
            first = source.getFirstItem() if source.getSize() else None
            if first is not None and score_of(first) is None:
                errors.append("The items of %s carry no Deep Consensus score (%s): choose "
                              "the output of a Deep Consensus run."
                              % (self.inputObject.getExtended() or "the input",
                                 SCORE_ATTRIBUTE))
        return errors

    def _summary(self):
        summary = []
        if self.summaryVar.get():
            summary.append(self.summaryVar.get())
        else:
            summary.append("Keeps the items with a score in [%g, %g]"
                           % (self.minScore.get(), self.maxScore.get()))
        return summary

    def _methods(self):
        for name in OUTPUT_NAMES.values():
            output = getattr(self, name, None)
            if output is not None:
                return ["%d items with a Deep Consensus score between %g and %g were kept."
                        % (output.getSize(), self.minScore.get(), self.maxScore.get())]
        return []
