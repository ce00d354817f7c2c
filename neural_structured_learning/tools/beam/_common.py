"""Shared pieces of the Beam pipelines: paths, inputs, sorted sharded outputs.

Inputs and outputs go through Beam's `FileSystems`, so the same pipeline
reads and writes local paths, `gs://`, `s3://`, `hdfs://`... A worker copies
a non-local input file to its local disk and parses it with the
single-machine readers (`tools.tfrecord`, `tools.graph_utils`,
`tools._embeddings`), so both give the same records and the same errors.

Outputs are written sorted and committed at the very end: each output shard
is written to a temporary directory beside the output, and one last step
renames the shards into place and removes the directory. A failed pipeline
leaves no output file behind (the driver also removes the temporary
directory), and an existing output is only replaced by a whole new one.
"""

import bisect
import contextlib
import logging
import os
import shutil
import struct
import tempfile
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions

from neural_structured_learning.tools import _fileio

_logger = logging.getLogger(__name__)

_UNCOMPRESSED = CompressionTypes.UNCOMPRESSED
PARQUET_SUFFIXES = (".parquet", ".pq")


class PipelineError(RuntimeError):
    """The Beam pipeline failed; the message ends with the worker's error."""


def is_local(path):
    """True for a path of the local file system (no `scheme://`)."""
    return "://" not in path


def is_parquet(path):
    return path.lower().endswith(PARQUET_SUFFIXES)


def expand(patterns, *, what):
    """Expands file names and globs, local or on any Beam file system.

    Local paths are checked as the single-machine tools do
    (`_fileio.expand_paths`) and made absolute, so worker processes with
    another working directory find them.
    """
    if isinstance(patterns, (str, bytes, os.PathLike)):
        patterns = [patterns]
    patterns = [os.fsdecode(p) for p in patterns]
    if not patterns:
        raise ValueError(f"{what} is empty; expected at least one file name.")
    result = []
    for pattern in patterns:
        if is_local(pattern):
            result.extend(os.path.abspath(p) for p in _fileio.expand_paths(
                pattern, what=what))
            continue
        matches = sorted(m.path for m in FileSystems.match(
            [pattern])[0].metadata_list)
        if not matches:
            raise FileNotFoundError(
                f"{what}: {pattern!r} matches no file.")
        result.extend(matches)
    return result


def check_output(path, *, what):
    """Checks a local output path before any work (remote ones: nothing)."""
    path = os.fsdecode(path)
    if is_local(path):
        _fileio.check_output_path(path, what=what)
        return os.path.abspath(path)
    return path


@contextlib.contextmanager
def local_copy(path):
    """Yields a local file name with the content of `path`."""
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="nsl-beam-") as directory:
        local = os.path.join(directory, os.path.basename(path) or "input")
        with FileSystems.open(path, compression_type=_UNCOMPRESSED) as src, \
                open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield local


def shard_names(path, num_shards):
    """The output file names: `path` itself, or `path-00000-of-00004`..."""
    if num_shards == 1:
        return [path]
    return [f"{path}-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def temp_dir_for(path):
    directory, base = FileSystems.split(path)
    return FileSystems.join(directory,
                            f".{base}.beam-tmp-{uuid.uuid4().hex[:12]}")


def make_options(runner, pipeline_options):
    """`PipelineOptions` from a list of flags, a dict or options, + runner."""
    if pipeline_options is None:
        options = PipelineOptions([])
    elif isinstance(pipeline_options, PipelineOptions):
        options = pipeline_options
    elif isinstance(pipeline_options, dict):
        options = PipelineOptions([], **pipeline_options)
    elif isinstance(pipeline_options, (list, tuple)):
        options = PipelineOptions(list(pipeline_options))
    else:
        raise TypeError("`pipeline_options` must be None, a list of flags "
                        "(e.g. ['--direct_num_workers=2']), a dict or a "
                        "PipelineOptions. Received: "
                        f"{type(pipeline_options).__name__}")
    standard = options.view_as(StandardOptions)
    if runner is not None:
        standard.runner = runner
    elif standard.runner is None:
        standard.runner = "DirectRunner"
    return options


def run_pipeline(build, options, temp_dirs):
    """Builds (`build(pipeline)`), runs and waits; cleans up on failure.

    Returns:
        The `PipelineResult`.

    Raises:
        PipelineError: if the pipeline fails; its message gives the
            worker's error (the original exception is its `__cause__`).
    """
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    try:
        result = pipeline.run()
        result.wait_until_finish()
        state = getattr(result, "state", None)
        if state is not None and str(state).upper().endswith(
                ("FAILED", "CANCELLED")):
            raise PipelineError(f"The Beam pipeline ended in state {state}.")
    except BaseException as e:
        for directory in temp_dirs:
            with contextlib.suppress(Exception):
                if FileSystems.exists(directory):
                    FileSystems.delete([directory])
        if isinstance(e, (PipelineError, KeyboardInterrupt)):
            raise
        raise PipelineError(_worker_error(e)) from e
    return result


_ERROR_NAMES = ("TFRecordError", "ValueError", "FileNotFoundError",
                "PermissionError", "OSError", "TypeError", "KeyError",
                "ImportError", "ModuleNotFoundError", "MemoryError")


def _worker_error(error):
    """The most useful line of a (possibly wrapped) worker error."""
    text = str(error)
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        name = stripped.partition(":")[0].rpartition(".")[2]
        if name in _ERROR_NAMES and ":" in stripped:
            return ("The Beam pipeline failed: " + name + ":"
                    + stripped.partition(":")[2].split(" [while running")[0])
    lines = [line for line in text.splitlines() if line.strip()]
    return ("The Beam pipeline failed: "
            f"{type(error).__name__}: {lines[-1] if lines else text}")


def counter_value(result, namespace, name):
    """The committed (or attempted) value of a Beam counter, 0 if absent."""
    try:
        query = result.metrics().query(
            beam.metrics.MetricsFilter().with_namespace(namespace)
            .with_name(name))
    except Exception:  # pylint: disable=broad-except
        return 0
    total = 0
    for counter in query.get("counters", []):
        value = counter.committed
        if value is None:
            value = counter.attempted
        total += value or 0
    return total


# --- sorted, sharded, committed output ---------------------------------

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def write_tfrecord(f, payloads, _schema=None):
    from neural_structured_learning.tools import tfrecord  # pylint: disable=import-outside-toplevel
    crc = tfrecord.masked_crc32c
    for data in payloads:
        length = _LENGTH.pack(len(data))
        f.write(length + _CRC.pack(crc(length)) + data + _CRC.pack(crc(data)))


def write_text(f, lines, _schema=None):
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) >= 65536:
            f.write("".join(batch).encode("utf-8"))
            batch = []
    if batch:
        f.write("".join(batch).encode("utf-8"))


