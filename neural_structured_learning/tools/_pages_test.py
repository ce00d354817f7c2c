"""`small_pages` switches NumPy's huge-page advice off and back."""

import pytest

from neural_structured_learning.tools import _pages


def test_numpy_still_has_the_private_switch():
    # If this fails, NumPy renamed or dropped `_set_madvise_hugepage`:
    # `small_pages` then silently does nothing; update `_pages._setter`.
    assert _pages._setter() is not None


@pytest.mark.parametrize("before", [True, False])
def test_switched_off_inside_and_restored_after(before):
    setter = _pages._setter()
    original = setter(before)
    try:
        with _pages.small_pages():
            assert setter(False) is False  # off inside
        assert setter(before) is before  # restored
        with pytest.raises(KeyError):
            with _pages.small_pages():
                raise KeyError("inside")
        assert setter(before) is before  # restored after an error too
    finally:
        setter(original)


def test_decorates_a_function():
    setter = _pages._setter()

    @_pages.small_pages()
    def inside():
        return setter(False)

    original = setter(True)
    try:
        assert inside() is False
        assert setter(True) is True
    finally:
        setter(original)
