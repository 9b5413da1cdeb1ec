"""The Subset by score dialog of Analyze Results: a score range chosen on the histogram of a
Deep Consensus output (dragged across it, or typed in the two entry boxes), and a 'deep
consensus subset by score' run launched with it.

Plain Tk (pyworkflow's Dialog) with a matplotlib Figure on a Tk canvas: no pyplot, so the
process's matplotlib backend is left as it is. Widgets the tests look for have Tk names:
``lowest``, ``highest``, ``output_<name>``, ``count`` and ``histogram``.
"""
import tkinter as tk

import numpy as np

from pyworkflow.gui.dialog import RESULT_CANCEL, RESULT_YES, Dialog

TITLE = "Deep Consensus: subset by score"
CREATE = "Create subset"
OUTPUT_LABELS = {"outputParticles": "particles (outputParticles)",
                 "outputCoordinates": "coordinates (outputCoordinates)"}


class ScoreSubsetDialog(Dialog):
    """Modal: returns when closed; ``created`` is the launched protocol (None if cancelled).

    ``create(lowest, highest, outputName)`` makes and launches the subset run."""

    def __init__(self, parent, runName, scores, threshold, outputNames, create):
        self.runName = runName
        self.scores = np.asarray(scores, dtype=float)
        self.threshold = threshold
        self.outputNames = list(outputNames)
        self.create = create
        self.created = None
        Dialog.__init__(self, parent, TITLE, buttons=[(CREATE, RESULT_YES),
                                                       ("Cancel", RESULT_CANCEL)],
                        default=CREATE)

    # ----------------------------------------------------------------- body
    def body(self, master):
        lowest = self.threshold if self.threshold is not None and self.threshold >= 0 else 0.5
        self.lowestVar = tk.StringVar(value="%g" % lowest)
        self.highestVar = tk.StringVar(value="1")
        self.outputVar = tk.StringVar(value=self.outputNames[0])

        tk.Label(master, justify=tk.LEFT, wraplength=520, anchor='w',
                 text="Keep the items of %s whose score lies in a range (both ends "
                      "included): drag across the histogram, or type the lowest and the "
                      "highest score. A 'deep consensus subset by score' run of this "
                      "project makes the subset." % self.runName).grid(row=0, column=0, columnspan=4,
                                                                sticky='we', pady=(0, 4))
        self._histogram(master).grid(row=1, column=0, columnspan=4, sticky='news')

        tk.Label(master, text="Lowest score").grid(row=2, column=0, sticky='e')
        tk.Entry(master, name="lowest", width=8,
                 textvariable=self.lowestVar).grid(row=2, column=1, sticky='w', padx=4)
        tk.Label(master, text="Highest score").grid(row=2, column=2, sticky='e')
        tk.Entry(master, name="highest", width=8,
                 textvariable=self.highestVar).grid(row=2, column=3, sticky='w', padx=4)

        row = 3
        if len(self.outputNames) > 1:
            tk.Label(master, text="Subset of").grid(row=row, column=0, sticky='e')
            for i, name in enumerate(self.outputNames):
                tk.Radiobutton(master, name="output_%s" % name, variable=self.outputVar,
                               value=name, text=OUTPUT_LABELS.get(name, name)).grid(
                    row=row + i, column=1, columnspan=3, sticky='w')
            row += len(self.outputNames)
        self.countLabel = tk.Label(master, name="count", anchor='w')
        self.countLabel.grid(row=row, column=0, columnspan=4, sticky='we', pady=(4, 0))
        master.columnconfigure(1, weight=1)
        master.columnconfigure(3, weight=1)
        master.rowconfigure(1, weight=1)

        for var in (self.lowestVar, self.highestVar):
            var.trace_add('write', self._update)
        self._update()

    def _histogram(self, master):
        from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
        from matplotlib.figure import Figure
        self.figure = Figure(figsize=(5.6, 2.4), dpi=100)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.axes.hist(self.scores, bins=np.linspace(0, 1, 51), color='0.6')
        self.axes.set_xlim(0, 1)
        self.axes.set_xlabel("score", fontsize=8)
        self.axes.set_ylabel("items", fontsize=8)
        self.axes.tick_params(labelsize=7)
        self.axes.set_title("drag across the histogram to choose the range", fontsize=8)
        self.span = None
        self.figure.tight_layout()
        frame = tk.Frame(master, name="histogram")
        self.canvas = FigureCanvasTkAgg(self.figure, master=frame)
        self.canvas.get_tk_widget().pack(fill=tk.BOTH, expand=True)
        from matplotlib.widgets import SpanSelector
        self.selector = SpanSelector(self.axes, self.selectRange, "horizontal", useblit=False,
                                     props=dict(facecolor='tab:blue', alpha=0.2),
                                     interactive=False, minspan=0.002)
        return frame

    def selectRange(self, lowest, highest):
        """A range dragged on the histogram: into the two entry boxes (which update the
        count and the shaded range)."""
        lowest, highest = max(0.0, min(lowest, highest)), min(1.0, max(lowest, highest))
        self.lowestVar.set("%.3f" % lowest)
        self.highestVar.set("%.3f" % highest)

    # ---------------------------------------------------------------- state
    def range(self):
        """(lowest, highest) as typed; ValueError with the reason when they are not a range."""
        try:
            lowest, highest = float(self.lowestVar.get()), float(self.highestVar.get())
        except ValueError:
            raise ValueError("The scores must be numbers (between 0 and 1).")
        if lowest > highest:
            raise ValueError("The lowest score is above the highest.")
        return lowest, highest

    def inRange(self):
        lowest, highest = self.range()
        return int(((self.scores >= lowest) & (self.scores <= highest)).sum())

    def _update(self, *args):
        try:
            lowest, highest = self.range()
        except ValueError as error:
            self.countLabel.configure(text=str(error), fg='red')
            return
        self.countLabel.configure(fg='black', text="%d of %d items with a score in [%g, %g]"
                                  % (self.inRange(), len(self.scores), lowest, highest))
        if self.span is not None:
            self.span.remove()
        self.span = self.axes.axvspan(max(lowest, 0), min(highest, 1), color='tab:green',
                                      alpha=0.25)
        self.canvas.draw_idle()

    # --------------------------------------------------------------- result
    def validate(self):
        try:
            count = self.inRange()
        except ValueError as error:
            self.floatingMessage.configure(text=str(error), fg='red')
            return False
        if count == 0:
            self.floatingMessage.configure(text="No item has a score in this range.", fg='red')
            return False
        return True

    def apply(self):
        lowest, highest = self.range()
        self.created = self.create(lowest, highest, self.outputVar.get())
