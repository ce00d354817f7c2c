r"""Graph + adversarial regularization of an MLP on Cora, in one model.

Trains, for each seed, four models that differ only in their regularization
terms, and measures each served (plain) base model's clean test accuracy and
its accuracy under a white-box FGSM attack:

* (a) base MLP: `base.fit` on the training nodes;
* (b) graph only: `nsl.keras.RegularizedModel(base, [GraphTerm])`;
* (c) adversarial only: `RegularizedModel(base, [AdversarialTerm])`;
* (d) graph + adversarial: `RegularizedModel(base, [GraphTerm,
  AdversarialTerm])`, one model, one `fit`.

The setting is `examples/graph_mlp_cora.py`'s (NSL 1.4's
`graph_keras_mlp_cora` tutorial): LINQS Cora with the tutorial's split (2155
train / 553 test nodes), MLP 1433-50-50-7 with dropout 0.5, Adam, batch 128,
100 epochs; graph term: L2 on the logits, `sum_over_axis=-1`, multiplier 0.1,
the top `max_neighbors` (2) neighbours of the undirected citation graph.
Adversarial term: multiplier 0.2, one FGSM step.

Data: (b), (c) and (d) read `nsl.keras.NeighborBatchDataset`s with the same
batch size and sampling seed, so every model sees the same sample batches in
the same order (`base.fit` in (a) shuffles with Keras's own order). The base
model has one named input, `words`, so it ignores the neighbour keys. (c)
gets the dataset built with `max_neighbors=0`: the very same batches minus
the `NL_nbr_*` keys, which it would not use (a model perturbs only the
features its base model reads).

Perturbation norm and radii (fixed from the features' scale before any run,
not tuned): Cora's features are binary bag-of-words indicators, 1433 of them,
about 18 ones per paper (49216 in 2708 papers), so a paper's feature vector
has an L2 norm of about 4.3. Both the training neighbours and the evaluation
attack use the L2 norm, with the inputs clipped to [0, 1]:

* `--adv_step_size 1.0` (training) and `--eval_epsilon 1.0` (FGSM at test
  time): an L2 radius of 1 is the size of flipping one word, about a quarter
  of a paper's norm. The model is trained against the threat it is evaluated
  on (same norm, same radius).
* Not L-infinity: an L-infinity ball of radius eps lets every one of the
  ~1415 absent words of a paper rise by eps at once, i.e. eps = 0.1 is about
  140 words' worth of mass added to an 18-word paper; it measures nothing
  meaningful for sparse binary features. (NSL 1.4's default, L2 with
  `adv_step_size=0.001`, is negligible at this scale.)

In (c) and (d) alike, the FGSM direction of the training neighbours is the
labeled loss's input gradient in the recorded clean pass (NSL 1.4's way,
with the clean pass's dropout mask); in (d) the recording also covers the
neighbour rows of the graph term. A control, (d) with a negligible graph
weight (`--models "graph + adversarial" --graph_multiplier 1e-9`), trains
like (c) (docs/graph_regularization.md).

Evaluation: `nsl.evaluation.evaluate_robustness(base, x_test, y_test,
[fgsm(eval_epsilon, 'l2')], clip=(0, 1))`, white-box against each served
base model. FGSM test accuracy counts a test node only if it is classified
correctly both clean and after the attack.

Usage:

    NSL_DATA_DIR=/path/to/data python examples/graph_adversarial_cora.py \
        [--seeds 0 1 2] [--epochs 100] [--json results.json] \
        [--plot accuracy.png]

It prints one line per run and a Markdown table (mean ± std over the seeds).
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import datasets  # noqa: E402
import neural_structured_learning as nsl  # noqa: E402
from graph_mlp_cora import FEATURE  # noqa: E402
from graph_mlp_cora import load  # noqa: E402
from graph_mlp_cora import make_mlp  # noqa: E402
from plotting import pyplot  # noqa: E402  (examples/plotting.py)

MODELS = ("base MLP", "graph", "adversarial", "graph + adversarial")
CLIP = (0.0, 1.0)  # Cora's binary features.
NORM = "l2"


def neighbor_data(cora, max_neighbors, batch_size, seed):
    """A fresh `NeighborBatchDataset` (its epoch counter starts at 0).

    `max_neighbors=0` gives the same batches (same seeds, same order)
    without neighbour keys.
    """
    config = nsl.configs.make_graph_reg_config(max_neighbors=max_neighbors)
    return nsl.keras.NeighborBatchDataset(
        {FEATURE: cora.features}, cora.train_labels, cora.edges,
        config.neighbor_config, node_ids=cora.node_ids, undirected=True,
        batch_size=batch_size, sampling="top", seed=seed)


def make_terms(name, args):
    """The regularization terms of model `name`."""
    terms = []
    if "graph" in name:
        terms.append(nsl.keras.terms.GraphTerm(
            nsl.configs.make_graph_reg_config(
                max_neighbors=args.max_neighbors,
                multiplier=args.graph_multiplier, distance_type="l2",
                sum_over_axis=-1)))
    if "adversarial" in name:
        terms.append(nsl.keras.terms.AdversarialTerm(
            nsl.configs.make_adv_reg_config(
                multiplier=args.adv_multiplier,
                adv_step_size=args.adv_step_size, adv_grad_norm=NORM,
                clip_value_min=CLIP[0], clip_value_max=CLIP[1])))
    return terms


def evaluate(base, cora, eval_epsilon):
    """Clean and white-box FGSM test accuracy of the served base model."""
    x_test = cora.features[cora.test]
    y_test = cora.labels[cora.test]
    rows = nsl.evaluation.evaluate_robustness(
        base, x_test, y_test, [nsl.evaluation.fgsm(eval_epsilon, NORM)],
        clip=CLIP, batch_size=len(x_test), sanity_checks=False,
        model_name="base", progress=False)
    return rows[0]["accuracy"], rows[1]["accuracy"]


def run(cora, name, args, seed):
    """Trains model `name` from fresh weights; returns a result dict."""
    keras.utils.set_random_seed(seed)
    base = make_mlp(cora.features.shape[1], len(datasets.CORA_CLASSES))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    start = time.time()
    if name == "base MLP":
        base.compile("adam", loss, metrics=["accuracy"])
        history = base.fit(cora.features[cora.train],
                           cora.labels[cora.train],
                           batch_size=args.batch_size, epochs=args.epochs,
                           verbose=0)
    else:
        model = nsl.keras.RegularizedModel(base, terms=make_terms(name, args),
                                           seed=seed)
        model.compile("adam", loss, metrics=["accuracy"])
        # Without a GraphTerm, the same batches without neighbour keys.
        neighbors = args.max_neighbors if "graph" in name else 0
        history = model.fit(
            neighbor_data(cora, neighbors, args.batch_size, seed),
            epochs=args.epochs, verbose=0)
    train_seconds = time.time() - start
    start = time.time()
    clean, fgsm = evaluate(base, cora, args.eval_epsilon)
    return dict(model=name, seed=seed, clean_test_accuracy=float(clean),
                fgsm_test_accuracy=float(fgsm),
                train_seconds=round(train_seconds, 2),
                eval_seconds=round(time.time() - start, 2),
                final_epoch={k: float(v[-1])
                             for k, v in history.history.items()})


def markdown_table(results):
    lines = ["| model | clean test acc (mean ± std) | FGSM test acc "
             "(mean ± std) | seeds |", "|---|---|---|---|"]
    for name in MODELS:
        runs = [r for r in results if r["model"] == name]
        if not runs:
            continue
        clean = 100 * np.array([r["clean_test_accuracy"] for r in runs])
        fgsm = 100 * np.array([r["fgsm_test_accuracy"] for r in runs])
        lines.append(f"| {name} | {clean.mean():.2f} ± {clean.std():.2f} | "
                     f"{fgsm.mean():.2f} ± {fgsm.std():.2f} | {len(runs)} |")
    return "\n".join(lines)


def plot(results, args, path):
    """Bar chart of clean and FGSM test accuracy (mean ± std) per model."""
    plt = pyplot()
    if plt is None:
        return
    names = [n for n in MODELS if any(r["model"] == n for r in results)]
    figure, axes = plt.subplots(figsize=(7, 4))
    positions = np.arange(len(names))
    for offset, key, label in (
            (-0.2, "clean_test_accuracy", "clean"),
            (0.2, "fgsm_test_accuracy",
             f"FGSM L2 eps={args.eval_epsilon:g}")):
        values = [100 * np.array([r[key] for r in results
                                  if r["model"] == n]) for n in names]
        axes.bar(positions + offset, [v.mean() for v in values], width=0.4,
                 yerr=[v.std() for v in values], capsize=3, label=label)
    axes.set_xticks(positions)
    axes.set_xticklabels(names)
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"Cora (NSL tutorial split), {keras.backend.backend()}, "
                   f"{len(args.seeds)} seeds")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="upper center", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"data directory (default ${datasets.ENV_VAR})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--graph_multiplier", type=float, default=0.1)
    parser.add_argument("--max_neighbors", type=int, default=2)
    parser.add_argument("--adv_multiplier", type=float, default=0.2)
    parser.add_argument("--adv_step_size", type=float, default=1.0,
                        help="L2 radius of the training FGSM neighbours")
    parser.add_argument("--eval_epsilon", type=float, default=1.0,
                        help="L2 radius of the FGSM attack at evaluation")
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=MODELS, help="which models to train")
    parser.add_argument("--json", default=None,
                        help="write the raw per-run results to this file")
    parser.add_argument("--plot", default=None,
                        help="write a bar chart of the accuracies to this PNG")
    args = parser.parse_args(argv)
    cora = load(args.data_dir)
    print(f"backend={keras.backend.backend()} train={len(cora.train)} "
          f"test={len(cora.test)} edges={len(cora.edges[0])} "
          f"adv: L2 step {args.adv_step_size:g}, FGSM eval: L2 eps "
          f"{args.eval_epsilon:g}, clip {list(CLIP)}", flush=True)
    results = []
    start = time.time()
    for name in [n for n in MODELS if n in args.models]:
        for seed in args.seeds:
            result = run(cora, name, args, seed)
            results.append(result)
            print(f"  {name} seed={seed}: clean "
                  f"{100 * result['clean_test_accuracy']:.2f}%, FGSM "
                  f"{100 * result['fgsm_test_accuracy']:.2f}% "
                  f"({result['train_seconds']:.1f} s train, "
                  f"{result['eval_seconds']:.1f} s eval)", flush=True)
    total = time.time() - start
    print(markdown_table(results))
    print(f"total {total:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)),
                    exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(
                backend=keras.backend.backend(),
                keras_version=keras.__version__,
                machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                command=" ".join(sys.argv),
                args={k: v for k, v in vars(args).items()},
                norm=NORM, clip=list(CLIP), total_seconds=round(total, 1),
                table=markdown_table(results), runs=results), f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args, args.plot)


if __name__ == "__main__":
    main()
