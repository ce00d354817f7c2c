"""Benchmarks of `nsl.tools` build_graph and pack_nbrs, and against NSL 1.4.

    python benchmarks/tools_benchmark.py compare   # ours vs NSL 1.4.0
    python benchmarks/tools_benchmark.py scaling   # 10k / 100k / 1M x 128-d
    python benchmarks/tools_benchmark.py report    # re-print saved tables

Every measurement runs in a fresh subprocess that imports its libraries
first (NSL 1.4: TensorFlow; ours: faiss, pyarrow, protobuf), then times
only the call (`time.perf_counter`) and reports the
process's peak RSS before and after it (`VmHWM` of /proc/self/status;
not `ru_maxrss`, which a child inherits from its parent at fork), the CPU
time of the call (user + system, all threads) and the 1-minute load average
when it ends: on a shared machine, wall time grows with the load while CPU
time barely does. pack_nbrs runs `--repeats` times per side (default 3)
and the run of median wall time is reported, with every run's time. NSL 1.4 runs
under `--nsl14-python` (default /work/venv-nsl14/bin/python, TensorFlow
2.15.1 + neural-structured-learning 1.4.0; its `open(..., 'rU')`, invalid on
Python 3.11, is mapped to 'r'). Both sides read the same generated files.

Synthetic embeddings: `x = z @ W + 0.1 * e` with `z ~ N(0, I_16)`,
`W ~ N(0, 1/16)` of shape (16, d) and `e ~ N(0, I_d)`: points near a
16-dimensional subspace, a stand-in for learned embeddings (low intrinsic
dimension). `--data gaussian` draws isotropic N(0, I_d) points instead, where
nearest neighbours are hardly nearer than anything else (worst case for ANN).

Results are printed as Markdown tables and saved, with the command line, to
benchmarks/results/tools_<mode>.json.
"""

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")


# ----------------------------------------------------------------- workers --
def _worker(spec):
    """Runs one timed call in this process; prints a RESULT line (JSON)."""
    import importlib  # pylint: disable=import-outside-toplevel
    if spec["impl"] == "nsl14":
        _patch_open_mode_u()
        import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
        module = importlib.import_module(
            f"neural_structured_learning.tools.{spec['function']}")
    else:
        # The libraries the tools import lazily (NSL 1.4's TensorFlow import
        # is likewise outside its timed call).
        import faiss  # pylint: disable=import-outside-toplevel,unused-import
        import pyarrow.compute  # pylint: disable=import-outside-toplevel,unused-import
        import pyarrow.csv  # pylint: disable=import-outside-toplevel,unused-import
        import neural_structured_learning.tools.example_proto  # pylint: disable=import-outside-toplevel,unused-import
        import neural_structured_learning.tools.tfrecord  # pylint: disable=import-outside-toplevel,unused-import
        module = importlib.import_module("neural_structured_learning.tools")
    function = getattr(module, spec["function"])
    before = peak_rss_mb()
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    function(*spec["args"], **spec["kwargs"])
    seconds = time.perf_counter() - start
    print("RESULT " + json.dumps({"seconds": seconds,
                                  "cpu_seconds": _cpu_seconds() - cpu_before,
                                  "peak_mb": peak_rss_mb(),
                                  "import_peak_mb": before,
                                  "load_avg": os.getloadavg()[0]}))


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb():
    """This process's peak resident memory (MB) since its exec."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _patch_open_mode_u():
    """Maps NSL 1.4's `open(..., 'rU')` (invalid on Python 3.11) to 'r'."""
    import builtins  # pylint: disable=import-outside-toplevel
    original = builtins.open

    def open_without_u(file, mode="r", *args, **kwargs):
        return original(file, mode.replace("U", ""), *args, **kwargs)

    builtins.open = open_without_u


def run(impl, function, args, kwargs, nsl14_python):
    """Runs `function(*args, **kwargs)` of `impl` in a subprocess.

    The call's output file is deleted first: replacing (or truncating) a
    large file left by an earlier run frees its pages inside the timed call,
    tens of milliseconds that depend on the workdir's history.
    """
    output = args[1] if function == "build_graph" else args[3]
    if os.path.exists(output):
        os.remove(output)
    spec = json.dumps({"impl": impl, "function": function, "args": args,
                       "kwargs": kwargs})
    if impl == "nsl14":
        # -I keeps this checkout's neural_structured_learning off sys.path.
        command = [nsl14_python, "-I", os.path.abspath(__file__), "_worker",
                   spec]
    else:
        command = [sys.executable, os.path.abspath(__file__), "_worker", spec]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env,
                            cwd="/", check=False)
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{impl} {function} failed:\n{result.stderr[-4000:]}")
    report = json.loads(lines[-1][len("RESULT "):])
    print(f"  {impl:6} {function:12} {report['seconds']:9.2f} s  "
          f"cpu {report['cpu_seconds']:9.2f} s  "
          f"peak {report['peak_mb']:7.0f} MB  load {report['load_avg']:.1f}  "
          f"{json.dumps(kwargs)}",
          file=sys.stderr, flush=True)
    return report


