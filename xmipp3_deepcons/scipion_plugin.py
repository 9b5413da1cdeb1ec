"""The Scipion ``Plugin`` of xmipp3-deepcons (exposed lazily as ``xmipp3_deepcons.Plugin``).

Everything runs from the pip-installed package: no Xmipp binaries and no conda environment, so
there is nothing to compile or download. One variable says where optional resources live:

    DEEPCONS_MODELS   folder of pretrained networks and precompiled negative particles
                      (default: ``<package>/models``, which ships them)

Layout of that folder (``xmipp3_deepcons/resources.py``; made by
``scripts/train_shipped_models.py``):

    pretrained/<flip>/<size>/manifest.json + model_0.keras     (one network each)
    negatives_<flip>.npz                                       (128 px, white particles)

with <flip> ``noPhaseFlip`` or ``phaseFlip`` and <size> ``small``, ``medium`` or ``large``.
"""
import glob
import importlib.util
import logging
import os
import sys
import types

import pwem

from . import __version__, resources
from .resources import MODELS_VAR, PACKAGE_DIR


# Parts of scipion-em-xmipp that pyworkflow loads from every plugin, and that import Xmipp's
# Python binding (``xmipp_base``, ``xmippViz``), which comes with Xmipp's compiled installation.
XMIPP3_PARTS_NEEDING_XMIPP = ("protocols", "viewers", "wizards")


def quiet_xmipp3_without_xmipp():
    """Register scipion-em-xmipp's protocols, viewers and wizards as empty modules when
    Xmipp's binding is not installed; returns the module names so registered.

    scipion-em-xmipp is installed for its converters (``xmipp3.convert``: importing .pos
    coordinates). Its protocols, viewers and wizards import ``isMdEmpty`` and more from
    Xmipp's binding, which no pip package provides (every scipion-em-xmipp release does so,
    29.0.1 to 27.0.0 checked). Without it pyworkflow starts every run log and the Project
    Log with "error when importing from xmipp3.protocols: cannot import name 'isMdEmpty'"
    (and the same for viewers and wizards). None of those protocols could run without
    Xmipp's programs anyway; the converters are untouched. With Xmipp installed (its binding
    importable) nothing is changed. Called when Scipion loads this plugin, which pyworkflow
    does for every plugin before it looks for any plugin's protocols."""
    try:
        if (importlib.util.find_spec("xmipp3") is None
                or importlib.util.find_spec("xmipp_base") is not None):
            return []
    except (ImportError, ValueError):
        return []
    registered = []
    for part in XMIPP3_PARTS_NEEDING_XMIPP:
        name = "xmipp3." + part
        if name in sys.modules:     # already imported (Xmipp installed after all)
            continue
        module = types.ModuleType(name, "Empty: scipion-em-xmipp's %s need Xmipp's binaries "
                                        "(XMIPP_HOME), which are not installed here (see "
                                        "xmipp3_deepcons.scipion_plugin)." % part)
        module.__path__ = []        # a package without submodules
        sys.modules[name] = module
        registered.append(name)
    if registered:
        logging.getLogger(__name__).debug("Xmipp's binding is not installed: %s left empty",
                                          ", ".join(registered))
    return registered


def keep_labels_given_to_new_protocols():
    """Make ``Project.newProtocol(cls, objLabel=..., objComment=...)`` keep the label and the
    comment; returns whether it had to.

    pyworkflow 3.11.7's Step.__init__ drops its keyword arguments, so a protocol made with
    a label gets the default one ("pwem - import coordinates") instead. Workflow templates
    are loaded through newProtocol with their "object.label" and "object.comment", so the
    template's "import coordinates: picker 1/2/3" became three identical boxes. This sets
    them on the new protocol after creation, as newProtocol's own comment says it should.
    Only installed when this pyworkflow loses the label (checked on a Step); inert once
    pyworkflow keeps it (see docs/scipion.md)."""
    from pyworkflow.project import Project
    from pyworkflow.protocol import Step
    if Step(objLabel="probe").getObjLabel() == "probe" or getattr(
            Project.newProtocol, "_keepsLabels", False):
        return False
    original = Project.newProtocol

    def newProtocol(self, protocolClass, **kwargs):
        prot = original(self, protocolClass, **kwargs)
        if kwargs.get("objLabel"):
            prot.setObjLabel(kwargs["objLabel"])
        if kwargs.get("objComment"):
            prot.setObjComment(kwargs["objComment"])
        return prot
    newProtocol.__doc__ = original.__doc__
    newProtocol._keepsLabels = True
    Project.newProtocol = newProtocol
    return True


