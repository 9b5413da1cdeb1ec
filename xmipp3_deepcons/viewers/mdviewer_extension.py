"""Extension of Scipion's metadata viewer (the ``metadataviewer`` program, PyQt5) for the
particles of a Deep Consensus run; the viewer loads it with ``--extensionpath``.

It loads pwem's own extension (Scipion's sqlite sets, images) and works around two things a
user meets (see docs/scipion.md, "Particles and their scores"):

- Selecting a range after sorting closes the window: ``TableView.selectedRange`` looks the
  sorted column up by its position on the screen in the list of columns in table order, so
  with the columns reordered (``--orderlabels``) a sort by the score followed by a
  shift-click asks SQLite for another column (``no such column: stack``, pwem's
  ``sqlite_dao.getSelectedRangeRowsIds``) and the viewer exits. The range is taken here in
  the column the table is sorted by (what the viewer's ObjectManager.sort stored).
- The table opens sorted by the score, highest first, with boxes drawn 100 px high instead
  of 250 (two rows on a screen).

Everything is done through the program's extension hook, in its own process: nothing of
pwem or metadataviewer is changed on disk.
"""
import importlib.util
import os

from xmipp3_deepcons.constants import SCORE_ATTRIBUTE as SCORE_COLUMN  # loaded by path: absolute

ZOOM = 100


def extendMDViewer(objectManager):
    """Called by the metadata viewer with its ObjectManager class."""
    _pwemExtension().extendMDViewer(objectManager)
    rangeInSortedColumn(objectManager)
    openSortedByScore(objectManager)
    _smallerZoom()


def _pwemExtension():
    import pwem.viewers.mdviewer as mdviewer
    path = os.path.join(os.path.dirname(mdviewer.__file__), "readers.py")
    spec = importlib.util.spec_from_file_location("pwem_mdviewer_readers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rangeInSortedColumn(objectManager):
    """Range selections (shift-click, select to here / from here, invert) in the column and
    the order the table is sorted by, whatever column the viewer names."""
    original = objectManager.getSelectedRangeRowsIds
    if getattr(original, "_deepcons", False):
        return

    def getSelectedRangeRowsIds(self, tableName, startRow, numberOfRows, column,
                                reverse=True, remove=False):
        table = self.getTable(tableName)
        if table.getSortingColumn():
            column, reverse = table.getSortingColumn(), table.isSortingAsc()
        return original(self, tableName, startRow, numberOfRows, column, reverse, remove)
    getSelectedRangeRowsIds._deepcons = True
    objectManager.getSelectedRangeRowsIds = getSelectedRangeRowsIds


def openSortedByScore(objectManager):
    """A table with the Deep Consensus score starts sorted by it, highest first."""
    original = objectManager.getTable
    if getattr(original, "_deepcons", False):
        return

    def getTable(self, tableName):
        table = original(self, tableName)
        if table is not None and not getattr(table, "_deepconsChecked", False):
            names = [c.getName() for c in table.getColumns()]
            if names:                   # checked once its columns are known
                table._deepconsChecked = True
                if SCORE_COLUMN in names:
                    table.setSortingColumn(SCORE_COLUMN)
                    table.setSortingAsc(False)
        return table
    getTable._deepcons = True
    objectManager.getTable = getTable


def _smallerZoom():
    """Boxes drawn at ZOOM px (the zoom box and the rows too) instead of 250."""
    from metadataviewer.model import renderers
    defaults = list(renderers.ImageRenderer.__init__.__defaults__)
    defaults[0] = ZOOM                          # size=IMAGE_DEFAULT_SIZE
    renderers.ImageRenderer.__init__.__defaults__ = tuple(defaults)
    try:
        import metadataviewer.gui.qt.qtviewer as qtviewer
    except ImportError:
        return
    qtviewer.ZOOM_SIZE = ZOOM
