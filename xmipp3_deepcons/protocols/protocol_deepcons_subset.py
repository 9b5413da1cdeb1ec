"""Coordinates of a selection made on the results of Deep Consensus.

Run from the viewers like any subset: ShowJ passes its copy of the set with the user's
enabled/disabled marks (``sqliteFile='<file>.sqlite,<prefix>'``); the metadata viewer passes a
text file with the selected ids (``sqliteFile='<file>.txt,'``). The input may be the
protocol's outputCoordinates or its outputParticles; the output is always a SetOfCoordinates on
the original micrographs, with the original box and each item's score.
"""
import os

import pwem.objects as emobj
from pwem.protocols import ProtUserSubSet

from ..constants import SCORE_ATTRIBUTE
from .labels import DeepConsLabel


class XmippProtDeepConsSubSet(DeepConsLabel, ProtUserSubSet):
    """Makes a coordinate subset from the particles or coordinates selected in the results of
    a Deep Consensus run (for example, the best scored ones, sorted by
    _xmipp_zScoreDeepLearning1)."""
    _label = 'deep consensus subset'

    def createSetStep(self):
        source = self.inputObject.get()
        marked = self.createSetObject()   # the viewer's copy of the set (see module doc)
        selected = self._selectedItems(marked)
        coordinates = self._coordinatesOf(source)

        output = self._createSetOfCoordinates(coordinates.getMicrographs(asPointer=True))
        output.setBoxSize(coordinates.getBoxSize())
        for item in selected:
            coord = self._coordinateOf(item)
            coord.cleanObjId()
            output.append(coord)

        self._defineOutputs(outputCoordinates=output)
        self._defineSourceRelation(self.inputObject, output)
        kept, total = output.getSize(), source.getSize()
        self.summaryVar.set("%d of %d items selected (%d discarded)" % (kept, total, total - kept))

    # ------------------------------------------------------------------------
    def _selectedItems(self, marked):
        """Items marked enabled in ShowJ's copy, or listed in the metadata viewer's file."""
        if self.usingShowJ():
            keep = lambda item: item.isEnabled()
        else:
            ids = self._getSelectionTxtDict()
            keep = lambda item: item.getObjId() in ids
        items = [item.clone() for item in marked.iterItems() if keep(item)]
        marked.close()
        return items

    def _coordinatesOf(self, source):
        """The Deep Consensus coordinate output that holds the micrographs and box size."""
        if isinstance(source, emobj.SetOfCoordinates):
            return source
        producer = self.getMapper().getParent(source)
        coordinates = getattr(producer, "outputCoordinates", None) if producer else None
        if coordinates is None:
            raise ValueError("the particles do not come from a Deep Consensus run with "
                             "outputCoordinates: make the subset from its outputCoordinates")
        return coordinates

    @staticmethod
    def _coordinateOf(item):
        """A coordinate on the original micrograph, with the item's score."""
        if isinstance(item, emobj.Coordinate):
            return item
        coord = item.getCoordinate().clone()
        if getattr(coord, SCORE_ATTRIBUTE, None) is None and hasattr(item, SCORE_ATTRIBUTE):
            setattr(coord, SCORE_ATTRIBUTE, getattr(item, SCORE_ATTRIBUTE).clone())
        return coord

    def _summary(self):
        summary = [self.summaryVar.get()] if self.summaryVar.get() else []
        if hasattr(self, "outputCoordinates"):
            summary.append("outputCoordinates: %d coordinates" % self.outputCoordinates.getSize())
        return summary

    def _validate(self):
        errors = []
        source = self.inputObject.get()
        if source is not None and not isinstance(source, (emobj.SetOfCoordinates,
                                                          emobj.SetOfParticles)):
            errors.append("The input must be the outputCoordinates or the outputParticles of "
                          "a Deep Consensus run.")
        selection = (self.sqliteFile.get() or "").split(",")[0]
        if selection and not os.path.exists(selection):
            errors.append("Selection file %s not found." % selection)
        return errors
