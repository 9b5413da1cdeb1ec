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
import os
import sys

import pwem

from . import __version__, resources
from .resources import MODELS_VAR, PACKAGE_DIR


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
        CUDA_VISIBLE_DEVICES; memory grows on demand instead of taking the whole card."""
        import pyworkflow.utils as pwutils
        environ = pwutils.Environ(os.environ)
        environ.update({"TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2"},
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