def _writer(file_format):
    if file_format == "tfrecord":
        return write_tfrecord
    if file_format == "tsv":
        return write_text
    from neural_structured_learning.tools.beam import _examples  # pylint: disable=import-outside-toplevel
    return _examples.write_parquet


class _WriteShard(beam.DoFn):
    """Sorts one shard's `(key, payload)` pairs and writes them to a temp file."""

    def __init__(self, temp_dir, file_format):
        super().__init__()
        self._temp_dir = temp_dir
        self._format = file_format

    def process(self, element, schema=None):
        shard, items = element
        items = sorted(items, key=lambda item: item[0])
        path = FileSystems.join(self._temp_dir,
                                f"shard-{shard:05d}-{uuid.uuid4().hex}")
        with FileSystems.create(path, compression_type=_UNCOMPRESSED) as f:
            _writer(self._format)(f, (payload for _, payload in items), schema)
        yield shard, path


class _Commit(beam.DoFn):
    """Renames the written shards into place once all are written."""

    def __init__(self, final_paths, temp_dir, file_format, check):
        super().__init__()
        self._final_paths = final_paths
        self._temp_dir = temp_dir
        self._format = file_format
        self._check = check

    def process(self, unused_element, written, schema=None, check_value=None):
        if self._check is not None:
            self._check(check_value)
        written = dict(written)
        sources, destinations = [], []
        for shard, final in enumerate(self._final_paths):
            source = written.get(shard)
            if source is None:  # an empty shard
                source = FileSystems.join(self._temp_dir,
                                          f"shard-{shard:05d}-empty")
                with FileSystems.create(source,
                                        compression_type=_UNCOMPRESSED) as f:
                    _writer(self._format)(f, [], schema)
            sources.append(source)
            destinations.append(final)
        for source, destination in zip(sources, destinations):
            if FileSystems.exists(source):  # not yet moved by a retry
                FileSystems.rename([source], [destination])
        FileSystems.delete([self._temp_dir])
        yield len(destinations)


def write_sorted(pcoll, output_path, num_shards, file_format, temp_dir, *,
                 schema=None, check=None, check_value=None, label="Write"):
    """Writes `(sort_key, payload)` pairs as `num_shards` sorted files.

    The shards are ranges of `sort_key` (split at approximate quantiles), so
    reading the shards in name order gives all payloads sorted by key;
    with one shard the file is `output_path` itself. `check(check_value)`
    runs just before the shards are renamed into place; raising there leaves
    no output.

    Args:
        pcoll: PCollection of `(sort_key, payload)` (keys distinct).
        output_path: final file name (or shard prefix).
        num_shards: number of output files.
        file_format: "tfrecord", "tsv" or "parquet".
        temp_dir: the temporary directory (see `temp_dir_for`).
        schema: optional singleton PCollection passed to the writer.
        check: optional callable run before the commit.
        check_value: singleton PCollection passed to `check`.
        label: a unique label prefix.
    """
    if num_shards == 1:
        keyed = pcoll | f"{label}/OneShard" >> beam.Map(lambda kv: (0, kv))
    else:
        bounds = (pcoll
                  | f"{label}/Keys" >> beam.Keys()
                  | f"{label}/Quantiles" >> beam.ApproximateQuantiles.Globally(
                      num_shards + 1))
        keyed = pcoll | f"{label}/Partition" >> beam.Map(
            lambda kv, q: (bisect.bisect_right(q[1:-1], kv[0]), kv),
            q=beam.pvalue.AsSingleton(bounds))
    side = {}
    if schema is not None:
        side["schema"] = beam.pvalue.AsSingleton(schema)
    written = (keyed
               | f"{label}/GroupShards" >> beam.GroupByKey()
               | f"{label}/WriteShards" >> beam.ParDo(
                   _WriteShard(temp_dir, file_format), **side))
    commit_side = dict(side)
    if check_value is not None:
        commit_side["check_value"] = beam.pvalue.AsSingleton(check_value)
    return (pcoll.pipeline
            | f"{label}/Start" >> beam.Create([None])
            | f"{label}/Commit" >> beam.ParDo(
                _Commit(shard_names(output_path, num_shards), temp_dir,
                        file_format, check),
                beam.pvalue.AsList(written), **commit_side))
