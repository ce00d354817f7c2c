"""Tests for graph_utils.py."""

import numpy as np
import pytest

from neural_structured_learning.tools import graph_utils

# The graph of NSL 1.4's graph_utils_test.py.
GRAPH = {"A": {"B": 0.5, "C": 0.9}, "B": {"A": 0.4, "C": 1.0}, "D": {"A": 0.75}}


def test_add_edge():
    graph = {}
    assert graph_utils.add_edge(graph, ["A", "B", "0.5"])
    assert graph_utils.add_edge(graph, ["A", "C"])
    assert not graph_utils.add_edge(graph, ["A", "B", 0.3])  # smaller: kept
    assert not graph_utils.add_edge(graph, ["A", "C", 2.0])  # larger: wins
    assert graph == {"A": {"B": 0.5, "C": 2.0}}


def test_add_undirected_edges():
    graph = {s: dict(t) for s, t in GRAPH.items()}
    graph_utils.add_undirected_edges(graph)
    # Expected values from NSL 1.4's test (max of the two directions).
    assert graph == {"A": {"B": 0.5, "C": 0.9, "D": 0.75},
                     "B": {"A": 0.5, "C": 1.0},
                     "C": {"A": 0.9, "B": 1.0},
                     "D": {"A": 0.75}}


def test_tsv_round_trip(tmp_path):
    path = tmp_path / "graph.tsv"
    graph_utils.write_tsv_graph(path, GRAPH)
    assert path.read_text() == ("A\tB\t0.500000\nA\tC\t0.900000\n"
                                "B\tA\t0.400000\nB\tC\t1.000000\n"
                                "D\tA\t0.750000\n")
    assert graph_utils.read_tsv_graph(path) == GRAPH


def test_read_tsv_defaults_duplicates_crlf_extra_columns(tmp_path):
    path = tmp_path / "graph.tsv"
    path.write_bytes(b"a\tb\r\na\tb\t0.25\nb\ta\t0.5\tignored\nc\tc\t2\n")
    assert graph_utils.read_tsv_graph(str(path)) == {
        "a": {"b": 1.0}, "b": {"a": 0.5}, "c": {"c": 2.0}}


@pytest.mark.parametrize("content,line,problem", [
    (b"a\tb\t1\n\n", 2, r"expected 'source<TAB>target\[<TAB>weight\]' with "
     r"non-empty ids. Received: ''"),
    (b"a\tb\nlonely\n", 2, r"expected .* Received: 'lonely'"),
    (b"\tb\t1\n", 1, r"expected .* with non-empty ids. Received: '\\tb\\t1'"),
    (b"a\tb\tx1\n", 1, r"the weight 'x1' is not a finite number"),
    (b"a\tb\t1\na\tc\tnan\n", 2, r"the weight 'nan' is not a finite number"),
    (b"a\tb\t1\n\xff\tb\n", 2, r"not UTF-8"),
])
def test_malformed_tsv_names_file_and_line(tmp_path, content, line, problem):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"Malformed graph file '.*bad\.tsv', "
                       rf"line {line}: {problem}"):
        graph_utils.read_tsv_graph(path)


def test_write_rejects_ids_with_tabs_and_is_atomic(tmp_path):
    path = tmp_path / "graph.tsv"
    path.write_text("old\n")
    with pytest.raises(ValueError, match=r"Node id 'x\\ty' contains a tab"):
        graph_utils.write_tsv_graph(path, {"a": {"b": 1.0}, "x\ty": {"a": 1}})
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["graph.tsv"]


def _csr(graph):
    return (graph.ids.tolist(), graph.indptr.tolist(), graph.indices.tolist(),
            graph.weights.tolist())


def test_load_graph_csr_documented_example(tmp_path):
    path = tmp_path / "graph.tsv"
    path.write_text("a\tc\t0.9\na\tb\t0.5\nb\tc\n")
    graph = graph_utils.load_graph_csr(path)
    assert graph.indptr.dtype == np.int64
    assert graph.indices.dtype == np.int32
    assert graph.weights.dtype == np.float32
    assert _csr(graph) == (["a", "b", "c"], [0, 2, 3, 3], [2, 1, 2],
                           [np.float32(0.9), 0.5, 1.0])
    undirected = graph_utils.load_graph_csr(str(path),
                                            add_undirected_edges=True)
    assert _csr(undirected) == (["a", "b", "c"], [0, 2, 4, 6],
                                [2, 1, 2, 0, 1, 0],
                                [np.float32(0.9), 0.5, 1.0, 0.5, 1.0,
                                 np.float32(0.9)])
    assert undirected.num_nodes == 3 and undirected.num_edges == 6
    indices, weights = undirected.neighbors(1)
    assert indices.tolist() == [2, 0] and weights.tolist() == [1.0, 0.5]


def test_load_graph_csr_input_forms_agree(tmp_path):
    path = tmp_path / "graph.tsv"
    graph_utils.write_tsv_graph(path, GRAPH)
    expected = _csr(graph_utils.load_graph_csr(path))
    assert _csr(graph_utils.load_graph_csr(GRAPH)) == expected
    sources, targets, weights = zip(*[(s, t, w) for s, out in GRAPH.items()
                                      for t, w in out.items()])
    assert _csr(graph_utils.load_graph_csr(
        (np.array(sources), np.array(targets), np.array(weights)))) == expected


