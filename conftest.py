"""Test set-up shared by every test: a headless, offline Scipion in a temporary home.

pyworkflow reads its variables when it is imported, so they are set here, before any test
module imports it. The home holds every test project (about 1 GB after a full run): it is
removed when the session ends, unless it was given as $DEEPCONS_TEST_HOME (to look at it).
"""
import os
import shutil
import tempfile

from xmipp3_deepcons.headless import scipion_environment

_GIVEN_HOME = os.environ.get("DEEPCONS_TEST_HOME")
_HOME = _GIVEN_HOME or tempfile.mkdtemp(prefix="deepcons_scipion_")
scipion_environment(_HOME)


def pytest_sessionfinish(session, exitstatus):
    if not _GIVEN_HOME:
        shutil.rmtree(_HOME, ignore_errors=True)
