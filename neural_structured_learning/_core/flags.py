"""absl-style command-line flags on top of argparse (no absl dependency).

NSL 1.4's command lines were absl programs. `FlagParser` accepts the same
spellings, so existing scripts keep working:

* `--flag=value` and `--flag value` (also with a single dash, `-flag=value`);
* booleans as `--flag`, `--noflag`, `--flag=true|false|t|f|1|0`;
* flags and positional arguments in any order; `--` ends the flags.

Every flag also has a dashed alias (`--max-nbrs` for `--max_nbrs`, and
`--no-add-undirected-edges`), the usual spelling for `nsl` subcommands.
"""

import argparse
import dataclasses

_TRUE = ("true", "t", "1")
_FALSE = ("false", "f", "0")


class UsageError(Exception):
    """Wrong command-line usage (reported like an argparse error, exit 2)."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag: `--name` of type `int`, `float`, `str`, `bool`.

    `choices` optionally restricts the values (not for booleans).
    """

    name: str
    type: type
    default: object
    help: str
    choices: tuple = None


class FlagParser(argparse.ArgumentParser):
    """An `ArgumentParser` that also understands absl flag spellings.

    Use `add_flags` for absl-style flags and `parse` to parse; anything else
    is plain argparse.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._flag_types = {}

    def add_flags(self, flags):
        """Adds `--name` (and `--dashed-name`) for each `Flag` in `flags`."""
        for flag in flags:
            self._flag_types[flag.name] = flag.type
            dashed = flag.name.replace("_", "-")
            names = [f"--{flag.name}"] + ([f"--{dashed}"]
                                          if dashed != flag.name else [])
            if flag.type is bool:
                self.add_argument(
                    *names, dest=flag.name, action="store_true",
                    default=flag.default,
                    help=f"{flag.help} (--no{flag.name} to disable; "
                    f"default: {flag.default})")
                negatives = [f"--no{flag.name}", f"--no-{dashed}"]
                self.add_argument(*dict.fromkeys(negatives), dest=flag.name,
                                  action="store_false", help=argparse.SUPPRESS)
            else:
                self.add_argument(
                    *names, dest=flag.name, type=flag.type,
                    default=flag.default, choices=flag.choices,
                    metavar=flag.type.__name__.upper(),
                    help=f"{flag.help} (default: {flag.default})")

    def parse(self, argv):
        """Parses `argv` (a list of strings); flags and positionals mix."""
        return self.parse_intermixed_args(self._normalize(list(argv)))

    def _normalize(self, argv):
        """Rewrites the absl-only spellings into argparse ones."""
        result = []
        for position, arg in enumerate(argv):
            if arg == "--":
                result.extend(argv[position:])
                break
            if arg.startswith("-") and not arg.startswith("--"):
                if self._flag_name(arg[1:].partition("=")[0]) is not None:
                    arg = "-" + arg
            if arg.startswith("--") and "=" in arg:
                name, _, value = arg[2:].partition("=")
                canonical = self._flag_name(name)
                if canonical and self._flag_types[canonical] is bool:
                    arg = self._bool_spelling(name, canonical, value)
            result.append(arg)
        return result

    def _flag_name(self, name):
        """The canonical name of a flag spelled `name`, or `None`."""
        canonical = name.replace("-", "_")
        if canonical in self._flag_types:
            return canonical
        for prefix in ("no_", "no"):
            stripped = canonical[len(prefix):]
            if canonical.startswith(prefix) and (
                    self._flag_types.get(stripped) is bool):
                return stripped
        return None

    def _bool_spelling(self, name, canonical, value):
        if name.replace("-", "_") != canonical:  # `--noflag=...`
            self.error(f"argument --{name}: takes no value. Received: "
                       f"--{name}={value}")
        if value.lower() in _TRUE:
            return f"--{canonical}"
        if value.lower() in _FALSE:
            return f"--no{canonical}"
        self.error(f"argument --{name}: expected true/false (or t/f, 1/0). "
                   f"Received: {value!r}")
        return None
