"""Cross-check against the real NSL 1.4.0 tools, run in a separate Python.

Set `NSL14_PYTHON` to a Python that has `neural-structured-learning==1.4.0`
and TensorFlow (default: /work/venv-nsl14/bin/python). Without it the test is
skipped with a message saying so.
"""

import json
import os
import subprocess

import numpy as np
import pytest

from neural_structured_learning import tools
from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import tfrecord
from neural_structured_learning.tools._test_util import read_examples

NSL14_PYTHON = os.environ.get("NSL14_PYTHON", "/work/venv-nsl14/bin/python")

# Runs 1.4's build_graph and pack_nbrs. 1.4's read_tsv_graph opens files with
# mode 'rU', removed in Python 3.11; the shim maps it to 'r'.
_NSL14_SCRIPT = r"""
import builtins, importlib, json, sys
_open = builtins.open
builtins.open = lambda f, mode='r', *a, **k: _open(
    f, mode.replace('U', ''), *a, **k)
args = json.loads(sys.argv[1])
build_graph = importlib.import_module(
    'neural_structured_learning.tools.build_graph')
pack_nbrs = importlib.import_module('neural_structured_learning.tools.pack_nbrs')
for call in args['build_graph']:
    build_graph.build_graph(*call['args'], **call['kwargs'])
for call in args['pack_nbrs']:
    pack_nbrs.pack_nbrs(*call['args'], **call['kwargs'])
print('NSL14-OK')
"""


def _write_embeddings(path, ids, vectors):
    tfrecord.write_records(path, [example_proto.make_example(
        {"id": [i], "embedding": v.tolist()}).SerializeToString()
                                  for i, v in zip(ids, vectors)])
    return str(path)


def test_outputs_equal_nsl14(tmp_path):
    if not os.path.exists(NSL14_PYTHON):
        pytest.skip(f"NSL 1.4 cross-check SKIPPED: no Python with NSL 1.4.0 "
                    f"at NSL14_PYTHON={NSL14_PYTHON!r}; set NSL14_PYTHON to a "
                    "Python with neural-structured-learning==1.4.0 and "
                    "tensorflow to run it.")
    rng = np.random.default_rng(14)
    n = 120
    ids = [f"n{i}" for i in range(n)]
    centers = rng.standard_normal((6, 8))
    vectors = (centers[rng.integers(0, 6, n)]
               + 0.6 * rng.standard_normal((n, 8))).astype(np.float32)
    embeddings = _write_embeddings(tmp_path / "emb.tfr", ids, vectors)
    circle = [[np.cos(2 * np.pi * k / 20) * 1.1**k,
               np.sin(2 * np.pi * k / 20) * 1.1**k] for k in range(20)]
    circle_file = _write_embeddings(tmp_path / "circle.tfr",
                                    [f"id_{k}" for k in range(20)],
                                    np.array(circle, np.float32))
    # A graph with tied weights, duplicates, a self-loop and dangling ids.
    graph = tmp_path / "graph.tsv"
    with open(graph, "w", encoding="utf-8") as f:
        for _ in range(600):
            a, b = rng.integers(0, n + 5, 2)
            f.write(f"n{a}\tn{b}\t{rng.choice([0.25, 0.5, 0.75, 1.0])}\n")
        f.write("n1\tn1\t0.9\n")
    labeled = tmp_path / "lab.tfr"
    unlabeled = tmp_path / "unl.tfr"
    features = [{"id": [i], "label": [k % 3], "x": vectors[k].tolist()}
                for k, i in enumerate(ids)]
    # Features whose names collide with the packed ones (1.4 appends to
    # NL_num_nbrs / NL_nbr_<i>_weight, a neighbour's "weight" overwrites
    # NL_nbr_<i>_weight) and bytes that look like a renamed prefix.
    for k in (3, 17, 42):
        features[k].update(NL_num_nbrs=[7], NL_nbr_0_weight=[0.25])
    for k in (5, 90, 101):
        features[k].update(weight=[9.0], text=[b"NL_nbr_0_x", b""])
    tfrecord.write_records(labeled, [example_proto.make_example(
        f).SerializeToString() for f in features[:80]])
    tfrecord.write_records(unlabeled, [example_proto.make_example(
        f).SerializeToString() for f in features[80:]])

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    graph_calls = [
        ([embeddings], "exact.tsv", {"similarity_threshold": 0.6}),
        ([circle_file], "lsh.tsv", {"similarity_threshold": 0.9,
                                    "lsh_splits": 2, "lsh_rounds": 1,
                                    "random_seed": 12345}),
    ]
    pack_calls = [
        ("pack_dir.tfr", {"add_undirected_edges": False, "max_nbrs": None}),
        ("pack_und.tfr", {"add_undirected_edges": True, "max_nbrs": 3}),
        # All neighbours: some examples get more than 10.
        ("pack_all.tfr", {"add_undirected_edges": True, "max_nbrs": None}),
    ]
    spec = {"build_graph": [
        {"args": [files, str(theirs / name)], "kwargs": kwargs}
        for files, name, kwargs in graph_calls], "pack_nbrs": [
            {"args": [str(labeled), str(unlabeled), str(graph),
                      str(theirs / name)], "kwargs": kwargs}
            for name, kwargs in pack_calls]}
    # -I and cwd keep this checkout's `neural_structured_learning` (the port)
    # off the path of the 1.4 interpreter.
    result = subprocess.run([NSL14_PYTHON, "-I", "-c", _NSL14_SCRIPT,
                             json.dumps(spec)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            check=False)
    assert "NSL14-OK" in result.stdout, result.stderr[-3000:]

    for files, name, kwargs in graph_calls:
        tools.build_graph(files, ours / name, **kwargs)
        # 1.4's line order and edge orientation follow set iteration order;
        # the set of lines is what must agree.
        with open(ours / name, encoding="utf-8") as f:
            our_lines = f.read().splitlines()
        with open(theirs / name, encoding="utf-8") as f:
            their_lines = f.read().splitlines()
        assert our_lines == sorted(their_lines), name
        assert len(our_lines) > 20
    for name, kwargs in pack_calls:
        tools.pack_nbrs(str(labeled), str(unlabeled), str(graph),
                        str(ours / name), **kwargs)
        assert read_examples(ours / name) == read_examples(theirs / name)
    packed_all = read_examples(ours / "pack_all.tfr")
    assert max(r["NL_num_nbrs"][-1] for r in packed_all) > 10
