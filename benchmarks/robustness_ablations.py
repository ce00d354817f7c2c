r"""The numbers behind two design decisions of `nsl.evaluation`.

On the `base` MNIST CNN trained by `robustness_benchmark.py train`:

1. The attack loss. `nsl.evaluation` maximises the smooth margin
   `m = logsumexp_{j != y} z_j - z_y`, whose per-example gradient has the
   direction of the cross-entropy gradient (CE = softplus(m)) but does not
   underflow. The alternative, the cross-entropy itself (summed, or
   batch-averaged as a compiled Keras loss is), is compared under L2 and
   L-inf attacks, with the share of examples whose CE input gradient is
   exactly zero or has an L2 norm below 1e-6 (the floor of the L2
   normalisation, under which an L2 step shrinks).
2. Logits vs probabilities. The same CNN with a softmax on top is attacked
   (a) as `nsl.evaluation` does (detects probabilities, attacks their log),
   (b) with the classic bug of taking the probabilities for logits
   (cross-entropy of `softmax(p)`), and (c) with the cross-entropy of the
   probabilities clipped to [1e-7, 1 - 1e-7], which is what Keras's
   `CE(from_logits=False)` computes on JAX and PyTorch (on TensorFlow it
   reads the logits behind a Softmax op instead).

The command behind benchmarks/results/robustness_ablations.json (TensorFlow
backend; it reads out/robustness/models/mnist_base.keras, written by
`robustness_benchmark.py train --dataset mnist`), and the one that reprints
it:

    python benchmarks/robustness_ablations.py --data_dir DATA_DIR \
        --json benchmarks/results/robustness_ablations.json
    python benchmarks/robustness_ablations.py \
        --from_json benchmarks/results/robustness_ablations.json
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pylint: disable-next=wrong-import-position
import robustness_benchmark  # noqa: E402


def _attack(model, x, y, attack, loss_fn, batch_size, seed=0):
    """Adversarial examples maximising `loss_fn(labels, outputs)`."""
    import keras
    from keras import ops
    from neural_structured_learning.lib import adversarial_neighbor
    seeds = keras.random.SeedGenerator(seed)
    out = []
    for start in range(0, len(x), batch_size):
        xb = ops.convert_to_tensor(x[start:start + batch_size])
        yb = ops.convert_to_tensor(y[start:start + batch_size])
        adv, _ = adversarial_neighbor.gen_adv_neighbor(
            xb, lambda f, yb=yb: loss_fn(yb, model(f, training=False)),
            attack.adv_neighbor_config((0.0, 1.0)), seed=seeds)
        out.append(ops.convert_to_numpy(adv))
    return np.concatenate(out)


def _accuracy(model, x, y, batch_size):
    from neural_structured_learning import evaluation as ev
    return float(np.mean(ev.predict_classes(model, x, batch_size=batch_size)
                         == y))


def _gradient_stats(model, x, y, batch_size):
    """Shares of examples whose summed-CE input gradient is all zero, or
    has L2 norm < 1e-6 (float32)."""
    import keras
    from keras import ops
    from neural_structured_learning.lib import gradients
    zero, tiny = 0, 0
    for start in range(0, len(x), batch_size):
        xb = ops.convert_to_tensor(x[start:start + batch_size])
        yb = ops.convert_to_tensor(y[start:start + batch_size])
        grads = gradients.value_and_input_gradients(
            lambda f, yb=yb: ops.sum(
                keras.losses.sparse_categorical_crossentropy(
                    yb, model(f[0], training=False), from_logits=True)),
            [xb])[1][0]
        g = ops.convert_to_numpy(grads)
        g = g.reshape(g.shape[0], -1)
        norms = np.linalg.norm(g.astype(np.float64), axis=1)
        zero += int(np.sum(np.all(g == 0, axis=1)))
        tiny += int(np.sum(norms < 1e-6))
    return zero / len(x), tiny / len(x)


def _tables(results):
    """The two Markdown tables of `results` (as saved by `main`)."""
    lines = [f"\nMNIST base CNN, first {results['n']} test images, backend "
             f"{results['backend']}. Summed-CE input gradient exactly 0: "
             f"{results['ce_gradient_zero']:.1%} of examples; L2 norm < "
             f"1e-6: {results['ce_gradient_below_1e-6']:.1%}.\n"]
    for key, name_key, head in (
            ("loss", "objective", "attack objective"),
            ("outputs", "variant", "how the attack reads the outputs")):
        rows = results[key]
        labels = list(dict.fromkeys(r["attack"] for r in rows))
        if key == "outputs":
            lines.append("\nThe same CNN with a softmax output (accuracy "
                         "under attack; lower = stronger attack):\n")
        lines.append(f"| {head} | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for name in dict.fromkeys(r[name_key] for r in rows):
            cells = [f"{r['accuracy']:.4f}" for r in rows
                     if r[name_key] == name]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    parser.add_argument("--models_dir", default="out/robustness/models")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--steps", type=int, default=40,
                        help="PGD steps (40 in the saved results)")
    parser.add_argument("--json", default=None,
                        help="write the results here")
    parser.add_argument("--from_json", default=None,
                        help="reprint these saved results instead of "
                        "measuring")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            print(_tables(json.load(f)))
        return

    # Prerequisites first: the data and the trained model.
    robustness_benchmark.check_data("mnist", args.data_dir)
    model_path = os.path.join(args.models_dir, "mnist_base.keras")
    if not os.path.exists(model_path):
        parser.error(f"{model_path} is missing: run `python "
                     "benchmarks/robustness_benchmark.py train --dataset "
                     "mnist --models base` first (or pass --models_dir).")
    # pylint: disable-next=import-outside-toplevel
    from neural_structured_learning import _quiet as quiet
    quiet.framework_logs()  # Before Keras imports TensorFlow.
    import keras
    from keras import ops
    from neural_structured_learning import evaluation as ev
    _, _, x, y = robustness_benchmark.load("mnist", args.data_dir,
                                          train=False)
    x, y = x[:args.n], y[:args.n]
    base = keras.saving.load_model(model_path, compile=False)
    b = args.batch_size
    ce = keras.losses.sparse_categorical_crossentropy
    results = {"n": len(x), "backend": keras.config.backend()}

    zero, tiny = _gradient_stats(base, x, y, b)
    results["ce_gradient_zero"], results["ce_gradient_below_1e-6"] = (
        zero, tiny)
    objectives = {
        "nsl.evaluation (smooth margin)": None,
        "CE, summed": lambda t, z: ops.sum(ce(t, z, from_logits=True)),
        "CE, batch mean (compiled Keras loss)":
            lambda t, z: ops.mean(ce(t, z, from_logits=True)),
    }
    attacks = [ev.fgsm(2.0, "l2"), ev.pgd(2.0, "l2", steps=args.steps),
               ev.fgsm(0.1), ev.pgd(0.1, steps=args.steps)]
    table1 = []
    for name, loss_fn in objectives.items():
        for attack in attacks:
            if loss_fn is None:
                adv = ev.generate_adversarial(base, x, y, attack,
                                              clip=(0.0, 1.0), batch_size=b)
            else:
                adv = _attack(base, x, y, attack, loss_fn, b)
            table1.append(dict(objective=name, attack=attack.label,
                               accuracy=_accuracy(base, adv, y, b)))
    results["loss"] = table1

    softmax = keras.Sequential([keras.Input((28, 28, 1)), base,
                                keras.layers.Softmax()])

    def picked(t, values):  # values[i, t_i], summed over the batch.
        return ops.sum(values * ops.one_hot(t, 10, dtype=values.dtype))

    # Written with ops, not keras.losses: on TensorFlow, Keras's
    # cross-entropy silently reads the logits behind a Softmax op.
    variants = {
        "detected probabilities (nsl.evaluation)": None,
        "probabilities taken for logits: CE(softmax(p))":
            lambda t, p: -picked(t, ops.log_softmax(p)),
        "CE on clipped probabilities (Keras from_logits=False on JAX/torch)":
            lambda t, p: -picked(t, ops.log(ops.clip(p, 1e-7, 1 - 1e-7))),
    }
    table2 = []
    for name, loss_fn in variants.items():
        for attack in [ev.fgsm(0.2), ev.pgd(0.2, steps=args.steps),
                       ev.fgsm(2.0, "l2"),
                       ev.pgd(2.0, "l2", steps=args.steps)]:
            if loss_fn is None:
                adv = ev.generate_adversarial(softmax, x, y, attack,
                                              clip=(0.0, 1.0), batch_size=b)
            else:
                adv = _attack(softmax, x, y, attack, loss_fn, b)
            table2.append(dict(variant=name, attack=attack.label,
                               accuracy=_accuracy(softmax, adv, y, b)))
    results["outputs"] = table2

    print(_tables(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
