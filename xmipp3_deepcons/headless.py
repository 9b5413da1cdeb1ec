"""Scipion without its launcher or a screen: the environment, and workflow templates run
from a script (the demo command, the benchmarks and the tests use it).

pyworkflow reads its variables when it is first imported, so ``scipion_environment`` must run
before anything imports pyworkflow or pwem.
"""
import os
import sys


def scipion_environment(home):
    """Set (where unset) the variables the ``scipion3`` launcher would, with ``home`` as
    SCIPION_HOME; projects go to ``home``/data/projects."""
    os.makedirs(home, exist_ok=True)
    hosts = os.path.join(home, "hosts.conf")
    if not os.path.exists(hosts):
        with open(hosts, "w") as f:
            f.write("[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node "
                    "%_(COMMAND)s\n")
    for name, value in {"SCIPION_DOMAIN": "pwem", "SCIPION_HOME": home,
                        "SCIPION_USER_DATA": os.path.join(home, "data"),
                        "SCIPION_HOSTS": hosts,
                        "SCIPION_TESTS": os.path.join(home, "tests"),
                        "SCIPION_TESTS_OUTPUT": os.path.join(home, "tests_output"),
                        "SCIPION_TEST_NOSYNC": "1", "SCIPION_NOTIFY": "False",
                        "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2",
                        # protocols run in a subprocess of this interpreter and its packages
                        "SCIPION_PYTHON": sys.executable}.items():
        os.environ.setdefault(name, value)


def fill_template(template_name, values):
    """The plugin's workflow template with its ~...~ fields set; returns the JSON file path."""
    from .scipion_plugin import Plugin
    templates = {t.name: t for t in Plugin().getTemplates()}
    template = templates[template_name]
    template.replaceEnvVariables()
    template.parseContent()
    for alias, value in values.items():
        if not template.setParamValue(alias, str(value)):
            raise KeyError("template %s has no field %r" % (template_name, alias))
    return template.createTemplateFile()


def run_workflow(project, workflow_json, log=print):
    """Load a workflow into ``project`` and run its protocols one after another, waiting for
    each; returns [(protocol, seconds it took)] in order. Stops at the first that fails."""
    import time
    import pyworkflow
    pyworkflow.PYTHON = os.environ.get("SCIPION_PYTHON", sys.executable)
    before = {p.getObjId() for p in project.getRuns()}
    project.loadProtocols(workflow_json)
    created = sorted((p for p in project.getRuns(refresh=True) if p.getObjId() not in before),
                     key=lambda p: p.getObjId())
    done = []
    for prot in created:
        log("running %s ..." % prot.getObjLabel())
        started = time.time()
        project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            raise RuntimeError("%s failed: %s" % (prot.getObjLabel(), prot.getErrorMessage()))
        done.append((prot, time.time() - started))
        log("%s finished in %.0f s" % (prot.getObjLabel(), done[-1][1]))
    return done


def kept_by_micrograph(coordinates):
    """{micrograph stem: (n, 2) x, y} of a Scipion SetOfCoordinates, e.g. what Deep Consensus
    kept, to compare with references stored by micrograph name."""
    import numpy as np
    names = {m.getObjId(): os.path.splitext(m.getMicName())[0]
             for m in coordinates.getMicrographs()}
    kept = {stem: [] for stem in names.values()}
    for coord in coordinates.iterItems():
        kept[names[coord.getMicId()]].append((coord.getX(), coord.getY()))
    return {stem: np.array(xy, dtype=float).reshape(-1, 2) for stem, xy in kept.items()}
