r"""Label-scarcity curve on Cora: MLP, graph-regularized MLP and GCN (issue 12).

For k = 1, 2, 5, 10, 20 labels per class, draws k labeled nodes per class
(seeded) from the Planetoid nodes outside the validation and test sets,
then trains side by side, as in `graph_planetoid_benchmark.py`:

* **MLP**: `examples/graph_mlp_planetoid.py`'s MLP on the labeled nodes;
* **graph-reg MLP (NSL 1.4 defaults)**: the same MLP with the example's
  tuned NSL 1.4-style graph regularization (graph + 2-hop neighbours);
* **graph-reg MLP (propagation)**: the same MLP with the example's
  recommended recipe (`graph_mlp_planetoid.RECIPES['propagation']`);
* **GCN**: `benchmarks/gcn_baseline.py`, which needs the graph at inference.

Hyper-parameters are those chosen on the standard split's validation nodes
(k = 20), unchanged for every k; each run keeps the weights of its epoch of
best accuracy on the 500 validation nodes, and the 1000 test nodes are used
once. Prints a Markdown table (mean ± std over seeds), writes the raw
results (`--json`) and a PNG of test accuracy against labels per class
(`--png`).

Usage:

    NSL_DATA_DIR=/path/to/data KERAS_BACKEND=jax \
        python benchmarks/graph_label_scarcity.py [--seeds 0 1 2] \
        [--labels_per_class 1 2 5 10 20] [--json out.json] [--png out.png]
"""

import argparse
import json
import os
import sys
import time
import types

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "examples"))
sys.path.insert(0, _HERE)

from neural_structured_learning import _quiet as quiet  # noqa: E402

quiet.framework_logs()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import datasets  # noqa: E402
import gcn_baseline  # noqa: E402
import graph_mlp_planetoid  # noqa: E402
from plotting import pyplot  # noqa: E402  (examples/plotting.py)

MODELS = {
    "mlp": "MLP",
    "nsl14": "graph-reg MLP (NSL 1.4 defaults)",
    "new": "graph-reg MLP (propagation)",
    "gcn": "GCN (Kipf & Welling)",
}


def scarce_split(data, labels_per_class, seed):
    """`data` with `train` = k labeled nodes per class, outside val/test."""
    rng = np.random.default_rng(seed)
    held_out = np.zeros(len(data.labels), bool)
    held_out[data.val] = held_out[data.test] = True
    train = []
    for c in range(data.num_classes):
        pool = np.flatnonzero((data.labels == c) & ~held_out)
        train.append(rng.choice(pool, labels_per_class, replace=False))
    return types.SimpleNamespace(**{**vars(data),
                                    "train": np.sort(np.concatenate(train))})


def run(model, data, seed, epochs=None, temperature=None):
    if model == "gcn":
        return gcn_baseline.run_gcn(data, seed=seed)
    hparams = (graph_mlp_planetoid.RECIPES["propagation"] if model == "new"
               else {})
    if model == "new" and temperature is not None:
        hparams = dict(hparams, propagation_temperature=temperature)
    if epochs:
        hparams = dict(hparams, epochs=epochs)
    return graph_mlp_planetoid.run(data, graph_regularized=model != "mlp",
                                   seed=seed, **hparams)


def table(results, models, ks):
    lines = ["| labels per class | " + " | ".join(MODELS[m] for m in models)
             + " |", "|---" * (len(models) + 1) + "|"]
    for k in ks:
        cells = []
        for m in models:
            accs = 100 * np.array([r["test_accuracy"] for r in results
                                   if r["model"] == m and r["k"] == k])
            cells.append(f"{accs.mean():.1f} ± {accs.std():.1f} "
                         f"({len(accs)})" if len(accs) else "-")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, models, ks, path):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        means, stds = [], []
        for k in ks:
            accs = 100 * np.array([r["test_accuracy"] for r in results
                                   if r["model"] == m and r["k"] == k])
            means.append(accs.mean())
            stds.append(accs.std())
        ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3,
                    label=MODELS[m])
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("labels per class (Cora)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"data directory (default ${datasets.ENV_VAR})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels_per_class", type=int, nargs="+",
                        default=[1, 2, 5, 10, 20])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="override every model's epochs (quick runs)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--propagation_temperature", type=float,
                        default=None, help="override the propagation "
                        "recipe's temperature (model 'new')")
    parser.add_argument("--include_json", nargs="*", default=[],
                        help="earlier runs' --json files: their results "
                        "join this run's in the table and the PNG (e.g. "
                        "to add one model to a finished run)")
    args = parser.parse_args(argv)
    if args.propagation_temperature is not None and "new" in args.models:
        # Its own row, beside the recipe's (e.g. from --include_json).
        key = f"new_t{args.propagation_temperature:g}"
        MODELS[key] = (f"graph-reg MLP (propagation, "
                       f"T={args.propagation_temperature:g})")
        args.models = [key if m == "new" else m for m in args.models]
    data = datasets.load_planetoid(datasets.data_dir(args.data_dir), "cora")
    if args.epochs:
        gcn_baseline.DEFAULTS["epochs"] = args.epochs
    results = []
    total = len(args.labels_per_class) * len(args.seeds) * len(args.models)
    start = time.time()
    for k in args.labels_per_class:
        for seed in args.seeds:
            split = scarce_split(data, k, seed)
            for model in args.models:
                result = run("new" if model.startswith("new") else model,
                             split, seed, args.epochs,
                             args.propagation_temperature)
                results.append(dict(result, model=model, k=k, seed=seed,
                                    backend=keras.config.backend()))
                print(f"[{len(results)}/{total}, {time.time() - start:.0f} s]"
                      f" k={k} seed={seed} {MODELS[model]}: test "
                      f"{100 * result['test_accuracy']:.1f}%", flush=True)
    included = []
    for path in args.include_json:
        with open(path, encoding="utf-8") as f:
            included += [r for r in json.load(f)["results"]
                         if r["model"] not in args.models]
    models = [m for m in MODELS if m in args.models
              or any(r["model"] == m for r in included)]
    print(f"\nCora, {keras.config.backend()}, test accuracy (%) "
          "mean ± std (seeds):\n")
    print(table(included + results, models, args.labels_per_class))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": " ".join(sys.argv), "results": results}, f,
                      indent=1)
    if args.png:
        plot(included + results, models, args.labels_per_class, args.png)


if __name__ == "__main__":
    main()
