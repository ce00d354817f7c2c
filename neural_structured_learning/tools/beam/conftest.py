"""Without Apache Beam, only the test files are collected (they skip).

The pipeline modules import `apache_beam` at the top, so `pytest
--doctest-modules` (scripts/test.sh's framework-free step, in `.venv`) must
not import them there; the tests then skip, naming the missing package.
"""

import importlib.util
import tempfile

import pytest

collect_ignore_glob = []
if importlib.util.find_spec("apache_beam") is None:
    collect_ignore_glob = ["_*.py"]


@pytest.fixture(autouse=True, scope="session")
def _beam_scratch_in_pytest_tmp(tmp_path_factory):
    """Keeps Beam's scratch directories out of the system's temp directory.

    Apache Beam 2.77's DirectRunner starts a job server per pipeline whose
    `beam-temp*` directory is removed only when the server is stopped,
    which Beam does not do: an empty directory per pipeline. TMPDIR (for
    the tests' subprocesses) and `tempfile.tempdir` point into pytest's
    temporary directory for the session, which pytest prunes.
    """
    scratch = str(tmp_path_factory.mktemp("beam_scratch"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", scratch)
        patch.setattr(tempfile, "tempdir", scratch)
        yield
