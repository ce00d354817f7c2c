"""The `nsl` command: one console script, one subcommand per tool.

    nsl build-graph [flags] embedding_file... output_graph.tsv
    nsl pack-nbrs [flags] labeled.tfr unlabeled.tfr graph.tsv output.tfr
    nsl neighborhoods --graph graph.tsv --output out.tsv [flags]
    nsl beam-build-graph [flags] [--runner=...] embedding_file... output_graph.tsv
    nsl beam-pack-nbrs [flags] [--runner=...] labeled unlabeled graph.tsv output
    nsl evaluate [flags] model.keras data.npz
    nsl <command> --help

Adding a subcommand takes one function: decorate `configure(parser)` with
`@subcommand(name, help=...)`; it adds its arguments to `parser` (a
`_core.flags.FlagParser`, i.e. an `argparse.ArgumentParser`) and returns
the handler, `handler(args) -> int | None`. Only the chosen subcommand's
`configure` runs, so heavy imports (Keras, FAISS, ...) belong inside it or
the handler:

    @subcommand("hello", help="Print a greeting.")
    def _hello(parser):
        parser.add_argument("name")
        return lambda args: print(f"Hello, {args.name}!")

Importing this module imports no deep-learning framework.
"""

import argparse
import sys

from neural_structured_learning._core.command import run_command

_SUBCOMMANDS = {}


def subcommand(name, *, help):  # pylint: disable=redefined-builtin
    """Registers the decorated `configure(parser) -> handler` as `nsl name`."""
    def register(configure):
        if name in _SUBCOMMANDS:
            raise ValueError(f"The nsl subcommand {name!r} is already "
                             "registered.")
        _SUBCOMMANDS[name] = (help, configure)
        return configure
    return register


@subcommand("build-graph",
            help="Build a similarity graph (TSV) from embeddings.")
def _build_graph(parser):
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools.build_graph import configure
    return configure(parser)


@subcommand("pack-nbrs",
            help="Merge graph neighbours' features into labeled examples.")
def _pack_nbrs(parser):
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools.pack_nbrs import configure
    return configure(parser)


@subcommand("neighborhoods",
            help="Write each node's k-hop or PPR top-k neighbours (TSV).")
def _neighborhoods(parser):
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools.neighborhoods import configure
    return configure(parser)


@subcommand("beam-build-graph",
            help="build-graph as an Apache Beam pipeline (--runner=...).")
def _beam_build_graph(parser):
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools.beam._cli import configure_build_graph
    return configure_build_graph(parser)


@subcommand("beam-pack-nbrs",
            help="pack-nbrs as an Apache Beam pipeline (--runner=...).")
def _beam_pack_nbrs(parser):
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools.beam._cli import configure_pack_nbrs
    return configure_pack_nbrs(parser)


@subcommand("evaluate",
            help="Robust accuracy of a saved Keras model (FGSM/PGD).")
def _evaluate(parser):
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.evaluation._cli import configure
    return configure(parser)


def main(argv=None):
    """Entry point of the `nsl` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    width = max(map(len, _SUBCOMMANDS))  # Names and help in two columns.
    parser = argparse.ArgumentParser(
        prog="nsl", description="Neural Structured Learning tools.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(
            f"  {name:<{width}}  {help_}"
            for name, (help_, _) in _SUBCOMMANDS.items())
        + "\n\nRun 'nsl <command> --help' for a command's flags.")
    parser.add_argument("--version", action="store_true",
                        help="print the version and exit")
    parser.add_argument("command", nargs="?", metavar="command",
                        help="one of: " + ", ".join(_SUBCOMMANDS))
    if argv and argv[0] in _SUBCOMMANDS:
        help_, configure = _SUBCOMMANDS[argv[0]]
        return run_command(f"nsl {argv[0]}", configure, argv[1:], help_)
    args = parser.parse_args(argv)
    if args.version:
        from neural_structured_learning import version  # pylint: disable=import-outside-toplevel
        print(f"nsl {version.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    parser.error(f"unknown command {args.command!r}; expected one of: "
                 + ", ".join(_SUBCOMMANDS))
    return 2


if __name__ == "__main__":
    sys.exit(main())
