"""Driving the real Scipion GUI (Tk) in a test: a virtual X display, a finished project,
a script run inside Tk's event loop, the widget tree, and screenshots.

The GUI is the one a user gets from ``python -m scipion project NAME``: pyworkflow's
ProjectWindow, in this process, so that the test can walk Tk's widget tree. Windows that
pyworkflow opens from a button (forms, viewers, dialogs) enter nested event loops and only
return when closed, so a test is a generator run by ``TkScript`` from Tk callbacks: it yields
seconds to wait or a condition to wait for, and starts blocking actions with ``later``.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tkinter as tk

# Tools the GUI tests need, and the Debian packages that have them (the three Qt xcb libraries
# let Scipion's metadata viewer, a PyQt5 program, open its window).
TOOLS = {"Xvfb": "xvfb", "xwd": "x11-apps", "import": "imagemagick"}
QT_XCB_LIBS = ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-xinerama0")
SCREEN = "1600x1000x24"


# ----------------------------------------------------------------------------- X display
def missing_tools():
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _apt_install(packages):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + list(packages)
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(command, env=env, capture_output=True)


def qt_xcb_ready():
    """Whether PyQt5's X11 platform plugin finds its libraries."""
    try:
        import PyQt5
    except ImportError:
        return False
    plugin = os.path.join(os.path.dirname(PyQt5.__file__), "Qt5", "plugins", "platforms",
                          "libqxcb.so")
    if not os.path.exists(plugin) or shutil.which("ldd") is None:
        return False
    return "not found" not in subprocess.run(["ldd", plugin], capture_output=True,
                                             text=True).stdout


def ensure_tools():
    """Install Xvfb, xwd and ImageMagick (and Qt's xcb libraries) with apt-get when missing
    and running as root; returns None when ready, else the reason the GUI tests skip."""
    missing = missing_tools()
    root = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if missing and root:
        _apt_install(sorted({TOOLS[tool] for tool in missing}) +
                     ([] if qt_xcb_ready() else list(QT_XCB_LIBS)))
        missing = missing_tools()
    elif root and not qt_xcb_ready():
        _apt_install(QT_XCB_LIBS)
    if missing:
        return ("the GUI tests need %s (Debian packages %s): install them, or run the tests as "
                "root with apt-get" % (", ".join(missing),
                                       " ".join(sorted({TOOLS[t] for t in missing}))))
    return None


