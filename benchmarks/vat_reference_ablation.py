"""VAT on MNIST with 100 labels, Miyato et al.'s recipe in plain JAX.

An independent reimplementation (no Keras, no nsl) of the authors' MNIST
code (github.com/takerum/vat, `train_mnist_semisup.py`): MLP 784-1200-1200-10
with BatchNormalization after every layer (the logits included), Adam 2e-3
decayed x0.9 every 500 steps, all 100 labeled images and 250 unlabeled ones
per step, `epsilon = 0.3`, one power iteration, and the supervised loss and
the VAT term on separate forward passes (labeled batch, unlabeled batch).
Each variant changes one thing, to find which difference between that code
and this library's wrapper makes VAT alone collapse:

* `--layout joint`: one forward pass over the labeled and unlabeled rows
  concatenated (the wrapper's batch), VAT on all of them;
* `--bn_stats frozen`: the power-iteration and perturbed passes use their
  batch's statistics as constants (no gradient through the batch mean and
  variance), the role the wrapper's inference-mode passes play;
* `--xi` and `--x64`: the finite-difference step, and float64.

Evaluation uses batch statistics over the 1,000 validation images. Prints
validation accuracy and the mean top-class probability every
`--every` steps, for each variant, then a table:

    KERAS_BACKEND=jax python benchmarks/vat_reference_ablation.py \\
        --data_dir ../shared/data
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import vat_mnist100  # noqa: E402  (data loading and split)

VARIANTS = {
    "reference (xi 1e-6, float32)": dict(xi=1e-6),
    "reference in float64": dict(xi=1e-6, x64=True),
    "xi 1e-3": dict(xi=1e-3),
    "xi 1e-3, joint batch": dict(xi=1e-3, layout="joint"),
    "xi 1e-3, frozen statistics": dict(xi=1e-3, bn_stats="frozen"),
    "xi 1e-3, joint, frozen statistics": dict(xi=1e-3, layout="joint",
                                              bn_stats="frozen"),
}


def unit(d):
    """Miyato et al.'s normalisation: by the max, then by the L2 norm."""
    d = d / (1e-12 + jnp.abs(d).max(1, keepdims=True))
    return d / jnp.sqrt(1e-6 + (d ** 2).sum(1, keepdims=True))


def kl(clean_logits, logits):
    p = jax.nn.softmax(clean_logits)
    return (p * (jax.nn.log_softmax(clean_logits)
                 - jax.nn.log_softmax(logits))).sum(-1).mean()


def forward(params, h, frozen=False):
    for i, layer in enumerate(params):
        h = h @ layer["w"]
        mean = h.mean(0)
        var = ((h - mean) ** 2).mean(0)
        if frozen:
            mean, var = jax.lax.stop_gradient((mean, var))
        h = layer["g"] * (h - mean) / jnp.sqrt(var + 1e-6) + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


def run(data, steps, every, seed, xi, x64=False, layout="separate",
        bn_stats="batch", epsilon=0.3, sizes=(784, 1200, 1200, 10)):
    x, y, labeled, validation, unlabeled = data
    dtype = jnp.float64 if x64 else jnp.float32
    key = jax.random.PRNGKey(seed)
    params = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        params.append(dict(
            w=jax.random.normal(k, (m, n), dtype) * np.sqrt(1.0 / m),
            g=jnp.ones(n, dtype), b=jnp.zeros(n, dtype)))
    frozen = bn_stats == "frozen"

    def loss(params, xl, yl, xu, k):
        if layout == "joint":
            xu = jnp.concatenate([xl, xu])
            out = forward(params, xu)
            logits_l, clean = out[:len(xl)], jax.lax.stop_gradient(out)
        else:
            logits_l = forward(params, xl)
            clean = jax.lax.stop_gradient(forward(params, xu))
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits_l), yl[:, None],
                                  1).mean()
        d = xi * unit(jax.random.normal(k, xu.shape, dtype))
        grad = jax.grad(lambda r: kl(clean, forward(params, xu + r,
                                                    frozen)))(d)
        r_adv = epsilon * unit(jax.lax.stop_gradient(grad))
        return ce + kl(clean, forward(params, xu + r_adv, frozen))

    @jax.jit
    def step(params, m, v, t, xl, yl, xu, k):
        g = jax.grad(loss)(params, xl, yl, xu, k)
        lr = 2e-3 * 0.9 ** (t // 500)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        t = t + 1
        params = jax.tree.map(
            lambda p, m, v: p - lr * (m / (1 - 0.9 ** t)) / (
                jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8), params, m, v)
        return params, m, v

    probabilities = jax.jit(lambda p, xv: jax.nn.softmax(forward(p, xv)))
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    rng = np.random.default_rng(seed)
    xl, yl = jnp.asarray(x[labeled], dtype), jnp.asarray(y[labeled])
    xv = jnp.asarray(x[validation], dtype)
    curve = []
    for t in range(steps):
        key, k = jax.random.split(key)
        xu = jnp.asarray(x[unlabeled[rng.integers(0, len(unlabeled), 250)]],
                         dtype)
        params, m, v = step(params, m, v, t, xl, yl, xu, k)
        if (t + 1) % every == 0:
            p = np.asarray(probabilities(params, xv))
            curve.append((t + 1, float(np.mean(p.argmax(-1) ==
                                                y[validation])),
                          float(p.max(-1).mean())))
            print(f"  step {t + 1}: validation accuracy {curve[-1][1]:.4f}, "
                  f"mean top probability {curve[-1][2]:.3f}", flush=True)
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        choices=list(VARIANTS))
    args = parser.parse_args()
    x, y, _, _ = vat_mnist100.load_mnist(args.data_dir)
    labeled, validation, unlabeled = vat_mnist100.split(x, y, 10, 1000,
                                                        args.seed)
    data = (x, y, labeled, validation, unlabeled)
    rows = []
    for name in args.variants:
        options = VARIANTS[name]
        jax.config.update("jax_enable_x64", bool(options.get("x64")))
        print(f"{name} ...", flush=True)
        start = time.time()
        curve = run(data, args.steps, args.every, args.seed, **options)
        rows.append((name, curve, time.time() - start))
    checkpoints = [s for s, _, _ in rows[0][1]]
    print(f"\nVAT alone, MNIST 100 labels, seed {args.seed}: validation "
          "accuracy (mean top-class probability) after N steps\n")
    print("| variant | " + " | ".join(map(str, checkpoints)) + " | s |")
    print("|---|" + "---|" * (len(checkpoints) + 1))
    for name, curve, seconds in rows:
        cells = [f"{acc:.3f} ({top:.2f})" for _, acc, top in curve]
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds:.0f} |")


if __name__ == "__main__":
    main()