# -------------------------------------------------------------------- data --
def make_vectors(n, dim, seed, data="lowrank"):
    import numpy as np  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    if data == "gaussian":
        return rng.standard_normal((n, dim), dtype=np.float32)
    w = rng.standard_normal((16, dim), dtype=np.float32) / 4.0
    z = rng.standard_normal((n, 16), dtype=np.float32)
    return z @ w + 0.1 * rng.standard_normal((n, dim), dtype=np.float32)


def node_ids(n):
    return [f"n{i}" for i in range(n)]


def write_embeddings(path, vectors):
    """Writes `id`/`embedding` tf.train.Examples (skips existing files)."""
    from neural_structured_learning.tools import example_proto  # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import tfrecord  # pylint: disable=import-outside-toplevel
    if os.path.exists(path):
        return path

    def records():
        for node_id, vector in zip(node_ids(len(vectors)), vectors.tolist()):
            example = example_proto.Example()
            features = example.features.feature
            features["id"].bytes_list.value.append(node_id.encode())
            features["embedding"].float_list.value.extend(vector)
            yield example.SerializeToString()

    tfrecord.write_records(path, records())
    return path


def write_pack_inputs(workdir, num_labeled, num_unlabeled, edges_per_node,
                      seed, floats=100):
    """Examples with `id`, `label`, `floats` floats; a random weighted graph."""
    from neural_structured_learning.tools import example_proto  # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import tfrecord  # pylint: disable=import-outside-toplevel
    tag = f"{num_labeled}_{num_unlabeled}_{edges_per_node}_{seed}"
    if floats != 100:
        tag += f"_{floats}f"
    paths = {name: os.path.join(workdir, f"pack_{name}_{tag}.{ext}")
             for name, ext in (("labeled", "tfr"), ("unlabeled", "tfr"),
                               ("graph", "tsv"))}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    rng = random.Random(seed)
    total = num_labeled + num_unlabeled

    def records(first, count):
        for i in range(first, first + count):
            example = example_proto.Example()
            features = example.features.feature
            features["id"].bytes_list.value.append(f"n{i}".encode())
            features["label"].int64_list.value.append(i % 10)
            features["x"].float_list.value.extend(
                rng.random() for _ in range(floats))
            yield example.SerializeToString()

    tfrecord.write_records(paths["labeled"], records(0, num_labeled))
    tfrecord.write_records(paths["unlabeled"],
                           records(num_labeled, num_unlabeled))
    with open(paths["graph"], "w", encoding="utf-8") as f:
        for _ in range(total * edges_per_node):
            f.write(f"n{rng.randrange(total)}\tn{rng.randrange(total)}\t"
                    f"{rng.randrange(1, 101) / 100:.2f}\n")
    return paths


# ----------------------------------------------------------------- helpers --
def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def edge_set(path):
    return {tuple(sorted(line.split("\t")[:2])) for line in read_lines(path)}


def same_packed_output(path_a, path_b):
    from neural_structured_learning.tools import example_proto  # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import tfrecord  # pylint: disable=import-outside-toplevel

    def examples(path):
        for record in tfrecord.iter_records(path):
            yield example_proto.example_to_dict(
                example_proto.Example.FromString(record))

    sentinel = object()
    import itertools  # pylint: disable=import-outside-toplevel
    return all(a == b for a, b in itertools.zip_longest(
        examples(path_a), examples(path_b), fillvalue=sentinel))


