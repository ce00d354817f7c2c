"""`nsl evaluate`: robustness of a saved Keras model on an .npz dataset.

    nsl evaluate model.keras data.npz [--eps 0.1,0.2,0.3] [--l2_eps 1,2]
        [--attacks fgsm,pgd] [--steps 40] [--restarts 1] [--clip 0,1]
        [--autoattack_eps 0.3] [--autoattack_norm infinity|l2]
        [--autoattack_steps 100] [--autoattack_queries 5000]
        [--transfer_from base.keras] [--json rows.json] [--plot_dir DIR]

The .npz holds the inputs and integer labels under `x` and `y` (or `x_test`
and `y_test`; `--x_key`/`--y_key` name others). Prints the Markdown table and
the sanity checks; with `--strict`, a failed sanity check makes the exit
status 3. Keras is imported only when the command runs.
"""

import json
import logging
import os
import sys
import warnings

import numpy as np

from neural_structured_learning._core import flags as _flags

_FLAGS = [
    _flags.Flag("eps", str, "0.1,0.2,0.3",
                "L-infinity radii, comma-separated ('' for none)"),
    _flags.Flag("l2_eps", str, "", "L2 radii, comma-separated"),
    _flags.Flag("l1_eps", str, "", "L1 radii, comma-separated"),
    _flags.Flag("attacks", str, "fgsm,pgd", "attacks: fgsm, pgd or both"),
    _flags.Flag("steps", int, 40, "PGD steps"),
    _flags.Flag("step_size", float, None,
                "PGD step size (default 2.5 * eps / steps)"),
    _flags.Flag("restarts", int, 1, "PGD random restarts"),
    _flags.Flag("autoattack_eps", str, "",
                "radii of the standard ensemble (APGD-CE, APGD-T, FAB-T, "
                "Square; the worst case per example), comma-separated"),
    _flags.Flag("autoattack_norm", str, "infinity",
                "the ensemble's norm", choices=("infinity", "l2")),
    _flags.Flag("autoattack_queries", int, 5000, "Square's query budget"),
    _flags.Flag("autoattack_steps", int, 100,
                "iterations of APGD-CE, APGD-T and FAB-T"),
    _flags.Flag("clip", str, "0,1",
                "valid input range 'min,max' (or 'none'); inputs must lie "
                "in it"),
    _flags.Flag("divide_by", float, 1.0,
                "divide the inputs by this first (255 for 8-bit images)"),
    _flags.Flag("output", str, "auto", "what the model outputs",
                choices=("auto", "logits", "probabilities")),
    _flags.Flag("loss", str, "crossentropy", "the loss the attacks maximise",
                choices=("crossentropy", "margin")),
    _flags.Flag("transfer_from", str, "",
                "comma-separated .keras models to craft transfer attacks on"),
    _flags.Flag("batch_size", int, 256, "examples per batch"),
    _flags.Flag("max_examples", int, 0,
                "evaluate the first N examples only (0: all)"),
    _flags.Flag("seed", int, 0, "seed of the random starts"),
    _flags.Flag("x_key", str, "", "key of the inputs in the .npz"),
    _flags.Flag("y_key", str, "", "key of the labels in the .npz"),
    _flags.Flag("json", str, "", "write the table as JSON to this file"),
    _flags.Flag("plot_dir", str, "",
                "write accuracy_vs_eps.png and examples.png here"),
    _flags.Flag("sanity_checks", bool, True,
                "run and report the gradient-masking sanity checks"),
    _flags.Flag("strict", bool, False,
                "exit with status 3 when a sanity check fails"),
    _flags.Flag("progress", bool, None,
                "progress bar on stderr (default: when it is a terminal)"),
]


def configure(parser):
    """Adds the arguments of `nsl evaluate` to `parser`; returns the
    handler."""
    parser.add_argument("model", help="the model, a .keras file")
    parser.add_argument("data", help="the dataset, an .npz file")
    parser.add_flags(_FLAGS)
    return run


