"""The Scipion GUI as a user drives it: the project window, Deep Consensus forms, Analyze
Results and a subset by score, in real Tk windows on a virtual X display (Xvfb).

The project (generated micrographs, three pickers, a finished Deep Consensus run) is the
session's shared one (``protocol_helpers.shared_finished_run``), which test_protocols reads
too; the tests add their own runs beside it. Each test opens pyworkflow's ProjectWindow on it, as
``python -m scipion project NAME`` does, and drives it from inside Tk's event loop
(``gui_helpers.TkScript``): clicks are ``invoke``/``event_generate`` on the widgets a user
clicks, and the checks read Tk's widget tree (windows, labels, canvases) and the figures in
matplotlib's Tk windows. Screenshots go to $DEEPCONS_ARTEFACTS (or a temporary folder,
printed); with $DEEPCONS_README_IMAGES set (e.g. docs/images) the README's three are written
there too, made small.

Needs Xvfb, xwd and ImageMagick: installed with apt-get when missing and running as root;
otherwise the GUI tests are skipped with the reason. To work on them: $DEEPCONS_GUI_PROJECT
(the folder of a project with a finished run) skips building one, and $DEEPCONS_GUI_DEBUG
prints each step of the scripts and each error of a Tk callback as it happens.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("SCIPION_PYTHON", sys.executable)

import gui_helpers as gh  # noqa: E402
from protocol_helpers import SHARED_MICROGRAPHS, SHARED_RUN_LABEL, shared_finished_run  # noqa
from xmipp3_deepcons.constants import SCORE_ATTRIBUTE  # noqa: E402

MICROGRAPHS = SHARED_MICROGRAPHS
GALLERY = 16                  # typed in the viewer form instead of its default 32
SUBSET_RANGE = ("0.9", "1")
FIGURES = {"visualizeHistogram": ["Deep Consensus: score histogram"],
           "visualizeTraining": ["Deep Consensus: training curves"],
           "visualizeGallery": ["Deep Consensus: the %d best scored candidates" % GALLERY,
                                "Deep Consensus: the %d worst scored candidates" % GALLERY]}
MODEL_TYPES = ("New", "Pretrained", "PreviousRun")
# folders given relative to where the tests start (they then work in the project's folder)
for _name in ("DEEPCONS_ARTEFACTS", "DEEPCONS_README_IMAGES"):
    if os.environ.get(_name):
        os.environ[_name] = os.path.abspath(os.environ[_name])
README_IMAGES = os.environ.get("DEEPCONS_README_IMAGES")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def display():
    reason = gh.ensure_tools()
    if reason:
        pytest.skip(reason)
    screen = gh.VirtualDisplay()
    import matplotlib
    from pyworkflow.gui.plotter import Plotter
    backend, plotterBackend = matplotlib.get_backend(), Plotter.backend
    yield screen
    # the project window sets pyplot to TkAgg for the process: give the next modules theirs
    import matplotlib.pyplot as plt
    plt.close("all")
    if matplotlib.get_backend() != backend:
        plt.switch_backend(backend)
    Plotter.backend = plotterBackend
    screen.stop()


@pytest.fixture(scope="module")
def finished():
    """The session's project and its finished run (shared with test_protocols), or the project
    of $DEEPCONS_GUI_PROJECT."""
    cwd = os.getcwd()
    if os.environ.get("DEEPCONS_GUI_PROJECT"):
        yield gh.load_finished_project(os.environ["DEEPCONS_GUI_PROJECT"])
    else:
        yield shared_finished_run()
    os.chdir(cwd)


@pytest.fixture(scope="module")
def artefacts():
    folder = gh.artefacts_dir()
    print("GUI screenshots in %s" % folder)
    return folder


def open_project_window(project, script, timeout=90):
    """Open the project window, run ``script(window, tkscript)`` (a generator) in its event
    loop, and fail with whatever failed in it."""
    from pyworkflow.gui.project import ProjectWindow
    gh.reset_pyworkflow_images()
    window = ProjectWindow(project.getPath())
    runner = gh.TkScript(window.root._root(), None, timeout=timeout)
    runner.generator = script(window, runner)
    runner.start()
    try:
        window.show()
    except SystemExit:
        pass
    finally:
        gh.close_project_server()
    runner.check()


def deep_consensus_run(window):
    """The finished run (the first of the project when it is another's)."""
    runs = [p for p in window.project.getRuns(refresh=True)
            if p.getClassName() == "XmippProtScreenDeepConsensus"]
    return ([p for p in runs if p.getObjLabel() == SHARED_RUN_LABEL] or runs)[0]


def viewer_labels(project, run):
    """{parameter name: label} of the Analyze Results form."""
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    return {name: viewer.getParam(name).label.get()
            for name in viewer._getVisualizeDict()}


def open_analyze_results(window, runner):
    """Select the Deep Consensus box and click Analyze Results; yields until the viewer form
    is on the screen; the form is then ``window.viewerForm``."""
    view = window.getViewWidget()
    run = deep_consensus_run(window)
    view._selectItemProtocol(run)            # what a click on its box does
    yield 0.2
    runner.later(view.btnAnalyze.event_generate, "<Button-1>")

    def viewerForm():
        """the Analyze Results form"""
        return gh.find_toplevel(window.root, "Protocol Viewer: XmippDeepConsensusViewer")
    yield viewerForm
    window.viewerForm = viewerForm()
    yield 0.3


def click_eye(runner, form, label):
    runner.later(gh.param_button(form, label, "Visualize").invoke)


def set_entry(form, label, text):
    _, siblings = gh.param_row(form, label)
    import tkinter as tk
    entries = [w for s in siblings for w in gh.find_widgets(s, cls=tk.Entry)]
    entries[0].delete(0, "end")
    entries[0].insert(0, text)


def shot(artefacts, name, window):
    return gh.screenshot(os.path.join(artefacts, name), window)


def readme_image(source, name):
    """Copy a screenshot to $DEEPCONS_README_IMAGES, made small (PNG, < 150 KB)."""
    folder = README_IMAGES
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name)
    for width, colours in ((900, 128), (800, 64), (700, 32)):
        subprocess.run(["convert", source, "-resize", "%dx>" % width, "-colors", str(colours),
                        "-strip", "PNG8:" + target], check=True)
        if os.path.getsize(target) < 150 * 1024:
            return
    raise AssertionError("%s is still %d KB" % (target, os.path.getsize(target) // 1024))


# ------------------------------------------------------------------------------ tests
@pytest.mark.slow
def test_protocol_tree_and_the_form_in_each_model_type(display, finished, artefacts):
    project, run = finished
    from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
    definition = XmippProtScreenDeepConsensus()
    label = {name: definition.getParam(name).label.get()
             for name in ("modelInitialization", "continueRun", "skipTraining", "nEpochs",
                          "inputCoordinates", "trainingBatch", "doPreliminarPredictions",
                          "toTrainDataSize", "addTrainingData", "noteNoTraining")}
    skipped = {  # with Skip training Yes: nothing of training, and the empty tab says why
        "Pretrained": {"nEpochs": False, "trainingBatch": False, "doPreliminarPredictions": False,
                       "addTrainingData": False, "noteNoTraining": True,
                       "toTrainDataSize": True},      # it chooses the pretrained size
        "PreviousRun": {"nEpochs": False, "trainingBatch": False,
                        "doPreliminarPredictions": False, "addTrainingData": False,
                        "noteNoTraining": True, "toTrainDataSize": False}}
    expected = {  # shown (True) or hidden (False) in each model type, skip training No
        "New": {"continueRun": False, "skipTraining": False, "nEpochs": True},
        "Pretrained": {"continueRun": False, "skipTraining": True, "nEpochs": True},
        "PreviousRun": {"continueRun": True, "skipTraining": True, "nEpochs": True}}

    def script(window, runner):
        import tkinter.ttk as ttk
        tree = window.getViewWidget().protTree
        items = {}

        def walk(parent):
            for item in tree.get_children(parent):
                items[item.split(".")[-1]] = item
                walk(item)
        walk("")
        assert "XmippProtScreenDeepConsensus" in items
        assert "XmippProtDeepConsScoreSubset" in items       # a real form, from the tree
        assert "XmippProtDeepConsSubSet" not in items        # only started by the viewers

        shot(artefacts, "project_window.png", window.root)
        for modelType in MODEL_TYPES:
            item = items["XmippProtScreenDeepConsensus"]
            tree.see(item)
            yield 0.2
            x, y, _, height = tree.bbox(item)
            runner.later(gh.double_click, tree, x + 20, y + height // 2)

            def form():
                """the Deep Consensus form"""
                return gh.find_toplevel(window.root, "Protocol Run: XmippProtScreenDeepConsensus")
            yield form
            protocolForm = form()
            yield 0.3
            _, siblings = gh.param_row(protocolForm, label["modelInitialization"])
            combo = [w for s in siblings for w in gh.find_widgets(s, cls=ttk.Combobox)][0]
            assert combo.get() == "New"                     # the default
            combo.set(modelType)
            yield 0.3
            for name, shown in expected[modelType].items():
                assert gh.param_shown(protocolForm, label[name]) == shown, (
                    "%s: %s should be %s" % (modelType, name, "shown" if shown else "hidden"))
            assert gh.param_shown(protocolForm, label["inputCoordinates"])
            assert not gh.param_shown(protocolForm, label["noteNoTraining"])
            assert gh.param_shown(protocolForm, label["trainingBatch"])
            # one parameter per label: the custom data's kind is not a second "Additional ..."
            assert len([w for w in gh.find_widgets(protocolForm, text=label["addTrainingData"])
                        if w.winfo_manager() == "grid"
                        and "sectioncontentframe" in str(w)]) <= 1
            shot(artefacts, "form_%s.png" % modelType, protocolForm)
            if modelType in skipped:    # scoring with the networks as they are
                _, siblings = gh.param_row(protocolForm, label["skipTraining"])
                yes = [w for s in siblings for w in gh.find_widgets(s, text="Yes")][0]
                yes.invoke()
                yield 0.3
                for name, shown in skipped[modelType].items():
                    assert gh.param_shown(protocolForm, label[name]) == shown, (
                        "%s + skip training: %s should be %s"
                        % (modelType, name, "shown" if shown else "hidden"))
                shot(artefacts, "form_%s_skip.png" % modelType, protocolForm)
                notebook = [w for w in gh.descendants(protocolForm)
                            if isinstance(w, ttk.Notebook)][0]
                for tab in notebook.tabs():
                    if notebook.tab(tab, "text").strip() == "Additional training data":
                        notebook.select(tab)
                yield 0.3
                shot(artefacts, "form_%s_skip_training_data_tab.png" % modelType,
                     protocolForm)
            gh.find_one(protocolForm, text="Close").invoke()
            yield lambda: form() is None

        # the finished run's form (its box selected, then Edit): its three pickers' inputs
        view = window.getViewWidget()
        view._selectItemProtocol(deep_consensus_run(window))      # a click on its box
        yield 0.2
        from pyworkflow.gui.project.constants import ACTION_EDIT
        runner.later(view.actionButtons[ACTION_EDIT].event_generate, "<Button-1>")
        yield form
        protocolForm = form()
        yield 0.3
        _, siblings = gh.param_row(protocolForm, label["inputCoordinates"])
        [inputs] = [w for s in siblings for w in gh.find_widgets(s, cls=ttk.Treeview)]
        assert len(inputs.get_children()) == 3
        readme_image(shot(artefacts, "form_finished_run.png", protocolForm), "scipion_form.png")
        gh.find_one(protocolForm, text="Close").invoke()
        yield lambda: form() is None

    open_project_window(project, script)


@pytest.mark.slow
def test_analyze_results_shows_every_figure(display, finished, artefacts):
    project, run = finished
    labels = viewer_labels(project, run)
    particles = run.outputParticles
    kept = particles.getSize()

    def script(window, runner):
        yield from open_analyze_results(window, runner)
        form = window.viewerForm
        shot(artefacts, "analyze_results.png", form)
        set_entry(form, labels["visualizeGallery"], str(GALLERY))
        for name, titles in FIGURES.items():
            click_eye(runner, form, labels[name])

            def shown():
                """the figure windows"""
                windows = gh.figure_windows()
                return all(t in windows and gh.figure_canvas_widget(windows[t][0]) is not None
                           for t in titles)
            yield shown
            yield 0.5
        windows = gh.figure_windows()
        assert sorted(windows) == sorted(t for ts in FIGURES.values() for t in ts)
        for title, (tkWindow, figure) in windows.items():
            canvas = gh.figure_canvas_widget(tkWindow)
            assert canvas.winfo_ismapped() and canvas.winfo_width() > 300, title
            assert tkWindow.winfo_viewable(), title
            tkWindow.lift()
            tkWindow.update()
            name = re.sub(r"[^a-z0-9]+", "_", title.lower().split(": ")[1]).strip("_")
            path = shot(artefacts, "figure_%s.png" % name, tkWindow)
            if "histogram" in title:
                readme_image(path, "scipion_histogram.png")
            elif "best" in title:
                readme_image(path, "scipion_gallery.png")

        # the histogram says what the outputs hold: kept = above the threshold - merged
        histogram = windows[FIGURES["visualizeHistogram"][0]][1]
        title = histogram.axes[0].get_title()
        match = re.match(r"(\d+) of (\d+) candidates kept \(above threshold 0.5(?:: (\d+), "
                         r"of which (\d+) merged as duplicates)?\)", title)
        assert match, title
        assert int(match.group(1)) == kept, (title, kept)
        if match.group(3):
            assert int(match.group(3)) - int(match.group(4)) == kept
        assert histogram.axes[0].patches, "no bars"
        # the curves of the one training pass, accuracy and loss
        curves = windows[FIGURES["visualizeTraining"][0]][1]
        assert len(curves.axes) == 2 and all(ax.lines for ax in curves.axes)
        # GALLERY boxes in each gallery, best ones scoring at least the worst ones
        best, worst = (windows[t][1] for t in FIGURES["visualizeGallery"])
        scores = []
        for gallery in (best, worst):
            shown = [ax for ax in gallery.axes if ax.images]
            assert len(shown) == GALLERY
            titles = [ax.get_title().split() for ax in shown]
            assert [t[0] for t in titles] == ["#%d" % (k + 1) for k in range(GALLERY)]
            assert all(len(t[1].split(".")[1]) == 4 for t in titles), titles   # 4 decimals
            scores.append([float(t[1]) for t in titles])
        assert min(scores[0]) >= max(scores[1])
        assert scores[0] == sorted(scores[0], reverse=True) and scores[1] == sorted(scores[1])
        # figure windows lie on the screen and do not all open at one place
        places = set()
        for title, (tkWindow, _) in windows.items():
            tkWindow.update_idletasks()
            x, y = tkWindow.winfo_rootx(), tkWindow.winfo_rooty()
            assert 0 <= x and x + tkWindow.winfo_width() <= tkWindow.winfo_screenwidth(), title
            assert 0 <= y and y + tkWindow.winfo_height() <= tkWindow.winfo_screenheight(), title
            places.add((x, y))
        assert len(places) == len(windows), places
        # accuracy and validation accuracy of a model share its colour
        accuracy = curves.axes[0]
        colours = {line.get_label(): line.get_color() for line in accuracy.lines}
        assert colours["model 1 accuracy"] == colours["model 1 val_accuracy"], colours
        gh.find_one(form, text="Close").invoke()

    open_project_window(project, script)


@pytest.mark.slow
def test_particles_open_in_scipion_viewer_with_the_score(display, finished, artefacts,
                                                         monkeypatch):
    """Without Xmipp's ShowJ, the particles open in Scipion's own (metadata) viewer, with the
    score among its visible columns."""
    project, run = finished
    from xmipp3_deepcons.viewers.viewer_deep_consensus import showjInstalled
    assert not showjInstalled()
    labels = viewer_labels(project, run)
    import pwem.viewers.mdviewer.viewer as mdviewer
    started = []
    popen = subprocess.Popen

    def recordingPopen(args, *more, **kwargs):
        started.append((list(args), popen(args, *more, **kwargs)))
        return started[-1][1]
    monkeypatch.setattr(mdviewer.subprocess, "Popen", recordingPopen)
    title = "Metadata: particles.sqlite (%d items)" % run.outputParticles.getSize()
    for name in ("SCIPION_PORT", "SCIPION_OBJECT_ID"):   # MDView sets them in os.environ
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)

    def script(window, runner):
        yield from open_analyze_results(window, runner)
        click_eye(runner, window.viewerForm, labels["visualizeParticles"])
        yield lambda: started
        args = started[0][0]
        visible = args[args.index("--visiblelabels") + 1].split()
        assert SCORE_ATTRIBUTE in visible, visible
        if gh.qt_xcb_ready():
            def metadataWindow():
                """Scipion's metadata viewer window"""
                return started[0][1].poll() is None and gh.window_exists(title)
            yield metadataWindow
            yield 1.0
            gh.screenshot(os.path.join(artefacts, "metadata_viewer.png"))
        gh.find_one(window.viewerForm, text="Close").invoke()

    try:
        open_project_window(project, script)
    finally:
        for _, process in started:       # the viewer processes this test started
            if process.poll() is None:
                process.terminate()
                process.wait(10)
    assert started, "no viewer was started"


@pytest.mark.slow
def test_subset_by_score_from_the_viewer(display, finished, artefacts):
    """Analyze Results > Subset by score: a range, and the subset is a run of the project,
    with no Xmipp installed."""
    project, run = finished
    labels = viewer_labels(project, run)
    scores = np.array([getattr(p, SCORE_ATTRIBUTE).get() for p in run.outputParticles])
    lowest, highest = (float(v) for v in SUBSET_RANGE)
    expected = int(((scores >= lowest) & (scores <= highest)).sum())
    assert 0 < expected < len(scores), "choose a range that keeps some and not all"
    made = {}

    def script(window, runner):
        import tkinter as tk
        before = {p.getObjId() for p in window.project.getRuns(refresh=True)}
        yield from open_analyze_results(window, runner)
        click_eye(runner, window.viewerForm, labels["visualizeSubset"])

        def dialog():
            """the subset dialog"""
            return gh.find_toplevel(window.root, "Deep Consensus: subset by score")
        yield dialog
        box = dialog()
        yield 0.3
        count = gh.find_one(box, name="count")
        assert count.cget("text").startswith("%d of %d items" % (
            int((scores >= 0.5).sum()), len(scores))), count.cget("text")
        histogram = gh.find_one(box, name="histogram")
        canvas = gh.find_widgets(histogram, cls=tk.Canvas)[0]
        assert canvas.winfo_ismapped()
        # a drag across the histogram, from score 0.2 to 0.6, sets the range
        axes = box.axes
        (x0, y0), (x1, _) = axes.transData.transform([(0.2, 0), (0.6, 0)])
        height = box.figure.bbox.height
        y = int(height - y0 - 20)                    # inside the axes, Tk's y downwards
        canvas.event_generate("<Motion>", x=int(x0), y=y)
        canvas.event_generate("<ButtonPress-1>", x=int(x0), y=y)
        for x in np.linspace(x0, x1, 6)[1:]:
            canvas.event_generate("<B1-Motion>", x=int(x), y=y)
        canvas.event_generate("<ButtonRelease-1>", x=int(x1), y=y)
        yield 0.3
        dragged = [float(gh.find_one(box, name=n).get()) for n in ("lowest", "highest")]
        assert abs(dragged[0] - 0.2) < 0.02 and abs(dragged[1] - 0.6) < 0.02, dragged
        assert count.cget("text").startswith("%d of %d items with a score in" % (
            int(((scores >= dragged[0]) & (scores <= dragged[1])).sum()), len(scores)))
        shot(artefacts, "subset_dialog_dragged.png", box)
        for name, value in zip(("lowest", "highest"), SUBSET_RANGE):
            entry = gh.find_one(box, name=name)
            entry.delete(0, "end")
            entry.insert(0, value)
        yield 0.3
        assert count.cget("text") == "%d of %d items with a score in [%g, %g]" % (
            expected, len(scores), lowest, highest)
        shot(artefacts, "subset_dialog.png", box)
        gh.find_one(box, text="Create subset").invoke()
        yield lambda: dialog() is None

        view = window.getViewWidget()

        def launched():
            """the subset run, launched and selected in the project window"""
            selected = view.getSelectedProtocol()
            return (selected is not None and selected.getObjId() not in before
                    and selected.getClassName() == "XmippProtDeepConsScoreSubset")
        yield launched
        log = os.path.join(window.project.getPath(), view.getSelectedProtocol().getLogPaths()[0])

        def ended():
            """the subset run to end (its log; refreshing the project all the time races
            with the run's last write in pyworkflow)"""
            if not os.path.exists(log):
                return False
            with open(log) as f:
                text = f.read()
            return "PROTOCOL FINISHED" in text or "PROTOCOL FAILED" in text
        yield ended
        yield 1.5
        made["run"] = {p.getObjId(): p for p in window.project.getRuns(refresh=True)}[
            view.getSelectedProtocol().getObjId()]
        # the project window shows the new box (its graph, a Tk canvas) and selects it
        view.refreshRuns()
        yield 1.0
        canvas = view.runsGraphCanvas
        texts = [canvas.itemcget(i, "text") for i in canvas.find_all()
                 if canvas.type(i) == "text"]
        # its box: "xmipp3_deepcons - deep consensus subset 0.9-1", cut to fit
        assert any("deep consensus su" in t for t in texts), texts
        assert view.getSelectedProtocol().getObjId() == made["run"].getObjId()
        gh.find_one(window.viewerForm, text="Close").invoke()
        yield 0.5
        window.root.lift()
        yield 0.3
        shot(artefacts, "project_with_subset.png", window.root)

    open_project_window(project, script, timeout=120)
    subset = made["run"]
    assert subset.getClassName() == "XmippProtDeepConsScoreSubset"
    assert subset.getObjLabel() == "deep consensus subset 0.9-1"     # the label given in code
    assert subset.isFinished(), subset.getErrorMessage()
    output = subset.outputParticles
    assert output.getSize() == expected
    kept = [getattr(p, SCORE_ATTRIBUTE).get() for p in output]
    assert min(kept) >= lowest and max(kept) <= highest
    assert "%d of %d items with a score in [0.9, 1]" % (expected, len(scores)) in \
        "\n".join(subset.summary())


@pytest.mark.slow
def test_matplotlib_backend_unchanged_by_every_entry(display, finished, monkeypatch):
    """Opening every Analyze Results entry leaves the process's backend (the project
    window's TkAgg) as it was, and nothing asks matplotlib to switch it."""
    project, run = finished
    labels = viewer_labels(project, run)
    import matplotlib
    import matplotlib.pyplot as plt
    import pwem.viewers.mdviewer.viewer as mdviewer
    switches = []
    switch = plt.switch_backend
    monkeypatch.setattr(plt, "switch_backend",
                        lambda name: switches.append(name) or switch(name))
    monkeypatch.setattr(matplotlib, "use",
                        lambda name, *a, **k: switches.append(name))
    started = []
    monkeypatch.setattr(mdviewer.subprocess, "Popen",       # no metadata viewer process
                        lambda args, *a, **k: started.append(args))
    seen = {}

    def script(window, runner):
        yield from open_analyze_results(window, runner)
        form = window.viewerForm
        seen["before"] = matplotlib.get_backend()
        del switches[:]
        for name in ("visualizeParticles", "visualizeHistogram", "visualizeTraining",
                     "visualizeGallery"):
            click_eye(runner, form, labels[name])
            yield 1.0
        click_eye(runner, form, labels["visualizeSubset"])

        def dialog():
            """the subset dialog"""
            return gh.find_toplevel(window.root, "Deep Consensus: subset by score")
        yield dialog
        gh.find_one(dialog(), text="Cancel").invoke()
        yield lambda: dialog() is None
        seen["after"] = matplotlib.get_backend()
        seen["figures"] = len(gh.figure_windows())
        gh.find_one(form, text="Close").invoke()

    open_project_window(project, script)
    assert seen["before"].lower() == "tkagg"
    assert seen["after"] == seen["before"]
    assert switches == [], "the backend was switched to %s" % switches
    assert seen["figures"] == 4 and started


@pytest.mark.slow
def test_subset_of_coordinates_and_its_validation(finished):
    """The subset protocol on the coordinates, launched by the viewer outside a project
    window (no GUI); and a range upside down is refused."""
    project, run = finished
    from xmipp3_deepcons.protocols import XmippProtDeepConsScoreSubset
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    scores = viewer.subsetScores("outputCoordinates")
    expected = int(((scores >= 0.95) & (scores <= 1)).sum())
    subset = viewer.makeScoreSubset(0.95, 1, "outputCoordinates", wait=True)
    assert subset.isFinished(), subset.getErrorMessage()
    coordinates = subset.outputCoordinates
    assert coordinates.getSize() == expected
    assert coordinates.getBoxSize() == run.outputCoordinates.getBoxSize()
    assert (coordinates.getMicrographs().getObjId()
            == run.outputCoordinates.getMicrographs().getObjId())

    wrong = project.newProtocol(XmippProtDeepConsScoreSubset, minScore=0.9, maxScore=0.2)
    wrong.inputObject.set(run)
    wrong.inputObject.setExtended("outputParticles")
    assert any("above the highest" in e for e in wrong.validate())
    unscored = project.newProtocol(XmippProtDeepConsScoreSubset)
    picker = [p for p in project.getRuns() if p.getClassName() == "ProtImportCoordinates"][0]
    unscored.inputObject.set(picker)
    unscored.inputObject.setExtended("outputCoordinates")
    assert any("carry no Deep Consensus score" in e for e in unscored.validate())


@pytest.mark.slow
def test_with_showj_the_original_path_is_kept(finished, monkeypatch):
    """With Xmipp's ShowJ installed, the particles entry opens it as the original viewer did:
    sorted by score, subsets on the coordinates (XmippProtDeepConsSubSet)."""
    project, run = finished
    from pwem.viewers import ObjectView
    import xmipp3_deepcons.viewers.viewer_deep_consensus as module
    monkeypatch.setattr(module, "showjInstalled", lambda: True)
    viewer = module.XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    [view] = viewer._visualizeParticles()
    assert isinstance(view, ObjectView)
    arguments = view.getShowJParams()
    assert "--scipion %s %s deepCons" % (project.port, run.outputCoordinates.strId()) \
        in arguments
    assert "%s asc" % SCORE_ATTRIBUTE in arguments
    assert run.outputParticles.getFileName() == view.getPath()


@pytest.mark.slow
def test_viewer_writes_its_figures_headless(finished):
    """The same figures as PNGs in the run's extra/plots, without a display or pyplot."""
    project, run = finished
    import matplotlib
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    backend = matplotlib.get_backend()
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    paths = [viewer.writeHistogram(), viewer.writeTrainingCurves()] + viewer.writeGalleries()
    assert len(paths) == 4
    for path in paths:
        assert os.path.dirname(path) == os.path.abspath(run._getExtraPath("plots"))
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    assert viewer._visualizeHistogram()[0].getPath() == paths[0]
    assert matplotlib.get_backend() == backend


@pytest.mark.slow
def test_stopped_run_analysis_uses_the_scores_that_exist(display, finished, artefacts):
    """A run stopped after its network scored and before the shipped network did (anchored
    evidence): the histogram and the galleries open, with the run network's scores and a note
    saying so; no Tk callback fails."""
    import glob
    import shutil
    project, run = finished
    settings = run.runFolder().settings()
    assert settings.uses_reference, "the finished run should use anchored evidence"
    labels = viewer_labels(project, run)
    [reference] = glob.glob(run._getExtraPath("work", "scores_reference*"))
    hidden = reference + ".away"
    shutil.move(reference, hidden)      # what a run stopped before that scoring left
    seen = {}

    def script(window, runner):
        yield from open_analyze_results(window, runner)
        form = window.viewerForm
        set_entry(form, labels["visualizeGallery"], str(GALLERY))
        for name in ("visualizeHistogram", "visualizeGallery"):
            click_eye(runner, form, labels[name])
            titles = FIGURES[name]
            yield lambda: all(any(w.startswith(t) for w in gh.figure_windows()) for t in titles)
            yield 0.5
        windows = gh.figure_windows()
        histogram = windows[FIGURES["visualizeHistogram"][0]][1]
        seen["histogram"] = [histogram._suptitle.get_text() if histogram._suptitle else ""]
        seen["bars"] = len(histogram.axes[0].patches)
        best = [f for t, (_, f) in windows.items() if "best" in t][0]
        seen["gallery"] = best._suptitle.get_text()
        seen["boxes"] = sum(1 for ax in best.axes if ax.images)
        histogramWindow = windows[FIGURES["visualizeHistogram"][0]][0]
        histogramWindow.lift()
        histogramWindow.update()
        yield 0.5
        shot(artefacts, "stopped_run_histogram.png", histogramWindow)
        bestWindow = [w for t, (w, _) in windows.items() if "best" in t][0]
        bestWindow.lift()
        bestWindow.update()
        yield 0.5
        shot(artefacts, "stopped_run_best.png", bestWindow)
        gh.find_one(form, text="Close").invoke()

    try:
        open_project_window(project, script)
    finally:
        shutil.move(hidden, reference)
    note = "%d of %d micrographs not scored by the shipped network yet" % (MICROGRAPHS,
                                                                           MICROGRAPHS)
    assert any(note in text for text in seen["histogram"]), seen["histogram"]
    assert note in seen["gallery"] and seen["boxes"] == GALLERY
    assert seen["bars"] > 0


@pytest.mark.slow
def test_previous_run_training_curves_say_whose_they_are(finished):
    """A run that did not train shows the reused networks' curves and says so."""
    project, run = finished
    from xmipp3_deepcons.protocols import XmippProtScreenDeepConsensus
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    assert viewer.trainingTitle() == "Deep Consensus: training curves"
    reused = project.newProtocol(XmippProtScreenDeepConsensus, skipTraining=True,
                                 modelInitialization=XmippProtScreenDeepConsensus
                                 .ADD_MODEL_TRAIN_PREVRUN)
    reused.continueRun.set(run)
    viewer.setProtocol(reused)
    assert viewer.trainingTitle().startswith(
        "Deep Consensus: training curves of the previous run %s (this run did not train"
        % run.getRunName())


@pytest.mark.slow
def test_counts_below_one_are_refused_with_a_message(finished):
    project, run = finished
    from pyworkflow.viewer import MessageView
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    viewer.visualizeGallery.set(-3)
    viewer.visualizeHistogram.set(0)
    [gallery] = viewer._visualizeGallery()
    [histogram] = viewer._visualizeHistogram()
    assert isinstance(gallery, MessageView) and isinstance(histogram, MessageView)
    assert "number of candidates must be at least 1 (it is -3)" in gallery.getMessage()
    assert "number of bins must be at least 1 (it is 0)" in histogram.getMessage()


@pytest.mark.slow
def test_workflow_template_keeps_its_labels(display, artefacts):
    """The template's protocols keep their labels in a project (pyworkflow 3.11.7 drops the
    label given to newProtocol: the plugin sets it after creation)."""
    import json
    from pyworkflow.project import Manager
    from xmipp3_deepcons.scipion_plugin import Plugin
    [template] = [t for t in Plugin().getTemplates()]
    with open(template.templatePath) as f:
        text = f.read()
    # what Scipion's template launcher does with the ~label|default|type|alias~ fields
    text = re.sub(r'"~[^|~]*\|([^|~]*)\|[^~]*~"', lambda m: json.dumps(m.group(1)), text)
    wanted = [p["object.label"] for p in json.loads(text)]
    cwd = os.getcwd()
    project = Manager().createProject("deepcons_template_%d" % os.getpid())
    os.chdir(project.getPath())
    try:
        project.loadProtocols(jsonStr=text)
        labels = [p.getObjLabel() for p in project.getRuns(refresh=True)]
        assert sorted(labels) == sorted(wanted), labels
        assert {"import coordinates: picker %d" % i for i in (1, 2, 3)} <= set(labels)
        seen = {}

        def script(window, runner):
            yield 1.0
            canvas = window.getViewWidget().runsGraphCanvas
            seen["texts"] = [canvas.itemcget(i, "text") for i in canvas.find_all()
                             if canvas.type(i) == "text"]
            shot(artefacts, "template_project.png", window.root)
        open_project_window(project, script)
        assert sum("picker" in t for t in seen["texts"]) == 3, seen["texts"]
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_analyze_results_on_a_pickers_coordinates(display, finished, artefacts, monkeypatch):
    """Analyze Results on coordinates another protocol made (a picker's import), with the
    preferred viewers Scipion's launcher sets (Xmipp's DataViewer for coordinates): the
    plugin prefers pwem's own coordinate viewer, which opens without Xmipp."""
    import pwem
    import pyworkflow
    from xmipp3_deepcons.scipion_plugin import prefer_a_coordinate_viewer_that_runs
    project, run = finished
    monkeypatch.setattr(pyworkflow.Config, "VIEWERS",
                        {"SetOfCoordinates": ["pwem.viewers.DataViewer"]})  # python -m scipion
    monkeypatch.setattr(pwem.Domain, "_preferred_viewers", None)
    assert prefer_a_coordinate_viewer_that_runs()
    seen = {}

    def script(window, runner):
        view = window.getViewWidget()
        picker = [p for p in window.project.getRuns(refresh=True)
                  if p.getClassName() == "ProtImportCoordinates"][0]
        before = {str(w) for w in gh.toplevels(window.root)}
        view._selectItemProtocol(picker)
        yield 0.2
        runner.later(view.btnAnalyze.event_generate, "<Button-1>")

        def opened():
            """a window showing the coordinates"""
            new = [w for w in gh.toplevels(window.root) if str(w) not in before]
            return new or gh.figure_windows()
        yield opened
        yield 1.0
        new = [w for w in gh.toplevels(window.root) if str(w) not in before]
        seen["titles"] = [w.title() for w in new] + list(gh.figure_windows())
        gh.screenshot(os.path.join(artefacts, "picker_coordinates.png"))

    open_project_window(project, script)
    assert "Scipion coordinates viewer" in seen["titles"], seen["titles"]


def run_metadata_viewer(arguments):
    """The metadata viewer driven by tests/mdviewer_script.py: its JSON result line."""
    import json
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mdviewer_script.py")
    done = subprocess.run([sys.executable, script, SCORE_ATTRIBUTE] + arguments,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, "the viewer gave no result:\n%s\n%s" % (done.stdout[-2000:],
                                                           done.stderr[-3000:])
    return json.loads(lines[0][len("RESULT "):])


@pytest.mark.slow
def test_metadata_viewer_sorted_by_score_and_a_range_selected(display, finished):
    """Particles and their scores, in Scipion's metadata viewer as the plugin opens it: sorted
    by score (highest first) at 100 %; a click on the score header (twice), a click on row 1
    and a shift-click on row 4 select the four best scored, and the window stays open. With
    pwem's own extension (upstream) the same clicks close it: no such column: stack."""
    if not gh.qt_xcb_ready():
        pytest.skip("PyQt5's X11 plugin lacks its libraries (%s)" % " ".join(gh.QT_XCB_LIBS))
    project, run = finished
    from xmipp3_deepcons.viewers import XmippDeepConsensusViewer
    viewer = XmippDeepConsensusViewer(project=project)
    viewer.setProtocol(run)
    [view] = viewer._visualizeParticles()
    scores = {p.getObjId(): getattr(p, SCORE_ATTRIBUTE).get() for p in run.outputParticles}
    best = sorted(scores.values(), reverse=True)[:4]

    result = run_metadata_viewer(view.arguments())
    assert "error" not in result, result["error"]
    assert result["first_sorted_by"] == [SCORE_ATTRIBUTE, False]
    assert [scores[i] for i in result["first_rows"]] == best
    assert result["zoom"] == 100 and result["box_px"] == 100
    assert result["sorted_by"] == [SCORE_ATTRIBUTE, False]
    assert [scores[i] for i in result["rows"]] == best
    assert len(result["selected"]) == 4
    assert sorted((scores[i] for i in result["selected"]), reverse=True) == best

    import pwem.viewers.mdviewer as mdviewer
    upstream = run_metadata_viewer(view.arguments(
        os.path.join(os.path.dirname(mdviewer.__file__), "readers.py")))
    assert "no such column: stack" in upstream.get("error", ""), upstream


@pytest.mark.slow
def test_no_log_starts_with_an_import_error(finished):
    """Every run log of the project (pyworkflow loads every plugin's protocols in each run)
    has no plugin import error: scipion-em-xmipp without Xmipp's binding is quiet."""
    import glob
    project, run = finished
    logs = glob.glob(os.path.join(project.getPath(), "Runs", "*", "logs", "run.stdout"))
    assert len(logs) >= 5, logs                   # micrographs, 3 pickers, deep consensus
    for path in logs:
        with open(path) as f:
            text = f.read()
        assert "error when importing" not in text and "isMdEmpty" not in text, path
    from pwem import Domain
    assert "XmippProtScreenDeepConsensus" in Domain.getProtocols()
    import xmipp3.convert   # noqa: F401  (the .pos import still has its converters)


def test_default_run_names_have_no_underscore():
    """The Methods tab writes a run's name between underscores (italics): the default names
    of this plugin's runs must not hold one."""
    from xmipp3_deepcons.protocols import (XmippProtDeepConsScoreSubset,
                                           XmippProtDeepConsSubSet,
                                           XmippProtScreenDeepConsensus)
    for cls in (XmippProtScreenDeepConsensus, XmippProtDeepConsScoreSubset,
                XmippProtDeepConsSubSet):
        label = cls.getClassLabel()
        assert label.startswith("xmipp3-deepcons - ") and "_" not in label, label
