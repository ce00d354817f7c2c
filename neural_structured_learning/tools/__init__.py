"""Tools to prepare data for Neural Structured Learning (no DL framework).

* `build_graph`, `build_graph_from_config`: similarity graph from
  embeddings, written as TSV (exact, FAISS HNSW top-k, or NSL 1.4's LSH).
* `pack_nbrs`: merge each labeled example with its neighbours' features.
* `read_tsv_graph`, `write_tsv_graph`, `add_edge`, `add_undirected_edges`:
  the NSL 1.4 graph helpers (`dict` graphs and TSV files).
* `load_graph_csr`, `Graph`: a graph as NumPy CSR arrays
  (`UnknownNodeError` for edges to unknown nodes).
* `khop_neighbors`, `ppr_neighbors`: each node's top-k neighbours by
  normalised adjacency powers (k hops) or personalized PageRank, as a
  `Graph`; `write_neighborhood_graph` writes them as graph TSV (needs SciPy).
* `beam.build_graph`, `beam.pack_nbrs`: the same as Apache Beam pipelines
  (`pip install 'neural-structured-learning-keras[beam]'`).
* Sub-modules: `tfrecord` (TFRecord I/O with CRC checks) and
  `example_proto` (`tf.train.Example` without TensorFlow).

Command lines, with NSL 1.4's flags:

    python -m neural_structured_learning.tools.build_graph [flags] \
        embedding_file.tfr... output_graph.tsv
    python -m neural_structured_learning.tools.pack_nbrs [flags] \
        labeled.tfr unlabeled.tfr graph.tsv output.tfr

or `nsl build-graph ...`, `nsl pack-nbrs ...` and `nsl neighborhoods ...`
(`nsl <command> --help`).

As in NSL 1.4, `neural_structured_learning.tools.build_graph` and
`.pack_nbrs` are the functions, not the same-named command-line modules; that
stays true after those modules are imported (e.g. by `python -m`).
Importing this package needs only NumPy; protobuf, crc32c, FAISS and pyarrow
are imported when a function needs them (`pip install
'neural-structured-learning-keras[tools]'`), SciPy by the neighbourhood
functions (`pip install scipy`).
"""

import sys
import types

from neural_structured_learning.tools._graph_builder import build_graph
from neural_structured_learning.tools._graph_builder import build_graph_from_config
from neural_structured_learning.tools._packer import pack_nbrs
from neural_structured_learning.tools.graph_utils import Graph
from neural_structured_learning.tools.graph_utils import UnknownNodeError
from neural_structured_learning.tools.graph_utils import add_edge
from neural_structured_learning.tools.graph_utils import add_undirected_edges
from neural_structured_learning.tools.graph_utils import load_graph_csr
from neural_structured_learning.tools.graph_utils import read_tsv_graph
from neural_structured_learning.tools.graph_utils import write_tsv_graph
from neural_structured_learning.tools.neighborhoods import khop_neighbors
from neural_structured_learning.tools.neighborhoods import ppr_neighbors
from neural_structured_learning.tools.neighborhoods import write_neighborhood_graph

__all__ = [
    "Graph",
    "UnknownNodeError",
    "add_edge",
    "add_undirected_edges",
    "build_graph",
    "build_graph_from_config",
    "khop_neighbors",
    "load_graph_csr",
    "pack_nbrs",
    "ppr_neighbors",
    "read_tsv_graph",
    "write_neighborhood_graph",
    "write_tsv_graph",
]

_FUNCTIONS_NAMED_LIKE_MODULES = ("build_graph", "pack_nbrs")


class _ToolsPackage(types.ModuleType):
    """Keeps `build_graph` and `pack_nbrs` bound to the functions.

    Importing a submodule makes Python set it as an attribute of its package,
    which would replace the function of the same name.
    """

    def __setattr__(self, name, value):
        if name in _FUNCTIONS_NAMED_LIKE_MODULES and isinstance(
                value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _ToolsPackage


def __getattr__(name):
    """`nsl.tools.beam` (the Apache Beam pipelines), imported on first use."""
    if name == "beam":
        import importlib  # pylint: disable=import-outside-toplevel
        return importlib.import_module(f"{__name__}.beam")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
