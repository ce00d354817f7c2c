"""Tests for build_graph.py (`nsl.tools.build_graph` and its engines)."""

import cmath
import importlib
import logging
import os

import numpy as np
import pytest

from neural_structured_learning import tools
from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import _similarity
from neural_structured_learning.tools import graph_utils
from neural_structured_learning.tools import tfrecord

build_graph_module = importlib.import_module(
    "neural_structured_learning.tools.build_graph")


def write_embeddings(path, ids, vectors, id_name="id", emb_name="embedding"):
    tfrecord.write_records(path, [
        example_proto.make_example(
            {id_name: [node_id], emb_name: [float(x) for x in vector]}
        ).SerializeToString() for node_id, vector in zip(ids, vectors)])
    return str(path)


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def reference_graph(ids, vectors, threshold):
    """All pairs with float64 cosine >= threshold, as NSL 1.4 computes it."""
    unit = [np.asarray(v, np.float64) / max(np.linalg.norm(v), 1e-6)
            for v in np.asarray(vectors, np.float32).tolist()]
    lines = []
    for a in range(len(ids)):
        for b in range(len(ids)):
            if a != b:
                w = float(np.dot(unit[a], unit[b]))
                if w >= threshold:
                    lines.append((ids[a], ids[b], "%f" % w))
    return ["\t".join(line) for line in sorted(lines)]


# NSL 1.4 test vectors (reference section 9.2 I): pairwise cosine 0.5.
R3_IDS = ["A", "B", "C"]
R3_VECTORS = [[1, 1, 0], [1, 0, 1], [0, 1, 1]]


def test_three_points_threshold_0_and_051(tmp_path):
    path = write_embeddings(tmp_path / "r3.tfr", R3_IDS, R3_VECTORS)
    out = tmp_path / "graph.tsv"
    tools.build_graph([path], str(out), similarity_threshold=0)
    assert read_lines(out) == ["A\tB\t0.500000", "A\tC\t0.500000",
                               "B\tA\t0.500000", "B\tC\t0.500000",
                               "C\tA\t0.500000", "C\tB\t0.500000"]
    assert graph_utils.read_tsv_graph(out) == {
        "A": {"B": 0.5, "C": 0.5}, "B": {"A": 0.5, "C": 0.5},
        "C": {"A": 0.5, "B": 0.5}}
    tools.build_graph([path], str(out), similarity_threshold=0.51)
    assert read_lines(out) == []


def test_build_graph_from_graph_builder_config(tmp_path):
    from neural_structured_learning import configs  # pylint: disable=import-outside-toplevel
    path = write_embeddings(tmp_path / "r3.tfr", R3_IDS, R3_VECTORS)
    out = tmp_path / "graph.tsv"
    tools.build_graph_from_config(
        [path], out, configs.GraphBuilderConfig(similarity_threshold=0.4))
    assert len(read_lines(out)) == 6


def circle_embeddings(num_points=20):
    """NSL 1.4's test points: equiangular, magnitude x1.1 per step."""
    rotation = cmath.rect(1.1, 2 * cmath.pi / num_points)
    vector, ids, vectors = 1.0 + 0.0j, [], []
    for node_id in range(num_points):
        ids.append(f"id_{node_id}")
        vectors.append([vector.real, vector.imag])
        vector *= rotation
    return ids, vectors


@pytest.mark.parametrize("lsh_rounds,num_lines", [(4, 40), (1, 32)])
def test_circle_lsh_matches_nsl14(tmp_path, lsh_rounds, num_lines):
    ids, vectors = circle_embeddings()
    path = write_embeddings(tmp_path / "circle.tfr", ids, vectors)
    out = tmp_path / "graph.tsv"
    tools.build_graph([path], out, similarity_threshold=0.9, lsh_splits=2,
                      lsh_rounds=lsh_rounds, random_seed=12345)
    lines = read_lines(out)
    assert len(lines) == num_lines
    # Adjacent points have cosine cos(18 deg) = 0.951057; others < 0.9.
    adjacent = set(reference_graph(ids, vectors, 0.9))
    assert len(adjacent) == 40 and set(lines) <= adjacent
    if lsh_rounds == 1:
        # The 8 lines NSL 1.4.0 loses with this seed (output of 1.4.0 itself).
        assert sorted(adjacent - set(lines)) == [
            "id_13\tid_14\t0.951057", "id_14\tid_13\t0.951057",
            "id_17\tid_18\t0.951057", "id_18\tid_17\t0.951057",
            "id_3\tid_4\t0.951057", "id_4\tid_3\t0.951057",
            "id_7\tid_8\t0.951057", "id_8\tid_7\t0.951057"]


