"""Without Apache Beam, only the test files are collected (they skip).

The pipeline modules import `apache_beam` at the top, so `pytest
--doctest-modules` (scripts/test.sh's framework-free step, in `.venv`) must
not import them there; the tests then skip, naming the missing package.
"""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("apache_beam") is None:
    collect_ignore_glob = ["_*.py"]