class VirtualDisplay:
    """An Xvfb server on a free display number, set as $DISPLAY until ``stop``."""

    def __init__(self, screen=SCREEN):
        read, write = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp",
             "-noreset"], pass_fds=(write,), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.process.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = ":" + number
        self.previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = self.display

    def stop(self):
        if self.previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = self.previous
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def window_exists(name, display=None):
    """Whether the X server has a window with this exact name (title), of any process."""
    env = dict(os.environ, DISPLAY=display or os.environ.get("DISPLAY", ""))
    return subprocess.run(["xwd", "-silent", "-name", name], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def artefacts_dir(default_prefix="deepcons_gui_"):
    folder = os.path.abspath(os.environ.get("DEEPCONS_ARTEFACTS")
                             or tempfile.mkdtemp(prefix=default_prefix))
    os.makedirs(folder, exist_ok=True)
    return folder


def screenshot(path, window=None):
    """A PNG of one Tk window (its X window, as it is on the screen) or of the whole screen."""
    target = "root" if window is None else window.winfo_id()
    if window is not None:
        window.update_idletasks()
        target = window.wm_frame() if isinstance(window, (tk.Tk, tk.Toplevel)) else target
    subprocess.run(["import", "-window", str(target), path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return path


# ------------------------------------------------------------------------- a finished run
def load_finished_project(path):
    """(project, its Deep Consensus run) of an existing project folder."""
    import pyworkflow
    from pyworkflow.project import Project
    pyworkflow.PYTHON = os.environ.setdefault("SCIPION_PYTHON", sys.executable)
    project = Project(pyworkflow.Config.getDomain(), os.path.abspath(path))
    os.chdir(project.getPath())
    project.load()
    runs = [p for p in project.getRuns() if p.getClassName() == "XmippProtScreenDeepConsensus"]
    return project, runs[0]


# ------------------------------------------------------------------------ the widget tree
def descendants(widget):
    """Every widget under ``widget`` (depth first), Toplevels included; widgets destroyed
    meanwhile are left out."""
    try:
        children = widget.winfo_children()
    except (tk.TclError, KeyError):
        return
    for child in children:
        yield child
        yield from descendants(child)


def toplevels(root):
    """The visible Toplevel windows of a Tk interpreter (pyworkflow's windows and dialogs)."""
    found = []
    for w in descendants(root):
        try:
            if isinstance(w, tk.Toplevel) and w.winfo_exists() and w.winfo_viewable():
                found.append(w)
        except tk.TclError:
            pass
    return found


def find_toplevel(root, title_start):
    """The visible window whose title starts so, once a user could act on it."""
    for window in toplevels(root):
        if window.title().strip().startswith(title_start):
            return window if ready_for_input(window) else None
    return None


def ready_for_input(window):
    """A pyworkflow modal dialog is mapped before its constructor's ``wait_visibility``
    returns and it takes the grab; a click in between destroys it under that wait."""
    from pyworkflow.gui.dialog import Dialog
    return not isinstance(window, Dialog) or window.grab_status() is not None


def find_widgets(widget, cls=None, text=None, name=None):
    found = []
    for w in descendants(widget):
        if cls is not None and not isinstance(w, cls):
            continue
        if name is not None and w.winfo_name() != name:
            continue
        if text is not None:
            try:
                if w.cget("text") != text:
                    continue
            except tk.TclError:
                continue
        found.append(w)
    return found


def find_one(widget, **kwargs):
    found = find_widgets(widget, **kwargs)
    if len(found) != 1:
        raise AssertionError("expected one widget %s under %s, found %d"
                             % (kwargs, widget, len(found)))
    return found[0]


def param_row(window, label):
    """The (label, content, buttons) widgets of a form parameter, found by its label text:
    the three share a grid row of one frame."""
    labels = [w for w in find_widgets(window, cls=tk.Label, text=label)
              if w.winfo_manager() == "grid" or w.grid_info()]
    if not labels:
        raise AssertionError("no parameter labelled %r in %s" % (label, window.title()))
    label_widget = labels[0]
    row = int(label_widget.grid_info()["row"])
    siblings = [w for w in label_widget.master.winfo_children()
                if w is not label_widget and w.winfo_manager() == "grid"
                and int(w.grid_info()["row"]) == row]
    return label_widget, siblings


def param_shown(window, label):
    """Whether the form shows that parameter (its label is gridded, not removed); a tab's
    title of the same text (a section header) is not a parameter."""
    return any(w.winfo_manager() == "grid" and "sectionheaderframe" not in str(w)
               for w in find_widgets(window, cls=tk.Label, text=label))


def param_button(window, label, button_text):
    """A button (Show, Help, ...) of a form parameter, found by the parameter's label."""
    _, siblings = param_row(window, label)
    for frame in siblings:
        for button in find_widgets(frame, cls=tk.Button, text=button_text):
            return button
    raise AssertionError("parameter %r has no %r button" % (label, button_text))


def double_click(widget, x, y):
    """The events of a double click of the first button at (x, y) of a widget."""
    for event in ("<ButtonPress-1>", "<ButtonRelease-1>", "<ButtonPress-1>",
                  "<ButtonRelease-1>"):
        widget.event_generate(event, x=x, y=y)


def figure_windows():
    """{window title: (Tk window, Figure)} of the open matplotlib windows (TkAgg)."""
    from matplotlib._pylab_helpers import Gcf
    found = {}
    for manager in Gcf.get_all_fig_managers():
        window = getattr(manager, "window", None)
        if window is not None and window.winfo_exists():
            found[window.title()] = (window, manager.canvas.figure)
    return found


def figure_canvas_widget(window):
    """The Tk canvas that shows a matplotlib figure in its window (a FigureCanvasTkAgg)."""
    for widget in descendants(window):
        if isinstance(widget, tk.Canvas) and widget.winfo_ismapped():
            return widget
    return None


# ------------------------------------------------------------------ a script in Tk's loop
class TkScript:
    """Runs a generator inside Tk's event loop, one step per callback.

    The generator yields a number (seconds to wait) or a callable (wait until it returns
    something true; ``timeout`` seconds at most, then AssertionError is thrown into the
    generator). ``later(func)`` runs ``func`` from its own callback, for actions that block in
    a nested event loop (a form, a viewer, a modal dialog). Exceptions of any Tk callback
    (``report_callback_exception``) are collected in ``errors``. When the generator ends the
    script closes every window, so that ``mainloop`` (the project window's ``show``) returns.
    """

    def __init__(self, root, generator, timeout=60, tick_ms=50):
        self.root, self.generator, self.timeout, self.tick_ms = root, generator, timeout, tick_ms
        self.errors, self.failure, self.done = [], None, False
        self._what = None
        self._waiting, self._deadline = None, None
        self._previous_report = tk.Tk.report_callback_exception
        script = self

        def report(tk_self, exc, value, tb):
            if not script.done:
                import traceback
                script.errors.append("".join(traceback.format_exception(exc, value, tb)))
                script._debug("error: " + script.errors[-1])

        tk.Tk.report_callback_exception = report

    def later(self, func, *args):
        def call():
            if self.done:
                return
            try:
                func(*args)
            except Exception:
                if not self.done:   # not the windows closed under a nested loop at the end
                    import traceback
                    self.errors.append(traceback.format_exc())
                    self._debug("error: " + self.errors[-1])
        self.root.after(1, call)

    @staticmethod
    def _debug(message):
        if os.environ.get("DEEPCONS_GUI_DEBUG"):
            print(message, file=sys.stderr, flush=True)

    def start(self):
        self.root.after(self.tick_ms, self._tick)

    def _tick(self):
        if self.done:
            return
        self._debug("tick: waiting for %s" % (self._what if self._waiting else "nothing"))
        try:
            if self.errors and self.failure is None:   # a callback failed: stop there
                self._waiting = None
                raise AssertionError("a Tk callback failed:\n" + self.errors[0])
            if self._waiting is not None:
                try:
                    ready = self._waiting()
                except tk.TclError:     # a window it looks at is being destroyed: ask again
                    ready = False
                if not ready:
                    if time.time() < self._deadline:
                        self.root.after(self.tick_ms, self._tick)
                        return
                    self._waiting = None
                    step = self.generator.throw(AssertionError(
                        "timed out after %d s waiting for %s" % (self.timeout, self._what)))
                else:
                    self._waiting = None
                    step = next(self.generator)
            else:
                step = next(self.generator)
        except StopIteration:
            return self.finish()
        except BaseException as error:   # an assertion of the test, or an error
            import traceback
            self.failure = "".join(traceback.format_exception(type(error), error,
                                                              error.__traceback__))
            return self.finish()
        if callable(step):
            self._waiting, self._deadline = step, time.time() + self.timeout
            self._what = getattr(step, "__doc__", None) or getattr(step, "__name__", "?")
            self.root.after(self.tick_ms, self._tick)
        else:
            self.root.after(max(1, int(float(step or 0) * 1000)), self._tick)

    def finish(self):
        """Close every window (matplotlib's, pyworkflow's) so that every event loop ends."""
        self.done = True
        tk.Tk.report_callback_exception = self._previous_report
        try:
            import matplotlib.pyplot as plt
            plt.close("all")
        except Exception:
            pass
        import gc
        roots = [self.root] + [o for o in gc.get_objects()
                               if isinstance(o, tk.Tk) and o is not self.root]
        for root in roots:   # pyworkflow's dialogs without a parent make their own Tk
            try:
                root.destroy()
            except tk.TclError:
                pass

    def check(self):
        """After the loop: fail with the script's failure or the callbacks' errors."""
        problems = ([self.failure] if self.failure else []) + self.errors
        if problems:
            raise AssertionError("\n\n".join(problems))


def reset_pyworkflow_images():
    """Forget the Tk images pyworkflow caches for the process (module and class level): they
    belong to the Tk interpreter that made them, and a test opens a project window (a new
    interpreter) more than once, where Scipion opens one."""
    import pyworkflow.gui.canvas
    import pyworkflow.gui.dialog
    import pyworkflow.gui.gui
    import pyworkflow.gui.tree
    import pyworkflow.gui.widgets
    pyworkflow.gui.gui.image_cache.clear()
    for module in (pyworkflow.gui.canvas, pyworkflow.gui.dialog, pyworkflow.gui.tree,
                   pyworkflow.gui.widgets):
        for value in vars(module).values():
            if isinstance(value, type) and isinstance(vars(value).get("_images"), dict):
                value._images.clear()


def close_project_server():
    """Shut the project window's TCP server down (it keeps the project's port bound)."""
    import gc
    from pyworkflow.gui.project.project import ProjectTCPServer
    for server in [o for o in gc.get_objects() if isinstance(o, ProjectTCPServer)]:
        try:
            server.shutdown()
            server.server_close()
        except Exception:
            pass
