"""Running one command line: parse the flags, call the handler, report errors.

Shared by the `nsl` console script (`neural_structured_learning.cli`) and
NSL 1.4's `python -m neural_structured_learning.tools.build_graph` /
`.pack_nbrs` entry points.
"""

import logging
import sys

from neural_structured_learning._core import flags


def run_command(prog, configure, argv, description=None):
    """Parses `argv` for one command and runs it.

    Logs go to stderr at INFO level. Errors from bad inputs (`ValueError`,
    `OSError`, `ImportError`, e.g. a malformed file or a missing one) are
    printed as one line, `<prog>: error: <message>`, with exit status 1;
    usage errors exit with status 2, as argparse does.

    Args:
        prog: the program name shown in usage and error messages.
        configure: `configure(parser) -> handler`: adds the command's
            arguments to `parser` (a `flags.FlagParser`) and returns
            `handler(args) -> int | None`.
        argv: the arguments after the program (and subcommand) name.
        description: text shown by `--help`.

    Returns:
        The exit status.
    """
    parser = flags.FlagParser(prog=prog, description=description)
    handler = configure(parser)
    args = parser.parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader is chatty
    try:
        status = handler(args)
    except flags.UsageError as e:
        parser.error(str(e))
    except (ValueError, OSError, ImportError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0 if status is None else status