def knn_recall(vectors, graph_path, k, sample, seed):
    """Mean fraction of each sampled node's exact top-k in its out-edges.

    The exact top-k uses float64 cosines and the builder's tie rule (larger
    id first); out-edges are read from the written TSV.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    n = len(vectors)
    ids = node_ids(n)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(sample, n),
                                                      replace=False))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = unit[rows]
    best = np.full((len(rows), k + 20), -1, np.int64)
    best_sim = np.full((len(rows), k + 20), -np.inf, np.float32)
    for start in range(0, n, 100_000):
        sim = queries @ unit[start:start + 100_000].T
        cand = np.concatenate([best_sim, sim], axis=1)
        idx = np.concatenate(
            [best, np.arange(start, start + sim.shape[1])[None, :].repeat(
                len(rows), 0)], axis=1)
        keep = np.argpartition(-cand, k + 19, axis=1)[:, :k + 20]
        best_sim = np.take_along_axis(cand, keep, 1)
        best = np.take_along_axis(idx, keep, 1)
    truth = {}
    for r, cands in zip(rows.tolist(), best.tolist()):
        cands = [c for c in cands if c != r and c >= 0]
        v64 = vectors[[r] + cands].astype(np.float64)
        v64 /= np.linalg.norm(v64, axis=1, keepdims=True)
        sims = (v64[1:] @ v64[0]).tolist()
        scored = sorted(zip(sims, (ids[c] for c in cands)), reverse=True)[:k]
        truth[ids[r]] = {c for _, c in scored}
    found = {node_id: set() for node_id in truth}
    with open(graph_path, encoding="utf-8") as f:
        for line in f:
            source, target, _ = line.split("\t", 2)
            if source in found:
                found[source].add(target)
    return sum(len(truth[i] & found[i]) for i in truth) / (k * len(truth))


def md_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save(mode, payload):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"tools_{mode}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
    print(f"\nRaw results: {os.path.relpath(path, REPO)}")


# ----------------------------------------------------------------- compare --
def compare(args):
    """Ours vs NSL 1.4.0 on the same files, in one run."""
    results = {"command": " ".join(sys.argv), "build": [], "pack": []}
    dim, threshold = args.dim, args.threshold
    for n in args.build_sizes:
        vectors = make_vectors(n, dim, seed=n)
        emb = write_embeddings(os.path.join(args.workdir, f"emb_{n}x{dim}.tfr"),
                               vectors)
        out = {name: os.path.join(args.workdir, f"g_{n}_{name}.tsv") for name in
               ("14", "ours", "14lsh", "ourslsh", "exact10", "ann10")}
        splits = max(1, math.ceil(math.log2(n / 1000)))
        lsh = {"similarity_threshold": threshold, "lsh_splits": splits,
               "lsh_rounds": 2, "random_seed": 1}
        row = {"n": n, "dim": dim, "threshold": threshold, "lsh": lsh}
        row["nsl14"] = run("nsl14", "build_graph", [[emb], out["14"]],
                           {"similarity_threshold": threshold},
                           args.nsl14_python)
        row["ours"] = run("ours", "build_graph", [[emb], out["ours"]],
                          {"similarity_threshold": threshold, "progress": False},
                          args.nsl14_python)
        row["identical"] = read_lines(out["ours"]) == sorted(
            read_lines(out["14"]))
        row["edges"] = len(read_lines(out["ours"])) // 2
        row["nsl14_lsh"] = run("nsl14", "build_graph", [[emb], out["14lsh"]],
                               lsh, args.nsl14_python)
        row["ours_lsh"] = run("ours", "build_graph", [[emb], out["ourslsh"]],
                              dict(lsh, progress=False), args.nsl14_python)
        exact_edges = edge_set(out["ours"])
        row["nsl14_lsh_recall"] = len(edge_set(out["14lsh"])) / max(
            1, len(exact_edges))
        row["lsh_identical"] = read_lines(out["ourslsh"]) == sorted(
            read_lines(out["14lsh"]))
        for name, method in (("exact10", "exact"), ("ann10", "ann")):
            row[name] = run("ours", "build_graph", [[emb], out[name]],
                            {"similarity_threshold": -1.0, "top_k": 10,
                             "method": method, "progress": False},
                            args.nsl14_python)
        row["ann10_recall"] = knn_recall(vectors, out["ann10"], 10, 1000, 0)
        results["build"].append(row)
    for labeled in args.pack_sizes:
        paths = write_pack_inputs(args.workdir, labeled, labeled, 5, seed=1,
                                  floats=args.pack_floats)
        outs = {impl: os.path.join(args.workdir, f"packed_{labeled}_{impl}.tfr")
                for impl in ("nsl14", "ours")}
        row = {"labeled": labeled, "unlabeled": labeled,
               "edge_lines": 2 * labeled * 5, "floats": args.pack_floats}
        for impl in ("nsl14", "ours"):
            kwargs = {"add_undirected_edges": True, "max_nbrs": 5}
            if impl == "ours":
                kwargs["progress"] = False
            # Each side `--repeats` times, each in a fresh process; the
            # run of median wall time is reported.
            reports = [run(impl, "pack_nbrs",
                           [paths["labeled"], paths["unlabeled"],
                            paths["graph"], outs[impl]], kwargs,
                           args.nsl14_python) for _ in range(args.repeats)]
            reports.sort(key=lambda report: report["seconds"])
            row[impl] = dict(reports[len(reports) // 2],
                             all_seconds=[r["seconds"] for r in reports])
        row["identical"] = same_packed_output(outs["nsl14"], outs["ours"])
        results["pack"].append(row)
    print_compare(results)
    save(f"compare{args.tag}", results)


def _print_build_compare(build):
    rows = []
    for r in build:
        rows.append([
            f"{r['n']:,} x {r['dim']}", f"{r['edges']:,}",
            f"{r['nsl14']['seconds']:.1f} s / {_cpu(r['nsl14'])} / "
            f"{r['nsl14']['peak_mb']:.0f} MB",
            f"{r['ours']['seconds']:.2f} s / {_cpu(r['ours'])} / "
            f"{r['ours']['peak_mb']:.0f} MB",
            f"**{r['nsl14']['seconds'] / r['ours']['seconds']:.0f}x** / "
            f"{_ratio(r['nsl14'], r['ours'])}",
            "yes" if r["identical"] else "**NO**"])
    print(f"\n### build_graph, all pairs >= {build[0]['threshold']}"
          " (1.4 semantics)\n")
    print(md_table(["nodes x dim", "edges",
                    "NSL 1.4 all-pairs wall / CPU / peak RSS",
                    "ours exact wall / CPU / peak RSS", "speed-up wall / CPU",
                    "identical output"], rows))
    rows = []
    for r in build:
        lsh = r["lsh"]
        rows.append([
            f"{r['n']:,}", f"{lsh['lsh_splits']} / {lsh['lsh_rounds']}",
            f"{r['nsl14_lsh']['seconds']:.1f} s",
            f"{100 * r['nsl14_lsh_recall']:.1f}%",
            f"{r['ours_lsh']['seconds']:.2f} s",
            "yes" if r["lsh_identical"] else "**NO**",
            f"{r['exact10']['seconds']:.2f} s",
            f"{r['ann10']['seconds']:.2f} s",
            f"{100 * r['ann10_recall']:.1f}%",
            f"{r['nsl14']['seconds'] / r['ann10']['seconds']:.0f}x"])
    print("\n### LSH (1.4's approximation) and top-10 graphs\n")
    print(md_table(["nodes", "LSH splits / rounds", "NSL 1.4 LSH",
                    "1.4 LSH edge recall", "ours LSH (seeded)",
                    "same edges as 1.4 LSH", "ours exact top-10",
                    "ours ANN top-10", "ANN recall@10",
                    "ANN speed-up vs 1.4 all-pairs"], rows))


def _cpu(report):
    return (f"{report['cpu_seconds']:.1f} s" if "cpu_seconds" in report
            else "-")


def _ratio(slow, fast):
    if "cpu_seconds" not in slow or "cpu_seconds" not in fast:
        return "-"
    return f"{slow['cpu_seconds'] / fast['cpu_seconds']:.1f}x"


def print_compare(results):
    if results["build"]:
        _print_build_compare(results["build"])
    rows = []
    for r in results["pack"]:
        rows.append([
            f"{r['labeled']:,} + {r['unlabeled']:,}", r.get("floats", 100),
            f"{r['edge_lines']:,}",
            f"{r['nsl14']['seconds']:.1f} s / {_cpu(r['nsl14'])} / "
            f"{r['nsl14']['peak_mb']:.0f} MB",
            f"{r['ours']['seconds']:.2f} s / {_cpu(r['ours'])} / "
            f"{r['ours']['peak_mb']:.0f} MB",
            f"**{r['nsl14']['seconds'] / r['ours']['seconds']:.1f}x** / "
            f"{_ratio(r['nsl14'], r['ours'])}",
            "yes" if r["identical"] else "**NO**"])
    print("\n### pack_nbrs (undirected, max_nbrs=5)\n")
    print(md_table(["labeled + unlabeled", "floats per example",
                    "graph lines", "NSL 1.4 wall / CPU / peak RSS",
                    "ours wall / CPU / peak RSS", "speed-up wall / CPU",
                    "identical output"], rows))
    loads = [v["load_avg"] for r in results["build"] + results["pack"]
             for v in r.values() if isinstance(v, dict) and "load_avg" in v]
    if loads:
        print(f"\n1-minute load average at the end of the timed calls: "
              f"{min(loads):.1f} to {max(loads):.1f} (2 cores).")
    spreads = [f"{r['labeled']:,}: NSL 1.4 " + ", ".join(
        f"{x:.2f}" for x in r["nsl14"]["all_seconds"]) + " s; ours " + ", ".join(
            f"{x:.2f}" for x in r["ours"]["all_seconds"]) + " s"
               for r in results["pack"] if "all_seconds" in r["ours"]]
    if spreads:
        print("\npack_nbrs wall time of every run (median reported): "
              + "; ".join(spreads) + ".")


# ----------------------------------------------------------------- scaling --
def scaling(args):
    """Ours at growing sizes: time, peak memory, recall@10."""
    results = {"command": " ".join(sys.argv), "rows": []}
    for n in args.sizes:
        vectors = make_vectors(n, args.dim, seed=n, data=args.data)
        emb = write_embeddings(
            os.path.join(args.workdir, f"emb_{args.data}_{n}x{args.dim}.tfr"),
            vectors)
        for method in args.methods:
            if method == "exact" and n > args.max_exact:
                continue
            out = os.path.join(args.workdir, f"scale_{n}_{method}.tsv")
            report = run("ours", "build_graph", [[emb], out],
                         {"similarity_threshold": -1.0, "top_k": 10,
                          "method": method, "progress": False},
                         args.nsl14_python)
            report.update(n=n, dim=args.dim, method=method, data=args.data,
                          recall=knn_recall(vectors, out, 10, 1000, 0),
                          lines=sum(1 for _ in open(out, encoding="utf-8")))
            results["rows"].append(report)
            os.remove(out)
    print_scaling(results)
    save(f"scaling_{args.data}{args.tag}", results)


def print_scaling(results):
    rows = [[f"{r['n']:,} x {r['dim']}", r["data"], r["method"],
             f"{r['seconds']:.1f} s",
             f"{r['cpu_seconds']:.1f} s" if "cpu_seconds" in r else "-",
             f"{r['peak_mb'] / 1024:.2f} GB",
             f"{100 * r['recall']:.2f}%", f"{r['lines']:,}",
             f"{r.get('load_avg', float('nan')):.1f}"]
            for r in results["rows"]]
    print("\n### build_graph top-10 scaling (TFRecord input, 2 cores)\n")
    print(md_table(["nodes x dim", "data", "method", "wall time",
                    "CPU time", "peak RSS",
                    "recall@10 (1,000 sampled nodes)", "TSV lines",
                    "load avg"], rows))


def report():
    """Prints the tables of every saved result file."""
    for name in sorted(os.listdir(RESULTS)):
        if not (name.startswith("tools_") and name.endswith(".json")):
            continue
        with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
            results = json.load(f)
        print(f"\n## {name}: `{results['command']}`")
        if "build" in results:
            print_compare(results)
        elif "rows" in results:
            print_scaling(results)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        _worker(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("compare", "scaling", "report"))
    parser.add_argument("--workdir", default="/tmp/nsl_tools_bench")
    parser.add_argument("--nsl14-python", default=os.environ.get(
        "NSL14_PYTHON", "/work/venv-nsl14/bin/python"))
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=0.75)
    parser.add_argument("--build-sizes", type=_ints, default=[10000, 20000])
    parser.add_argument("--pack-sizes", type=_ints,
                        default=[20000, 80000, 320000])
    parser.add_argument("--repeats", type=int, default=3,
                        help="pack_nbrs runs per side (fresh processes); "
                        "the run of median wall time is reported")
    parser.add_argument("--pack-floats", type=int, default=100,
                        help="floats in each example's feature `x`")
    parser.add_argument("--sizes", type=_ints,
                        default=[10000, 100000, 1000000])
    parser.add_argument("--methods", type=lambda s: s.split(","),
                        default=["exact", "ann"])
    parser.add_argument("--max-exact", type=int, default=100000)
    parser.add_argument("--data", choices=("lowrank", "gaussian"),
                        default="lowrank")
    parser.add_argument("--tag", default="",
                        help="suffix of the results file name")
    args = parser.parse_args()
    # Workers run with cwd="/": a relative interpreter path must be resolved.
    args.nsl14_python = os.path.abspath(args.nsl14_python)
    os.makedirs(args.workdir, exist_ok=True)
    if args.mode == "report":
        report()
    elif args.mode == "compare":
        args.dim = args.dim or 64
        compare(args)
    else:
        args.dim = args.dim or 128
        scaling(args)


def _ints(text):
    return [int(x) for x in text.split(",") if x]


if __name__ == "__main__":
    main()
