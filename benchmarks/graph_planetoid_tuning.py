r"""Validation-only tuning of the graph-regularized MLP on Planetoid Cora.

Trains `examples/graph_mlp_planetoid.py`'s models with the settings of
`GRID` (one change at a time from the defaults) and prints a Markdown table
of the best validation accuracy (500 validation nodes, every 5 epochs) and
its epoch. Test accuracy is never computed here.

Usage:

    NSL_DATA_DIR=/path/to/data KERAS_BACKEND=jax \
        python benchmarks/graph_planetoid_tuning.py [--seeds 0] [--dataset cora]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "examples"))

import numpy as np  # noqa: E402

import graph_mlp_planetoid  # noqa: E402

# (graph_regularized, changes from graph_mlp_planetoid.DEFAULTS)
GRID = [
    (False, dict()),
    (False, dict(input_dropout=0.5)),
    (True, dict(input_dropout=0.5)),
    (True, dict(input_dropout=0.5, hop2_weight=0.0, max_neighbors=10)),
    (True, dict()),
    (True, dict(multiplier=1.0)),
    (True, dict(multiplier=30.0)),
    (True, dict(hop2_weight=0.0, max_neighbors=10)),
    (True, dict(hop2_weight=1.0)),
    (True, dict(distance_type="kl_divergence", multiplier=3.0)),
    (True, dict(transform_fn="none", multiplier=0.1)),
    (True, dict(hidden=256)),
    (True, dict(weight_decay=5e-3)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    data = graph_mlp_planetoid.load(args.dataset, args.data_dir)
    lines = ["| model | changes from the defaults | val accuracy (best) | "
             "best epoch |", "|---|---|---|---|"]
    for graph_regularized, changes in GRID:
        results = [graph_mlp_planetoid.run(data, graph_regularized, seed,
                                           **changes) for seed in args.seeds]
        val = 100 * np.mean([r["val_accuracy"] for r in results])
        epoch = np.mean([r["best_epoch"] for r in results])
        name = "graph-regularized MLP" if graph_regularized else "MLP"
        text = ", ".join(f"{k}={v}" for k, v in changes.items()) or "-"
        lines.append(f"| {name} | {text} | {val:.1f} | {epoch:.0f} |")
        print(lines[-1], flush=True)
    print(f"defaults: {graph_mlp_planetoid.DEFAULTS}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
