"""NumPy's transparent-huge-page advice, switched off for one call.

On Linux NumPy asks the kernel for transparent huge pages (`madvise`) for
every array of 4 MiB or more. Where the kernel then compacts memory to
find free 2 MiB pages (`/sys/kernel/mm/transparent_hugepage/defrag` set to
`madvise`, its default), the first touch of each such array stalls in
the kernel. `pack_nbrs` allocates many large, short-lived arrays that it
touches once, so it pays that cost without the TLB gain huge pages buy a
long computation: at 640,000 examples, with a training on the other core,
its neighbour choice took 1.0-1.5 s of system time with the advice and
0.25-0.33 s without (the whole call 5.8-6.5 s vs 5.4-5.5 s).

NumPy has no public switch for this (only the `NUMPY_MADVISE_HUGEPAGE`
environment variable, read at import); `_set_madvise_hugepage` is the
private function behind it, so this is the one place that touches it, and
`_pages_test.py` fails if NumPy drops it. Without it, `small_pages()` does
nothing.
"""

import contextlib
import importlib


def _setter():
    """NumPy's `_set_madvise_hugepage` (it returns the previous value)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        setter = getattr(module, "_set_madvise_hugepage", None)
        if setter is not None:
            return setter
    return None


@contextlib.contextmanager
def small_pages():
    """Within the block (or decorated call), no huge-page advice for new
    NumPy arrays; the previous setting is restored after it."""
    setter = _setter()
    if setter is None:
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(previous)
