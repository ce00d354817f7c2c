"""matplotlib for the examples, or an install hint instead of a crash."""

import sys


def pyplot():
    """matplotlib's pyplot (Agg), or None with an install hint on stderr."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError:
        print("Plots need matplotlib: pip install matplotlib (or the "
              "examples extra: pip install "
              "'neural-structured-learning-keras[examples]'). No PNG "
              "written.", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt
