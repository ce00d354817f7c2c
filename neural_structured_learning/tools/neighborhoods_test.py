"""Tests for neighborhoods.py (k-hop and personalized-PageRank neighbours)."""

import importlib
import os

import numpy as np
import pytest

from neural_structured_learning import cli
from neural_structured_learning import tools
from neural_structured_learning.tools import graph_utils
from neural_structured_learning.tools._test_util import read_examples
from neural_structured_learning.tools._test_util import write_examples

sparse = pytest.importorskip("scipy.sparse")
neighborhoods = importlib.import_module(
    "neural_structured_learning.tools.neighborhoods")


def _undirected(n, pairs, weights=None):
    """Dense `n x n` adjacency with both directions of each pair."""
    a = np.zeros((n, n))
    weights = np.ones(len(pairs)) if weights is None else weights
    for (i, j), w in zip(pairs, weights):
        a[i, j] = a[j, i] = w
    return a


PATH = _undirected(4, [(0, 1), (1, 2), (2, 3)])  # 0 - 1 - 2 - 3
STAR = _undirected(5, [(0, 1), (0, 2), (0, 3), (0, 4)],
                   [1., 2., 2., .5])  # Centre 0; leaves 2 and 3 tie.
# Directed and weighted, with a self-loop (0 -> 0), a node without
# out-edges (4) and a node without in-edges (3).
DIRECTED = np.array([[.5, 1., 0., 0., 2.],
                     [0., 0., 3., 0., 0.],
                     [1., 1., 0., 0., 1.],
                     [0., 2., 0., 0., 1.],
                     [0., 0., 0., 0., 0.]])
GRAPHS = {"path": PATH, "star": STAR, "directed": DIRECTED}


# -- Dense references: the documented formulas, with NumPy only ---------------


def dense_khop(a, k, normalization):
    """`sum_{h=1..k} M^h`, `M = D^-1/2 A D^-1/2` or `D^-1 A`."""
    degree = a.sum(axis=1)
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree),
                        where=degree > 0)
    if normalization == "row":
        m = inverse[:, None] * a
    else:
        m = np.sqrt(inverse)[:, None] * a * np.sqrt(inverse)[None, :]
    return sum(np.linalg.matrix_power(m, h) for h in range(1, k + 1))


def dense_ppr(a, alpha):
    """`Pi = alpha (I - (1 - alpha) P)^-1`, `P = D^-1 A`."""
    degree = a.sum(axis=1)
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree),
                        where=degree > 0)
    p = inverse[:, None] * a
    return alpha * np.linalg.inv(np.eye(len(a)) - (1 - alpha) * p)


def expected_edges(scores, top_k, renormalize=False):
    """Per row: the `top_k` off-diagonal positive entries, `Graph` order."""
    ids = np.arange(len(scores)).astype(str)
    rank = graph_utils.string_rank(ids)
    rows = []
    for i, row in enumerate(scores):
        entries = [(j, np.float32(w)) for j, w in enumerate(row)
                   if j != i and np.float32(w) > 0]
        entries.sort(key=lambda e: (-e[1], -rank[e[0]]))
        entries = entries[:top_k]
        if renormalize and entries:
            total = sum(float(w) for _, w in entries)
            entries = [(j, np.float32(w / total)) for j, w in entries]
        rows.append(entries)
    return rows


def edges(graph):
    """`[[(target row, weight), ...] per row]` of a `Graph`."""
    return [list(zip(*(x.tolist() for x in graph.neighbors(r))))
            for r in range(graph.num_nodes)]


def assert_edges(graph, expected, rtol=1e-6):
    actual = edges(graph)
    assert [[j for j, _ in row] for row in actual] == [
        [j for j, _ in row] for row in expected]
    np.testing.assert_allclose(
        [w for row in actual for _, w in row],
        [float(w) for row in expected for _, w in row], rtol=rtol)


def assert_same_graph(a, b):
    for name in ("ids", "indptr", "indices", "weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name),
                                      err_msg=name)


# -- Exact values against the dense formulas ----------------------------------


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("normalization", ["symmetric", "row"])
def test_khop_matches_dense_matrix_powers(name, k, normalization):
    a = GRAPHS[name]
    graph = tools.khop_neighbors(sparse.csr_array(a), k, top_k=3,
                                 normalization=normalization)
    assert_edges(graph, expected_edges(dense_khop(a, k, normalization), 3))
    assert graph.weights.dtype == np.float32
    np.testing.assert_array_equal(graph.ids, np.arange(len(a)).astype(str))


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_ppr_matches_the_dense_inverse(name, alpha):
    a = GRAPHS[name]
    graph = tools.ppr_neighbors(sparse.csr_array(a), alpha, top_k=4,
                                tol=1e-12)
    assert_edges(graph, expected_edges(dense_ppr(a, alpha), 4))


def test_known_values_on_the_path():
    # Row normalisation on 0 - 1 - 2 - 3: M[0] = [0, 1, 0, 0],
    # M^2[0] = [.5, 0, .5, 0]; M[1] = [.5, 0, .5, 0], M^2[1] = [0, .75, 0, .25].
    graph = tools.khop_neighbors(sparse.csr_array(PATH), k=2, top_k=3,
                                 normalization="row")
    assert edges(graph)[:2] == [[(1, 1.0), (2, 0.5)],
                                [(2, 0.5), (0, 0.5), (3, 0.25)]]
    # PPR, alpha = 1/2: Pi[0, 1] = 14/45 (solve (I - P/2) x = e_0 / 2 by
    # hand: x = [26, 14, 4, 1] / 45).
    graph = tools.ppr_neighbors(sparse.csr_array(PATH), alpha=0.5, top_k=3,
                                tol=1e-12)
    np.testing.assert_allclose(graph.weights[:3], [14 / 45, 4 / 45, 1 / 45],
                               rtol=1e-6)


def test_the_default_normalization_is_symmetric():
    a = sparse.csr_array(STAR)
    assert_same_graph(tools.khop_neighbors(a),
                      tools.khop_neighbors(a, normalization="symmetric"))
    assert_edges(tools.khop_neighbors(a),
                 expected_edges(dense_khop(STAR, 2, "symmetric"), 10))


# -- Selection: top_k, ties, self-loops, blocks -------------------------------


def test_top_k_keeps_the_heaviest_with_ties_to_the_larger_id():
    # Star with 11 equal leaves: from the centre all leaves tie; the larger
    # id in Python string order wins, so "9" > "8" > ... > "2" > "11" > "10".
    a = sparse.csr_array(_undirected(12, [(0, j) for j in range(1, 12)]))
    for function in (tools.khop_neighbors, tools.ppr_neighbors):
        graph = function(a, top_k=3)
        assert graph.ids[graph.neighbors(0)[0]].tolist() == ["9", "8", "7"]
        # A leaf: the centre first (heavier), then tied leaves by id.
        assert graph.ids[graph.neighbors(10)[0]].tolist() == ["0", "9", "8"]


def test_top_k_rows_are_prefixes_of_the_full_ranking():
    a = sparse.csr_array(sparse.random(30, 30, density=0.15, random_state=0))
    a = a + a.T
    for function in (tools.khop_neighbors, tools.ppr_neighbors):
        full = function(a, top_k=30)
        some = function(a, top_k=4)
        for row in range(30):
            for x, y in zip(some.neighbors(row), full.neighbors(row)):
                np.testing.assert_array_equal(x, y[:4])


def test_self_loops_are_never_neighbours():
    # A heavy self-loop makes S[i, i] and Pi[i, i] the largest entries.
    a = PATH + 10 * np.eye(4)
    # k = 2 does not link 0 and 3 (3 hops apart); PPR links every pair.
    for function, num_edges in ((tools.khop_neighbors, 10),
                                (tools.ppr_neighbors, 12)):
        graph = function(sparse.csr_array(a), top_k=3)
        for row in range(4):
            assert row not in graph.neighbors(row)[0].tolist()
        assert graph.num_edges == num_edges


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 100])
def test_block_size_does_not_change_the_result(block_size):
    a = sparse.csr_array(sparse.random(40, 40, density=0.1, random_state=1))
    assert_same_graph(
        tools.khop_neighbors(a, 3, 5, block_size=block_size),
        tools.khop_neighbors(a, 3, 5, block_size=1024))
    assert_same_graph(
        tools.ppr_neighbors(a, 0.2, 5, tol=1e-6, block_size=block_size),
        tools.ppr_neighbors(a, 0.2, 5, tol=1e-6, block_size=1024))


