"""Tests for pack_nbrs.py (`nsl.tools.pack_nbrs`)."""

import functools
import logging
import os

import pytest

from neural_structured_learning import tools
from neural_structured_learning.tools._test_util import read_examples
from neural_structured_learning.tools._test_util import write_examples
from neural_structured_learning.tools import _packer
from neural_structured_learning.tools import _wire
from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import graph_utils
from neural_structured_learning.tools import tfrecord

# NSL 1.4's pack_nbrs_test.py examples and graph (reference section 9.2 I).
A = {"id": [b"A"], "some_int_feature": [1, 1], "label": [0]}
B = {"id": [b"B"], "some_int_feature": [2, 2], "label": [1]}
C = {"id": [b"C"], "some_int_feature": [3, 3], "label": [2]}
GRAPH = {"A": {"B": 0.5, "C": 0.9}, "B": {"A": 0.4, "C": 1.0}}
F32_09 = 0.8999999761581421  # 0.9 stored as float32, as 1.4 does


def packed(seed, *nbrs):
    """The expected merged example: `nbrs` are (features, weight) pairs."""
    result = dict(seed, NL_num_nbrs=[len(nbrs)])
    for i, (features, weight) in enumerate(nbrs):
        result[f"NL_nbr_{i}_weight"] = [weight]
        for name, values in features.items():
            result[f"NL_nbr_{i}_{name}"] = values
    return dict(sorted(result.items()))


@pytest.fixture(name="files")
def _files(tmp_path):
    graph = tmp_path / "graph.tsv"
    graph_utils.write_tsv_graph(graph, GRAPH)
    return {"labeled": write_examples(tmp_path / "train.tfr", [A, C]),
            "unlabeled": write_examples(tmp_path / "nbrs.tfr", [B]),
            "graph": str(graph), "out": str(tmp_path / "out.tfr")}


# (undirected, with unlabeled file, max_nbrs) -> (packed A, packed C), the
# table of reference section 9.2 I, checked feature by feature.
CASES = {
    (False, False, None): (packed(A, (C, F32_09)), packed(C)),
    (False, True, None): (packed(A, (C, F32_09), (B, 0.5)), packed(C)),
    (False, True, 1): (packed(A, (C, F32_09)), packed(C)),
    (True, False, None): (packed(A, (C, F32_09)), packed(C, (A, F32_09))),
    (True, True, None): (packed(A, (C, F32_09), (B, 0.5)),
                         packed(C, (B, 1.0), (A, F32_09))),
    (True, True, 1): (packed(A, (C, F32_09)), packed(C, (B, 1.0))),
}


@pytest.mark.parametrize("undirected,with_unlabeled,max_nbrs", sorted(
    CASES, key=str))
def test_packs_like_nsl14(files, undirected, with_unlabeled, max_nbrs):
    tools.pack_nbrs(files["labeled"],
                    files["unlabeled"] if with_unlabeled else "",
                    files["graph"], files["out"],
                    add_undirected_edges=undirected, max_nbrs=max_nbrs)
    assert read_examples(files["out"]) == list(
        CASES[undirected, with_unlabeled, max_nbrs])


def test_documented_feature_dict_of_packed_a(files):
    tools.pack_nbrs(files["labeled"], files["unlabeled"], files["graph"],
                    files["out"], add_undirected_edges=True)
    assert read_examples(files["out"])[0] == {
        "id": [b"A"], "label": [0], "some_int_feature": [1, 1],
        "NL_num_nbrs": [2], "NL_nbr_0_id": [b"C"], "NL_nbr_0_label": [2],
        "NL_nbr_0_some_int_feature": [3, 3], "NL_nbr_0_weight": [F32_09],
        "NL_nbr_1_id": [b"B"], "NL_nbr_1_label": [1],
        "NL_nbr_1_some_int_feature": [2, 2], "NL_nbr_1_weight": [0.5]}


