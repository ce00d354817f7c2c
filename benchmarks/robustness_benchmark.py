r"""Robustness of plain vs adversarially regularized CNNs, (Fashion-)MNIST.

Reproduces the tables of docs/robustness.md with `nsl.evaluation`. `train`
saves models (and how long they took) that `evaluate` reads; `report`
reprints a saved evaluation; `throughput` times the attacks on every backend.
The commands behind benchmarks/results/robustness_* (TensorFlow backend, run
from the repository root; models go to out/robustness/models, results to
`--results_dir`, default out/robustness, from where the committed copies in
benchmarks/results were taken):

    export NSL_DATA_DIR=/path/to/data       # or --data_dir
    # Training (the times are saved with the models and the results).
    python benchmarks/robustness_benchmark.py train --dataset mnist
    python benchmarks/robustness_benchmark.py train --dataset fashion_mnist \
        --models base pgd-ar
    # robustness_mnist_tensorflow_n2000.json, .png
    python benchmarks/robustness_benchmark.py evaluate --dataset mnist \
        --n_eval 2000
    # robustness_mnist_tensorflow_n10000.json, .png
    python benchmarks/robustness_benchmark.py evaluate --dataset mnist \
        --eps 0.3
    # robustness_mnist_tensorflow_n10000_r5.json, .png
    python benchmarks/robustness_benchmark.py evaluate --dataset mnist \
        --models pgd-ar --eps 0.3 --restarts 5
    # robustness_fashion_mnist_tensorflow_n2000.json, .png
    python benchmarks/robustness_benchmark.py evaluate \
        --dataset fashion_mnist --models base pgd-ar --n_eval 2000
    # robustness_fashion_mnist_tensorflow_n10000.json, .png
    python benchmarks/robustness_benchmark.py evaluate \
        --dataset fashion_mnist --models base pgd-ar --eps 0.1
    # robustness_throughput.json (all three backends)
    python benchmarks/robustness_benchmark.py throughput \
        --json benchmarks/results/robustness_throughput.json
    # Reprint a saved result (same selection flags as the evaluate run):
    python benchmarks/robustness_benchmark.py report --dataset mnist \
        --n_eval 2000 --results_dir benchmarks/results
    python benchmarks/robustness_benchmark.py throughput \
        --from_json benchmarks/results/robustness_throughput.json

Models, all the NSL tutorial's CNN (`build_cnn` of
examples/adversarial_mnist.py: conv 32-64-64 3x3, max-pool 2, dense 64, 10
logits) unless `--arch smallcnn` (the TRADES paper's CNN), recipes fixed
before any result was seen, except the later TRADES variants of
docs/robustness.md (`--pgd_steps`, `--lr_decay_epoch`, `--arch`), chosen
after earlier recipes missed (Fashion-MNIST runs the MNIST recipes
unchanged, except its customary smaller radius, eps 0.1, and has no fgsm-ar
model):

  base     plain training: Adam 1e-3, batch 32, 5 epochs (the tutorial).
  fgsm-ar  the tutorial's adversarial regularization: multiplier 0.2, FGSM
           L-inf step 0.2, batch 32, 5 epochs.
  pgd-ar   PGD-based adversarial regularization (Madry et al., 2018):
           multiplier 1.0, PGD-`--pgd_steps` L-inf from a random start, radius
           eps (0.3 MNIST, 0.1 Fashion-MNIST), step 2.5 eps / steps, clipped to
           [0, 1]; Adam 1e-3, batch 128; the radius ramps up linearly over the
           first `--ramp_epochs` epochs; trains for `--epochs` epochs or until
           `--budget_minutes` run out (checked after every batch).
  trades   TRADES (Zhang et al., 2019; `nsl.keras.terms.TradesTerm`): the
           clean loss plus `--trades_beta` (6, the paper's) times
           KL(p(x) || p(x')), x' the PGD-`--pgd_steps` maximiser of that KL
           (the term's small Gaussian start, step 2.5 eps / steps); the
           pgd-ar schedule otherwise (batch 128, ramp, epochs, budget). Not
           in the default `--models`: `train --models trades`.

`evaluate` runs FGSM and PGD-40 (L-inf; `--eval_steps` steps, `--restarts`
random restarts, default 1) at several radii on the first `--n_eval` test
images, white-box and transferred from `base`, with the sanity checks,
prints Markdown tables and
writes robustness_<dataset>_<backend>_n<n_eval>[_r<restarts>].json and .png.
`report` reprints such a file (the sanity checks recomputed by the current
`nsl.evaluation` and saved back). `throughput` measures, on each backend, the
time of an attack per batch in units of one forward-backward pass (input
gradient of the loss) on the same batch: PGD-k should cost about k + 1 (k
forward-backward passes and one forward pass).

Run it on a quiet machine (times are wall clock; the JSON records the load).
For a quick check that everything runs, `train --max_train 256 --epochs 1
--base_epochs 1` and `evaluate --n_eval 100 --eval_steps 5` take seconds.
"""

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DATASETS = {"mnist": 0.3, "fashion_mnist": 0.1}  # name: training eps.
EVAL_EPS = {"mnist": (0.1, 0.2, 0.3), "fashion_mnist": (0.05, 0.1, 0.2)}
MODELS = ("base", "fgsm-ar", "pgd-ar", "trades")
# Trained and evaluated unless --models says otherwise.
DEFAULT_MODELS = ("base", "fgsm-ar", "pgd-ar")


