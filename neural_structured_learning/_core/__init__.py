"""The ground floor: framework-free helpers shared by the sub-packages.

Modules here import only the standard library and NumPy, and nothing else of
this package, so `tools`, `configs`, `evaluation`, `lib`, `keras` and `cli`
can all build on them without import cycles:

* `flags`: absl-style command-line flags on top of argparse;
* `command`: running one command line (`run_command`);
* `progress`: tqdm progress bars on stderr;
* `validation`: argument checks;
* `naming`: the packed neighbour-feature names (`NL_nbr_...`);
* `lazy`: lazily imported exports of a package.
"""

__all__ = []
