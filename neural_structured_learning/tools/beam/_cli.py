"""`nsl beam-build-graph` and `nsl beam-pack-nbrs`.

The flags of `nsl build-graph` / `nsl pack-nbrs`, plus `--runner`,
`--num_shards` (build-graph), `--output_shards`; every other `--name=value`
option (written with `=`) goes to Beam's `PipelineOptions`, e.g.
`--direct_num_workers=2`, `--project=...`, `--temp_location=gs://...`.
Importing this module does not import Beam.
"""

import functools
import importlib

from neural_structured_learning._core import flags as _flags

_RUNNER = _flags.Flag(
    "runner", str, None,
    "Beam runner: DirectRunner (default), DataflowRunner, FlinkRunner, "
    "SparkRunner, PortableRunner...")
_OUTPUT_SHARDS = _flags.Flag(
    "output_shards", int, 1,
    "Number of output files (path-0000i-of-0000N when more than 1).")
_NUM_SHARDS = _flags.Flag(
    "num_shards", int, 8, "Number of embedding shards.")
_BEAM_HELP = (
    "Other --name=value options are passed to Apache Beam's "
    "PipelineOptions (write them with '=').")


def _parse_with_beam_options(parser, argv):
    """`parser.parse`, keeping unknown `--options` for Beam."""
    argv = parser._normalize(list(argv))  # pylint: disable=protected-access
    args, extra = parser.parse_known_intermixed_args(argv)
    unknown = [a for a in extra if not a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.beam_options = extra
    return args


def _configure(parser, flags, paths_metavar, paths_help):
    parser.add_flags(flags)
    parser.add_argument("paths", nargs="*", metavar=paths_metavar,
                        help=paths_help)
    parser.epilog = _BEAM_HELP
    parser.parse = functools.partial(_parse_with_beam_options, parser)


def _run_pipeline(function, *args, **kwargs):
    from neural_structured_learning.tools import beam  # pylint: disable=import-outside-toplevel
    try:
        function(*args, **kwargs)
    except beam.PipelineError as e:
        raise ValueError(str(e)) from e


def configure_build_graph(parser):
    """Adds beam-build-graph's arguments to `parser`; returns the handler."""
    single = importlib.import_module("neural_structured_learning.tools.build_graph")
    flags = tuple(f for f in single.FLAGS if f.name != "progress")
    _configure(parser, flags + (_NUM_SHARDS, _OUTPUT_SHARDS, _RUNNER),
               "embedding_file... output_graph.tsv",
               "input files (TFRecord, Parquet, .npz, .npy; globs and "
               "gs://... allowed), then the output TSV file")
    return _run_build_graph


def _run_build_graph(args):
    from neural_structured_learning.tools import beam  # pylint: disable=import-outside-toplevel
    if len(args.paths) < 2:
        raise _flags.UsageError(
            "Invalid number of arguments; expected 2 or more, got "
            f"{len(args.paths)} (Beam options take '=': --name=value)")
    _run_pipeline(
        beam.build_graph, args.paths[:-1], args.paths[-1],
        similarity_threshold=args.similarity_threshold,
        id_feature_name=args.id_feature_name,
        embedding_feature_name=args.embedding_feature_name,
        lsh_splits=args.lsh_splits, lsh_rounds=args.lsh_rounds,
        random_seed=args.random_seed, top_k=args.top_k, method=args.method,
        num_threads=args.num_threads, ef_search=args.ef_search,
        num_shards=args.num_shards, output_shards=args.output_shards,
        runner=args.runner, pipeline_options=args.beam_options)


def configure_pack_nbrs(parser):
    """Adds beam-pack-nbrs's arguments to `parser`; returns the handler."""
    single = importlib.import_module("neural_structured_learning.tools.pack_nbrs")
    flags = tuple(f for f in single.FLAGS if f.name != "progress")
    _configure(parser, flags + (_OUTPUT_SHARDS, _RUNNER),
               "labeled unlabeled graph.tsv output",
               "labeled examples, unlabeled examples ('' for none), graph "
               "TSV, output (TFRecord, or Parquet for .parquet); globs and "
               "gs://... allowed")
    return _run_pack_nbrs


def _run_pack_nbrs(args):
    from neural_structured_learning.tools import beam  # pylint: disable=import-outside-toplevel
    if len(args.paths) != 4:
        raise _flags.UsageError(
            f"Invalid number of arguments; expected 4, got {len(args.paths)} "
            "(Beam options take '=': --name=value)")
    labeled, unlabeled, graph, output = args.paths
    _run_pipeline(
        beam.pack_nbrs, labeled, unlabeled, graph, output,
        add_undirected_edges=args.add_undirected_edges,
        max_nbrs=args.max_nbrs, id_feature_name=args.id_feature_name,
        unlabeled_label=args.unlabeled_label,
        label_feature_name=args.label_feature_name,
        output_shards=args.output_shards, runner=args.runner,
        pipeline_options=args.beam_options)