def test_renormalize_makes_rows_sum_to_one():
    a = sparse.csr_array(DIRECTED)
    for function, scores in (
            (tools.khop_neighbors, dense_khop(DIRECTED, 2, "symmetric")),
            (lambda x, **kw: tools.ppr_neighbors(x, tol=1e-12, **kw),
             dense_ppr(DIRECTED, 0.1))):
        graph = function(a, top_k=2, renormalize=True)
        assert_edges(graph, expected_edges(scores, 2, renormalize=True))
        rows = np.repeat(np.arange(5), np.diff(graph.indptr))
        np.testing.assert_allclose(np.bincount(rows, graph.weights, 5)[:4], 1,
                                   rtol=1e-6)  # Node 4 has no out-edge.


def test_graph_input_keeps_its_ids():
    graph = tools.load_graph_csr({"b": {"a": 1.0, "c": 1.0},
                                  "c": {"d": 1.0}},
                                 add_undirected_edges=True)
    assert graph.ids.tolist() == ["a", "b", "c", "d"]  # The path a-b-c-d.
    for function in (tools.khop_neighbors, tools.ppr_neighbors):
        result = function(graph, top_k=2)
        np.testing.assert_array_equal(result.ids, graph.ids)
        by_rows = function(sparse.csr_array(PATH), top_k=2)
        for name in ("indptr", "indices", "weights"):
            np.testing.assert_array_equal(getattr(result, name),
                                          getattr(by_rows, name))


def test_ppr_error_is_within_the_push_bound():
    # Undirected, unit weights: 0 <= Pi[s, v] - p[v] <= tol * deg(v)
    # (Andersen, Chung & Lang, 2006).
    rng = np.random.default_rng(2)
    pairs = {tuple(sorted(p)) for p in rng.integers(0, 60, (150, 2))
             if p[0] != p[1]}
    a = _undirected(60, sorted(pairs))
    tol = 1e-3
    graph = tools.ppr_neighbors(sparse.csr_array(a), 0.15, top_k=60, tol=tol)
    estimate = graph.to_scipy().toarray()  # Every p[v] > 0 was kept.
    gap = dense_ppr(a, 0.15) - estimate
    np.fill_diagonal(gap, 0)  # The sources themselves are not returned.
    degree = (a > 0).sum(axis=1)
    assert np.all(gap >= -1e-6)  # (float32 rounding)
    assert np.all(gap <= tol * degree[None, :] + 1e-6)
    assert gap.max() > tol / 10  # The bound is not trivially loose here.


def test_empty_and_edgeless_graphs():
    for n in (0, 3):
        a = sparse.csr_array((n, n))
        for function in (tools.khop_neighbors, tools.ppr_neighbors):
            graph = function(a)
            assert graph.num_nodes == n and graph.num_edges == 0


# -- Bad input ----------------------------------------------------------------


@pytest.mark.parametrize("call,message", [
    (lambda a: tools.khop_neighbors(a, k=0),
     r"`k` must be an integer >= 1. Received: k=0"),
    (lambda a: tools.khop_neighbors(a, k=1.5),
     r"`k` must be an integer >= 1. Received: k=1.5"),
    (lambda a: tools.khop_neighbors(a, top_k=0),
     r"`top_k` must be an integer >= 1. Received: top_k=0"),
    (lambda a: tools.ppr_neighbors(a, top_k=-2),
     r"`top_k` must be an integer >= 1. Received: top_k=-2"),
    (lambda a: tools.khop_neighbors(a, normalization="sym"),
     (r"`normalization` must be one of \['symmetric', 'row'\]. Received: "
      r"normalization='sym'")),
    (lambda a: tools.khop_neighbors(a, block_size=0),
     r"`block_size` must be an integer >= 1. Received: block_size=0"),
    (lambda a: tools.ppr_neighbors(a, alpha=0),
     r"`alpha` must be a number in \(0, 1\). Received: alpha=0"),
    (lambda a: tools.ppr_neighbors(a, alpha=1.0),
     r"`alpha` must be a number in \(0, 1\). Received: alpha=1.0"),
    (lambda a: tools.ppr_neighbors(a, alpha="0.1"),
     r"`alpha` must be a number in \(0, 1\). Received: alpha='0.1'"),
    (lambda a: tools.ppr_neighbors(a, tol=0),
     r"`tol` must be a number in \(0, 1\). Received: tol=0"),
])
def test_bad_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call(sparse.csr_array(PATH))


