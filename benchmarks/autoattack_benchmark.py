r"""AutoAttack-style evaluation: agreement with torchattacks, and MNIST models.

Two commands (run from the repository root):

    # Digits MLP (offline data, scikit-learn weights; the model of
    # tests/autoattack_worker.py): our APGD-CE, APGD-T, FAB-T, Square and
    # the ensemble on every backend, and torchattacks (pip install --no-deps
    # torchattacks) on the same Keras model under PyTorch.
    python benchmarks/autoattack_benchmark.py digits --n 500 \
        --json out/autoattack_digits.json

    # The MNIST CNNs of benchmarks/robustness_benchmark.py (`train` first):
    # clean, PGD-40 and the ensemble (APGD-CE, APGD-T, FAB-T, Square) per
    # radius; with KERAS_BACKEND=torch and --torchattacks also the same
    # ensemble built from torchattacks' attacks, same model and examples.
    python benchmarks/autoattack_benchmark.py mnist --n_eval 1000 \
        --eps 0.1 0.2 0.3 --models base pgd-ar
    # (--dataset fashion_mnist: the Fashion-MNIST models.)

`digits` prints one row per run: robust accuracy (%) of ours on each backend
and of torchattacks, and the difference. Square is a random search, so its
runs are repeated over seeds and their mean compared. Our random draws come
from NumPy, so the three backends attack from the same points.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
BACKENDS = ("tensorflow", "jax", "torch")


def digits_runs(square_seeds, square_queries):
    runs = []
    for norm, eps in (("infinity", 0.05), ("infinity", 0.1), ("l2", 0.5)):
        runs += [f"apgd-ce {norm} {eps} 100 0", f"apgd-t {norm} {eps} 100 0"]
    runs += [f"square infinity {eps} {square_queries} {seed}"
             for eps in (0.05, 0.1) for seed in range(square_seeds)]
    runs += [f"square l2 1.0 {square_queries} {seed}"
             for seed in range(square_seeds)]
    runs += [f"fab-t {norm} {eps} 100 0" for norm, eps in (
        ("infinity", 0.05), ("infinity", 0.1), ("l2", 0.5))]
    runs += ["autoattack infinity 0.1 100 0", "autoattack l2 0.5 100 0"]
    return runs


def digits(args):
    # pylint: disable-next=import-outside-toplevel,import-error
    import autoattack_worker
    runs = digits_runs(args.square_seeds, args.square_queries)
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, "weights.npz")
        autoattack_worker.make_inputs(weights, args.n, runs)
        for backend in args.backends:
            begin = time.perf_counter()
            extra = ("--torchattacks",) if (
                backend == "torch" and not args.no_torchattacks) else ()
            results[backend] = autoattack_worker.run(
                backend, weights, os.path.join(folder, f"{backend}.npz"),
                *extra)
            seconds[backend] = time.perf_counter() - begin
            print(f"{backend}: {seconds[backend]:.0f} s", file=sys.stderr)
    table = []
    for run in runs:
        row = {"run": run}
        for backend in args.backends:
            row[backend] = 100 * float(results[backend]["ours/" + run].mean())
        theirs = results.get("torch", {}).get("torchattacks/" + run)
        row["torchattacks"] = (None if theirs is None
                               else 100 * float(theirs.mean()))
        table.append(row)
    print(f"| run (n={args.n}) | " + " | ".join(args.backends)
          + " | torchattacks | ours - theirs |")
    print("|---" * (len(args.backends) + 3) + "|")
    for row in table:
        ours = row[args.backends[0]]
        diff = ("-" if row["torchattacks"] is None
                else f"{ours - row['torchattacks']:+.1f}")
        ta = ("-" if row["torchattacks"] is None
              else f"{row['torchattacks']:.1f}")
        print(f"| {row['run']} | " + " | ".join(
            f"{row[b]:.1f}" for b in args.backends) + f" | {ta} | {diff} |")
    for norm, eps in (("infinity", 0.05), ("infinity", 0.1), ("l2", 1.0)):
        group = [r for r in table if r["run"].startswith(
            f"square {norm} {eps} ")]
        if group and group[0]["torchattacks"] is not None:
            ours = np.mean([r[args.backends[0]] for r in group])
            theirs = np.mean([r["torchattacks"] for r in group])
            print(f"square {norm} eps={eps}, mean of {len(group)} seeds: ours "
                  f"{ours:.2f}, torchattacks {theirs:.2f}, difference "
                  f"{ours - theirs:+.2f} points")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)),
                    exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"n": args.n, "rows": table, "seconds": seconds}, f,
                      indent=1)


def mnist(args):
    # pylint: disable=import-outside-toplevel
    import keras
    import robustness_benchmark  # pylint: disable=import-error

    import neural_structured_learning as nsl
    _, _, x, y = robustness_benchmark.load(args.dataset, args.data_dir,
                                           train=False)
    window = slice(args.eval_offset, args.eval_offset + args.n_eval)
    x, y = x[window], y[window]
    rows, reference = [], []
    for name in args.models:
        path = os.path.join(args.models_dir, f"{args.dataset}_{name}.keras")
        model = keras.models.load_model(path, compile=False)
        base = nsl.evaluation.evaluate_robustness(
            model, x, y, [nsl.evaluation.pgd(e, steps=40) for e in args.eps],
            clip=(0.0, 1.0), sanity_checks=False, model_name=name,
            progress=args.progress)
        rows += base
        for eps in args.eps:
            result = nsl.evaluation.autoattack(
                model, x, y, eps, clip=(0.0, 1.0), seed=0,
                progress=args.progress, batch_size=args.batch_size)
            rows += result.rows(name, output=base[0]["output"])
            print(f"{name} eps={eps}: clean {result.clean_accuracy:.4f}, "
                  + ", ".join(f"{a['attack']} {a['accuracy']:.4f} "
                              f"({a['seconds']:.0f} s)"
                              for a in result.attacks)
                  + f"; worst case {result.robust_accuracy:.4f}",
                  flush=True)
            if args.torchattacks:
                begin = time.perf_counter()
                theirs = torchattacks_autoattack(model, x, y, eps)
                reference.append({
                    "model": name, "eps": eps, "n": len(x),
                    "ours": result.robust_accuracy, "torchattacks": theirs,
                    "ours_seconds": sum(a["seconds"]
                                        for a in result.attacks),
                    "torchattacks_seconds": time.perf_counter() - begin})
                print(f"  torchattacks (the same ensemble): {theirs:.4f} "
                      f"({reference[-1]['torchattacks_seconds']:.0f} s)",
                      flush=True)
    print(nsl.evaluation.to_markdown(rows))
    if reference:
        print("| model | eps | n | ours | torchattacks | ours - theirs |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in reference:
            print(f"| {r['model']} | {r['eps']:g} | {r['n']} | "
                  f"{100 * r['ours']:.1f} | {100 * r['torchattacks']:.1f} | "
                  f"{100 * (r['ours'] - r['torchattacks']):+.1f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "torchattacks": reference,
                       "eval_offset": args.eval_offset,
                       "backend": keras.config.backend(),
                       "load": os.getloadavg()[0]}, f,
                      indent=1, default=str)


def torchattacks_autoattack(model, x, y, eps):
    """Robust accuracy of AutoAttack's 'standard' ensemble (L-inf, 100
    steps, 5000 queries) built from torchattacks' attacks, on a
    channels-last Keras model under the PyTorch backend. torchattacks' Square
    reads images as (n, c, h, w), so it attacks channels-first copies
    through a module that transposes them back."""
    # pylint: disable=import-outside-toplevel
    import autoattack_worker  # pylint: disable=import-error
    import keras
    import torch
    if keras.config.backend() != "torch":
        raise SystemExit("--torchattacks needs KERAS_BACKEND=torch")

    class ChannelsFirst(torch.nn.Module):

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return self.inner(images.permute(0, 2, 3, 1))

    wrapped = ChannelsFirst(model).eval()
    attack = autoattack_worker.standard_ensemble(wrapped, "infinity", eps,
                                                 100, 0)
    robust = [autoattack_worker.torchattacks_robust(
        wrapped, attack,
        torch.tensor(x[start:start + 500]).permute(0, 3, 1, 2),
        torch.tensor(y[start:start + 500]).long())
              for start in range(0, len(x), 500)]
    return float(np.concatenate(robust).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("digits", help="cross-check on the digits MLP")
    d.add_argument("--n", type=int, default=500)
    d.add_argument("--backends", nargs="+", default=list(BACKENDS))
    d.add_argument("--square_seeds", type=int, default=4)
    d.add_argument("--square_queries", type=int, default=5000)
    d.add_argument("--no_torchattacks", action="store_true")
    d.add_argument("--json")
    m = sub.add_parser("mnist", help="AutoAttack on the MNIST CNNs")
    m.add_argument("--dataset", default="mnist",
                   choices=["mnist", "fashion_mnist"],
                   help="the models' dataset (Fashion-MNIST: train with "
                   "robustness_benchmark.py train --dataset fashion_mnist)")
    m.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    m.add_argument("--models_dir", default="out/robustness/models")
    m.add_argument("--models", nargs="+", default=["base", "pgd-ar"])
    m.add_argument("--eps", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    m.add_argument("--n_eval", type=int, default=1000)
    m.add_argument("--eval_offset", type=int, default=0,
                   help="attack test images offset .. offset + n_eval - 1 "
                   "(e.g. images no earlier choice was made on)")
    m.add_argument("--batch_size", type=int, default=500)
    m.add_argument("--progress", action="store_true", default=None)
    m.add_argument("--torchattacks", action="store_true",
                   help="also the ensemble of torchattacks' attacks "
                   "(KERAS_BACKEND=torch)")
    m.add_argument("--json")
    args = parser.parse_args(argv)
    if args.command == "digits":
        digits(args)
    else:
        sys.path.insert(0, HERE)
        mnist(args)


if __name__ == "__main__":
    main()
