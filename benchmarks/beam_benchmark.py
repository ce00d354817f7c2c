"""Beam `pack_nbrs` at scale on the DirectRunner, and the single-machine limits.

For each size `examples:edges`, writes synthetic sharded inputs (half the
examples labeled, each with an id, a label and 16 floats; a random graph
TSV), then runs

* the Beam pipeline (`nsl.tools.beam.pack_nbrs`, DirectRunner,
  `--direct_num_workers=W --direct_running_mode=multi_processing`), sampling
  the resident memory (RSS, from psutil) of the driver and of each worker
  process every 0.2 s; and
* unless `--no-single`, the single-machine `nsl.tools.pack_nbrs` in a fresh
  process, recording its peak RSS (`ru_maxrss`).

It prints a Markdown table, extrapolates the single-machine peak linearly in
the input size to 24 GB (labelled as an extrapolation), and saves JSON.
Run it in the environment that has Apache Beam (`.venv-beam`):

    .venv-beam/bin/python benchmarks/beam_benchmark.py \\
        --sizes 10000:100000 100000:1000000

(`--sizes 1000000:10000000` is the 1M examples / 10M edges run.)
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

_SINGLE = """
import resource, sys, time
from neural_structured_learning import tools
start = time.time()
tools.pack_nbrs(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                max_nbrs=int(sys.argv[5]), progress=False)
print(time.time() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)


def make_inputs(directory, num_examples, num_edges, shards, seed=0):
    """Writes labeled/unlabeled TFRecord shards and graph TSV shards."""
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import example_proto
    from neural_structured_learning.tools import tfrecord
    rng = np.random.RandomState(seed)
    features = rng.randn(num_examples, 16).astype(np.float32)
    labeled = rng.rand(num_examples) < 0.5
    for kind, mask in (("labeled", labeled), ("unlabeled", ~labeled)):
        rows = np.flatnonzero(mask)
        for shard, part in enumerate(np.array_split(rows, shards)):
            records = []
            for i in part.tolist():
                values = {"id": [f"n{i}"], "x": features[i]}
                if kind == "labeled":
                    values["label"] = [i % 10]
                records.append(example_proto.make_example(
                    values).SerializeToString())
            tfrecord.write_records(
                os.path.join(directory, f"{kind}-{shard:03d}.tfr"), records)
        _log(f"wrote {mask.sum()} {kind} examples")
    src = rng.randint(0, num_examples, num_edges)
    dst = rng.randint(0, num_examples, num_edges)
    weights = rng.rand(num_edges)
    for shard, part in enumerate(np.array_split(np.arange(num_edges),
                                                shards)):
        with open(os.path.join(directory, f"graph-{shard:03d}.tsv"),
                  "w") as f:
            f.write("".join(f"n{s}\tn{t}\t{w:f}\n" for s, t, w in zip(
                src[part].tolist(), dst[part].tolist(),
                weights[part].tolist())))
    _log(f"wrote {num_edges} edges")
    return (os.path.join(directory, "labeled-*.tfr"),
            os.path.join(directory, "unlabeled-*.tfr"),
            os.path.join(directory, "graph-*.tsv"))


class _MemorySampler:
    """Peak RSS of this process and each of its descendants (psutil)."""

    def __init__(self, interval=0.2):
        import psutil  # pylint: disable=import-outside-toplevel
        self._psutil = psutil
        self._interval = interval
        self.peaks = {}  # pid -> (peak bytes, command line)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _run(self):
        me = self._psutil.Process()
        while not self._stop.is_set():
            for process in [me] + me.children(recursive=True):
                try:
                    rss = process.memory_info().rss
                    name = " ".join(process.cmdline()[1:3])
                except self._psutil.Error:
                    continue
                peak, _ = self.peaks.get(process.pid, (0, name))
                self.peaks[process.pid] = (max(peak, rss), name)
            self._stop.wait(self._interval)


def run_beam(inputs, output, workers, max_nbrs):
    from neural_structured_learning.tools import beam  # pylint: disable=import-outside-toplevel
    options = [f"--direct_num_workers={workers}",
               "--direct_running_mode=multi_processing"]
    start = time.time()
    with _MemorySampler() as sampler:
        beam.pack_nbrs(*inputs, output, max_nbrs=max_nbrs,
                       pipeline_options=options)
    seconds = time.time() - start
    me = os.getpid()
    driver = sampler.peaks.get(me, (0, ""))[0]
    workers_peak = sorted(
        (peak for pid, (peak, name) in sampler.peaks.items()
         if pid != me and "sdk_worker" in name and peak > 20 * 2**20),
        reverse=True)  # (the tiny ones are `sh -c` launchers)
    others = sorted((peak for pid, (peak, name) in sampler.peaks.items()
                     if pid != me and "sdk_worker" not in name),
                    reverse=True)
    return {"seconds": seconds, "driver_peak_mb": driver / 2**20,
            "worker_peaks_mb": [p / 2**20 for p in workers_peak],
            "other_process_peaks_mb": [p / 2**20 for p in others]}


