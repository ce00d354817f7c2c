r"""Program & library to prepare input for graph-based NSL.

Command line (NSL 1.4's flags, plus `--progress`):

    python -m neural_structured_learning.tools.pack_nbrs [flags] \
        labeled.tfr unlabeled.tfr graph.tsv output.tfr

    nsl pack-nbrs [flags] labeled.tfr unlabeled.tfr graph.tsv output.tfr

Pass `''` as `unlabeled.tfr` when there are no unlabeled examples. Each input
may be a glob (quote it), e.g. `'train-*.tfr'`. The library function
`pack_nbrs` is documented in `neural_structured_learning.tools`.
"""

import sys

from neural_structured_learning._core import command
from neural_structured_learning._core import flags as _flags
from neural_structured_learning.tools._packer import pack_nbrs

__all__ = ["configure", "main", "pack_nbrs"]

FLAGS = (
    _flags.Flag("max_nbrs", int, None,
                "The maximum number of neighbors to merge into each labeled "
                "Example."),
    _flags.Flag("id_feature_name", str, "id",
                "Name of the singleton bytes_list feature in each input "
                "Example whose value is the Example's ID."),
    _flags.Flag("add_undirected_edges", bool, False,
                "Make every edge S-->T also count as T-->S before choosing "
                "neighbors (weight max(w1, w2) when both exist)."),
    _flags.Flag("progress", bool, True, "Show progress bars on a terminal."),
    _flags.Flag("unlabeled_label", int, None,
                "New: also write the unlabeled examples (with neighbours), "
                "their label feature set to this value (e.g. -1)."),
    _flags.Flag("label_feature_name", str, "label",
                "New: the label feature set on unlabeled examples."),
)


def configure(parser):
    """Adds pack-nbrs's arguments to `parser`; returns the handler."""
    parser.add_flags(FLAGS)
    parser.add_argument("paths", nargs="*",
                        metavar="labeled.tfr unlabeled.tfr graph.tsv output.tfr",
                        help="labeled examples, unlabeled examples ('' for "
                        "none), graph TSV, output TFRecord")
    return _run


def _run(args):
    if len(args.paths) != 4:
        raise _flags.UsageError(
            f"Invalid number of arguments; expected 4, got {len(args.paths)}")
    labeled, unlabeled, graph, output = args.paths
    pack_nbrs(labeled, unlabeled, graph, output,
              add_undirected_edges=args.add_undirected_edges,
              max_nbrs=args.max_nbrs, id_feature_name=args.id_feature_name,
              progress=None if args.progress else False,
              unlabeled_label=args.unlabeled_label,
              label_feature_name=args.label_feature_name)


def main(argv=None):
    """Runs the 1.4 command line; returns the exit status."""
    return command.run_command(
        "python -m neural_structured_learning.tools.pack_nbrs", configure,
        sys.argv[1:] if argv is None else argv,
        "Merges graph neighbours' features into labeled examples.")


if __name__ == "__main__":
    sys.exit(main())
