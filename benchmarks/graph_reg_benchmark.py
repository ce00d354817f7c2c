r"""Graph regularization benchmark: accuracy on Cora/Citeseer and step cost.

For each Keras backend (each in its own subprocess with `KERAS_BACKEND`
set), runs:

* `tutorial`: NSL's Cora tutorial (`examples/graph_mlp_cora.py`): base MLP
  vs graph-regularized MLP with `max_neighbors` 1, 2, 3;
* `tutorial_propagation`: the same split and MLP with `max_neighbors=1`
  and the propagation graph loss (`nsl.configs.PropagationConfig`, the
  Planetoid recipe's multiplier 1.0, self weight 0.1 and temperature 0.5,
  every node a batch row);
* `planetoid`: the Planetoid splits of Cora and Citeseer
  (`examples/graph_mlp_planetoid.py`): MLP vs graph-regularized MLP;
* `step_cost`: median training-step time of the tutorial MLP (batch 128) on
  packed batches with `max_neighbors` N = 0..8, for
  `neighbor_pass='batched'` and `'separate'`, as ratios to N = 0 measured in
  the same process, plus the time to look up a batch's neighbours.

and prints Markdown tables (accuracy: mean ± std over the seeds).

Usage:

    NSL_DATA_DIR=/path/to/data python benchmarks/graph_reg_benchmark.py \
        [--backends tensorflow jax torch] [--seeds 5] \
        [--tasks tutorial tutorial_propagation planetoid step_cost] \
        [--output results.md] \
        [--records results.jsonl]

With `--records`, the raw results are appended to a JSON-lines file and the
tables are built from every record in it, so the backends can be run one at
a time (e.g. each under a lock on a shared machine) and reported together;
`--backends` then selects the columns and `--report_only` runs nothing. The
tables say how many seeds each number is over (the records may hold fewer
than `--seeds`; that is warned about on stderr).

Run it on a quiet machine: step costs are wall-clock medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, ROOT)

TASKS = ("tutorial", "tutorial_propagation", "planetoid", "step_cost")
STEP_NEIGHBORS = (0, 1, 2, 3, 4, 6, 8)


def _emit(record):
    print("RESULT " + json.dumps(record), flush=True)


# -- Worker: one backend --------------------------------------------------------


def _tutorial(args):
    import graph_mlp_cora  # pylint: disable=import-outside-toplevel
    cora = graph_mlp_cora.load(args.data_dir)
    for neighbors in (0, 1, 2, 3):
        for seed in range(args.seeds):
            result = graph_mlp_cora.run(cora, neighbors, epochs=args.epochs,
                                        seed=seed)
            _emit(dict(task="tutorial", max_neighbors=neighbors, seed=seed,
                       **result))


def _tutorial_propagation(args):
    import graph_mlp_cora  # pylint: disable=import-outside-toplevel
    cora = graph_mlp_cora.load(args.data_dir)
    for seed in range(args.seeds):
        result = graph_mlp_cora.run(cora, 1, multiplier=1.0,
                                    epochs=args.epochs, seed=seed,
                                    propagation_self_weight=0.1)
        _emit(dict(task="tutorial", max_neighbors=1, propagation=True,
                   seed=seed, **result))


def _planetoid(args):
    import graph_mlp_planetoid  # pylint: disable=import-outside-toplevel
    for name in ("cora", "citeseer"):
        data = graph_mlp_planetoid.load(name, args.data_dir)
        for graph_regularized in (False, True):
            for seed in range(args.seeds):
                result = graph_mlp_planetoid.run(data, graph_regularized,
                                                 seed)
                _emit(dict(task="planetoid", dataset=name,
                           graph_regularized=graph_regularized, seed=seed,
                           **result))


def _median_step_ms(model, x, y, steps):
    for _ in range(5):  # Warm-up (tracing, compilation).
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _step_cost(args):
    import graph_mlp_cora  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    import neural_structured_learning as nsl  # pylint: disable=import-outside-toplevel
    cora = graph_mlp_cora.load(args.data_dir)
    batch = 128
    for neighbors in STEP_NEIGHBORS:
        config = nsl.configs.make_graph_reg_config(
            max_neighbors=neighbors, multiplier=0.1, sum_over_axis=-1)
        data = nsl.keras.NeighborBatchDataset(
            {graph_mlp_cora.FEATURE: cora.features}, cora.train_labels,
            cora.edges, config.neighbor_config, node_ids=cora.node_ids,
            undirected=True, batch_size=batch, sampling="uniform", seed=0)
        start = time.perf_counter()
        for index in range(len(data)):
            x, y = data[index]
        lookup_ms = 1000 * (time.perf_counter() - start) / len(data)
        x, y = data[0]
        for neighbor_pass in ("batched", "separate"):
            if neighbors == 0 and neighbor_pass == "separate":
                continue
            keras.utils.set_random_seed(0)
            base = graph_mlp_cora.make_mlp(cora.features.shape[1], 7)
            model = nsl.keras.GraphRegularization(
                base, config, neighbor_pass=neighbor_pass)
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
                from_logits=True))
            step_ms = _median_step_ms(model, x, y, args.steps)
            _emit(dict(task="step_cost", max_neighbors=neighbors,
                       neighbor_pass=neighbor_pass, step_ms=step_ms,
                       lookup_ms=lookup_ms))


def worker(args):
    # pylint: disable-next=import-outside-toplevel
    from neural_structured_learning import _quiet as quiet
    quiet.framework_logs()  # Before Keras loads TensorFlow.
    import keras  # pylint: disable=import-outside-toplevel
    _emit(dict(task="backend", backend=keras.backend.backend()))
    for task in args.tasks:
        {"tutorial": _tutorial, "tutorial_propagation": _tutorial_propagation,
         "planetoid": _planetoid, "step_cost": _step_cost}[task](args)


# -- Parent: one subprocess per backend, then the tables ---------------------


def _run_backend(backend, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker",
               "--seeds", str(args.seeds), "--epochs", str(args.epochs),
               "--steps", str(args.steps), "--tasks", *args.tasks]
    if args.data_dir:
        command += ["--data_dir", args.data_dir]
    env = dict(os.environ, KERAS_BACKEND=backend)
    print(f"# {backend}: {' '.join(command)}", file=sys.stderr, flush=True)
    records = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          text=True) as process:
        for line in process.stdout:
            if line.startswith("RESULT "):
                record = json.loads(line[len("RESULT "):])
                records.append(record)
                print(f"# {backend}: {record}", file=sys.stderr, flush=True)
    if process.returncode:
        raise SystemExit(f"The {backend} worker failed "
                         f"(exit code {process.returncode}).")
    return records


def _mean_std(values, show_count=False):
    """`mean ± std` in percent; a single value has no spread to show."""
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    text = f"{statistics.mean(values):.2f} ± {statistics.pstdev(values):.2f}"
    return text + (f" ({len(values)} seeds)" if show_count else "")


def _seed_counts(results, backends):
    """Number of seeds behind each accuracy cell: {(setting, model,
    backend): n}."""
    return {key + (backend,): len(values)
            for key, by_backend in _accuracy_cells(results).items()
            for backend, values in by_backend.items() if backend in backends}


def _accuracy_title(counts):
    seeds = sorted(set(counts.values()))
    if len(seeds) == 1:
        n = seeds[0]
        return ("Test accuracy (%), one seed (no spread):" if n == 1 else
                f"Test accuracy (%), mean ± std over {n} seeds:")
    return ("Test accuracy (%), mean ± std over the seeds each cell has "
            f"(between {seeds[0]} and {seeds[-1]}; counts in brackets):")


def _accuracy_table(results, backends):
    header = "| setting | model | " + " | ".join(backends) + " |"
    lines = [header, "|---|---|" + "---|" * len(backends)]
    counts = _seed_counts(results, backends)
    uneven = len(set(counts.values())) > 1
    for (setting, model), by_backend in _accuracy_cells(results).items():
        cells = [_mean_std(by_backend[b], uneven) if b in by_backend else "-"
                 for b in backends]
        lines.append(f"| {setting} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _accuracy_cells(results):
    """Test accuracies by (setting, model), then by backend."""
    rows = {}
    for backend, records in results.items():
        for r in records:
            if r["task"] == "tutorial":
                key = ("Cora, NSL tutorial split (2155/553)",
                       "base MLP" if r["max_neighbors"] == 0 else
                       f"graph-regularized MLP, max_neighbors="
                       f"{r['max_neighbors']}"
                       + (", propagation" if r.get("propagation") else ""))
            elif r["task"] == "planetoid":
                key = (f"{r['dataset'].capitalize()}, Planetoid split",
                       "graph-regularized MLP" if r["graph_regularized"]
                       else "MLP")
            else:
                continue
            rows.setdefault(key, {}).setdefault(backend, []).append(
                r["test_accuracy"])
    return rows


def _step_table(results, backends):
    lines = ["| max_neighbors | " + " | ".join(
        f"{b} batched | {b} separate" for b in backends)
        + " | neighbour lookup (ms/batch) |",
        "|---|" + "---|---|" * len(backends) + "---|"]
    table, lookup = {}, {}
    for backend, records in results.items():
        steps = [r for r in records if r["task"] == "step_cost"]
        if not steps:
            continue
        base = next(r["step_ms"] for r in steps if r["max_neighbors"] == 0)
        for r in steps:
            table[(r["max_neighbors"], backend, r["neighbor_pass"])] = (
                r["step_ms"], r["step_ms"] / base)
            lookup.setdefault(r["max_neighbors"], r["lookup_ms"])
    for n in STEP_NEIGHBORS:
        cells = []
        for b in backends:
            for p in ("batched", "separate"):
                if (n, b, p) in table:
                    ms, ratio = table[(n, b, p)]
                    cells.append(f"{ms:.2f} ms ({ratio:.2f}x)")
                else:
                    cells.append("-")
        lines.append(f"| {n} | " + " | ".join(cells)
                     + f" | {lookup.get(n, float('nan')):.2f} |")
    return "\n".join(lines)


def _warn_few_seeds(counts, asked):
    """Warns, on stderr, about accuracy cells with fewer seeds than
    `--seeds` asked for."""
    short = {key: n for key, n in counts.items() if n < asked}
    if not short:
        return
    examples = "; ".join(f"{setting}, {model}, {backend}: {n}"
                         for (setting, model, backend), n in
                         list(short.items())[:3])
    print(f"WARNING: --seeds {asked}, but {len(short)} of {len(counts)} "
          f"accuracy cells have fewer seeds in the records ({examples}"
          f"{'; ...' if len(short) > 3 else ''}). The tables show the seeds "
          "actually there.", file=sys.stderr, flush=True)


def _check_data_dir(parser, args):
    """Fails at once, not after minutes of work, without the data the
    tasks read: cora/ (tutorial, step_cost) and planetoid/ (planetoid)."""
    data_dir = args.data_dir or os.environ.get("NSL_DATA_DIR")
    if not data_dir:
        parser.error("no data directory: pass --data_dir or set "
                     "NSL_DATA_DIR (the folder holding cora/ and "
                     "planetoid/).")
    if not os.path.isdir(data_dir):
        parser.error(f"the data directory {data_dir!r} does not exist.")
    needed = {"tutorial": "cora", "tutorial_propagation": "cora",
              "step_cost": "cora", "planetoid": "planetoid"}
    missing = sorted({needed[t] for t in args.tasks
                      if not os.path.isdir(os.path.join(data_dir,
                                                        needed[t]))})
    if missing:
        parser.error(f"the data directory {data_dir!r} has no "
                     f"{' or '.join(m + '/' for m in missing)} (tasks "
                     f"{' '.join(args.tasks)}).")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+",
                        default=["tensorflow", "jax", "torch"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS),
                        choices=TASKS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100,
                        help="epochs of the tutorial setting")
    parser.add_argument("--steps", type=int, default=50,
                        help="timed steps per step-cost measurement")
    parser.add_argument("--data_dir", default=None,
                        help="data directory (default $NSL_DATA_DIR)")
    parser.add_argument("--output", default=None,
                        help="also write the tables to this Markdown file")
    parser.add_argument("--records", default=None,
                        help="JSON-lines file of raw results (read, then "
                        "updated with this run's tasks)")
    parser.add_argument("--report_only", action="store_true",
                        help="only print the tables of --records")
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.report_only and not (args.records
                                 and os.path.exists(args.records)):
        parser.error("--report_only needs --records naming an existing "
                     f"file. Received: --records {args.records}")
    if not args.report_only:
        _check_data_dir(parser, args)
    results = {}
    if args.records and os.path.exists(args.records):
        with open(args.records, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                results.setdefault(record.pop("backend"), []).append(record)
    if not args.report_only:
        for backend in args.backends:
            records = _run_backend(backend, args)
            ran = {r["task"] for r in records}
            results[backend] = [r for r in results.get(backend, [])
                                if r["task"] not in ran] + records
            if args.records:
                with open(args.records, "w", encoding="utf-8") as f:
                    for name, rows in results.items():
                        for r in rows:
                            f.write(json.dumps(dict(r, backend=name)) + "\n")
    backends = [b for b in ("tensorflow", "jax", "torch") if b in results]
    backends = [b for b in backends if b in args.backends] or backends
    text = []
    if {"tutorial", "tutorial_propagation", "planetoid"} & set(args.tasks):
        counts = _seed_counts(results, backends)
        _warn_few_seeds(counts, args.seeds)
        text += [_accuracy_title(counts) if counts else
                 "Test accuracy (%): no records.",
                 "", _accuracy_table(results, backends), ""]
    if "step_cost" in args.tasks:
        text += ["Median training-step time of the tutorial MLP, batch 128 "
                 "(ratio to max_neighbors=0, same process):", "",
                 _step_table(results, backends), ""]
    text = "\n".join(text)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
