"""Virtual adversarial training: two rings over seeds and backends.

Runs `examples/vat_two_rings.py` for `--seeds` on each backend (one process
per run) and prints a Markdown table of test accuracy, plain vs VAT (mean,
min, max over seeds). `--mnist100` also runs `examples/vat_mnist100.py` for
`--mnist_seeds` on each of `--mnist_backends` and prints test error per model
(long: see docs/vat.md for the budget).

    python benchmarks/vat_benchmark.py --seeds 0 1 2 3 4
    python benchmarks/vat_benchmark.py --seeds --mnist100 --data_dir DATA_DIR

`--epochs` shortens the two-rings runs (default: the example's 300), for a
quick check that everything runs. MNIST-100 needs the data directory
(`--data_dir` or NSL_DATA_DIR, holding mnist/mnist.npz); it is checked before
anything runs.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def run(script, backend, args_list):
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    subprocess.run([sys.executable, os.path.join(EXAMPLES, script),
                    *args_list], check=True, stdout=sys.stderr, env=env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+",
                        default=["tensorflow", "jax", "torch"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--output_dir", default="out/vat_benchmark")
    parser.add_argument("--mnist100", action="store_true")
    parser.add_argument("--mnist_backends", nargs="+", default=["jax"])
    parser.add_argument("--mnist_epochs", type=int, default=None)
    parser.add_argument("--mnist_seeds", nargs="+", type=int,
                        default=[0, 1, 2])
    parser.add_argument("--mnist_models", nargs="+",
                        default=["plain", "vat"])
    parser.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=None,
                        help="two rings: epochs (default: the example's)")
    args = parser.parse_args()
    if args.mnist100:
        mnist = os.path.join(args.data_dir or "", "mnist", "mnist.npz")
        if not (args.data_dir and os.path.exists(mnist)):
            parser.error(f"--mnist100 needs {mnist!r}: pass --data_dir or "
                         "set NSL_DATA_DIR to the folder holding "
                         "mnist/mnist.npz.")

    if args.seeds:
        results = {}
        for backend in args.backends:
            for seed in args.seeds:
                out = os.path.join(args.output_dir, "rings")
                print(f"two rings: {backend} seed {seed}", file=sys.stderr)
                extra = ["--epochs", str(args.epochs)] if args.epochs else []
                run("vat_two_rings.py", backend,
                    ["--seed", str(seed), "--output_dir", out, "--no_plot",
                     *extra])
                with open(os.path.join(
                        out, f"results_{backend}_seed{seed}.json")) as f:
                    acc = json.load(f)["accuracy"]
                for model, value in acc.items():
                    results.setdefault((backend, model), []).append(value)
        epochs = f", {args.epochs} epochs" if args.epochs else ""
        print(f"\nTwo rings, 8 labeled points per class, 1,000 test points, "
              f"seeds {args.seeds}{epochs}: test accuracy\n")
        print("| backend | model | mean | min | max |\n|---|---|---|---|---|")
        for (backend, model), values in results.items():
            print(f"| {backend} | {model} | {np.mean(values):.4f} | "
                  f"{np.min(values):.4f} | {np.max(values):.4f} |")

    if args.mnist100:
        rows = {}
        out = os.path.join(args.output_dir, "mnist100")
        for backend in args.mnist_backends:
            for seed in args.mnist_seeds:
                extra = ["--output_dir", out, "--seed", str(seed),
                         "--models", *args.mnist_models]
                if args.data_dir:
                    extra += ["--data_dir", args.data_dir]
                if args.mnist_epochs:
                    extra += ["--epochs", str(args.mnist_epochs)]
                print(f"MNIST-100: {backend} seed {seed}", file=sys.stderr)
                run("vat_mnist100.py", backend, extra)
                with open(os.path.join(
                        out, f"results_{backend}_seed{seed}.json")) as f:
                    for r in json.load(f)["rows"]:
                        rows.setdefault((backend, r["model"]), []).append(r)
        print(f"\nMNIST, 100 labels (10 per class), 10,000 test images, "
              f"seeds {args.mnist_seeds}: test error\n")
        print("| backend | model | mean | min | max | steps | train s |")
        print("|---|---|---|---|---|---|---|")
        for (backend, model), runs in rows.items():
            errors = [100 * r["test_error"] for r in runs]
            print(f"| {backend} | {model} | {np.mean(errors):.2f}% | "
                  f"{np.min(errors):.2f}% | {np.max(errors):.2f}% | "
                  f"{runs[0]['steps']} | "
                  f"{np.mean([r['train_seconds'] for r in runs]):.0f} |")

if __name__ == "__main__":
    main()
