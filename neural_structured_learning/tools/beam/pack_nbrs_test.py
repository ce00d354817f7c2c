"""Beam `pack_nbrs` (DirectRunner, 2 processes) against `nsl.tools.pack_nbrs`."""

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
import pyarrow.parquet as pq

from neural_structured_learning import tools
from neural_structured_learning.tools import beam
from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import tfrecord

OPTIONS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _inputs(tmp_path, seed=0):
    """Labeled (2 files, a repeated id), unlabeled (overlapping ids), graph
    (duplicate edges, tied weights, self-loops, unknown ids)."""
    rng = np.random.RandomState(seed)

    def example(i, labeled):
        features = {"id": [f"n{i}"], "x": rng.randn(3).tolist(),
                    "words": [b"a", b"b"][:i % 3]}
        if labeled:
            features["label"] = [i % 3]
        return example_proto.make_example(features).SerializeToString()

    labeled = [example(i, True) for i in range(40)] + [example(5, True)]
    unlabeled = [example(i, False) for i in range(30, 80)]
    tfrecord.write_records(tmp_path / "lab-0.tfr", labeled[:20])
    tfrecord.write_records(tmp_path / "lab-1.tfr", labeled[20:])
    tfrecord.write_records(tmp_path / "unl.tfr", unlabeled)
    with open(tmp_path / "graph.tsv", "w") as f:
        for _ in range(500):
            a, b = rng.randint(0, 90, 2)
            weight = rng.choice([0.5, 0.25, round(rng.rand(), 6)])
            f.write(f"n{a}\tn{b}\t{weight:f}\n")
        f.write("n1\tn2\n")  # no weight: 1.0
    return (str(tmp_path / "lab-*.tfr"), str(tmp_path / "unl.tfr"),
            str(tmp_path / "graph.tsv"))


def _parsed(records):
    return [example_proto.example_to_dict(example_proto.Example.FromString(r))
            for r in records]


@pytest.mark.parametrize("settings", [
    dict(max_nbrs=3),
    dict(add_undirected_edges=True, unlabeled_label=-1),
], ids=["max_nbrs", "undirected_unlabeled"])
def test_same_examples_as_single_machine(tmp_path, settings):
    labeled, unlabeled, graph = _inputs(tmp_path)
    expected = tmp_path / "single.tfr"
    tools.pack_nbrs(labeled, unlabeled, graph, str(expected), progress=False,
                    **settings)
    out = tmp_path / "beam.tfr"
    beam.pack_nbrs(labeled, unlabeled, graph, str(out),
                   pipeline_options=OPTIONS, **settings)
    want = _parsed(tfrecord.iter_records(str(expected)))
    assert _parsed(tfrecord.iter_records(str(out))) == want  # same order
    assert any(e["NL_num_nbrs"][0] > 1 for e in want)
    # Sharded: the shards, in name order, are the single file.
    beam.pack_nbrs(labeled, unlabeled, graph, str(tmp_path / "sharded.tfr"),
                   output_shards=3, pipeline_options=OPTIONS, **settings)
    shards = sorted(str(p) for p in tmp_path.glob("sharded.tfr-*-of-00003"))
    assert len(shards) == 3
    assert _parsed(tfrecord.iter_records(shards)) == want
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_parquet_in_and_out(tmp_path):
    labeled, unlabeled, graph = _inputs(tmp_path)
    expected = tmp_path / "single.tfr"
    tools.pack_nbrs(labeled, unlabeled, graph, str(expected), max_nbrs=2,
                    progress=False)
    # The same examples as Parquet (one column per feature) ...
    out_parquet = tmp_path / "lab.parquet"
    beam.pack_nbrs(labeled, "", graph, str(out_parquet), max_nbrs=0,
                   pipeline_options=OPTIONS)
    table = pq.read_table(out_parquet)
    assert "label" in table.column_names
    # ... in again (labeled as Parquet, unlabeled as TFRecord).
    beam.pack_nbrs(str(out_parquet), unlabeled, graph,
                   str(tmp_path / "out.tfr"), max_nbrs=2,
                   pipeline_options=OPTIONS)
    got = _parsed(tfrecord.iter_records(str(tmp_path / "out.tfr")))
    want = _parsed(tfrecord.iter_records(str(expected)))
    # The Parquet round trip added NL_num_nbrs = [0] from the first run, and
    # the second run appended its own count to it.
    for example in got:
        assert example["NL_num_nbrs"][0] == 0
        example["NL_num_nbrs"] = example["NL_num_nbrs"][1:]
        for name in [n for n in example if n.endswith("_NL_num_nbrs")]:
            del example[name]
    assert got == want


def test_errors_leave_no_output(tmp_path):
    labeled, unlabeled, graph = _inputs(tmp_path)
    tfrecord.write_records(tmp_path / "empty.tfr", [])
    (tmp_path / "bad.tsv").write_text("n1\tn2\t0.5\nn3\n")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(beam.PipelineError, match="No labeled examples"):
        beam.pack_nbrs(str(tmp_path / "empty.tfr"), unlabeled, graph,
                       str(tmp_path / "out.tfr"), pipeline_options=OPTIONS)
    with pytest.raises(beam.PipelineError,
                       match="Malformed graph file .*bad.tsv', line 2"):
        beam.pack_nbrs(labeled, unlabeled, str(tmp_path / "bad.tsv"),
                       str(tmp_path / "out.tfr"), pipeline_options=OPTIONS)
    assert sorted(os.listdir(tmp_path)) == before
    with pytest.raises(FileNotFoundError, match="matches no file"):
        beam.pack_nbrs(str(tmp_path / "nothing-*.tfr"), "", graph,
                       str(tmp_path / "out.tfr"))
    with pytest.raises(ValueError, match="max_nbrs"):
        beam.pack_nbrs(labeled, "", graph, str(tmp_path / "out.tfr"),
                       max_nbrs=-1)


def test_command_line(tmp_path):
    labeled, unlabeled, graph = _inputs(tmp_path)
    expected = tmp_path / "single.tfr"
    tools.pack_nbrs(labeled, unlabeled, graph, str(expected), max_nbrs=2,
                    progress=False)
    out = tmp_path / "cli.tfr"
    command = [sys.executable, "-m", "neural_structured_learning.cli",
               "beam-pack-nbrs", "--max_nbrs=2", *OPTIONS]
    result = subprocess.run(command + [labeled, unlabeled, graph, str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (_parsed(tfrecord.iter_records(str(out)))
            == _parsed(tfrecord.iter_records(str(expected))))
    bad = subprocess.run(command + [labeled, unlabeled, str(out)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "expected 4, got 3" in bad.stderr


def test_without_beam_the_error_names_the_package():
    code = ("import sys; sys.modules['apache_beam'] = None\n"
            "from neural_structured_learning.tools import beam\n"
            "try:\n"
            "    beam.pack_nbrs('a', '', 'g', 'o')\n"
            "except ModuleNotFoundError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert "apache_beam" in result.stdout and "[beam]" in result.stdout
