"""Beam `build_graph` (DirectRunner, 2 processes) against `nsl.tools.build_graph`."""

import os
import subprocess
import sys

import numpy as np
import pytest

apache_beam = pytest.importorskip(
    "apache_beam", reason="apache_beam is not installed: the Beam pipelines "
    "are tested in .venv-beam (pip install "
    "'neural-structured-learning-keras[beam]')")

# pylint: disable=wrong-import-position
from neural_structured_learning import tools
from neural_structured_learning.tools import beam
from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import tfrecord

OPTIONS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _write_embeddings(tmp_path, n=240, d=6, seed=0):
    rng = np.random.RandomState(seed)
    vectors = rng.randn(n, d).astype(np.float32)
    vectors[7] = vectors[3]  # exact ties
    vectors[11] = vectors[3]
    ids = [f"n{i}" for i in range(n)]
    records = [example_proto.make_example(
        {"id": [ids[i]], "embedding": vectors[i]}).SerializeToString()
               for i in range(n)]
    # id n5 again in the second file, with another embedding: the last wins.
    records.append(example_proto.make_example(
        {"id": ["n5"], "embedding": rng.randn(d).tolist()}).SerializeToString())
    records.append(example_proto.make_example(
        {"id": ["no-embedding"]}).SerializeToString())
    tfrecord.write_records(tmp_path / "emb-0.tfr", records[:100])
    tfrecord.write_records(tmp_path / "emb-1.tfr", records[100:])
    return str(tmp_path / "emb-*.tfr")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("settings", [
    dict(similarity_threshold=0.6),
    dict(similarity_threshold=0.3, top_k=4),
    dict(similarity_threshold=0.5, lsh_splits=2, lsh_rounds=2,
         random_seed=7),
], ids=["threshold", "top_k", "lsh"])
def test_same_tsv_as_single_machine(tmp_path, settings):
    embeddings = _write_embeddings(tmp_path)
    expected = tmp_path / "single.tsv"
    tools.build_graph(embeddings, str(expected), progress=False, **settings)
    out = tmp_path / "beam.tsv"
    beam.build_graph(embeddings, str(out), num_shards=3, output_shards=1,
                     pipeline_options=OPTIONS, **settings)
    assert _read(out) == _read(expected)
    assert _read(expected).count(b"\n") > 100
    assert sorted(os.listdir(tmp_path)) == ["beam.tsv", "emb-0.tfr",
                                            "emb-1.tfr", "single.tsv"]


def test_sharded_output_concatenates_to_single_file(tmp_path):
    embeddings = _write_embeddings(tmp_path)
    expected = tmp_path / "single.tsv"
    tools.build_graph(embeddings, str(expected), similarity_threshold=0.5,
                      progress=False)
    out = tmp_path / "graph.tsv"
    beam.build_graph(embeddings, str(out), similarity_threshold=0.5,
                     num_shards=2, output_shards=3,
                     pipeline_options=OPTIONS)
    shards = [tmp_path / f"graph.tsv-0000{i}-of-00003" for i in range(3)]
    assert b"".join(_read(s) for s in shards) == _read(expected)
    assert all(_read(s) for s in shards)  # split by key quantiles
    # Framework-free: no deep-learning framework was imported (the worker
    # processes import the same modules as this one).
    assert not {"tensorflow", "keras", "torch", "jax"} & set(sys.modules)


def test_ann_edges_are_valid(tmp_path):
    embeddings = _write_embeddings(tmp_path)
    exact = tmp_path / "exact.tsv"
    tools.build_graph(embeddings, str(exact), similarity_threshold=0.0,
                      top_k=3, progress=False)
    out = tmp_path / "ann.tsv"
    beam.build_graph(embeddings, str(out), similarity_threshold=0.0, top_k=3,
                     method="ann", num_shards=2, pipeline_options=OPTIONS)
    found = set(_read(out).splitlines())
    wanted = set(_read(exact).splitlines())
    assert len(found & wanted) >= 0.9 * len(wanted)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        beam.build_graph(str(tmp_path / "missing.tfr"),
                         str(tmp_path / "g.tsv"))
    with pytest.raises(FileNotFoundError, match="output directory"):
        beam.build_graph(_write_embeddings(tmp_path),
                         str(tmp_path / "no" / "g.tsv"))
    with pytest.raises(ValueError, match="method='ann'"):
        beam.build_graph(_write_embeddings(tmp_path),
                         str(tmp_path / "g.tsv"), method="ann")
    with pytest.raises(ValueError, match="num_shards"):
        beam.build_graph(_write_embeddings(tmp_path),
                         str(tmp_path / "g.tsv"), num_shards=0)
    # Embeddings of two widths: the pipeline fails and writes nothing.
    tfrecord.write_records(tmp_path / "wide.tfr", [
        example_proto.make_example({"id": ["w"], "embedding": [1.0] * 9})
        .SerializeToString()])
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(beam.PipelineError, match="different widths"):
        beam.build_graph([str(tmp_path / "emb-0.tfr"),
                          str(tmp_path / "wide.tfr")],
                         str(tmp_path / "g.tsv"), pipeline_options=OPTIONS)
    assert sorted(os.listdir(tmp_path)) == before


def test_command_line(tmp_path):
    embeddings = _write_embeddings(tmp_path)
    expected = tmp_path / "single.tsv"
    tools.build_graph(embeddings, str(expected), similarity_threshold=0.6,
                      progress=False)
    out = tmp_path / "cli.tsv"
    result = subprocess.run(
        [sys.executable, "-m", "neural_structured_learning.cli",
         "beam-build-graph", "--similarity_threshold=0.6", "--num_shards=2",
         "--runner=DirectRunner", *OPTIONS, embeddings, str(out)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _read(out) == _read(expected)
    bad = subprocess.run(
        [sys.executable, "-m", "neural_structured_learning.cli",
         "beam-build-graph", str(tmp_path / "missing*.tfr"), str(out)],
        capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "nsl beam-build-graph: error:" in bad.stderr
    assert "matches no file" in bad.stderr
