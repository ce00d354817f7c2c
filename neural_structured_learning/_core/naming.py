"""Names of packed neighbour features, as NSL 1.4 wrote and read them.

A labeled example packed with `K` neighbours (by `nsl.tools.pack_nbrs`, or
per batch by `nsl.keras.NeighborBatchDataset`) holds, for `i < K`:

* `{prefix}{i}_{name}`: neighbour `i`'s copy of feature `name`;
* `{prefix}{i}{weight_suffix}`: the edge weight (`[batch, 1]`);
* `NL_num_nbrs` (TFRecords only): `K`.

The defaults are `prefix = "NL_nbr_"` and `weight_suffix = "_weight"`
(`nsl.configs.GraphNeighborConfig`). Integer label `-1` marks an unlabeled
example.
"""

NBR_PREFIX = "NL_nbr_"
WEIGHT_SUFFIX = "_weight"
NUM_NBRS_FEATURE = "NL_num_nbrs"
UNLABELED = -1


def neighbor_feature_name(config, index, name):
    """`{prefix}{index}_{name}`; `config` has a `prefix` (a
    `GraphNeighborConfig`)."""
    return f"{config.prefix}{index}_{name}"


def neighbor_weight_name(config, index):
    """`{prefix}{index}{weight_suffix}`; `config` has `prefix` and
    `weight_suffix` (a `GraphNeighborConfig`)."""
    return f"{config.prefix}{index}{config.weight_suffix}"
