"""Test set-up shared by every test: a headless, offline Scipion in a temporary home.

pyworkflow reads its variables when it is imported, so they are set here, before any test
module imports it.
"""
import os
import tempfile

from xmipp3_deepcons.headless import scipion_environment

scipion_environment(os.environ.get("DEEPCONS_TEST_HOME")
                    or tempfile.mkdtemp(prefix="deepcons_scipion_"))
