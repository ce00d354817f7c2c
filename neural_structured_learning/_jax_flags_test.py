"""Tests for _jax_flags.py (no framework needed)."""

import sys
import types

import pytest

from neural_structured_learning import _jax_flags

FLAG = _jax_flags.FLAG


@pytest.fixture
def no_jax(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge",
                        types.SimpleNamespace(_backends={}))
    monkeypatch.delenv("NSL_KEEP_XLA_FLAGS", raising=False)
    return monkeypatch


def test_adds_the_flag_before_jax_starts(no_jax):
    no_jax.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    _jax_flags.configure()
    import os
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {FLAG}=false"


def test_respects_the_user(no_jax):
    import os
    no_jax.setenv("XLA_FLAGS", f"{FLAG}=true")
    _jax_flags.configure()
    assert os.environ["XLA_FLAGS"] == f"{FLAG}=true"
    no_jax.setenv("XLA_FLAGS", "")
    no_jax.setenv("NSL_KEEP_XLA_FLAGS", "1")
    _jax_flags.configure()
    assert os.environ["XLA_FLAGS"] == ""


def test_warns_when_jax_already_started(no_jax):
    import os
    no_jax.setitem(sys.modules, "jax._src.xla_bridge",
                   types.SimpleNamespace(_backends={"cpu": object()}))
    no_jax.setenv("XLA_FLAGS", "")
    with pytest.warns(UserWarning, match="JAX started before"):
        _jax_flags.configure()
    assert os.environ["XLA_FLAGS"] == ""
