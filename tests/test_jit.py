"""narrowflow.jit: the Numba option sets and the loader of generated modules."""
import numpy as np
import pytest

from narrowflow import jit


def test_option_sets():
    assert jit.BASE == {"error_model": "numpy", "cache": True}
    assert jit.NOGIL == {**jit.BASE, "nogil": True}
    assert jit.INLINE == {**jit.NOGIL, "inline": "always"}
    assert jit.hot() == {**jit.BASE, **jit.FMA}
    assert jit.FMA in ({}, {"fastmath": {"contract"}})


def test_fma_read_at_call_time(monkeypatch):
    monkeypatch.setattr(jit, "FMA", {})
    assert jit.hot() == jit.BASE and not jit.fma_enabled()
    monkeypatch.setattr(jit, "FMA", {"fastmath": {"contract"}})
    assert jit.hot()["fastmath"] == {"contract"} and jit.fma_enabled()


def test_load_generated(tmp_path, monkeypatch):
    monkeypatch.setenv("NARROWFLOW_CACHE_DIR", str(tmp_path))
    src = ("from numba import njit\nfrom narrowflow.jit import BASE\n\n"
           "@njit(**BASE)\ndef f(x):\n    return 1.0 / x\n")
    mod = jit.load_generated("nf_test_gen", src)
    assert jit.load_generated("nf_test_gen", src) is mod        # once per process
    files = sorted(p.name for p in tmp_path.glob("nf_test_gen_*.py"))
    key = jit.generated_key(src)
    assert files == [f"nf_test_gen_{'fma' if jit.FMA else 'nofma'}_{key}.py"]
    assert (tmp_path / files[0]).read_text() == src
    assert mod.f(0.0) == np.inf                                 # error_model='numpy'
    assert mod.f._cache._cache_path == str(tmp_path / "__pycache__")  # cached beside the file
    # a different source, a different dependency or FMA on/off give another module
    other = jit.load_generated("nf_test_gen", src + "\n# changed\n")
    assert other is not mod
    assert jit.generated_key(src, depends=("fastmath.py",)) != key
    monkeypatch.setattr(jit, "FMA", {} if jit.FMA else {"fastmath": {"contract"}})
    assert jit.generated_key(src) != key
    with pytest.raises(ValueError, match="identifier"):
        jit.load_generated("bad name", src)