def load_npz(path, x_key="", y_key=""):
    """Returns `(x, y)` from an .npz file: keys `x_key`/`y_key`, else `x`
    and `y`, else `x_test` and `y_test`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"The data file {path!r} does not exist.")
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        if x_key or y_key:
            pairs = [(x_key or "x", y_key or "y")]
        else:
            pairs = [("x", "y"), ("x_test", "y_test")]
        for xk, yk in pairs:
            if xk in keys and yk in keys:
                return data[xk], data[yk]
    raise ValueError(
        f"The data file {path!r} has keys {keys}: expected 'x' and 'y', or "
        "'x_test' and 'y_test' (or name them with --x_key and --y_key).")


def _floats(name, text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _flags.UsageError(
            f"--{name} must be comma-separated numbers. Received: "
            f"{text!r}") from None


def _clip(text):
    if text.strip().lower() in ("", "none"):
        return None
    values = _floats("clip", text)
    if len(values) != 2:
        raise _flags.UsageError(
            f"--clip must be 'min,max' or 'none'. Received: {text!r}")
    return tuple(values)


def _attacks(args):
    from neural_structured_learning import evaluation  # pylint: disable=import-outside-toplevel
    methods = [m.strip() for m in args.attacks.split(",") if m.strip()]
    attacks = []
    for norm, text in (("infinity", args.eps), ("l2", args.l2_eps),
                       ("l1", args.l1_eps)):
        radii = _floats({"infinity": "eps"}.get(norm, f"{norm}_eps"), text)
        if radii:
            attacks += evaluation.attack_grid(
                radii, norm, methods=methods, steps=args.steps,
                step_size=args.step_size, restarts=args.restarts)
    if not attacks:
        raise _flags.UsageError("no attack to run: give radii with --eps, "
                                "--l2_eps or --l1_eps.")
    return attacks


def _load_model(path):
    import keras  # pylint: disable=import-outside-toplevel
    # Registers the NSL wrappers, so saved wrappers load too.
    import neural_structured_learning.keras  # pylint: disable=import-outside-toplevel,unused-import
    if not os.path.exists(path):
        raise FileNotFoundError(f"The model file {path!r} does not exist.")
    with warnings.catch_warnings():
        # The optimizer's state is not needed to evaluate.
        warnings.filterwarnings("ignore", message=".*variable loading for "
                                "optimizer")
        model = keras.saving.load_model(path, compile=True)
    base = getattr(model, "base_model", None)
    if base is not None:
        logging.info("%s is an NSL wrapper: evaluating its base_model.", path)
        model = base
    return model


def _match_rank(x, model):
    """Adds a channel axis when the model wants one more axis than `x`."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == x.ndim + 1 and (
            shape[-1] == 1):
        logging.info("Adding a channel axis to the inputs: %s -> %s",
                     x.shape, x.shape + (1,))
        return x[..., None]
    return x


def run(args):
    """Runs `nsl evaluate`; returns the exit status."""
    from neural_structured_learning import evaluation  # pylint: disable=import-outside-toplevel
    attacks = _attacks(args)
    clip = _clip(args.clip)
    if args.divide_by <= 0:
        raise _flags.UsageError(f"--divide_by must be > 0. Received: "
                                f"{args.divide_by}")
    x, y = load_npz(args.data, args.x_key, args.y_key)
    if args.max_examples > 0:
        x, y = x[:args.max_examples], y[:args.max_examples]
    x = np.asarray(x, dtype=np.float32) / np.float32(args.divide_by)
    model = _load_model(args.model)
    x = _match_rank(x, model)
    sources = {os.path.basename(p): _load_model(p)
               for p in args.transfer_from.split(",") if p.strip()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", evaluation.RobustnessWarning)
        rows = evaluation.evaluate_robustness(
            model, x, y, attacks, sources=sources, clip=clip,
            output=args.output, loss=args.loss, batch_size=args.batch_size,
            seed=args.seed, sanity_checks=args.sanity_checks,
            model_name=os.path.basename(args.model), progress=args.progress,
            autoattack_eps=_floats("autoattack_eps", args.autoattack_eps),
            autoattack_norm=args.autoattack_norm,
            autoattack_queries=args.autoattack_queries,
            autoattack_steps=args.autoattack_steps)
    for warning in caught:
        if issubclass(warning.category, evaluation.RobustnessWarning):
            print(f"nsl evaluate: warning: {warning.message}",
                  file=sys.stderr)
    print(evaluation.to_markdown(rows, checks=args.sanity_checks))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    if args.plot_dir:
        _plots(args.plot_dir, rows, model, x, y, attacks, clip, args)
    failed = any(str(r["check"]).startswith("FAIL") for r in rows)
    return 3 if failed and args.strict else 0


def _plots(directory, rows, model, x, y, attacks, clip, args):
    from neural_structured_learning import evaluation  # pylint: disable=import-outside-toplevel
    os.makedirs(directory, exist_ok=True)
    evaluation.plot_accuracy_vs_eps(
        rows, os.path.join(directory, "accuracy_vs_eps.png"),
        title=f"{os.path.basename(args.model)} on "
        f"{os.path.basename(args.data)} ({len(x)} examples)")
    attack = max(attacks, key=lambda a: (a.norm == "infinity", a.eps,
                                         a.steps))
    # One full batch: the shapes the evaluation compiled for (JAX).
    n, batch = min(10, len(x)), min(args.batch_size, len(x))
    x_adv = evaluation.generate_adversarial(
        model, x[:batch], y[:batch], attack, clip=clip, output=args.output,
        loss=args.loss, batch_size=batch, seed=args.seed)
    predictions = evaluation.predict_classes(
        model, x_adv, output=args.output, batch_size=batch)[:n]
    labels = np.asarray(y)[:n]
    labels = labels.argmax(axis=-1) if labels.ndim == 2 and (
        labels.shape[1] > 1) else labels.reshape(n)
    evaluation.plot_adversarial_examples(
        os.path.join(directory, "examples.png"), x[:n], labels,
        x_adv[:n], {"prediction": predictions}, n=n, clip=clip,
        title=f"{attack.label} (white-box); red: wrong")
