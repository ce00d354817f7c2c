r"""Program & library to build a graph from dense features (embeddings).

Command line (NSL 1.4's flags, plus `--top_k`, `--method`, `--num_threads`,
`--ef_search`, `--progress`):

    python -m neural_structured_learning.tools.build_graph [flags] \
        embedding_file.tfr... output_graph.tsv

    nsl build-graph [flags] embedding_file.tfr... output_graph.tsv

The library functions `build_graph` and `build_graph_from_config` are
documented in `neural_structured_learning.tools`.
"""

import sys

from neural_structured_learning._core import command
from neural_structured_learning._core import flags as _flags
from neural_structured_learning.tools._graph_builder import METHODS
from neural_structured_learning.tools._graph_builder import build_graph
from neural_structured_learning.tools._graph_builder import build_graph_from_config

__all__ = ["build_graph", "build_graph_from_config", "configure", "main"]

FLAGS = (
    _flags.Flag("id_feature_name", str, "id",
                "Name of the singleton bytes_list feature in each input "
                "Example whose value is the Example's ID."),
    _flags.Flag("embedding_feature_name", str, "embedding",
                "Name of the float_list feature in each input Example whose "
                "value is the Example's (dense) embedding."),
    _flags.Flag("similarity_threshold", float, 0.8,
                "Lower bound on the cosine similarity required for an edge to "
                "be created between two nodes."),
    _flags.Flag("lsh_splits", int, 0,
                "On each LSH bucketing round, split the space this many times "
                "(up to 2^lsh_splits buckets); 0 compares all pairs. Rule of "
                "thumb: ceiling(log_2(num_instances / 1000))."),
    _flags.Flag("lsh_rounds", int, 2,
                "Number of LSH bucketing rounds when lsh_splits > 0."),
    _flags.Flag("random_seed", int, None,
                "Seed of the LSH random hyperplanes."),
    _flags.Flag("top_k", int, None,
                "Link each node to its top_k most similar nodes (that pass "
                "the threshold) instead of all pairs above the threshold."),
    _flags.Flag("method", str, None,
                "exact, ann (HNSW index; needs --top_k) or lsh; default: lsh "
                "if --lsh_splits > 0, else exact.", choices=METHODS),
    _flags.Flag("num_threads", int, None,
                "Threads for the FAISS searches (default: all cores)."),
    _flags.Flag("ef_search", int, None,
                "HNSW search breadth for --method=ann (higher: better "
                "recall, slower)."),
    _flags.Flag("progress", bool, True, "Show progress bars on a terminal."),
)


def configure(parser):
    """Adds build-graph's arguments to `parser`; returns the handler."""
    parser.add_flags(FLAGS)
    parser.add_argument("paths", nargs="*",
                        metavar="embedding_file... output_graph.tsv",
                        help="input files (TFRecord, Parquet, .npz, .npy; "
                        "globs allowed), then the output TSV file")
    return _run


def _run(args):
    if len(args.paths) < 2:
        raise _flags.UsageError(
            "Invalid number of arguments; expected 2 or more, got "
            f"{len(args.paths)}")
    build_graph(
        args.paths[:-1], args.paths[-1],
        similarity_threshold=args.similarity_threshold,
        id_feature_name=args.id_feature_name,
        embedding_feature_name=args.embedding_feature_name,
        lsh_splits=args.lsh_splits, lsh_rounds=args.lsh_rounds,
        random_seed=args.random_seed, top_k=args.top_k, method=args.method,
        num_threads=args.num_threads, ef_search=args.ef_search,
        progress=None if args.progress else False)


def main(argv=None):
    """Runs the 1.4 command line; returns the exit status."""
    return command.run_command(
        "python -m neural_structured_learning.tools.build_graph", configure,
        sys.argv[1:] if argv is None else argv,
        "Builds a similarity graph from embeddings.")


if __name__ == "__main__":
    sys.exit(main())
