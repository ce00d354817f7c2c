"""Quiet start-up for scripts: no framework log lines unless asked for.

Example and benchmark scripts call `framework_logs()` first thing, before
Keras (hence TensorFlow) is imported:

    from neural_structured_learning import _quiet as quiet
    quiet.framework_logs()
    import keras

It sets `TF_CPP_MIN_LOG_LEVEL=2` (TensorFlow's C++ log: warnings and errors
hidden) unless the user set the variable. TensorFlow 2.21 writes a few INFO
lines through absl before that level takes effect (`WARNING: All log
messages before absl::InitializeLog() ...` and the oneDNN notice), and Keras
imports TensorFlow whenever it is installed, whatever the backend (its
serialisation checks for `tf.TensorShape`). So when the level hides INFO
lines and TensorFlow is installed, `framework_logs()` imports it at once with
exactly those lines filtered out of file descriptor 2; anything else written
there meanwhile (Python warnings, errors) is passed on.
`TF_CPP_MIN_LOG_LEVEL=0` shows everything, as TensorFlow documents.
"""

import contextlib
import importlib.util
import os
import re
import sys
import tempfile

# absl's log line prefix: severity letter, MMDD, time, thread id, file:line].
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog()"
_HIDDEN = {0: "", 1: "I", 2: "IW", 3: "IWE"}  # TF_CPP_MIN_LOG_LEVEL.


def _level():
    try:
        return max(0, min(3, int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))))
    except ValueError:
        return 0


def hidden_line(line, level=None):
    """Whether `line` is a framework log line that `TF_CPP_MIN_LOG_LEVEL`
    (`level`, default the environment's) says to hide."""
    level = _level() if level is None else level
    if level < 1:
        return False
    if line.startswith(_ABSL_NOTICE):
        return True
    match = _ABSL_LINE.match(line)
    return bool(match) and match.group(1) in _HIDDEN[level]


@contextlib.contextmanager
def filtered_stderr(hide=hidden_line):
    """Captures file descriptor 2 (C++ and Python writes alike) and passes
    on, when the block ends, every line for which `hide(line)` is false."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True)
                           if not hide(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def framework_logs(level="2"):
    """Hides TensorFlow's C++ log lines below `level` (unless the user set
    `TF_CPP_MIN_LOG_LEVEL`), including those it writes while it loads.

    Call it before Keras is imported; a no-op for TensorFlow if it is
    already imported or not installed.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(level))
    if (_level() < 1 or "tensorflow" in sys.modules
            or importlib.util.find_spec("tensorflow") is None):
        return
    with filtered_stderr():
        # pylint: disable-next=import-outside-toplevel,unused-import
        import tensorflow  # noqa: F401
