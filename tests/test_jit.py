"""narrowflow.jit: the Numba option sets and the loader of generated modules."""
import json
import os
import subprocess
import sys

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


# --- the vector width: 512-bit lane loops on AVX-512 hosts ------------------------------------

_PROBE = """
import hashlib, json
import numba, numpy as np
import narrowflow as nf
from narrowflow import jit, model

@numba.njit(error_model="numpy")
def axpy(a, b):
    for i in range(a.size):
        a[i] = a[i] * b[i] + 1.0

a = np.ones(64)
axpy(a, a)
asm = next(iter(axpy.inspect_asm().values()))
r = nf.solve_ensemble(model.nf4_benchmark(), model.nf4_initial_states(40), t_span=(0.0, 10.0),
                      method="dop853", threads=1)
print(json.dumps({"wide": jit.wide_vectors(), "features": numba.core.config.CPU_FEATURES,
                  "zmm": "zmm" in asm, "y": hashlib.sha256(r.y_final.tobytes()).hexdigest()}))
"""


def _probe(**env):
    """Run _PROBE in a fresh process with `env` on top of a NUMBA_CPU_*-free environment."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("NUMBA_CPU_") and k != "NARROWFLOW_NO_WIDE_VECTORS"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**base, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _host_has_avx512():
    from llvmlite import binding as ll
    return bool(ll.get_host_cpu_features().get("avx512f", False))


def test_wide_vectors_follow_the_host_and_keep_results():
    """On an AVX-512 host importing narrowflow lifts LLVM's 256-bit preference (Numba's own
    loops then use zmm registers) and the trajectories stay bit for bit those of a process
    that opted out; elsewhere nothing is changed."""
    default = _probe()
    opted_out = _probe(NARROWFLOW_NO_WIDE_VECTORS="1")
    assert not opted_out["wide"] and opted_out["features"] is None
    if _host_has_avx512():
        assert default["wide"] and default["features"].endswith(",-prefer-256-bit")
        assert default["zmm"]
    else:
        assert not default["wide"] and default["features"] is None
    assert default["y"] == opted_out["y"]


def test_wide_vectors_leave_the_users_cpu_features_alone():
    from llvmlite import binding as ll
    mine = ll.get_host_cpu_features().flatten()
    got = _probe(NUMBA_CPU_FEATURES=mine)
    assert got["features"] == mine and not got["wide"]