# -- Data and models. --------------------------------------------------------


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
            for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


_FILES = {"mnist": ("mnist.npz",),
          "fashion_mnist": ("train-images-idx3-ubyte.gz",
                            "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz",
                            "t10k-labels-idx1-ubyte.gz")}


def check_data(dataset, data_dir):
    """Exits with a message naming what is missing, before any work."""
    if not data_dir:
        raise SystemExit("No data directory: pass --data_dir or set "
                         "NSL_DATA_DIR (the folder holding mnist/ and "
                         "fashion_mnist/).")
    missing = [os.path.join(data_dir, dataset, name)
               for name in _FILES[dataset]
               if not os.path.exists(os.path.join(data_dir, dataset, name))]
    if missing:
        raise SystemExit(f"{dataset} is not in the data directory "
                         f"{data_dir!r}: missing {', '.join(missing)}.")


def load(dataset, data_dir, train=True):
    """Returns `(x_train, y_train, x_test, y_test)`: float32 images in
    [0, 1] of shape (n, 28, 28, 1) and int32 labels (the training arrays
    are None unless `train`)."""
    check_data(dataset, data_dir)
    keep = [train, train, True, True]
    if dataset == "mnist":
        with np.load(os.path.join(data_dir, "mnist", "mnist.npz")) as f:
            arrays = [f[k] if wanted else None for k, wanted in zip(
                ("x_train", "y_train", "x_test", "y_test"), keep)]
    else:
        folder = os.path.join(data_dir, "fashion_mnist")
        arrays = [_read_idx(os.path.join(folder, name)) if wanted else None
                  for name, wanted in zip(_FILES[dataset], keep)]
    x_train, y_train, x_test, y_test = arrays
    prep = lambda x: (None if x is None  # noqa: E731
                      else (x[..., None] / 255.0).astype(np.float32))
    labels = lambda y: None if y is None else y.astype(np.int32)  # noqa: E731
    return prep(x_train), labels(y_train), prep(x_test), labels(y_test)


EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "examples")


