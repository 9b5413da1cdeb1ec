"""Fixtures shared by the test modules, made once per test session (as cryoDRGN's are).

- ``dataset``: three generated 768x768 micrographs with three pickers' .pos files; the command
  line tests read it and copy what they change.
- ``scipion_data``: one Scipion project holding the generated micrographs and the three pickers'
  imports; the protocol test classes add their runs to it and only read the imports.

The headless Scipion home itself is made by the repository's top-level conftest.py.
"""
import pytest

from xmipp3_deepcons import synthetic


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Generated micrographs (mic_000..mic_002, 20 particles and 4 junk each) and the pickers'
    coordinates under coords/<picker>/: read only (copy a part before changing it)."""
    folder = tmp_path_factory.mktemp("shared") / "data"
    synthetic.make_dataset(str(folder), n_micrographs=3, shape=(768, 768), n_particles=20,
                           n_junk=4, seed=2)
    return folder
