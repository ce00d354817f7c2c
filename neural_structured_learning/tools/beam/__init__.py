"""Apache Beam pipelines for the graph tools: `build_graph` and `pack_nbrs`.

    from neural_structured_learning.tools import beam
    beam.pack_nbrs("labeled.tfr", "", "graph.tsv", "out.tfr",
                   runner="DirectRunner")

* `build_graph(...)`: `nsl.tools.build_graph` on sharded embeddings (exact
  blocked search between pairs of shards, FAISS top-k per pair of shards
  merged per node, or LSH buckets); the TSV is byte-identical to the
  single-machine tool's.
* `pack_nbrs(...)`: `nsl.tools.pack_nbrs` as joins by id; the same merged
  examples in the same order (TFRecord or Parquet in and out).

Both take `runner=` and `pipeline_options=` (Beam flags), read and write
any Beam file system (local, `gs://`, `s3://`, `hdfs://`), and can write
sharded outputs (`output_shards=N`, files `path-0000i-of-0000N` whose
concatenation is the single-machine output). Command lines:
`nsl beam-build-graph` and `nsl beam-pack-nbrs` (`--help`), which pass
unknown `--flag=value` options to Beam.

Needs `pip install 'neural-structured-learning-keras[beam]'` (apache-beam
2.77 needs protobuf < 7, so install it apart from TensorFlow >= 2.21 if
pip cannot satisfy both; see docs/tools.md). Importing this package does
not import Beam; calling a pipeline does. No deep-learning framework is
imported.
"""

__all__ = ["PipelineError", "build_graph", "pack_nbrs"]

_BEAM_MISSING = (
    "The Beam pipelines need Apache Beam, which is not installed "
    "(ModuleNotFoundError: No module named 'apache_beam'): pip install "
    "'neural-structured-learning-keras[beam]' (apache-beam>=2.77 with "
    "protobuf>=6.31.1,<7).")


def _import(module):
    import importlib  # pylint: disable=import-outside-toplevel
    try:
        import apache_beam  # pylint: disable=import-outside-toplevel,unused-import
    except ModuleNotFoundError as e:
        if e.name != "apache_beam":
            raise
        raise ModuleNotFoundError(_BEAM_MISSING, name="apache_beam") from e
    return importlib.import_module(f"{__name__}.{module}")


def build_graph(*args, **kwargs):
    """See `neural_structured_learning.tools.beam._build_graph.build_graph`."""
    return _import("_build_graph").build_graph(*args, **kwargs)


def pack_nbrs(*args, **kwargs):
    """See `neural_structured_learning.tools.beam._pack_nbrs.pack_nbrs`."""
    return _import("_pack_nbrs").pack_nbrs(*args, **kwargs)


def __getattr__(name):
    if name == "PipelineError":
        return _import("_common").PipelineError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
