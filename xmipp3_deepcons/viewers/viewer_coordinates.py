"""Analyze Results on any set of coordinates when Xmipp is not installed.

Scipion's own viewer of coordinates (pwem's DataViewer) starts Xmipp's Java particle picker,
which needs Xmipp's compiled installation: without it nothing opens and the terminal says
"Could not find or load main class xmipp.viewer.particlepicker...". This viewer takes its
place then (and only then): the first micrographs with their picks circled, in a figure
window, and what it cannot show said in the figure. The class name sorts before
"DataViewer", which is how pyworkflow orders viewers of one type.
"""
import numpy as np

from pyworkflow.viewer import DESKTOP_TKINTER, MessageView, Viewer

MICROGRAPHS_SHOWN = 4
DISPLAY_PIXELS = 1024          # a micrograph is binned down to at most this many pixels


def _coordinateClasses():
    from pwem.objects import SetOfCoordinates
    return [SetOfCoordinates]


class CoordinatesOnMicrographsViewer(Viewer):
    """The picks of a set of coordinates on their first micrographs (without Xmipp)."""
    _label = 'picks on micrographs'
    _environments = [DESKTOP_TKINTER]
    _targets = _coordinateClasses()

    @classmethod
    def can_handle_this(cls, classHierarchy, instance=None):
        from .viewer_deep_consensus import showjInstalled
        if showjInstalled():        # Xmipp's particle picker works: leave it to Scipion's
            return None
        return super().can_handle_this(classHierarchy, instance)

    def _visualize(self, obj, **kwargs):
        try:
            panels, total = micrographPanels(obj)
        except Exception as error:   # unreadable micrograph, set without micrographs...
            return [MessageView("Cannot show these coordinates: %s\n\nScipion's coordinate "
                                "viewer (Xmipp's particle picker) needs Xmipp installed."
                                % error, "Coordinates", tkParent=self.getTkRoot())]
        if not panels:
            return [MessageView("This set holds no coordinates.", "Coordinates",
                                tkParent=self.getTkRoot())]
        from .viewer_deep_consensus import FigureView
        title = "Coordinates: %d picks on %d micrographs" % (total, len(obj.getMicrographs()))
        columns = min(2, len(panels))
        rows = int(np.ceil(len(panels) / columns))
        return [FigureView(None, title, (5.5 * columns, 5.5 * rows + 0.6),
                           lambda figure: drawPanels(figure, panels, title, columns))]


def micrographPanels(coordinates, count=MICROGRAPHS_SHOWN):
    """[(micrograph name, binned image, picks xy in its pixels, box radius in its pixels)] of
    the first ``count`` micrographs with picks, and the number of picks in the set."""
    from ..io.images import read_micrograph
    byMicrograph, total = {}, 0
    for coord in coordinates.iterItems():
        total += 1
        micId = coord.getMicId()
        if micId in byMicrograph or len(byMicrograph) < count:
            byMicrograph.setdefault(micId, []).append((coord.getX(), coord.getY()))
    micrographs = coordinates.getMicrographs()
    box = coordinates.getBoxSize() or 0
    panels = []
    for micId, xy in byMicrograph.items():
        micrograph = micrographs[micId]
        image = read_micrograph(micrograph.getFileName())
        step = max(1, int(np.ceil(max(image.shape) / DISPLAY_PIXELS)))
        rows, cols = (image.shape[0] // step) * step, (image.shape[1] // step) * step
        binned = image[:rows, :cols].reshape(rows // step, step, cols // step, step).mean((1, 3))
        panels.append((micrograph.getMicName() or str(micId), binned,
                       np.asarray(xy, dtype=float) / step, box / 2.0 / step))
    return panels, total


def drawPanels(figure, panels, title, columns=2):
    from matplotlib.patches import Circle
    rows = int(np.ceil(len(panels) / columns))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, image, xy, radius) in zip(axes.ravel(), panels):
        low, high = np.percentile(image, (1, 99))
        ax.imshow(image, cmap="gray", vmin=low, vmax=high)
        for x, y in xy:
            ax.add_patch(Circle((x, y), max(radius, 2), fill=False, color="lime", lw=0.8))
        ax.set_title("%s: %d picks" % (name, len(xy)), fontsize=9)
    figure.suptitle("%s (the first %d shown; Scipion's coordinate viewer, Xmipp's particle "
                    "picker, needs Xmipp installed)" % (title, len(panels)), fontsize=9)
    figure.tight_layout()
    return figure
