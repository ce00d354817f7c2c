"""Train-step time of adversarial regularization vs the base model.

For each Keras backend (and, with `--nsl14_python`, for the original NSL 1.4
on TensorFlow 2.15.1 in the same run), trains the seed example's MLP and the
NSL tutorial's CNN with `fit` at batch 32, plainly and wrapped in
`AdversarialRegularization` (FGSM; optionally PGD), and reports the median
time per training step and the ratio adversarial / base.

Each backend runs in its own subprocess. A measurement is the wall time of
one epoch of `--steps` steps divided by `--steps` (an epoch ends with a
device sync, so JAX's asynchronous dispatch is accounted for); after a
warm-up epoch, variants are measured in `--rounds` interleaved rounds of
`--epochs` epochs each, and the median is reported. Ratios are taken within
one process, so they are comparable even when absolute times drift.

    python benchmarks/adversarial_step_benchmark.py \
        --nsl14_python .venv-nsl14/bin/python

The NSL 1.4 interpreter is checked before anything is measured: if it is
missing or cannot import NSL 1.4 and TensorFlow, the script says so and
leaves the NSL 1.4 rows out (`--require_nsl14` makes that an error instead).
`scripts/setup.sh` builds `.venv-nsl14`.

Timings on a shared machine are noisy: run it when the machine is quiet (the
table shows the load average before and after).
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import attr
import numpy as np

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "examples")
FGSM = dict(multiplier=0.2, adv_step_size=0.2, adv_grad_norm="infinity")
VARIANTS = {
    "base": None,
    "fgsm": FGSM,
    "pgd3": dict(multiplier=0.2, adv_step_size=0.1, adv_grad_norm="infinity",
                 pgd_iterations=3, pgd_epsilon=0.2),
    "vat": "vat",  # VirtualAdversarialRegularization, default config.
    # VAT without its power iteration (`num_approx_steps=0`: the perturbed
    # pass along the random start): splits a VAT step's cost.
    "vat0": "vat",
    # FGSM without reusing the clean pass (`fuse_clean_pass=False`): one more
    # backward pass per step; shows what the fused clean pass saves.
    "fgsm_unfused": FGSM,
}
UNFUSED = {"fgsm_unfused"}


def build(keras, name):
    if name == "mlp":  # The seed example's model.
        return keras.Sequential([
            keras.Input((28, 28, 1), name="image"), keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10)])
    if keras.__name__ == "keras":  # The tutorial's CNN, as in the example.
        sys.path.insert(0, EXAMPLES)
        from adversarial_mnist import build_cnn
        return build_cnn((28, 28, 1), output="logits")
    # NSL 1.4 runs tf.keras (Keras 2): the same CNN, in its API.
    inputs = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(64, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(64, 3, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def _hide_retracing_warning():
    """Hides TensorFlow's "N out of the last M calls ... triggered
    tf.function retracing" warning, which is a false alarm here.

    The worker builds up to ten models, and each traces its own training
    function once, in its warm-up epoch (later `fit` calls of a model do not
    retrace: their epochs take the same time as the timed ones). TensorFlow
    counts the traces of all those functions together, since they are
    created by the same line of Keras's trainer, and warns after five."""

    class Filter(logging.Filter):
        def filter(self, record):
            return "triggered tf.function retracing" not in (
                record.getMessage())

    logging.getLogger("tensorflow").addFilter(Filter())