def build_cnn(arch="tutorial"):
    """A CNN on 28x28x1 images returning logits.

    `tutorial`: the NSL tutorial's CNN, the example's `build_cnn` (imported on
    first use, after the backend is set). `smallcnn`: the TRADES paper's MNIST
    CNN (Zhang et al., 2019, after Carlini & Wagner): conv 32-32, max-pool,
    conv 64-64, max-pool (3x3 valid convolutions, ReLU), dense 200-200 ReLU,
    10 logits; about 3.5x the multiply-adds of the tutorial's.
    """
    if arch == "smallcnn":
        import keras  # pylint: disable=import-outside-toplevel
        layers = keras.layers
        return keras.Sequential([
            keras.Input((28, 28, 1), name="image"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(200, activation="relu"),
            layers.Dense(200, activation="relu"),
            layers.Dense(10)])
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    # pylint: disable-next=import-outside-toplevel,import-error
    from adversarial_mnist import build_cnn as example_cnn
    return example_cnn((28, 28, 1), output="logits")


def _paths(args, dataset, name):
    stem = os.path.join(args.models_dir, f"{dataset}_{name}")
    return stem + ".keras", stem + ".json"


# -- Training. ---------------------------------------------------------------


class _Budget:
    """Stops training once `seconds` of wall time have run (per batch)."""

    def __init__(self, keras, seconds):
        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.steps += 1
                if time.time() - outer.start > seconds:
                    outer.exhausted = True
                    self.model.stop_training = True

        self.callback = Callback()
        self.start, self.steps, self.exhausted = time.time(), 0, False


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(args, dataset):
    import keras
    import neural_structured_learning as nsl
    x_train, y_train, _, _ = load(dataset, args.data_dir)
    if args.max_train:
        x_train, y_train = x_train[:args.max_train], y_train[:args.max_train]
    os.makedirs(args.models_dir, exist_ok=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for name in args.models:
        path, meta_path = _paths(args, dataset, name)
        if os.path.exists(path) and not args.retrain:
            print(f"{path} exists (--retrain to redo)")
            continue
        keras.utils.set_random_seed(args.seed)
        start, cpu = time.time(), _cpu_seconds()
        cnn = build_cnn(args.arch)
        meta = dict(dataset=dataset, model=name, seed=args.seed,
                    arch=args.arch,
                    backend=keras.config.backend(), train_size=len(x_train),
                    load_before=os.getloadavg()[0])
        epochs = args.base_epochs
        if name == "base":
            cnn.compile("adam", loss, metrics=["accuracy"])
            cnn.fit(x_train, y_train, batch_size=32, epochs=epochs,
                    verbose=2)
            meta.update(epochs=epochs, batch_size=32)
        elif name == "fgsm-ar":
            model = nsl.keras.AdversarialRegularization(
                cnn, label_keys=["label"],
                adv_config=nsl.configs.make_adv_reg_config(
                    multiplier=0.2, adv_step_size=0.2,
                    adv_grad_norm="infinity"))
            model.compile("adam", loss, metrics=["accuracy"])
            model.fit({"image": x_train, "label": y_train}, batch_size=32,
                      epochs=epochs, verbose=2)
            meta.update(epochs=epochs, batch_size=32, multiplier=0.2,
                        adv_step_size=0.2)
        else:
            meta.update(_train_robust(args, dataset, keras, nsl, cnn, loss,
                                      x_train, y_train, name))
        meta.update(train_seconds=round(time.time() - start, 1),
                    train_cpu_seconds=round(_cpu_seconds() - cpu, 1),
                    load_after=os.getloadavg()[0])
        cnn.save(path)
        with open(meta_path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        print(json.dumps(meta))


def _train_robust(args, dataset, keras, nsl, cnn, loss, x_train, y_train,
                  name):
    """pgd-ar or trades: PGD-k neighbours, the radius ramped up."""
    eps, k = DATASETS[dataset], args.pgd_steps
    if name == "pgd-ar":
        def config(radius):
            return nsl.configs.make_adv_reg_config(
                multiplier=1.0, adv_grad_norm="infinity",
                adv_step_size=2.5 * radius / k, pgd_iterations=k,
                pgd_epsilon=radius, random_init=True, clip_value_min=0.0,
                clip_value_max=1.0)

        model = nsl.keras.AdversarialRegularization(
            cnn, label_keys=["label"], adv_config=config(eps),
            seed=args.seed)

        def set_radius(radius):
            model.adv_config = config(radius)
        recipe = {"multiplier": 1.0}
    else:
        def config(radius):
            return nsl.keras.terms.trades_config(
                epsilon=radius, step_size=2.5 * radius / k, steps=k,
                beta=args.trades_beta)

        term = nsl.keras.terms.TradesTerm(config(eps))
        model = nsl.keras.RegularizedModel(cnn, terms=[term],
                                           label_keys=["label"],
                                           seed=args.seed)

        def set_radius(radius):
            term.adv_config = config(radius)
        recipe = {"beta": args.trades_beta}
    learning_rate = 1e-3
    if args.lr_decay_epoch:  # Adam 1e-3, then 1e-4 from this epoch on.
        per_epoch = -(-len(x_train) // 128)
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [args.lr_decay_epoch * per_epoch], [1e-3, 1e-4])
        recipe["lr_decay_epoch"] = args.lr_decay_epoch
    model.compile(keras.optimizers.Adam(learning_rate), loss,
                  metrics=["accuracy"])
    budget = _Budget(keras, args.budget_minutes * 60)
    schedule = []
    for epoch in range(args.epochs):
        radius = eps * min(1.0, (epoch + 1) / max(1, args.ramp_epochs))
        set_radius(radius)
        model.make_train_function(force=True)  # The radius is traced in.
        print(f"epoch {epoch + 1}: eps {radius:.3f}", flush=True)
        model.fit({"image": x_train, "label": y_train}, batch_size=128,
                  epochs=1, verbose=2, callbacks=[budget.callback])
        schedule.append(round(radius, 4))
        if budget.exhausted:
            break
    return dict(epochs_run=len(schedule), eps_schedule=schedule,
                steps=budget.steps, budget_exhausted=budget.exhausted,
                batch_size=128, pgd_steps=k, train_eps=eps,
                budget_minutes=args.budget_minutes, **recipe)


# -- Evaluation. -------------------------------------------------------------


def evaluate(args, dataset):
    import keras
    import neural_structured_learning as nsl
    ev = nsl.evaluation
    _, _, x_test, y_test = load(dataset, args.data_dir, train=False)
    x, y = x_test[:args.n_eval], y_test[:args.n_eval]
    models, meta = {}, {}
    for name in args.models:
        path, meta_path = _paths(args, dataset, name)
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run `train` first.")
        models[name] = keras.saving.load_model(path, compile=False)
        with open(meta_path, encoding="utf-8") as f:
            meta[name] = json.load(f)
    attacks = ev.attack_grid(args.eps or EVAL_EPS[dataset],
                             steps=args.eval_steps, restarts=args.restarts)
    rows = []
    for name, model in models.items():
        sources = {"base": models["base"]} if (
            name != "base" and "base" in models) else None
        start = time.time()
        rows += ev.evaluate_robustness(
            model, x, y, attacks, sources=sources, clip=(0.0, 1.0),
            batch_size=args.batch_size, model_name=name, seed=args.seed,
            progress=args.progress)
        print(f"{name}: evaluated in {time.time() - start:.0f} s",
              file=sys.stderr, flush=True)
    stem = _stem(args, dataset, keras.config.backend(), len(x))
    os.makedirs(args.results_dir, exist_ok=True)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(dict(rows=rows, training=meta, n=len(x),
                       backend=keras.config.backend(),
                       load=os.getloadavg()[0]), f, indent=1)
    _print_tables(rows, args.eps or EVAL_EPS[dataset], dataset, meta, len(x))
    try:
        ev.plot_accuracy_vs_eps(
            [r for r in rows if r["source"] in ("white-box", "-")],
            stem + ".png", title=f"{dataset}: white-box accuracy, {len(x)} "
            "test images")
    except ImportError as e:  # matplotlib is optional.
        print(f"\nWrote {stem}.json; no plot: {e} (or the examples extra: "
              "pip install 'neural-structured-learning-keras[examples]').")
    else:
        print(f"\nWrote {stem}.json and {stem}.png")


def _stem(args, dataset, backend, n):
    restarts = f"_r{args.restarts}" if args.restarts > 1 else ""
    return os.path.join(args.results_dir,
                        f"robustness_{dataset}_{backend}_n{n}{restarts}")


def _print_tables(rows, eps_list, dataset, meta, n):
    from neural_structured_learning import evaluation as ev
    print(_summary(rows, eps_list, dataset, meta, n))
    print("\nFull table:\n")
    print(ev.to_markdown(rows))


def report(args, dataset):
    """Reprints the tables of a saved evaluation, with the sanity checks
    recomputed (and saved back) by the current `nsl.evaluation`."""
    from neural_structured_learning import evaluation as ev
    stem = _stem(args, dataset, args.backend, args.n_eval)
    with open(stem + ".json", encoding="utf-8") as f:
        saved = json.load(f)
    rows = saved["rows"]
    for row in rows:
        row["check"] = "-"
    ev.mark_rows(rows, ev.sanity_checks(rows))
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(saved, f, indent=1)
    eps_list = sorted({r["eps"] for r in rows if r["purpose"] == "attack"})
    _print_tables(rows, eps_list, dataset, saved["training"], saved["n"])


def _summary(rows, eps_list, dataset, meta, n):
    """The docs' table: one line per model."""

    def acc(model, attack, eps, source="white-box"):
        for r in rows:
            if (r["model"], r["attack"], r["eps"], r["source"],
                    r["purpose"]) == (model, attack, eps, source, "attack"):
                mark = " (!)" if str(r["check"]).startswith("FAIL") else ""
                return f"{r['accuracy']:.4f}{mark}"
        return "-"

    models = list(dict.fromkeys(r["model"] for r in rows))
    first = next(r for r in rows if r["attack"] == "pgd")
    pgd = f"PGD-{first['steps']}" + (
        f" x{first['restarts']}" if first["restarts"] > 1 else "")
    head = ["model", "clean"] + [f"FGSM {e}" for e in eps_list] + [
        f"{pgd} {e}" for e in eps_list] + [
        f"{pgd} {eps_list[-1]} from base", "train min"]
    lines = [f"\n{dataset}, {n} test images, L-inf, white-box unless "
             "noted; (!) = a sanity check failed\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        clean = [r["accuracy"] for r in rows
                 if r["model"] == m and r["attack"] == "clean"][0]
        cells = [m, f"{clean:.4f}"]
        cells += [acc(m, "fgsm", e) for e in eps_list]
        cells += [acc(m, "pgd", e) for e in eps_list]
        cells.append(acc(m, "pgd", eps_list[-1], "base"))
        cells.append(f"{meta[m]['train_seconds'] / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- Throughput. -------------------------------------------------------------


def throughput_worker(args):
    """Per backend: attack time per batch / forward-backward time."""
    import keras
    from keras import ops
    from neural_structured_learning import evaluation as ev
    from neural_structured_learning.evaluation import _outputs
    from neural_structured_learning.lib import gradients
    keras.utils.set_random_seed(0)
    model = build_cnn()
    rng = np.random.default_rng(0)
    b, m = args.batch_size, args.batches
    x = rng.random((b * m, 28, 28, 1)).astype(np.float32)
    y = np.argmax(model.predict(x, batch_size=b, verbose=0), -1)  # All right.
    kind = _outputs.detect_output_kind(model.predict(x[:b], verbose=0))
    xb, yb = ops.convert_to_tensor(x[:b]), ops.convert_to_tensor(y[:b])

    def fb():  # One forward-backward pass: the input gradient of the loss.
        def objective(xs):
            scores = _outputs.log_scores(model(xs[0], training=False), kind)
            return _outputs.attack_loss(scores, yb)
        grads = gradients.value_and_input_gradients(objective, [xb])[1]
        ops.convert_to_numpy(grads[0])

    def attack_seconds(attack):
        rows = ev.evaluate_robustness(model, x, y, [attack], clip=(0.0, 1.0),
                                      batch_size=b, sanity_checks=False,
                                      progress=False)
        return rows[1]["seconds"] / m

    attacks = [ev.fgsm(0.3)] + [ev.pgd(0.3, steps=k) for k in args.steps]
    for attack in attacks:  # Warm-up: compile every shape once.
        attack_seconds(attack)
    samples = {a.label: [] for a in attacks}
    samples["fb"] = []
    for _ in range(args.rounds):  # Interleaved, so drift hits all alike.
        for _ in range(3):
            start = time.perf_counter()
            fb()
            samples["fb"].append(time.perf_counter() - start)
        for attack in attacks:
            samples[attack.label].append(attack_seconds(attack))
    t_fb = float(np.median(samples["fb"]))
    out = []
    for attack in attacks:
        t = float(np.median(samples[attack.label]))
        out.append(dict(backend=keras.config.backend(), attack=attack.label,
                        steps=attack.steps, fb_ms=1000 * t_fb,
                        attack_ms=1000 * t, ratio=t / t_fb,
                        bound=attack.steps + 1))
    print(json.dumps(out))


def throughput(args):
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            saved = json.load(f)
        print(_throughput_table(saved["rows"], saved.get("settings", dict(
            batch_size=args.batch_size, batches=args.batches,
            rounds=args.rounds)), saved["load"]))
        return
    rows, load_before = [], os.getloadavg()[0]
    for backend in args.backends:
        cmd = [sys.executable, os.path.abspath(__file__),
               "_throughput_worker", "--batch_size", str(args.batch_size),
               "--batches", str(args.batches), "--rounds", str(args.rounds),
               "--steps", *map(str, args.steps)]
        env = dict(os.environ, KERAS_BACKEND=backend)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        print(f"throughput on {backend} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    settings = dict(batch_size=args.batch_size, batches=args.batches,
                    rounds=args.rounds)
    load = [load_before, os.getloadavg()[0]]
    print(_throughput_table(rows, settings, load))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(rows=rows, settings=settings, load=load), f,
                      indent=1)


def _throughput_table(rows, settings, load):
    lines = [
        f"\nAttack time per batch of {settings['batch_size']} (tutorial CNN, "
        f"{settings['batches']} batches, median of {settings['rounds']} "
        "rounds) in units of one forward-backward pass on the same batch; "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after.\n",
        "| backend | attack | f+b ms | attack ms | attack / f+b | "
        "bound k+1 |",
        "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['attack']} | {r['fb_ms']:.0f} | "
                     f"{r['attack_ms']:.0f} | {r['ratio']:.2f} | "
                     f"{r['bound']} |")
    return "\n".join(lines)


# -- Command line. -----------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate", "report",
                                            "throughput",
                                            "_throughput_worker"],
                        metavar="{train,evaluate,report,throughput}")
    parser.add_argument("--dataset", nargs="+", default=["mnist"],
                        choices=list(DATASETS))
    parser.add_argument("--data_dir", default=os.environ.get("NSL_DATA_DIR"))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        choices=MODELS)
    parser.add_argument("--models_dir", default="out/robustness/models")
    parser.add_argument("--results_dir", default="out/robustness",
                        help="evaluate/report: where the JSON and PNG go "
                        "(the committed ones are in benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", choices=["tutorial", "smallcnn"],
                        default="tutorial",
                        help="train: the CNN (see build_cnn)")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--epochs", type=int, default=20,
                        help="pgd-ar: most epochs")
    parser.add_argument("--base_epochs", type=int, default=5,
                        help="base and fgsm-ar: epochs (the tutorial's 5)")
    parser.add_argument("--budget_minutes", type=float, default=60.0,
                        help="pgd-ar: training time budget")
    parser.add_argument("--trades_beta", type=float, default=6.0,
                        help="trades: weight of the KL term")
    parser.add_argument("--pgd_steps", type=int, default=7,
                        help="pgd-ar: PGD steps in training")
    parser.add_argument("--lr_decay_epoch", type=int, default=0,
                        help="pgd-ar/trades: learning rate 1e-3, then 1e-4 "
                        "after this many epochs (0: constant 1e-3)")
    parser.add_argument("--ramp_epochs", type=int, default=2,
                        help="pgd-ar: epochs over which eps ramps up")
    parser.add_argument("--max_train", type=int, default=0,
                        help="train on the first N images only (smoke tests)")
    parser.add_argument("--n_eval", type=int, default=10000,
                        help="test images to evaluate")
    parser.add_argument("--eps", type=float, nargs="+",
                        help="evaluate: L-inf radii (default: 0.1 0.2 0.3 "
                        "for MNIST, 0.05 0.1 0.2 for Fashion-MNIST)")
    parser.add_argument("--backend", default="tensorflow",
                        help="report: the backend the evaluation ran on")
    parser.add_argument("--restarts", type=int, default=1,
                        help="evaluate: PGD random restarts")
    parser.add_argument("--eval_steps", type=int, default=40,
                        help="evaluate: PGD steps")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--backends", nargs="+",
                        default=["tensorflow", "jax", "torch"])
    parser.add_argument("--batches", type=int, default=4,
                        help="throughput: batches per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 40],
                        help="throughput: PGD steps to time")
    parser.add_argument("--json", help="throughput: write the rows here")
    parser.add_argument("--from_json",
                        help="throughput: reprint this saved result instead "
                        "of measuring")
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate", "_throughput_worker"):
        for dataset in (args.dataset if args.command != "_throughput_worker"
                        else ()):
            check_data(dataset, args.data_dir)  # Before minutes of work.
        # Before Keras imports TensorFlow: no C++ log noise.
        # pylint: disable-next=import-outside-toplevel
        from neural_structured_learning import _quiet as quiet
        quiet.framework_logs()
    if args.command == "_throughput_worker":
        return throughput_worker(args)
    if args.command == "throughput":
        return throughput(args)
    command = {"train": train, "evaluate": evaluate, "report": report}
    for dataset in args.dataset:
        command[args.command](args, dataset)
    return None


if __name__ == "__main__":
    main()