def test_sharded_inputs_ties_self_loops_and_duplicates(tmp_path):
    seeds = [{"id": [f"s{i}".encode()], "x": [float(i)]} for i in range(4)]
    others = [{"id": [name.encode()], "x": [-1.0]} for name in
              ("1", "10", "9", "s0")]
    write_examples(tmp_path / "lab-0.tfr", seeds[:2])
    # s3 is repeated: its position is the first record's, content the last's.
    write_examples(tmp_path / "lab-1.tfr", seeds[2:] + [
        {"id": [b"s3"], "x": [33.0]}])
    write_examples(tmp_path / "unl-a.tfr", others[:2])
    write_examples(tmp_path / "unl-b.tfr", others[2:])  # "s0" also labeled
    graph = tmp_path / "graph.tsv"
    graph.write_text("s0\t1\t0.5\ns0\t10\t0.5\ns0\t9\t0.5\ns0\ts0\t0.7\n"
                     "s1\ts0\t0.2\ns1\ts0\t0.3\ns3\ts3\n")
    out = tmp_path / "out.tfr"
    tools.pack_nbrs(str(tmp_path / "lab-*.tfr"),
                    [str(tmp_path / "unl-a.tfr"), str(tmp_path / "unl-b.tfr")],
                    str(graph), str(out))
    result = read_examples(out)
    assert [r["id"] for r in result] == [[b"s0"], [b"s1"], [b"s2"], [b"s3"]]
    s0 = result[0]
    # Self-loop kept (weight 0.7 first); ties to the larger string id:
    # "9" > "10" > "1".
    assert [s0[f"NL_nbr_{i}_id"] for i in range(4)] == [
        [b"s0"], [b"9"], [b"10"], [b"1"]]
    assert s0["NL_nbr_0_x"] == [0.0]  # the labeled "s0", not the unlabeled
    assert result[1]["NL_nbr_0_weight"] == [pytest.approx(0.3)]  # max wins
    assert result[2]["NL_num_nbrs"] == [0]
    assert result[3]["x"] == [33.0] and result[3]["NL_nbr_0_x"] == [33.0]


def test_unknown_graph_ids_are_warned_about(files, caplog):
    with open(files["graph"], "a", encoding="utf-8") as f:
        f.write("A\tghost\t0.99\nghost\tC\t1.0\nghost\tphantom\t1.0\n")
    with caplog.at_level(logging.WARNING):
        tools.pack_nbrs(files["labeled"], files["unlabeled"], files["graph"],
                        files["out"])
    # Only A -> ghost starts at a labeled example (the graph is directed).
    assert ("1 graph edge(s) link a labeled example to an id with no example "
            "(e.g. 'ghost')") in caplog.text
    assert read_examples(files["out"])[0]["NL_num_nbrs"] == [2]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tools.pack_nbrs(files["labeled"], files["unlabeled"], files["graph"],
                        files["out"], add_undirected_edges=True)
    assert "2 graph edge(s) link a labeled" in caplog.text  # + ghost -> C


def test_bad_inputs(files, tmp_path):
    out = files["out"]
    no_id = write_examples(tmp_path / "noid.tfr", [A, {"label": [3]}])
    with pytest.raises(ValueError, match=r"The example in '.*noid.tfr', "
                       r"record 1 at byte offset \d+ has no feature 'id' \(its "
                       r"features: \['label'\]\); every example needs an id"):
        tools.pack_nbrs(no_id, "", files["graph"], out)
    int_id = write_examples(tmp_path / "intid.tfr", [{"id": [7]}])
    with pytest.raises(ValueError, match=r"The id feature 'id' of the example "
                       r"in .* is a int64_list with 1 value\(s\); expected a "
                       r"bytes_list with one value"):
        tools.pack_nbrs(files["labeled"], int_id, files["graph"], out)
    # Every id of the piece is regular; one is not UTF-8.
    bad_utf8 = write_examples(tmp_path / "utf8.tfr", [A, {"id": [b"\xff"]}])
    with pytest.raises(ValueError, match=r"The id b'\\xff' of the example in "
                       r"'.*utf8.tfr', record 1 at byte offset \d+ is not "
                       r"UTF-8"):
        tools.pack_nbrs(bad_utf8, "", files["graph"], out)
    empty = write_examples(tmp_path / "empty.tfr", [])
    with pytest.raises(ValueError, match=r"No labeled examples found in "
                       r"\['.*empty.tfr'\]"):
        tools.pack_nbrs(empty, files["unlabeled"], files["graph"], out)
    bad_graph = tmp_path / "bad.tsv"
    bad_graph.write_text("A\tB\t0.5\nA C 0.9\n")
    with pytest.raises(ValueError, match=r"Malformed graph file '.*bad.tsv', "
                       r"line 2: expected 'source<TAB>target\[<TAB>weight\]'"):
        tools.pack_nbrs(files["labeled"], "", str(bad_graph), out)
    corrupt = tmp_path / "corrupt.tfr"
    data = bytearray(open(files["labeled"], "rb").read())
    data[-3] ^= 1
    corrupt.write_bytes(bytes(data))
    with pytest.raises(tfrecord.TFRecordError, match=r"Corrupt TFRecord file "
                       r"'.*corrupt.tfr': record 1 at byte offset \d+: data "
                       r"CRC mismatch"):
        tools.pack_nbrs(str(corrupt), "", files["graph"], out)
    with pytest.raises(ValueError, match=r"`max_nbrs` must be an integer >= 0 "
                       r"or None. Received: max_nbrs=-1"):
        tools.pack_nbrs(files["labeled"], "", files["graph"], out, max_nbrs=-1)
    with pytest.raises(FileNotFoundError, match=r"`graph_path`: no such file"):
        tools.pack_nbrs(files["labeled"], "", "nope.tsv", out)
    # No failed run wrote an output or left a temporary file.
    assert not os.path.exists(out)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_missing_output_directory_fails_before_the_work(files, tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"`output_training_data_path`: the output "
                       r"directory '.*missing' of '.*out\.tfr' does not "
                       r"exist"):
        tools.pack_nbrs(files["labeled"], "", str(tmp_path / "no_graph.tsv"),
                        str(tmp_path / "missing" / "out.tfr"))


