"""The figures of plots.py: drawn without pyplot, so that writing them (command line, the
viewer's PNGs) never changes the process's matplotlib backend; and pyworkflow's Plotter, as
the viewer opens it, keeps the backend it finds."""
import os
import subprocess
import sys

import numpy as np

from xmipp3_deepcons import plots

PNG = b"\x89PNG\r\n\x1a\n"


def example_data(seed=0):
    rng = np.random.default_rng(seed)
    scores = np.clip(np.concatenate([rng.normal(0.15, 0.1, 300), rng.normal(0.85, 0.08, 200)]),
                     0, 1)
    votes = rng.integers(1, 4, len(scores))
    history = [{"accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.55, 0.75, 0.85],
                "loss": [0.7, 0.4, 0.3], "val_loss": [0.75, 0.5, 0.35]}] * 2
    boxes = rng.normal(size=(12, 32, 32)).astype(np.float32)
    return scores, votes, history, boxes


def write_every_figure(folder):
    scores, votes, history, boxes = example_data()
    paths = [os.path.join(folder, name) for name in
             ("histogram.png", "curves.png", "gallery.png", "curves_from_model.png")]
    plots.score_histogram(paths[0], scores, 0.5, votes=votes, bins=40, kept=180)
    plots.training_curves(paths[1], history)
    plots.gallery(paths[2], boxes, np.sort(scores)[::-1][:12], "best")
    model = os.path.join(folder, "model")
    os.makedirs(model)
    with open(os.path.join(model, "history.json"), "w") as f:
        import json
        json.dump(history, f)
    assert plots.training_curves_from_model(paths[3], model)
    assert not plots.training_curves_from_model(paths[3], folder)
    return paths


def test_figures_are_written_as_png(tmp_path):
    for path in write_every_figure(str(tmp_path)):
        with open(path, "rb") as f:
            assert f.read(8) == PNG, path
        assert os.path.getsize(path) > 5000, path


def test_writing_figures_never_touches_pyplot_or_the_backend(tmp_path):
    """In a fresh interpreter whose backend is not Agg: after every writer, pyplot was never
    imported and the backend is the one it had."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "sys.path.insert(0, %r)\n"
        "import test_plots\n"
        "test_plots.write_every_figure(%r)\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
        % (os.path.dirname(__file__), str(tmp_path)))
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["svg", "False"]


def test_histogram_title_counts_the_kept_and_the_merged():
    scores = np.array([0.1, 0.6, 0.7, 0.8, 0.9])
    # 4 above the threshold, 3 in the outputs: one merged as a duplicate
    assert plots.histogram_title(scores, 0.5, kept=3) == (
        "3 of 5 candidates kept (above threshold 0.5: 4, of which 1 merged as duplicates)")
    assert plots.histogram_title(scores, 0.5, kept=4) == (
        "4 of 5 candidates kept (above threshold 0.5)")
    assert plots.histogram_title(scores, -1, kept=5) == "5 of 5 candidates kept (threshold -1)"
    assert plots.histogram_title(scores, 0.5) == "4 of 5 candidates above threshold 0.5"


def test_drawing_on_a_given_figure():
    from matplotlib.figure import Figure
    scores, votes, history, boxes = example_data(1)
    figure = plots.draw_score_histogram(Figure(), scores, 0.5, votes=votes, kept=150)
    assert figure.axes[0].get_title().startswith("150 of 500 candidates kept")
    assert figure.axes[0].get_legend() is not None            # stacked by votes
    figure = plots.draw_training_curves(Figure(), history)
    assert [len(ax.lines) for ax in figure.axes] == [4, 4]     # 2 networks x train/val
    figure = plots.draw_gallery(Figure(), boxes[:10], scores[:10], "worst", columns=4)
    assert sum(1 for ax in figure.axes if ax.images) == 10
    assert figure._suptitle.get_text() == "worst"


def test_viewer_plotter_keeps_the_backend_it_finds():
    """Outside the project window pyworkflow's Plotter has no backend and would switch pyplot
    to Agg; the viewer's figure windows tell it the current one instead."""
    import matplotlib
    import matplotlib.pyplot as plt
    from pyworkflow.gui.plotter import Plotter
    from xmipp3_deepcons.viewers.viewer_deep_consensus import FigureView
    before, plotterBefore = matplotlib.get_backend(), Plotter.backend
    try:
        plt.switch_backend("svg")
        Plotter.backend = None
        scores, votes, _, _ = example_data(2)
        view = FigureView("unused.png", "Deep Consensus: score histogram",
                          plots.HISTOGRAM_SIZE,
                          lambda figure: plots.draw_score_histogram(figure, scores, 0.5, votes))
        plotter = view.show()                # svg has no window: show() does nothing
        assert matplotlib.get_backend() == "svg"
        assert plotter.getFigure().axes[0].patches
        plotter.close()
    finally:
        plt.switch_backend(before)
        Plotter.backend = plotterBefore