def test_bad_matrices():
    for function in (tools.khop_neighbors, tools.ppr_neighbors):
        with pytest.raises(ValueError, match=r"`adjacency` must be square, "
                           r"shape \(num_nodes, num_nodes\). Received shape "
                           r"\(3, 4\)"):
            function(sparse.csr_array(np.ones((3, 4))))
        negative = PATH.copy()
        negative[2, 1] = -1
        with pytest.raises(ValueError, match=r"`adjacency` weights must be "
                           r"finite and >= 0; 1 are not, e.g. '2' -> '1' "
                           r"with weight -1.0 \(not >= 0\)"):
            function(sparse.csr_array(negative))
        nan = PATH.copy()
        nan[0, 1] = np.nan
        with pytest.raises(ValueError, match=r"'0' -> '1' with weight nan "
                           r"\(not finite\)"):
            function(sparse.csr_array(nan))
        with pytest.raises(TypeError, match=r"`adjacency` must be a square "
                           r"scipy.sparse matrix or array, or an "
                           r"nsl.tools.Graph .* Received: ndarray"):
            function(PATH)


def test_negative_graph_weights_name_the_ids():
    graph = tools.load_graph_csr({"a": {"b": 1.0}, "b": {"c": -2.0}})
    with pytest.raises(ValueError, match=r"e.g. 'b' -> 'c' with weight -2.0"):
        tools.ppr_neighbors(graph)


# -- Files and the command line -----------------------------------------------


@pytest.fixture(name="path_tsv")
def _path_tsv(tmp_path):
    """The path a - b - c - d as a directed TSV (one line per edge)."""
    path = tmp_path / "graph.tsv"
    path.write_text("a\tb\t1\nb\tc\t1\nc\td\t1\n")
    return str(path)


def test_write_neighborhood_graph_round_trip(path_tsv, tmp_path):
    out = str(tmp_path / "khop.tsv")
    result = tools.write_neighborhood_graph(
        path_tsv, out, method="khop", k=2, top_k=2, normalization="row",
        add_undirected_edges=True)
    # Rows as in test_known_values_on_the_path, with ids a..d; ties go to
    # the larger id.
    with open(out, encoding="utf-8") as f:
        assert f.read() == ("a\tb\t1\na\tc\t0.5\n"
                            "b\tc\t0.5\nb\ta\t0.5\n"
                            "c\td\t0.5\nc\tb\t0.5\n"
                            "d\tc\t1\nd\tb\t0.5\n")
    assert_same_graph(graph_utils.load_graph_csr(out), result)
    # PPR scores read back exactly (9 significant digits).
    ppr = tools.write_neighborhood_graph(path_tsv, out, top_k=3, alpha=0.3,
                                         add_undirected_edges=True)
    assert_same_graph(graph_utils.load_graph_csr(out), ppr)


def test_pack_nbrs_packs_the_written_neighbours(path_tsv, tmp_path):
    pytest.importorskip("google.protobuf")
    examples = [{"id": [name.encode()], "x": [float(i)]}
                for i, name in enumerate("abcd")]
    labeled = write_examples(tmp_path / "lab.tfr", examples)
    out = str(tmp_path / "ppr.tsv")
    graph = tools.write_neighborhood_graph(path_tsv, out, top_k=2, alpha=0.5,
                                           add_undirected_edges=True)
    packed = str(tmp_path / "packed.tfr")
    tools.pack_nbrs(labeled, "", out, packed, max_nbrs=2)
    for row, example in enumerate(read_examples(packed)):
        targets, weights = graph.neighbors(row)
        assert [example[f"NL_nbr_{i}_id"][0].decode() for i in range(2)] == (
            graph.ids[targets].tolist())
        np.testing.assert_allclose(
            [example[f"NL_nbr_{i}_weight"][0] for i in range(2)], weights,
            rtol=1e-6)


