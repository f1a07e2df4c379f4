"""The registry helper behind stages, edge priors and metrics."""
import pytest

from fsr_jax.registry import Registry


def test_entries_keep_their_order_and_errors_name_the_kind_and_what_exists():
    parts = Registry("widget")
    assert parts.register("b", 2) == 2 and parts.register("a", 1) == 1
    assert list(parts) == ["b", "a"] and dict(parts) == {"b": 2, "a": 1} and "a" in parts and "c" not in parts
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        parts.register("a", 3)
    with pytest.raises(KeyError, match=r"unknown widget 'c'; registered: \['b', 'a'\]"):
        parts["c"]
    assert parts.unregister("b") == 2 and list(parts) == ["a"]
    with pytest.raises(KeyError, match="no widget named 'b'"):
        parts.unregister("b")