def worker(args):
    """Runs in the subprocess: measures every (model, variant)."""
    if args.nsl14:
        import tensorflow as tf
        keras = tf.keras
        backend = "nsl14-tf2.15"
    else:
        # pylint: disable-next=import-outside-toplevel
        from neural_structured_learning import _quiet as quiet
        quiet.framework_logs()
        import keras
        backend = keras.config.backend()
        if backend == "tensorflow":
            _hide_retracing_warning()
    import neural_structured_learning as nsl

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append((time.perf_counter() - self.start) / args.steps)

    rng = np.random.default_rng(0)
    n = args.steps * 32
    x = rng.random((n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, n).astype("int32")
    results = []
    for model_name in args.models:
        fitted = {}
        for variant in args.variants:
            keras.utils.set_random_seed(0)
            base = build(keras, model_name)
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True)
            compile_kwargs = {}
            if args.jit_compile is not None and not args.nsl14:
                compile_kwargs["jit_compile"] = args.jit_compile
            if VARIANTS[variant] is None:
                model, data = base, (x, y)
            elif VARIANTS[variant] == "vat":
                if args.nsl14:
                    continue  # NSL 1.4 had no VAT wrapper.
                vat_config = nsl.keras.default_vat_config()
                if variant == "vat0":
                    vat_config = attr.evolve(vat_config, num_approx_steps=0)
                model = nsl.keras.VirtualAdversarialRegularization(
                    base, vat_config=vat_config, label_keys=["label"])
                data = ({"image": x, "label": y},)
            else:
                if args.nsl14 and variant in UNFUSED:
                    continue  # No such option in NSL 1.4.
                extra = ({"fuse_clean_pass": False} if variant in UNFUSED
                         else {})
                model = nsl.keras.AdversarialRegularization(
                    base, label_keys=["label"],
                    adv_config=nsl.configs.make_adv_reg_config(
                        **VARIANTS[variant]), **extra)
                data = ({"image": x, "label": y},)
            model.compile(optimizer="adam", loss=loss, **compile_kwargs)
            timer = EpochTimer()
            timer.times = []
            model.fit(*data, batch_size=32, epochs=1, verbose=0,
                      shuffle=False, callbacks=[timer])  # Warm-up/compile.
            fitted[variant] = (model, data, timer)
        samples = {v: [] for v in fitted}
        for _ in range(args.rounds):
            for variant, (model, data, timer) in fitted.items():
                timer.times = []
                model.fit(*data, batch_size=32, epochs=args.epochs,
                          verbose=0, shuffle=False, callbacks=[timer])
                samples[variant].extend(timer.times)
        for variant in fitted:
            results.append(dict(backend=backend, model=model_name,
                                variant=variant,
                                ms=1000 * float(np.median(samples[variant])),
                                samples=len(samples[variant])))
    device = _device(keras)
    for row in results:
        row["device"] = device
    json.dump(results, sys.stdout)


def _device(keras):
    """Where the worker's backend computes: 'GPU (name)' or 'CPU'."""
    backend = "tensorflow" if not hasattr(keras, "config") else (
        keras.config.backend())
    if backend == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        device = jax.devices()[0]
        return "CPU" if device.platform == "cpu" else (
            f"GPU ({device.device_kind})")
    if backend == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        return (f"GPU ({torch.cuda.get_device_name()})"
                if torch.cuda.is_available() else "CPU")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    gpus = tf.config.list_logical_devices("GPU")
    return "GPU" if gpus else "CPU"