def run_single(inputs, output, max_nbrs):
    result = subprocess.run(
        [sys.executable, "-c", _SINGLE, *inputs, output, str(max_nbrs)],
        capture_output=True, text=True, check=True)
    seconds, maxrss_kb = result.stdout.split()
    return {"seconds": float(seconds), "peak_mb": int(maxrss_kb) / 1024}


def _input_bytes(inputs):
    import glob  # pylint: disable=import-outside-toplevel
    return sum(os.path.getsize(p) for pattern in inputs
               for p in glob.glob(pattern))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10000:100000"],
                        help="examples:edges per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8,
                        help="input files of each kind")
    parser.add_argument("--max_nbrs", type=int, default=3)
    parser.add_argument("--no-single", dest="single", action="store_false")
    parser.add_argument("--no-beam", dest="beam", action="store_false",
                        help="only the single-machine pack_nbrs")
    parser.add_argument("--budget_gb", type=float, default=24.0)
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        "beam_benchmark.json"))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        num_examples, num_edges = (int(x) for x in size.split(":"))
        with tempfile.TemporaryDirectory(prefix="nsl-beam-bench-") as tmp:
            _log(f"size {num_examples} examples / {num_edges} edges")
            inputs = make_inputs(tmp, num_examples, num_edges, args.shards)
            row = {"examples": num_examples, "edges": num_edges,
                   "input_mb": _input_bytes(inputs) / 2**20}
            if args.single:
                _log("single-machine pack_nbrs...")
                row["single"] = run_single(
                    inputs, os.path.join(tmp, "single.tfr"), args.max_nbrs)
                _log(f"  {row['single']['seconds']:.1f} s")
                os.remove(os.path.join(tmp, "single.tfr"))
            rows.append(row)
            _save(args, rows)
            if not args.beam:
                continue
            _log("Beam pack_nbrs (DirectRunner)...")
            row["beam"] = run_beam(inputs, os.path.join(tmp, "beam.tfr"),
                                   args.workers, args.max_nbrs)
            _log(f"  {row['beam']['seconds']:.1f} s")
            _save(args, rows)  # after each size: a later one may run out of memory


def _save(args, rows):
    report = {"rows": rows, "workers": args.workers, "max_nbrs":
              args.max_nbrs, "cpu_count": os.cpu_count(),
              "machine": platform.platform(), "python": sys.version.split()[0]}
    singles = [r for r in rows if "single" in r]
    if len(singles) >= 2:
        # Peak memory vs. examples + edges, a line through the two largest.
        a, b = sorted(singles, key=lambda r: r["edges"])[-2:]
        size_a, size_b = (r["examples"] + r["edges"] for r in (a, b))
        slope = (b["single"]["peak_mb"] - a["single"]["peak_mb"]) / (
            size_b - size_a)
        fits = size_b + (args.budget_gb * 1024 - b["single"]["peak_mb"]) / (
            slope or float("inf"))
        ratio = b["edges"] / b["examples"]
        report["single_machine_extrapolation"] = {
            "mb_per_million_items": slope * 1e6,
            "items_fitting_budget": fits,
            "examples_fitting_budget": fits / (1 + ratio),
            "edges_fitting_budget": fits * ratio / (1 + ratio),
            "budget_gb": args.budget_gb}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1)
    print("| examples | edges | input MB | Beam time (s) | Beam driver "
          "peak MB | Beam worker peaks MB | single-machine time (s) | "
          "single-machine peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        single = r.get("single", {})
        r = dict(r, beam=r.get("beam", {"seconds": float("nan"),
                                        "driver_peak_mb": float("nan"),
                                        "worker_peaks_mb": []}))
        print(f"| {r['examples']:,} | {r['edges']:,} | {r['input_mb']:.0f} | "
              f"{r['beam']['seconds']:.1f} | "
              f"{r['beam']['driver_peak_mb']:.0f} | "
              + ", ".join(f"{p:.0f}" for p in r["beam"]["worker_peaks_mb"])
              + f" | {single.get('seconds', float('nan')):.1f} | "
              f"{single.get('peak_mb', float('nan')):.0f} |")
    extrapolation = report.get("single_machine_extrapolation")
    if extrapolation:
        print(f"\nExtrapolation (linear through the two largest sizes): the "
              f"single-machine pack_nbrs peaks at "
              f"{args.budget_gb:g} GB near "
              f"{extrapolation['examples_fitting_budget'] / 1e6:.0f}M "
              f"examples / {extrapolation['edges_fitting_budget'] / 1e6:.0f}M "
              "edges.")
    print(f"\nSaved {args.output}", flush=True)


if __name__ == "__main__":
    main()
