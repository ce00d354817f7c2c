"""Progress bars for long runs (tqdm, on stderr)."""

import sys


def progress_bar(*, total=None, desc, unit, enabled=None, unit_scale=True):
    """Returns a `tqdm` progress bar, or a silent stand-in.

    Args:
        total: expected number of steps, or `None` if unknown.
        desc: short label shown left of the bar.
        unit: name of one step ("example", "line", ...).
        enabled: `True` to show the bar, `False` to hide it, `None` to show it
            only when stderr is a terminal.
        unit_scale: show large counts with SI prefixes (`1.2k`).

    Returns:
        An object with `update(n)` and `close()`, usable as a context manager.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        try:
            import tqdm  # pylint: disable=import-outside-toplevel
        except ImportError:
            enabled = False
        else:
            return tqdm.tqdm(total=total, desc=desc, unit=unit,
                             unit_scale=unit_scale, dynamic_ncols=True,
                             file=sys.stderr)
    return _NoProgress()


class _NoProgress:
    """A progress bar that shows nothing."""

    def update(self, n=1):
        del n

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False
