"""Tests for _gather.py."""

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from neural_structured_learning.tools import _gather  # noqa: E402


def test_gather_joins_values_from_every_part_in_any_order():
    pool = _gather.Pool()
    blob = pool.add_blob(b"abcdef", [1, 1, 4, 6])  # a, "", bcd, ef
    cut = pool.add_cuts(np.frombuffer(b"0123456789", np.uint8), [2, 5])
    pool.build()
    assert pool.size == 7
    assert pool.lengths.tolist() == [1, 0, 3, 2, 2, 3, 5]
    out = pool.gather([cut + 2, blob + 3, blob + 1, cut, blob + 2, cut + 1])
    assert out.tobytes() == b"56789ef01bcd234"
    out[0] = ord("X")  # writable
    assert pool.gather([]).tobytes() == b""
    assert pool.gather([blob + 1]).tobytes() == b""


def test_cuts_must_be_sorted_and_inside_the_buffer():
    with pytest.raises(ValueError, match="sorted cuts"):
        _gather.Pool().add_cuts(b"0123", [3, 1])
    with pytest.raises(ValueError, match="sorted cuts"):
        _gather.Pool().add_cuts(b"0123", [5])


def test_one_part_is_used_without_a_copy():
    data = np.frombuffer(b"hello world", np.uint8)
    pool = _gather.Pool()
    pool.add_blob(data, [5, 11])
    pool.build()
    assert pool.gather([1, 0]).tobytes() == b" worldhello"
    assert pool.piece_lengths().tolist() == [5, 6]
