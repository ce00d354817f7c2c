r"""MLP vs graph-regularized MLPs vs GCN on the Planetoid splits (issue 12).

For each dataset and seed, trains side by side:

* **MLP**: `examples/graph_mlp_planetoid.py`'s MLP on the labeled nodes;
* **graph-reg (NSL 1.4)**: the same MLP with NSL 1.4-style graph
  regularization, the example's `DEFAULTS` (L2 between softmax outputs of
  labeled nodes and their graph + 2-hop neighbours);
* **graph-reg (new)**: the same MLP with the example's recommended recipe
  (`graph_mlp_planetoid.RECIPES['propagation']`: every node as a batch row,
  personalized-PageRank neighbours, `nsl.configs.PropagationConfig`'s
  loss), chosen on the VALIDATION nodes; the `--new_*` flags change it;
* **GCN**: `benchmarks/gcn_baseline.py` (Kipf & Welling, 2017), which,
  unlike the others, uses the graph at inference.

Every model keeps the weights of its epoch of best validation accuracy; the
test nodes are used once per run. Prints a Markdown table (model | val acc |
test acc mean ± std | seeds | s/run) per dataset; `--json` writes the raw
per-seed results.

Usage:

    NSL_DATA_DIR=/path/to/data KERAS_BACKEND=jax \
        python benchmarks/graph_planetoid_benchmark.py \
        [--datasets cora citeseer] [--seeds 0 1 2] [--json out.json] \
        [--models mlp nsl14 new gcn] [--new_multiplier 1.0] ...
    python benchmarks/graph_planetoid_benchmark.py --report a.json b.json
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "examples"))
sys.path.insert(0, _HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import gcn_baseline  # noqa: E402
import graph_mlp_planetoid  # noqa: E402

# The new configuration's changes from graph_mlp_planetoid.DEFAULTS: the
# example's recommended recipe (see its docstring and
# docs/graph_regularization.md for how it was chosen, on validation nodes).
NEW_CONFIG = graph_mlp_planetoid.RECIPES["propagation"]

MODELS = {
    "mlp": "MLP",
    "nsl14": "graph-reg MLP (NSL 1.4 defaults)",
    "new": "graph-reg MLP (propagation)",
    "gcn": "GCN (Kipf & Welling)",
}


def run_model(model, data, seed, new_hparams, epochs=None):
    """One run of `model` (a key of MODELS); returns the result dict."""
    extra = {} if epochs is None else dict(epochs=epochs)
    if model == "mlp":
        return graph_mlp_planetoid.run(data, False, seed, **extra)
    if model == "nsl14":
        return graph_mlp_planetoid.run(data, True, seed, **extra)
    if model == "new":
        return graph_mlp_planetoid.run(data, True, seed,
                                       **dict(new_hparams, **extra))
    if model == "gcn":
        return gcn_baseline.run_gcn(data, seed)
    raise ValueError(f"Unknown model {model!r}.")


def table(results, models):
    """Markdown rows for one dataset's `results[model] = [per-seed dicts]`."""
    lines = ["| model | val acc | test acc (mean ± std) | seeds | s/run |",
             "|---|---|---|---|---|"]
    for model in models:
        runs = results.get(model, [])
        if not runs:
            continue
        val = 100 * np.array([r["val_accuracy"] for r in runs])
        test = 100 * np.array([r["test_accuracy"] for r in runs])
        seconds = np.mean([r["seconds"] for r in runs])
        lines.append(f"| {MODELS[model]} | {val.mean():.2f} | "
                     f"{test.mean():.2f} ± {test.std():.2f} | {len(runs)} | "
                     f"{seconds:.1f} |")
    return "\n".join(lines)


def backend_table(raws, dataset):
    """Markdown rows: test accuracy of each model (rows) per backend
    (columns), from several runs' `--json` files, for one dataset."""
    cells = {}
    for raw in raws:
        for model, runs in raw["results"].get(dataset, {}).items():
            cells.setdefault(model, {}).setdefault(raw["backend"], []).extend(
                100 * r["test_accuracy"] for r in runs)
    backends = [b for b in ("tensorflow", "jax", "torch")
                if any(b in by_backend for by_backend in cells.values())]
    if not backends:
        return "(no results)"
    lines = ["| model | " + " | ".join(backends) + " |",
             "|---|" + "---|" * len(backends)]
    for model in MODELS:
        if model not in cells:
            continue
        row = []
        for backend in backends:
            values = np.array(cells[model].get(backend, []))
            row.append(f"{values.mean():.2f} ± {values.std():.2f} "
                       f"({len(values)})" if len(values) else "-")
        lines.append(f"| {MODELS[model]} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer"],
                        choices=["cora", "citeseer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the MLPs' epochs (default: theirs)")
    parser.add_argument("--json", default=None, help="write raw results here")
    parser.add_argument("--report", nargs="+", default=None,
                        help="run nothing: print a model x backend table "
                        "per dataset from these --json files")
    # --new_<name> for every hyper-parameter of the example; defaults: the
    # example's DEFAULTS updated with NEW_CONFIG.
    new_defaults = dict(graph_mlp_planetoid.DEFAULTS, **NEW_CONFIG)
    graph_mlp_planetoid.add_hparam_flags(parser, new_defaults, "new_")
    args = parser.parse_args(argv)
    if args.report:
        raws = []
        for path in args.report:
            with open(path, encoding="utf-8") as f:
                raws.append(json.load(f))
        print("Test accuracy (%), mean ± std (seeds):")
        for dataset in args.datasets:
            print(f"\n### {dataset}\n\n{backend_table(raws, dataset)}")
        return
    new_hparams = {name: getattr(args, f"new_{name}")
                   for name in new_defaults}
    print(f"backend={keras.backend.backend()} new config: {new_hparams}",
          flush=True)
    raw = dict(backend=keras.backend.backend(), seeds=args.seeds,
               new_hparams=new_hparams, results={})
    tables = []
    for dataset in args.datasets:
        data = graph_mlp_planetoid.load(dataset, args.data_dir)
        results = raw["results"][dataset] = {}
        for seed in args.seeds:
            for model in args.models:
                result = run_model(model, data, seed, new_hparams,
                                   args.epochs)
                result["seed"] = seed
                results.setdefault(model, []).append(result)
                print(f"  {dataset} {MODELS[model]} seed={seed}: test "
                      f"{100 * result['test_accuracy']:.2f}% val "
                      f"{100 * result['val_accuracy']:.2f}% (epoch "
                      f"{result['best_epoch']}, {result['seconds']:.1f} s)",
                      flush=True)
                if args.json:
                    with open(args.json, "w", encoding="utf-8") as f:
                        json.dump(raw, f, indent=1)
        tables.append(f"### {dataset}\n\n{table(results, args.models)}")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