def test_unlabeled_examples_as_seeds(files):
    # New: with `unlabeled_label`, unlabeled examples are written too, after
    # the labeled ones, with their neighbours and the label set to it.
    tools.pack_nbrs(files["labeled"], files["unlabeled"], files["graph"],
                    files["out"], add_undirected_edges=True,
                    unlabeled_label=-1)
    a, c, b = read_examples(files["out"])
    assert a == packed(A, (C, F32_09), (B, 0.5))
    assert c == packed(C, (B, 1.0), (A, F32_09))
    assert b == packed(dict(B, label=[-1]), (C, 1.0), (A, 0.5))
    with pytest.raises(ValueError, match="`unlabeled_label` must be"):
        tools.pack_nbrs(files["labeled"], "", files["graph"], files["out"],
                        unlabeled_label=0.5)


# ---- The wire-format writer (inputs held in memory) against the protobuf
# merge (used for inputs over `_IN_MEMORY_BYTES`), which does what 1.4 does.
def _record(features):
    return example_proto.make_example(features).SerializeToString()


def _raw_entry(key, feature, value_first=False):
    fields = [_wire.field(0x0A, key.encode()), _wire.field(0x12, feature)]
    return _wire.field(0x0A, b"".join(fields[::-1] if value_first else fields))


def _feature(values):
    example = example_proto.make_example({"f": values})
    return example.features.feature["f"].SerializeToString()


def _pack_both(tmp_path, monkeypatch, labeled, unlabeled, graph, **kwargs):
    """Packs with both writers; returns the parsed outputs (they must agree)."""
    tfrecord.write_records(tmp_path / "lab.tfr", labeled)
    tfrecord.write_records(tmp_path / "unl.tfr", unlabeled)
    (tmp_path / "g.tsv").write_text(graph)
    outputs = []
    read_chunks = tfrecord.iter_record_chunks
    # In memory; in memory read 100 bytes at a time and written one record
    # at a time (several chunks, sources and blocks); streamed (protobuf).
    for limit, chunk_bytes, block_bytes in ((1 << 30, 1 << 24, 1 << 24),
                                            (1 << 30, 100, 1), (-1, 1, 1)):
        monkeypatch.setattr(_packer, "_IN_MEMORY_BYTES", limit)
        monkeypatch.setattr(_packer, "_BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(tfrecord, "iter_record_chunks", functools.partial(
            read_chunks, chunk_bytes=chunk_bytes))
        out = tmp_path / f"out{len(outputs)}.tfr"
        tools.pack_nbrs(str(tmp_path / "lab.tfr"), str(tmp_path / "unl.tfr"),
                        str(tmp_path / "g.tsv"), str(out), **kwargs)
        outputs.append([example_proto.Example.FromString(r)
                        for r in tfrecord.iter_records(str(out))])
    fast, small_pieces, slow = outputs
    assert fast == slow  # messages: keys, kinds, values and unknown fields
    assert small_pieces == slow
    assert [example_proto.example_to_dict(e) for e in fast] == [
        example_proto.example_to_dict(e) for e in slow]
    return [example_proto.example_to_dict(e) for e in fast]