def test_lsh_uses_its_own_rng(tmp_path):
    ids, vectors = circle_embeddings()
    path = write_embeddings(tmp_path / "circle.tfr", ids, vectors)
    np.random.seed(7)
    state = np.random.get_state()[1].copy()
    tools.build_graph([path], tmp_path / "g.tsv", similarity_threshold=0.9,
                      lsh_splits=2, lsh_rounds=1, random_seed=12345)
    assert np.array_equal(np.random.get_state()[1], state)


def random_embeddings(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(2, n // 20), d))
    vectors = centers[rng.integers(0, len(centers), n)] + 0.5 * (
        rng.standard_normal((n, d)))
    return [f"n{i}" for i in range(n)], vectors.astype(np.float32)


@pytest.mark.parametrize("tile", [None, 7, 64])
def test_exact_threshold_matches_float64_all_pairs(tmp_path, monkeypatch,
                                                   tile):
    # Small tiles: several tiles per row, on and off the diagonal, and a
    # last tile narrower than the others.
    if tile:
        monkeypatch.setattr(_similarity, "_TILE", tile)
    ids, vectors = random_embeddings(300, 16)
    path = write_embeddings(tmp_path / "e.tfr", ids, vectors)
    out = tmp_path / "graph.tsv"
    tools.build_graph(path, out, similarity_threshold=0.7)
    expected = reference_graph(ids, vectors, 0.7)
    assert len(expected) > 300
    assert read_lines(out) == expected


def reference_knn_lines(ids, vectors, k, threshold):
    unit = vectors.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-6)
    sim = unit @ unit.T
    edges = {}
    for a in range(len(ids)):
        order = sorted((b for b in range(len(ids)) if b != a),
                       key=lambda b: (-sim[a, b], [-ord(c) for c in ids[b]]))
        for b in order[:k]:
            if sim[a, b] >= threshold:
                edges[(a, b)] = edges[(b, a)] = sim[a, b]
    return sorted(f"{ids[a]}\t{ids[b]}\t{w:f}" for (a, b), w in edges.items())


@pytest.mark.parametrize("method", ["exact", "ann"])
def test_top_k_matches_brute_force(tmp_path, method, caplog):
    ids, vectors = random_embeddings(400, 24, seed=1)
    path = write_embeddings(tmp_path / "e.tfr", ids, vectors)
    out = tmp_path / "graph.tsv"
    with caplog.at_level(logging.INFO):
        tools.build_graph(path, out, similarity_threshold=0.3, top_k=5,
                          method=method)
    assert ("ANN recall of the top-5 edges, measured against exact search on "
            "400 sampled nodes: " in caplog.text) == (method == "ann")
    lines = read_lines(out)
    expected = reference_knn_lines(ids, vectors, 5, 0.3)
    if method == "exact":
        assert lines == expected
    else:  # HNSW on 400 points finds (almost) everything.
        assert set(lines) <= set(reference_graph(ids, vectors, 0.3))
        recall = len(set(lines) & set(expected)) / len(expected)
        assert recall >= 0.99


def test_output_is_deterministic_and_thread_independent(tmp_path):
    ids, vectors = random_embeddings(2000, 32, seed=2)
    path = write_embeddings(tmp_path / "e.tfr", ids, vectors)
    outputs = []
    for num_threads in (1, 2, 1):
        out = tmp_path / f"g{len(outputs)}.tsv"
        tools.build_graph(path, out, similarity_threshold=0.0, top_k=10,
                          method="ann", num_threads=num_threads)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    lines = outputs[0].decode().splitlines()
    keys = [tuple(line.split("\t")[:2]) for line in lines]
    assert keys == sorted(keys)  # sorted by (source, target) id


def test_other_input_formats_give_the_same_graph(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    ids, vectors = random_embeddings(120, 8, seed=3)
    ids = [str(i) for i in range(len(ids))]  # .npy ids are row numbers
    tfr = write_embeddings(tmp_path / "e.tfr", ids, vectors)
    expected = tmp_path / "expected.tsv"
    tools.build_graph(tfr, expected, similarity_threshold=0.5)
    np.save(tmp_path / "e.npy", vectors)
    np.savez(tmp_path / "e.npz", id=np.array(ids), embedding=vectors)
    table = pa.table({"id": ids, "embedding": vectors.tolist()})
    pq.write_table(table.slice(0, 60), tmp_path / "e-0.parquet")
    pq.write_table(table.slice(60), tmp_path / "e-1.parquet")
    for inputs in (tmp_path / "e.npy", tmp_path / "e.npz",
                   str(tmp_path / "e-*.parquet")):
        out = tmp_path / "graph.tsv"
        tools.build_graph(inputs, out, similarity_threshold=0.5)
        assert out.read_bytes() == expected.read_bytes(), inputs


def test_sharded_tfrecords_duplicates_and_config(tmp_path):
    ids, vectors = random_embeddings(60, 8, seed=4)
    write_embeddings(tmp_path / "e-0.tfr", ids[:30], vectors[:30], "key", "v")
    # Shard 1 repeats id n0 with another vector: the last one wins.
    write_embeddings(tmp_path / "e-1.tfr", ids[30:] + ["n0"],
                     np.vstack([vectors[30:], vectors[1:2]]), "key", "v")

    class Config:  # any object with GraphBuilderConfig's attributes
        id_feature_name = "key"
        embedding_feature_name = "v"
        similarity_threshold = 0.6
        lsh_splits = 0
        lsh_rounds = 1
        random_seed = None

    out = tmp_path / "graph.tsv"
    tools.build_graph_from_config(str(tmp_path / "e-*.tfr"), out, Config())
    vectors = vectors.copy()
    vectors[0] = vectors[1]
    assert read_lines(out) == reference_graph(ids, vectors, 0.6)


def test_records_without_id_or_embedding_are_skipped(tmp_path, caplog):
    records = [
        example_proto.make_example({"id": ["a"], "embedding": [1.0, 0.0]}),
        example_proto.make_example({"embedding": [1.0, 0.1]}),
        example_proto.make_example({"id": ["c"]}),
        example_proto.make_example({"id": ["d"], "embedding": [1.0, 0.2]}),
    ]
    path = tmp_path / "e.tfr"
    tfrecord.write_records(path, [r.SerializeToString() for r in records])
    out = tmp_path / "graph.tsv"
    with caplog.at_level(logging.ERROR):
        tools.build_graph(str(path), out, similarity_threshold=0.5)
    assert "No bytes_list feature 'id' in the record (file" in caplog.text
    assert "record 1 at byte offset" in caplog.text
    assert "No feature 'embedding' in the record of id 'c'" in caplog.text
    assert read_lines(out) == ["a\td\t0.980581", "d\ta\t0.980581"]


@pytest.mark.parametrize("kwargs,message", [
    ({"lsh_splits": -1}, r"`lsh_splits` must be an integer >= 0. Received: "
     r"lsh_splits=-1"),
    ({"lsh_splits": 1, "lsh_rounds": 0}, r"`lsh_rounds` must be an integer "
     r">= 1. Received: lsh_rounds=0"),
    ({"lsh_splits": 63}, r"`lsh_splits` must be <= 62"),
    ({"top_k": 0}, r"`top_k` must be an integer >= 1 or None. Received: "
     r"top_k=0"),
    ({"random_seed": 1.5}, r"`random_seed` must be an integer >= 0 or None. "
     r"Received: random_seed=1.5"),
    ({"method": "ann"}, r"method='ann' builds a k-nearest-neighbour graph; "
     r"pass `top_k`"),
    ({"method": "fast"}, r"`method` must be one of \('exact', 'ann', "
     r"'lsh'\). Received: method='fast'"),
    ({"method": "exact", "lsh_splits": 2}, r"`lsh_splits` applies to "
     r"method='lsh' only"),
    ({"method": "lsh"}, r"method='lsh' needs `lsh_splits` >= 1"),
    ({"lsh_splits": 2, "top_k": 3}, r"method='lsh' builds a threshold "
     r"graph; it does not take `top_k`"),
    ({"similarity_threshold": "high"}, r"`similarity_threshold` must be a "
     r"number. Received: similarity_threshold='high'"),
    ({"num_threads": 0}, r"`num_threads` must be an integer >= 1"),
])
def test_invalid_settings_fail_before_reading(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tools.build_graph([], None, **kwargs)


def test_config_without_fields_is_a_type_error():
    with pytest.raises(TypeError, match=r"'lsh_rounds' is missing"):
        tools.build_graph_from_config(
            [], "out.tsv", type("C", (), {
                "id_feature_name": "id", "embedding_feature_name": "e",
                "similarity_threshold": 0.5, "lsh_splits": 0})())


def test_bad_embeddings(tmp_path):
    out = tmp_path / "graph.tsv"
    out.write_text("previous\n")
    path = write_embeddings(tmp_path / "w.tfr", ["a", "b"], [[1.0, 0.0]] * 2)
    tfrecord.write_records(tmp_path / "w2.tfr", [example_proto.make_example(
        {"id": ["c"], "embedding": [1.0, 0.0, 0.5]}).SerializeToString()])
    with pytest.raises(ValueError, match=r"The embedding of id 'c' \(file "
                       r"'.*w2.tfr', record 0 at byte offset 0\) has 3 values; "
                       r"expected 2 like the first embedding \(of id 'a'"):
        tools.build_graph([path, str(tmp_path / "w2.tfr")], out)
    nan = write_embeddings(tmp_path / "nan.tfr", ["a", "b"],
                           [[1.0, 0.0], [np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"The embedding of id 'b' contains "
                       r"a NaN or infinite value"):
        tools.build_graph(nan, out)
    tfrecord.write_records(tmp_path / "empty.tfr", [])
    with pytest.raises(ValueError, match=r"No embeddings found in "
                       r"\['.*empty.tfr'\]"):
        tools.build_graph(str(tmp_path / "empty.tfr"), out)
    tfrecord.write_records(tmp_path / "int.tfr", [example_proto.make_example(
        {"id": ["a"], "embedding": [1, 2]}).SerializeToString()])
    with pytest.raises(ValueError, match=r"The feature 'embedding' of id 'a' "
                       r".* is a int64_list; expected a float_list"):
        tools.build_graph(str(tmp_path / "int.tfr"), out)
    with pytest.raises(FileNotFoundError, match=r"`embedding_files`: no such "
                       r"file: 'missing.tfr'"):
        tools.build_graph("missing.tfr", out)
    tab = write_embeddings(tmp_path / "tab.tfr", ["a\tb"], [[1.0]])
    with pytest.raises(ValueError, match=r"Node id 'a\\tb' contains a tab"):
        tools.build_graph(tab, out)
    # No failed run replaced or removed the previous output.
    assert out.read_text() == "previous\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_bad_parquet_and_npz(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"id": ["a", "b"], "vec": [[1.0, 2.0], [1.0]]}),
                   tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"has no column 'embedding'; its "
                       r"columns are \['id', 'vec'\]"):
        tools.build_graph(str(tmp_path / "e.parquet"), tmp_path / "g.tsv")
    with pytest.raises(ValueError, match=r"The embedding of id 'b' \(file "
                       r".*e.parquet', row 1\) has 1 values; expected 2"):
        tools.build_graph(str(tmp_path / "e.parquet"), tmp_path / "g.tsv",
                          embedding_feature_name="vec")
    np.savez(tmp_path / "e.npz", id=np.array(["a"]), emb=np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"has no array 'embedding'; its "
                       r"arrays are \['id', 'emb'\]"):
        tools.build_graph(str(tmp_path / "e.npz"), tmp_path / "g.tsv")


def test_module_exports_and_shadowing():
    # As in NSL 1.4, the package attribute is the function, not the module,
    # even after the command-line module has been imported.
    assert tools.build_graph is build_graph_module.build_graph
    assert callable(tools.build_graph) and callable(tools.pack_nbrs)
    from neural_structured_learning.tools import build_graph  # pylint: disable=import-outside-toplevel
    assert build_graph is tools.build_graph


def test_missing_output_directory_fails_before_the_work(tmp_path):
    out = tmp_path / "missing" / "graph.tsv"
    # The input does not exist either: the output is checked first, so a
    # long run cannot fail at the very end on its output.
    with pytest.raises(FileNotFoundError,
                       match=r"`output_graph_path`: the output directory "
                       r"'.*missing' of '.*graph\.tsv' does not exist"):
        tools.build_graph([str(tmp_path / "nothing.tfr")], str(out))
    with pytest.raises(IsADirectoryError,
                       match=r"`output_graph_path`: '.*' is a directory"):
        tools.build_graph([str(tmp_path / "nothing.tfr")], str(tmp_path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_read_only_output_directory_fails_before_the_work(tmp_path):
    path = write_embeddings(tmp_path / "r3.tfr", R3_IDS, R3_VECTORS)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"`output_graph_path`: "
                           r"the output directory '.*locked' of .* is not "
                           r"writable"):
            tools.build_graph([path], str(locked / "graph.tsv"))
    finally:
        locked.chmod(0o700)


def test_tfrecord_embeddings_in_any_layout(tmp_path, caplog):
    # Records decoded in bulk from their bytes, and records in layouts only
    # the protobuf parser handles, in one file: rows keep file order.
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import _embeddings
    from neural_structured_learning.tools import _wire

    def entry(key, values, value_first=False):
        feature = example_proto.make_example({"f": values}).features.feature[
            "f"].SerializeToString()
        fields = [_wire.field(0x0A, key), _wire.field(0x12, feature)]
        return _wire.field(0x0A, b"".join(fields[::-1] if value_first
                                          else fields))

    records = [
        example_proto.make_example({"id": ["a"], "embedding": [1.0, 2.0],
                                    "other": [b"x"]}).SerializeToString(),
        example_proto.make_example({"id": ["b", "ignored"],
                                    "embedding": [3.0, 4.0]}
                                   ).SerializeToString(),
        _wire.example(entry(b"embedding", [5.0, 6.0], value_first=True)
                      + entry(b"id", [b"c"])),
        _wire.example(entry(b"id", [b"a"]) + entry(b"embedding", [9.0, 9.0])
                      + entry(b"embedding", [7.0, 8.0])),  # last key wins
        example_proto.make_example({"id": ["no_embedding"]}
                                   ).SerializeToString(),
        example_proto.make_example({"id": ["d"], "embedding": [0.5, 0.25]}
                                   ).SerializeToString(),
    ]
    path = tmp_path / "mixed.tfr"
    tfrecord.write_records(path, records)
    ids, vectors = _embeddings.read_embeddings(
        str(path), id_feature_name="id", embedding_feature_name="embedding")
    assert ids == ["b", "c", "a", "d"]
    assert vectors.tolist() == [[3, 4], [5, 6], [7, 8], [0.5, 0.25]]
    assert "No feature 'embedding' in the record of id 'no_embedding'" in (
        caplog.text)
    tfrecord.write_records(path, records[:1] + [b"\x0a\x03\x0a\x01"])
    with pytest.raises(ValueError, match=r"The record 1 at byte offset \d+ "
                       r"of '.*mixed.tfr' is not a serialized "
                       r"tf.train.Example"):
        _embeddings.read_embeddings(str(path), id_feature_name="id",
                                    embedding_feature_name="embedding")