def xmipp_java_viewers_installed():
    """Whether Xmipp's Java viewers (ShowJ, the particle picker) can run here: scipion-em-xmipp
    and an Xmipp installation with its Java bindings."""
    if importlib.util.find_spec("xmipp3") is None:
        return False
    home = getattr(pwem.Config, 'XMIPP_HOME', None)
    return bool(home) and os.path.isdir(os.path.join(home, "bindings", "java", "lib"))


XMIPP_DATA_VIEWERS = ("pwem.viewers.DataViewer", "pwem.viewers.viewers_data.DataViewer")
SCIPION_COORDINATE_VIEWER = "pwem.viewers.viewer_coordinates.CoordinateViewer"


def prefer_a_coordinate_viewer_that_runs():
    """Without Xmipp, make pwem's own coordinate viewer (Tk) the preferred viewer of
    coordinates instead of pwem's DataViewer; returns whether the preference changed.

    Scipion's launcher (``python -m scipion``) makes DataViewer the preferred viewer of
    SetOfCoordinates when scipion.conf names none; DataViewer opens them in Xmipp's Java
    particle picker, so Analyze Results on a picker's coordinates opened nothing ("Could not
    find or load main class xmipp.viewer.particlepicker..."). pwem's "Scipion coordinates
    viewer" needs no Xmipp. Runs when Scipion loads this plugin, before any viewer is
    looked up; with Xmipp's viewers installed nothing is changed."""
    import pyworkflow as pw
    preferred = (getattr(pw.Config, "VIEWERS", None) or {}).get("SetOfCoordinates")
    if not preferred or xmipp_java_viewers_installed():
        return False
    replaced = [SCIPION_COORDINATE_VIEWER if name in XMIPP_DATA_VIEWERS else name
                for name in preferred]
    if replaced == list(preferred):
        return False
    pw.Config.VIEWERS["SetOfCoordinates"] = replaced
    pwem.Domain._preferred_viewers = None       # looked up again, with this preference
    return True


quiet_xmipp3_without_xmipp()
keep_labels_given_to_new_protocols()
prefer_a_coordinate_viewer_that_runs()


class Plugin(pwem.Plugin):
    _url = "https://pypi.org/project/scipion-em-xmipp3-deepcons/"
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(MODELS_VAR, resources.models_dir(),
                       description="Folder of pretrained Deep Consensus networks and "
                                   "precompiled negative particles")

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to compile or download: the engine is plain Python."""

    @classmethod
    def getEnviron(cls, gpu_id=None):
        """Environment for a job. The GPU choice reaches TensorFlow through
        CUDA_VISIBLE_DEVICES; memory grows on demand instead of taking the whole card. The
        engine's problems name the form's labels, not the command line's options."""
        import pyworkflow.utils as pwutils
        from .run.request import NAMES_VARIABLE
        environ = pwutils.Environ(os.environ)
        environ.update({"TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
                        NAMES_VARIABLE: "form"},     # problems named with the form's labels
                       position=pwutils.Environ.REPLACE)
        if gpu_id is not None:
            environ.update({"CUDA_VISIBLE_DEVICES": str(gpu_id)},
                           position=pwutils.Environ.REPLACE)
        return environ

    @classmethod
    def getProgram(cls):
        """The command line that runs the engine's stages, with the interpreter that has this
        package (Scipion's own, or the environment it was pip-installed into)."""
        return "%s -m xmipp3_deepcons" % sys.executable

    @classmethod
    def getModelsDir(cls, *paths):
        return os.path.join(cls.getVar(MODELS_VAR) or resources.models_dir(),
                            *paths)

    @classmethod
    def getPretrainedModel(cls, phase_flip, size):
        """Folder of the pretrained network for this preprocessing and size, None if absent."""
        return resources.pretrained_model(phase_flip, size, root=cls.getModelsDir())

    @classmethod
    def getPrecompiledNegatives(cls, phase_flip):
        """File of precompiled negative particles for this preprocessing, None if absent."""
        return resources.negatives_path(phase_flip, root=cls.getModelsDir())

    # The base class finds the package from the module of this class; the class lives in
    # ``xmipp3_deepcons.scipion_plugin``, so name the package explicitly.
    def getName(self):
        return "xmipp3_deepcons"

    def getPath(self):
        return PACKAGE_DIR

    def getPluginTemplateDir(self):
        return os.path.join(PACKAGE_DIR, "workflows")

    def getTemplates(self):
        """Workflow templates shipped under ``workflows/`` (plain exported-workflow JSON whose
        ``~label|default|type|alias~`` fields are filled in by Scipion's template launcher)."""
        from pyworkflow.template import LocalTemplate
        folder = self.getPluginTemplateDir()
        paths = sorted(glob.glob(os.path.join(folder, "*.json")) +
                       glob.glob(os.path.join(folder, "*.json.template")))
        return [LocalTemplate(self.getName(), path) for path in paths]
