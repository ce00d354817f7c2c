"""Which ANN library for `build_graph(method="ann")`: a measurement.

    python benchmarks/tools_ann_choice.py [--n 100000] [--dim 128]

For each candidate (FAISS IVF-Flat, FAISS HNSW, hnswlib, usearch,
pynndescent), on the same unit vectors (the low-rank synthetic embeddings of
tools_benchmark.py): build the index over all n points and query every point
for its 19 nearest neighbours (what build_graph fetches for top_k=10), three
times: twice with 2 threads (are results identical run to run?) and once
with 1 thread (are they identical across thread counts?). Reports build and
search times of the first run, recall@10 against brute force on 1,000
sampled points, and the two determinism checks, as a Markdown table; raw
results go to benchmarks/results/tools_ann_choice.json. Libraries that are
not installed are reported as such.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tools_benchmark  # pylint: disable=wrong-import-position

FETCH = 19  # build_graph's candidates for top_k=10: k + 1 + 8


def faiss_ivf(unit, threads):
    import faiss  # pylint: disable=import-outside-toplevel
    faiss.omp_set_num_threads(threads)
    nlist = int(4 * np.sqrt(len(unit)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(unit.shape[1]),
                               unit.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    start = time.perf_counter()
    index.train(unit[np.random.default_rng(0).choice(
        len(unit), min(len(unit), 64 * nlist), replace=False)])
    index.add(unit)
    built = time.perf_counter() - start
    index.nprobe = 32
    start = time.perf_counter()
    _, found = index.search(unit, FETCH)
    return built, time.perf_counter() - start, found


def faiss_hnsw(unit, threads):
    import faiss  # pylint: disable=import-outside-toplevel
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(unit.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    start = time.perf_counter()
    index.add(unit)
    built = time.perf_counter() - start
    index.hnsw.efSearch = 64
    start = time.perf_counter()
    _, found = index.search(unit, FETCH)
    return built, time.perf_counter() - start, found


def hnswlib_hnsw(unit, threads):
    import hnswlib  # pylint: disable=import-outside-toplevel
    index = hnswlib.Index(space="ip", dim=unit.shape[1])
    index.init_index(max_elements=len(unit), M=16, ef_construction=100,
                     random_seed=1)
    start = time.perf_counter()
    index.add_items(unit, num_threads=threads)
    built = time.perf_counter() - start
    index.set_ef(64)
    start = time.perf_counter()
    found, _ = index.knn_query(unit, k=FETCH, num_threads=threads)
    return built, time.perf_counter() - start, found


def usearch_hnsw(unit, threads):
    from usearch.index import Index  # pylint: disable=import-outside-toplevel
    index = Index(ndim=unit.shape[1], metric="ip", dtype="f32",
                  connectivity=16, expansion_add=128, expansion_search=64)
    start = time.perf_counter()
    index.add(np.arange(len(unit)), unit, threads=threads)
    built = time.perf_counter() - start
    start = time.perf_counter()
    found = index.search(unit, FETCH, threads=threads).keys
    return built, time.perf_counter() - start, found


def nndescent(unit, threads):
    import pynndescent  # pylint: disable=import-outside-toplevel
    pynndescent.NNDescent(unit[:2000], metric="dot", n_neighbors=FETCH,
                          n_jobs=threads, random_state=1)  # JIT warm-up
    start = time.perf_counter()
    index = pynndescent.NNDescent(unit, metric="dot", n_neighbors=FETCH,
                                  n_jobs=threads, random_state=1)
    found, _ = index.neighbor_graph  # the kNN graph is the build's output
    return time.perf_counter() - start, 0.0, found


CANDIDATES = {
    "FAISS IVF-Flat (nlist=4*sqrt(n), nprobe=32)": ("faiss", faiss_ivf),
    "FAISS HNSW (M=32, efC=40, ef=64)": ("faiss", faiss_hnsw),
    "hnswlib (M=16, efC=100, ef=64)": ("hnswlib", hnswlib_hnsw),
    "usearch (M=16, efC=128, ef=64)": ("usearch", usearch_hnsw),
    "pynndescent (n_neighbors=19)": ("pynndescent", nndescent),
}


def recall_at_10(unit, found, sample):
    sims = unit[sample] @ unit.T
    sims[np.arange(len(sample)), sample] = -np.inf
    truth = np.argpartition(-sims, 10, axis=1)[:, :10]
    hits = 0
    for row, true_ids in zip(sample, truth):
        mine = [c for c in found[row].tolist() if c != row][:10]
        hits += len(set(true_ids.tolist()) & set(mine))
    return hits / (10 * len(sample))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--data", choices=("lowrank", "gaussian"),
                        default="lowrank")
    args = parser.parse_args()
    vectors = tools_benchmark.make_vectors(args.n, args.dim, seed=args.n,
                                           data=args.data)
    unit = np.ascontiguousarray(
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32)
    sample = np.random.default_rng(0).choice(args.n, 1000, replace=False)
    rows, raw = [], []
    for name, (module, build) in CANDIDATES.items():
        try:
            __import__(module)
        except ImportError:
            rows.append([name, "not installed", "", "", "", "", ""])
            continue
        built, searched, first = build(unit, 2)
        _, _, second = build(unit, 2)
        _, _, single = build(unit, 1)
        first, second, single = (np.asarray(a)[:, :FETCH] for a in (
            first, second, single))
        result = {"name": name, "build_s": built, "search_s": searched,
                  "recall": recall_at_10(unit, first, sample),
                  "same_run_to_run": bool(np.array_equal(first, second)),
                  "same_1_vs_2_threads": bool(np.array_equal(first, single))}
        raw.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
        rows.append([name, f"{built:.1f} s", f"{searched:.1f} s",
                     f"{built + searched:.1f} s",
                     f"{100 * result['recall']:.2f}%",
                     "yes" if result["same_run_to_run"] else "no",
                     "yes" if result["same_1_vs_2_threads"] else "no"])
    print(f"\n### ANN candidates, {args.n:,} x {args.dim} ({args.data}), "
          f"{FETCH} neighbours of every point, 2 threads\n")
    print(tools_benchmark.md_table(
        ["library (parameters)", "build", "query all", "total",
         "recall@10", "identical run to run", "identical 1 vs 2 threads"],
        rows))
    os.makedirs(tools_benchmark.RESULTS, exist_ok=True)
    path = os.path.join(tools_benchmark.RESULTS,
                        f"tools_ann_choice_{args.data}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"command": " ".join(sys.argv), "results": raw}, f,
                  indent=1)


if __name__ == "__main__":
    main()
