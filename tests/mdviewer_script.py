"""Drive Scipion's metadata viewer (``python -m metadataviewer``, PyQt5) as a user does after
*Particles and their scores*: started with the arguments the plugin hands it (given on this
script's command line), then, inside its Qt event loop, a click on the score column's header
(twice: ascending, then descending, as the viewer toggles) and a click on the first row with
a shift-click on the fourth (the viewer's own handlers: ``sectionClicked`` and
``selectedRange``, which a shift-click calls). Prints one JSON line: what the table showed
first, the order it was sorted in, the ids selected, the zoom; or the error that closed it.

Run as ``python mdviewer_script.py <metadataviewer arguments>`` on a display.
"""
import json
import sys
import traceback


def steps(app, result):
    from metadataviewer.gui.qt.qtviewer import QTMetadataViewer
    try:
        [gui] = [w for w in app.topLevelWidgets() if isinstance(w, QTMetadataViewer)]
        table = gui.table
        names = [table.horizontalHeaderItem(i).text() for i in range(table.columnCount())]
        score = result["score"]
        model = table.getTable()
        result["first_sorted_by"] = [model.getSortingColumn(), model.isSortingAsc()]
        result["first_rows"] = [gui.objectManager.getCurrentRow(model, r).getId()
                                for r in range(4)]
        result["zoom"] = gui.zoom.value()
        images = [c for c in table.getColumns() if c.getName() == "stack"]
        result["box_px"] = images[0].getRenderer().getSize() if images else None
        column = names.index(score)
        for _ in range(2):                          # two clicks on the header
            table.horizontalHeader().sectionClicked.emit(column)
            app.processEvents()
        result["sorted_by"] = [model.getSortingColumn(), model.isSortingAsc()]
        result["rows"] = [gui.objectManager.getCurrentRow(model, r).getId() for r in range(4)]
        model.getSelection().clear()
        model.getSelection().addRowSelected(result["rows"][0])     # a click on row 1
        gui.selectedRange(1, 4)                     # shift+click on row 4
        app.processEvents()
        result["selected"] = sorted(model.getSelection().getSelection())
    except Exception:
        result["error"] = traceback.format_exc()
    print("RESULT " + json.dumps(result), flush=True)
    app.quit()


def main():
    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication
    score = sys.argv[1]
    sys.argv = ["metadataviewer"] + sys.argv[2:]
    result = {"score": score}
    original = QApplication.exec_

    def exec_(*args):           # QApplication.exec_ is static
        app = QApplication.instance()
        QTimer.singleShot(3000, lambda: steps(app, result))
        return original()
    QApplication.exec_ = exec_
    from metadataviewer.__main__ import main as viewer
    viewer()


if __name__ == "__main__":
    main()
