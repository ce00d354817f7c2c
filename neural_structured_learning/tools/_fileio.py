"""File helpers shared by the tools: input lists and globs, atomic outputs."""

import contextlib
import glob
import os
import secrets


def expand_paths(paths, *, what):
    """Expands a path, a glob, or a list of them into a list of file names.

    Entries containing a glob character (`*`, `?`, `[`) are replaced by their
    matches in sorted order; other entries are kept as given, in order.

    Args:
        paths: a `str` / `os.PathLike`, or a list or tuple of them.
        what: how the argument is named in error messages, e.g.
            "`embedding_files`".

    Returns:
        A non-empty list of `str` file names.

    Raises:
        ValueError: if `paths` is an empty list.
        FileNotFoundError: if a path is not a file or a glob matches no file.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    result = []
    for path in paths:
        path = os.fsdecode(path)
        if glob.has_magic(path):
            matches = sorted(m for m in glob.glob(path) if os.path.isfile(m))
            if not matches:
                raise FileNotFoundError(
                    f"{what}: the pattern {path!r} matches no file.")
            result.extend(matches)
        elif os.path.isfile(path):
            result.append(path)
        else:
            raise FileNotFoundError(f"{what}: no such file: {path!r}.")
    if not result:
        raise ValueError(f"{what} is empty; expected at least one file name.")
    return result


def check_output_path(path, *, what):
    """Checks, before any work, that `path` can be written as a file.

    Its directory must exist and be writable, and `path` must not be a
    directory: the error names the argument and the path, instead of a
    hidden temporary file once the work is done.

    Args:
        path: the output file name.
        what: how the argument is named in error messages.

    Raises:
        FileNotFoundError: the output directory does not exist.
        NotADirectoryError: the output's parent is not a directory.
        IsADirectoryError: `path` is a directory.
        PermissionError: the output directory is not writable.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{what}: {path!r} is a directory; give the name of the file to "
            "write.")
    if not os.path.exists(directory):
        raise FileNotFoundError(
            f"{what}: the output directory {directory!r} of {path!r} does "
            "not exist. Create it first (e.g. `mkdir -p`).")
    if not os.path.isdir(directory):
        raise NotADirectoryError(
            f"{what}: {directory!r} (the parent of {path!r}) is not a "
            "directory.")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{what}: the output directory {directory!r} of {path!r} is not "
            "writable.")


@contextlib.contextmanager
def atomic_output(path, mode="wb"):
    """Writes to a temporary file that replaces `path` when the block succeeds.

    The temporary file is created next to `path` (so `os.replace` is atomic)
    and deleted if the block raises: a failed run never leaves a partial
    output, and an existing `path` stays untouched until the new one is whole.

    Args:
        path: the output file name.
        mode: `"wb"`, or `"w"` for UTF-8 text.

    Yields:
        The open temporary file.

    Raises:
        OSError: see `check_output_path`, checked before the temporary file
            is created.
    """
    path = os.fspath(path)
    check_output_path(path, what="output")
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(
        directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    encoding = None if "b" in mode else "utf-8"
    # Mode "x" creates the file with the usual umask-derived permissions.
    f = open(tmp, mode.replace("w", "x"), buffering=1 << 20,
             encoding=encoding)
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
