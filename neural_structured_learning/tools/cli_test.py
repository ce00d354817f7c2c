"""Tests for the command lines: `nsl` (cli.py) and `python -m ...tools.*`."""

import importlib
import os
import subprocess
import sys

import pytest

from neural_structured_learning import cli
from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import graph_utils
from neural_structured_learning.tools import tfrecord
from neural_structured_learning.tools._test_util import write_examples

build_graph_module = importlib.import_module(
    "neural_structured_learning.tools.build_graph")
pack_nbrs_module = importlib.import_module(
    "neural_structured_learning.tools.pack_nbrs")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(name="data")
def _data(tmp_path):
    """Labeled A, C; unlabeled B; NSL 1.4's test graph; 3 embeddings."""
    graph = tmp_path / "graph.tsv"
    graph_utils.write_tsv_graph(
        graph, {"A": {"B": 0.5, "C": 0.9}, "B": {"A": 0.4, "C": 1.0}})
    embeddings = write_examples(tmp_path / "emb.tfr", [
        {"id": ["A"], "embedding": [1.0, 1.0, 0.0]},
        {"id": ["B"], "embedding": [1.0, 0.0, 1.0]},
        {"id": ["C"], "embedding": [0.0, 1.0, 1.0]}])
    return {
        "labeled": write_examples(tmp_path / "lab.tfr", [
            {"id": ["A"], "label": [0]}, {"id": ["C"], "label": [2]}]),
        "unlabeled": write_examples(tmp_path / "unl.tfr",
                                    [{"id": ["B"], "label": [1]}]),
        "graph": str(graph), "embeddings": embeddings,
        "out": str(tmp_path / "out"), "dir": tmp_path}


def num_nbrs(path):
    return [example_proto.Example.FromString(r).features.feature[
        "NL_num_nbrs"].int64_list.value[0] for r in tfrecord.iter_records(path)]


@pytest.mark.parametrize("flags,expected", [
    ([], [1, 0]),
    (["--add_undirected_edges"], [1, 1]),
    (["--add_undirected_edges=true"], [1, 1]),
    (["--add-undirected-edges"], [1, 1]),
    (["--add_undirected_edges", "--noadd_undirected_edges"], [1, 0]),
    (["--add_undirected_edges=false"], [1, 0]),
    (["--add_undirected_edges=1", "--max_nbrs=0"], [0, 0]),
    (["--max_nbrs", "0"], [0, 0]),
    (["-max_nbrs=0"], [0, 0]),
    (["--max-nbrs", "0", "--no-add-undirected-edges"], [0, 0]),
])
def test_pack_nbrs_flag_spellings(data, flags, expected):
    # Flags before, between and after the positional arguments.
    argv = [data["labeled"], ""] + flags + [data["graph"], data["out"]]
    assert cli.main(["pack-nbrs"] + argv) == 0
    assert num_nbrs(data["out"]) == expected
    os.remove(data["out"])
    assert pack_nbrs_module.main(flags + argv) == 0
    assert num_nbrs(data["out"]) == expected


def test_build_graph_commands(data):
    out = data["out"] + ".tsv"
    assert build_graph_module.main(
        ["--similarity_threshold", "0", data["embeddings"], out]) == 0
    with open(out, encoding="utf-8") as f:
        assert len(f.readlines()) == 6
    assert cli.main(["build-graph", "--similarity-threshold=0.51",
                     data["embeddings"], out]) == 0
    with open(out, encoding="utf-8") as f:
        assert f.read() == ""
    assert cli.main(["build-graph", "--similarity_threshold=-1", "--top_k=1",
                     "--method=exact", "--num_threads=1", data["embeddings"],
                     out]) == 0
    with open(out, encoding="utf-8") as f:
        # Top-1 with ties to the larger id: A->C, B->C, C->B; 2 edges.
        assert len(f.readlines()) == 4


@pytest.mark.parametrize("argv,message", [
    (["pack-nbrs", "a", "b", "c"],
     "Invalid number of arguments; expected 4, got 3"),
    (["build-graph", "only_one"],
     "Invalid number of arguments; expected 2 or more, got 1"),
    (["pack-nbrs", "--add_undirected_edges=maybe", "a", "b", "c", "d"],
     "argument --add_undirected_edges: expected true/false"),
    (["pack-nbrs", "--max_nbrs=x", "a", "b", "c", "d"],
     "argument --max_nbrs/--max-nbrs: invalid int value: 'x'"),
    (["build-graph", "--method=fast", "a", "b"],
     "argument --method: invalid choice: 'fast'"),
    (["pack-nbrs", "--max_nbr=1", "a", "b", "c", "d"],
     "unrecognized arguments: --max_nbr=1"),
    (["frobnicate"], "unknown command 'frobnicate'"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_input_errors_exit_1_with_one_line(data, capsys):
    with open(data["graph"], "a", encoding="utf-8") as f:
        f.write("broken line\n")
    assert cli.main(["pack-nbrs", data["labeled"], "", data["graph"],
                     data["out"]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nsl pack-nbrs: error: Malformed graph file ")
    assert "line 5" in err and "Traceback" not in err
    assert not os.path.exists(data["out"])


def test_help_and_version(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "build-graph" in out and "pack-nbrs" in out
    # Every command's help starts in one column, apart from its name.
    lines = out.split("commands:\n")[1].split("\n\n")[0].splitlines()
    starts = {len(line) - len(line.lstrip()[line.lstrip().index(" "):]
                                .lstrip()) for line in lines}
    assert len(lines) >= 6 and len(starts) == 1, lines
    assert all("  " in line.strip() for line in lines), lines
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("nsl ")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pack-nbrs", "--help"])
    assert exit_info.value.code == 0
    assert "--add_undirected_edges" in capsys.readouterr().out


def test_registering_a_subcommand():
    calls = []

    @cli.subcommand("test-echo", help="Echo for tests.")
    def _echo(parser):
        parser.add_argument("word")
        return lambda args: calls.append(args.word)

    try:
        assert cli.main(["test-echo", "hi"]) == 0
        assert calls == ["hi"]
        with pytest.raises(ValueError, match="already registered"):
            cli.subcommand("test-echo", help="again")(_echo)
    finally:
        del cli._SUBCOMMANDS["test-echo"]  # pylint: disable=protected-access


def test_python_dash_m_and_no_framework_import(data):
    # One real `python -m` run of the 1.4 command line; the child process
    # reports which deep-learning frameworks got imported (none may be).
    code = (
        "import runpy, sys\n"
        "sys.argv = ['pack_nbrs', '--add_undirected_edges', '--max_nbrs=1',"
        f" {data['labeled']!r}, {data['unlabeled']!r}, {data['graph']!r},"
        f" {data['out']!r}]\n"
        "try:\n"
        "    runpy.run_module('neural_structured_learning.tools.pack_nbrs',"
        " run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "import neural_structured_learning.cli\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'keras', 'tensorflow', 'jax', 'torch', 'absl'})\n"
        "print('FRAMEWORKS', bad)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "FRAMEWORKS []" in result.stdout
    assert "RuntimeWarning" not in result.stderr
    assert num_nbrs(data["out"]) == [1, 1]
    result = subprocess.run(
        [sys.executable, "-m", "neural_structured_learning.tools.build_graph",
         "--similarity_threshold=0", data["embeddings"], data["out"] + ".tsv"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        check=False)
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr
    assert "Wrote 3 undirected edges (6 lines)" in result.stderr