def test_wire_writer_edge_cases(tmp_path, monkeypatch):
    seeds = [
        _record({"id": [b"s0"], "b": [b"x", b""], "i": [1, -2], "f": [0.5],
                 "e": []}),
        # 1.4 appends to existing NL_num_nbrs / NL_nbr_0_weight lists.
        _record({"id": [b"s1"], "NL_num_nbrs": [7], "NL_nbr_0_weight": [0.25],
                 "NL_nbr_1_x": [b"kept?"]}),
        # Map entries in an order protobuf accepts but serializers never
        # write (value before key), and a repeated key (the last one wins).
        _wire.example(_raw_entry("id", _feature([b"s2"]), value_first=True)
                      + _raw_entry("k", _feature([1]))),
        _wire.example(_raw_entry("id", _feature([b"s3"]))
                      + _raw_entry("k", _feature([1]))
                      + _raw_entry("k", _feature([2.0]))),
        _record({"id": [b"lonely"]}),
        _record({"id": [b"hub"], "y": [3]}),
    ]
    others = [
        _record({"id": [b"u0"], "weight": [9.0], "t": [b"text"]}),
        # Bytes that look like the renamed prefix, inside a value and a key.
        _record({"id": [b"u1"], "v": [b"NL_nbr_0_NL_nbr_0_"],
                 "NL_nbr_0_k": [5]}),
        _wire.example(_raw_entry("id", _feature([b"u2"]))
                      + _raw_entry("z", _feature([4]), value_first=True)),
        _record({"id": [b"s0"], "shadowed": [1]}),  # s0 is labeled: ignored
    ] + [_record({"id": [f"n{k}".encode()], "k": [k]}) for k in range(13)]
    graph = ("s0\tu0\t0.9\ns0\tu1\t0.8\ns0\ts0\t0.7\ns0\tghost\t1.0\n"
             "s1\tu0\t0.5\ns1\tu2\t0.5\ns2\tu1\t0.3\ns3\ts2\t0.4\n"
             "s2\tu2\t0.6\nu0\ts3\t0.2\n"
             + "".join(f"hub\tn{k}\t{k / 20}\n" for k in range(13)))
    for kwargs in ({"add_undirected_edges": True},
                   {"max_nbrs": 2},
                   {"add_undirected_edges": True, "unlabeled_label": -1},
                   {"unlabeled_label": 3, "label_feature_name": "NL_nbr_0_k"}):
        result = _pack_both(tmp_path, monkeypatch, seeds, others, graph,
                            **kwargs)
        assert [r["id"] for r in result[:6]] == [
            [b"s0"], [b"s1"], [b"s2"], [b"s3"], [b"lonely"], [b"hub"]]
    result = _pack_both(tmp_path, monkeypatch, seeds, others, graph)
    s0, s1, s2, s3, lonely, hub = result
    assert s0["NL_nbr_0_weight"] == [9.0]  # u0's own "weight" feature wins
    assert s0["NL_nbr_1_v"] == [b"NL_nbr_0_NL_nbr_0_"]
    assert s0["NL_nbr_1_NL_nbr_0_k"] == [5]
    assert s0["NL_nbr_2_e"] == [] and s0["NL_nbr_2_b"] == [b"x", b""]
    assert s1["NL_num_nbrs"] == [7, 2]
    assert s1["NL_nbr_0_weight"] == [0.25, 0.5]
    assert s2["k"] == [1] and s2["NL_nbr_0_z"] == [4]  # u2 (0.6) first
    assert s3["k"] == [2.0]
    assert lonely["NL_num_nbrs"] == [0]
    assert hub["NL_num_nbrs"] == [13]
    assert [hub[f"NL_nbr_{i}_k"] for i in range(13)] == [
        [12 - i] for i in range(13)]
    assert hub["NL_nbr_12_weight"] == [0.0]


def test_bad_protobuf_record_names_the_record(files, tmp_path):
    bad = tmp_path / "bad.tfr"
    tfrecord.write_records(bad, [_record(A), b"\x0a\x05garbage"])
    with pytest.raises(ValueError, match=r"The record 1 at byte offset \d+ of "
                       r"'.*bad.tfr' is not a serialized tf.train.Example"):
        tools.pack_nbrs(str(bad), "", files["graph"], files["out"])