def test_load_graph_csr_row_indices_and_scipy():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    edges = np.array([[0, 2], [0, 1], [2, 0]])
    graph = graph_utils.load_graph_csr(edges)
    assert _csr(graph) == (["0", "1", "2"], [0, 2, 2, 3], [2, 1, 0],
                           [1.0, 1.0, 1.0])
    matrix = scipy_sparse.csr_array(([0.5, 0.9], ([0, 1], [1, 0])),
                                    shape=(4, 4))
    graph = graph_utils.load_graph_csr(matrix, ids=["w", "x", "y", "z"])
    assert _csr(graph) == (["w", "x", "y", "z"], [0, 1, 2, 2, 2], [1, 0],
                           [0.5, np.float32(0.9)])
    assert graph.to_scipy().toarray().tolist() == matrix.toarray().astype(
        np.float32).tolist()


def test_load_graph_csr_ids_order_missing_and_self_loops():
    graph = {"b": {"a": 1.0, "b": 2.0, "zz": 3.0}}
    with pytest.raises(ValueError, match=r"1 graph node id\(s\) are not in "
                       r"`ids`, e.g. \['zz'\] \(1 edge\(s\)\)"):
        graph_utils.load_graph_csr(graph, ids=["b", "a"])
    loaded = graph_utils.load_graph_csr(graph, ids=["b", "a"],
                                        missing_ids="drop")
    assert _csr(loaded) == (["b", "a"], [0, 2, 2], [0, 1], [2.0, 1.0])
    assert loaded.rows(["a", "b"]).tolist() == [1, 0]
    with pytest.raises(KeyError, match=r"1 id\(s\) are not nodes of the "
                       r"graph, e.g. \['q'\]"):
        loaded.rows(["a", "q"])
    no_loops = graph_utils.load_graph_csr(graph, ids=["b", "a"],
                                          missing_ids="drop",
                                          drop_self_loops=True)
    assert _csr(no_loops) == (["b", "a"], [0, 1, 1], [1], [1.0])


def test_load_graph_csr_ties_go_to_the_larger_string_id():
    # Python string order: "9" > "10" > "1", as in NSL 1.4's pack_nbrs.
    graph = graph_utils.load_graph_csr({"s": {"1": 1.0, "10": 1.0, "9": 1.0}})
    row = graph.rows(["s"])[0]
    assert graph.ids[graph.neighbors(row)[0]].tolist() == ["9", "10", "1"]


@pytest.mark.parametrize("graph,kwargs,error,message", [
    ({"a": {"b": float("inf")}}, {}, ValueError,
     r"Edge weights must be finite. Received inf for the edge 'a' -> 'b'"),
    ((np.array(["a"]), np.array(["b", "c"])), {}, ValueError,
     r"Edge-list arrays must be 1-D and of one length"),
    (np.array([[0, -1]]), {}, ValueError, r"row indices must be >= 0"),
    (np.array([[0, 5]]), {"ids": ["a", "b"]}, ValueError,
     r"Edge row index 5 is out of range for 2 nodes"),
    ({"a": {"b": 1}}, {"ids": ["a", "a"]}, ValueError,
     r"`ids` must be unique; 1 duplicate"),
    ({"a": {"b": 1}}, {"missing_ids": "skip"}, ValueError,
     r"`missing_ids` must be 'raise' or 'drop'. Received: "
     r"missing_ids='skip'"),
    (42, {}, TypeError, r"`graph` must be a TSV file name, .* Received: int"),
])
def test_load_graph_csr_bad_inputs(graph, kwargs, error, message):
    with pytest.raises(error, match=message):
        graph_utils.load_graph_csr(graph, **kwargs)


@pytest.mark.parametrize("with_pyarrow", [True, False])
def test_read_tsv_edge_arrays(tmp_path, monkeypatch, with_pyarrow):
    if not with_pyarrow:
        monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    # a.tsv suits pyarrow's CSV reader; b.tsv (2 and 4 columns) needs the
    # line-by-line reader. Both give the same arrays either way.
    (tmp_path / "a.tsv").write_text("x\ty\t0.5\ny\tz\t0.25\n")
    (tmp_path / "b.tsv").write_text("z\tx\ny\tx\t1\textra\n")
    ids, src, dst, weights = graph_utils.read_tsv_edge_arrays(
        str(tmp_path / "*.tsv"))
    assert [(ids[s], ids[t], w) for s, t, w in zip(src, dst, weights)] == [
        ("x", "y", 0.5), ("y", "z", 0.25), ("z", "x", 1.0), ("y", "x", 1.0)]
    (tmp_path / "c.tsv").write_text("x\ty\t0.5\nx\ty\tinf\n")
    with pytest.raises(ValueError, match=r"'.*c.tsv', line 2: the weight "
                       r"'inf' is not a finite number"):
        graph_utils.read_tsv_edge_arrays([str(tmp_path / "c.tsv")])
