"""Test set-up shared by every test: a headless, offline Scipion in a temporary home.

pyworkflow reads these variables when it is imported, so they are set here, before any test
module imports it.
"""
import os
import tempfile

_home = os.environ.get("DEEPCONS_TEST_HOME") or tempfile.mkdtemp(prefix="deepcons_scipion_")
_hosts = os.path.join(_home, "hosts.conf")
if not os.path.exists(_hosts):
    os.makedirs(_home, exist_ok=True)
    with open(_hosts, "w") as f:
        f.write("[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s\n")

for name, value in {
    "SCIPION_DOMAIN": "pwem",
    "SCIPION_HOME": _home,
    "SCIPION_USER_DATA": os.path.join(_home, "data"),
    "SCIPION_HOSTS": _hosts,
    "SCIPION_TESTS": os.path.join(_home, "tests"),
    "SCIPION_TESTS_OUTPUT": os.path.join(_home, "tests_output"),
    "SCIPION_TEST_NOSYNC": "1",
    "SCIPION_NOTIFY": "False",
    "MPLBACKEND": "Agg",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}.items():
    os.environ.setdefault(name, value)