def run_backend(python, backend, args, nsl14=False):
    cmd = [python, os.path.abspath(__file__), "--worker",
           "--steps", str(args.steps), "--epochs", str(args.epochs),
           "--rounds", str(args.rounds), "--models", *args.models,
           "--variants", *args.variants]
    if args.jit_compile is not None:
        cmd += ["--jit_compile", str(args.jit_compile).lower()]
    if nsl14:
        cmd.append("--nsl14")
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend:
        env["KERAS_BACKEND"] = backend
    print(f"running {'NSL 1.4' if nsl14 else backend} ...", file=sys.stderr)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_nsl14(python):
    """Why `python` cannot run the NSL 1.4 baseline, or None if it can.

    A quick probe (a few seconds), so a bad path is reported before minutes
    of measurements rather than after them."""
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        where = os.path.abspath(python)
        return (f"{python} is not an executable file (looked for {where}); "
                "scripts/setup.sh builds .venv-nsl14")
    probe = ("import neural_structured_learning as nsl, tensorflow as tf; "
             "print(getattr(nsl, '__version__', '?'), tf.__version__)")
    try:
        # Outside the repository, so that `import neural_structured_learning`
        # finds the interpreter's NSL 1.4, not this checkout.
        done = subprocess.run([python, "-c", probe], capture_output=True,
                              text=True, timeout=300,
                              cwd=tempfile.gettempdir(),
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python} could not be run: {e}"
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import NSL 1.4 and TensorFlow: {last}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+",
                        default=["tensorflow", "jax", "torch"])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--variants", nargs="+", default=["base", "fgsm"],
                        choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=50,
                        help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit_compile", type=lambda s: s == "true",
                        default=None, help="true/false; default: Keras's")
    parser.add_argument("--nsl14_python", default=os.environ.get(
        "NSL14_PYTHON"), help="Python with NSL 1.4 + TF 2.15.1 (baseline)")
    parser.add_argument("--require_nsl14", action="store_true",
                        help="fail, rather than leave out the NSL 1.4 rows, "
                        "when --nsl14_python cannot run them")
    parser.add_argument("--nsl14", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    if args.nsl14_python:  # The probe and the runs use other directories.
        args.nsl14_python = os.path.abspath(args.nsl14_python)
    nsl14_problem = args.nsl14_python and check_nsl14(args.nsl14_python)
    if nsl14_problem:
        if args.require_nsl14:
            parser.error(f"--nsl14_python: {nsl14_problem}")
        print(f"WARNING: no NSL 1.4 baseline: {nsl14_problem}. The NSL 1.4 "
              "rows are left out.", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    rows = []
    for backend in args.backends:
        rows += run_backend(sys.executable, backend, args)
    if args.nsl14_python and not nsl14_problem:
        rows += run_backend(args.nsl14_python, None, args, nsl14=True)
    load_after = os.getloadavg()[0]

    table = {(r["backend"], r["model"], r["variant"]): r["ms"] for r in rows}
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    adv_variants = [v for v in args.variants if v != "base"]
    devices = ", ".join(sorted({r.get("device", "CPU") for r in rows}))
    print(f"\nMedian train-step time, batch 32, {devices} ({os.cpu_count()} "
          f"CPU cores); load average {load_before:.2f} before, "
          f"{load_after:.2f} after.\n")
    header = "| backend | model | base ms | " + " | ".join(
        f"{v} ms | {v} / base" for v in adv_variants) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for backend in backends:
        for model in args.models:
            base = table[(backend, model, "base")]
            cells = [f"{table[(backend, model, v)]:.2f} | "
                     f"{table[(backend, model, v)] / base:.2f}x"
                     if (backend, model, v) in table else "n/a | n/a"
                     for v in adv_variants]
            print(f"| {backend} | {model} | {base:.2f} | "
                  + " | ".join(cells) + " |")
    if "nsl14-tf2.15" in backends and "tensorflow" in backends:
        print("\nOurs (TensorFlow backend) vs NSL 1.4 on TF 2.15.1, same "
              "model and variant (time ratio, < 1 is faster):\n")
        print("| model | variant | ours ms | NSL 1.4 ms | ours / 1.4 |")
        print("|---|---|---|---|---|")
        for model in args.models:
            for variant in args.variants:
                if ("nsl14-tf2.15", model, variant) not in table:
                    continue
                ours = table[("tensorflow", model, variant)]
                old = table[("nsl14-tf2.15", model, variant)]
                print(f"| {model} | {variant} | {ours:.2f} | {old:.2f} | "
                      f"{ours / old:.2f} |")
    if nsl14_problem:
        print(f"\n(No NSL 1.4 rows: {nsl14_problem}.)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, load=[load_before, load_after]), f,
                      indent=2)


if __name__ == "__main__":
    main()