def test_cli_round_trip(path_tsv, tmp_path):
    out = str(tmp_path / "out.tsv")
    assert cli.main(["neighborhoods", "--graph", path_tsv, "--output", out,
                     "--method", "khop", "--k", "2", "--top_k", "2",
                     "--normalization=row", "--add_undirected_edges"]) == 0
    with open(out, encoding="utf-8") as f:
        assert f.readline() == "a\tb\t1\n"
    expected = tools.write_neighborhood_graph(
        path_tsv, str(tmp_path / "py.tsv"), method="ppr", alpha=0.2, top_k=1,
        renormalize=True)
    assert cli.main(["neighborhoods", "--graph", path_tsv, "--output", out,
                     "--alpha", "0.2", "--top-k=1", "--renormalize"]) == 0
    assert_same_graph(graph_utils.load_graph_csr(out),
                      graph_utils.load_graph_csr(str(tmp_path / "py.tsv")))
    assert expected.num_edges == 3  # d has no out-edge (directed input).


def test_cli_failures_leave_no_output(path_tsv, tmp_path, capsys):
    out = tmp_path / "out.tsv"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["neighborhoods", "--graph", path_tsv])
    assert exit_info.value.code == 2
    assert "Missing required flag(s): --output" in capsys.readouterr().err
    assert cli.main(["neighborhoods", "--graph", path_tsv, "--output",
                     str(out), "--alpha", "1"]) == 1
    assert ("nsl neighborhoods: error: `alpha` must be a number in (0, 1)"
            in capsys.readouterr().err)
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\t1\na b\n")
    assert cli.main(["neighborhoods", "--graph", str(bad), "--output",
                     str(out)]) == 1
    assert "Malformed graph file" in capsys.readouterr().err
    assert not out.exists()
    # An existing output stays untouched when a run fails.
    out.write_text("old\n")
    assert cli.main(["neighborhoods", "--graph", str(bad), "--output",
                     str(out)]) == 1
    assert out.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["bad.tsv", "graph.tsv", "out.tsv"]


def test_a_failure_while_writing_leaves_no_file(path_tsv, tmp_path,
                                                monkeypatch):
    out = tmp_path / "out.tsv"

    class FailingBar:  # Fails after the first line was written.
        def __init__(self, *, desc, **kwargs):
            del kwargs
            self.writing = desc == "Writing graph"

        def update(self, n):
            if self.writing:
                raise OSError(f"disk full after {n} line(s)")

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return False

    monkeypatch.setattr(neighborhoods, "_WRITE_CHUNK", 1)
    monkeypatch.setattr(neighborhoods._progress, "progress_bar", FailingBar)
    with pytest.raises(OSError, match=r"disk full after 1 line\(s\)"):
        tools.write_neighborhood_graph(path_tsv, str(out),
                                       add_undirected_edges=True)
    assert not out.exists()
    assert os.listdir(tmp_path) == ["graph.tsv"]  # No temporary file left.


def test_bad_writer_settings(path_tsv, tmp_path):
    out = str(tmp_path / "out.tsv")
    with pytest.raises(ValueError, match=r"`method` must be one of \['khop', "
                       r"'ppr'\]. Received: method='rw'"):
        tools.write_neighborhood_graph(path_tsv, out, method="rw")
    with pytest.raises(ValueError, match=r"`k` must be an integer >= 1"):
        tools.write_neighborhood_graph("missing.tsv", out, k=0)  # No read.
    with pytest.raises(FileNotFoundError, match=r"`output_path`: the output "
                       r"directory"):
        tools.write_neighborhood_graph(path_tsv,
                                       str(tmp_path / "no" / "out.tsv"))
    graph = tools.load_graph_csr(path_tsv)
    with pytest.raises(ValueError, match=r"`add_undirected_edges` applies"):
        tools.write_neighborhood_graph(graph, out, add_undirected_edges=True)
    with pytest.raises(ValueError, match=r"contains a tab or a line break"):
        tools.write_neighborhood_graph(
            ({"a\tb": {"c": 1.0}, "c": {"a\tb": 1.0}}), out)
    assert not os.path.exists(out)
