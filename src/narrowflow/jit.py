"""Numba options of narrowflow, and the one loader of generated source modules.

Every Numba-compiled function of the package takes its options from here, so that a
change of policy (the error model, caching, FMA) is made once.

Option sets (keyword dictionaries for ``numba.njit`` / ``numba.cfunc``):

``BASE``
    ``error_model='numpy'``: division by zero and overflow give inf/NaN instead of raising.
    The compiled right-hand sides report non-finite outputs through their return value
    (docs/design.md §4), and Numba's default ('python') model adds a zero-division check
    with an exception path to every division, which stops LLVM from vectorizing lane loops
    (docs/performance.md §3). ``cache=True``: machine code is written next to the source
    file (``__pycache__``) and reloaded by later processes and Dask workers; generated
    modules get a file of their own for this (`load_generated`).
``NOGIL``
    ``BASE`` plus ``nogil=True``: helpers called from cfuncs that the Cython kernel runs on
    several OpenMP threads at once, and from Python threads.
``INLINE``
    ``NOGIL`` plus ``inline='always'``: the small elementary functions and activations are
    inlined at Numba IR level into the lane loops that call them, so those loops contain no
    calls and vectorize; they are never called on their own in hot code.
``FMA``
    ``fastmath={'contract'}``: the hot cfuncs (flow, loss, jacobian, Taylor coefficients) may
    fuse ``a*b + c`` into one FMA instruction (≈1.3-1.4× on the NF4 flow,
    docs/performance.md §4). Contraction only, never reassociation or approximate functions:
    each lane's arithmetic stays fixed, so results do not depend on the lane count or
    grouping (tests/test_rhs.py checks lanes bit for bit). Empty when the environment
    variable ``NARROWFLOW_NO_FMA`` is set. Read it through `hot` (at call time), never copy
    it: results differ in the last bits with and without it, so stored runs record it
    (`fma_enabled`) and generated modules are keyed on it (Numba's disk cache does not key
    on compiler flags).

Vector width
    LLVM's tuning for Intel cores with AVX-512 (Skylake-SP and later) prefers 256-bit
    vectors; its tuning for AMD Zen 4 and 5 uses 512-bit ones. On the lane loops 512-bit
    vectors pay: on an Emerald Rapids Xeon the NF4 flow runs 1.26x as fast per lane and
    NF4 ensembles 1.08-1.22x (docs/performance.md §5). Importing this module therefore lifts that preference
    (``-prefer-256-bit`` in Numba's ``CPU_FEATURES``) when the host has AVX-512F, before
    Numba compiles anything, unless the user set ``NUMBA_CPU_NAME`` or
    ``NUMBA_CPU_FEATURES``, set ``NARROWFLOW_NO_WIDE_VECTORS``, or Numba's CPU target was
    already in use. It applies to every Numba function of the process, the user's included.
    Results do not change: vectorization without reassociation keeps each lane's arithmetic
    (tests/test_jit.py). `wide_vectors` tells whether it applied; Numba's disk cache keys on
    the CPU features, so cached code of either kind is never mixed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

BASE = dict(error_model="numpy", cache=True)
NOGIL = dict(BASE, nogil=True)
INLINE = dict(NOGIL, inline="always")
FMA = {} if os.environ.get("NARROWFLOW_NO_FMA") else {"fastmath": {"contract"}}


def _lift_256_bit_preference() -> bool:
    """Lift LLVM's preference for 256-bit vectors on AVX-512 hosts (see module docstring).

    Returns whether Numba will compile with 512-bit vectors allowed.
    """
    from llvmlite import binding as ll
    from numba.core import config as numba_config
    from numba.core.registry import cpu_target

    features = numba_config.CPU_FEATURES
    if features is not None:       # set by the user (or by an earlier import of this module)
        return "-prefer-256-bit" in features
    if (os.environ.get("NARROWFLOW_NO_WIDE_VECTORS") or numba_config.CPU_NAME is not None
            or "_toplevel_target_context" in vars(cpu_target)):  # the codegen already exists
        return False
    host = ll.get_host_cpu_features()
    if not host.get("avx512f", False):
        return False
    numba_config.CPU_FEATURES = host.flatten() + ",-prefer-256-bit"
    return True


_WIDE = _lift_256_bit_preference()


def wide_vectors() -> bool:
    """Whether Numba compiles with LLVM's 256-bit preference lifted (512-bit lane loops)."""
    return _WIDE


def hot() -> dict:
    """Options of the hot lane-batched cfuncs: `BASE` plus `FMA` (as it is now)."""
    return {**BASE, **FMA}


def fma_enabled() -> bool:
    """Whether the hot cfuncs are compiled with FMA contraction."""
    return bool(FMA)


def cache_dir() -> Path:
    """Where generated sources and Numba's cache of them live.

    ``NARROWFLOW_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/narrowflow`` (``~/.cache``
    without XDG_CACHE_HOME); created on first use.
    """
    env = os.environ.get("NARROWFLOW_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "narrowflow"
    base.mkdir(parents=True, exist_ok=True)
    return base


_HERE = Path(__file__).parent
_LOCK = threading.RLock()
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _dependency_text(dep) -> bytes:
    """The bytes that stand for one dependency in a generated module's key."""
    if isinstance(dep, (str, Path)):
        path = Path(dep)
        if not path.is_absolute():  # a file of this package, e.g. "rhs.py"
            path = _HERE / path
        return path.read_bytes()
    if isinstance(dep, ModuleType):
        return Path(dep.__file__).read_bytes()
    return inspect.getsource(getattr(dep, "py_func", dep)).encode()  # a function or dispatcher


def generated_key(source: str, depends=()) -> str:
    """The hash that names a generated module (16 hex digits).

    It covers the source itself, everything in `depends` (package file names such as
    ``"fastmath.py"``, absolute paths, modules, or functions / Numba dispatchers), this file,
    the narrowflow version and whether FMA is on. Numba's cache checks only the timestamp of
    the file that holds a cached function, not of the functions it inlines from elsewhere,
    nor the compiler flags; a new key for any change of those gives a new file, hence a new
    cache.
    """
    from narrowflow import __version__
    h = hashlib.sha256(__version__.encode())
    h.update(b"fma" if FMA else b"nofma")
    h.update((_HERE / "jit.py").read_bytes())
    for dep in depends:
        h.update(_dependency_text(dep))
    h.update(source.encode())
    return h.hexdigest()[:16]


def load_generated(name: str, source: str, depends=()) -> ModuleType:
    """Import generated Python source as a module whose file lives in `cache_dir`.

    name: readable part of the file name (an identifier); source: the module's text;
    depends: what the source compiles in from elsewhere (see `generated_key`).

    The file is ``cache_dir()/<name>_<fma|nofma>_<key>.py`` and the module
    ``narrowflow._generated.<same>``. A real file is what makes ``cache=True`` work for the
    module's Numba functions: their machine code is cached next to it and a second process
    (or Dask worker) loads it from disk instead of compiling. The file is written atomically
    and only when absent or different (rewriting it would invalidate Numba's cache, which
    checks the file's timestamp). Loaded once per process; thread-safe.
    """
    if not _NAME.match(name):
        raise ValueError(f"name must be an identifier, got {name!r}")
    stem = f"{name}_{'fma' if FMA else 'nofma'}_{generated_key(source, depends)}"
    modname = f"narrowflow._generated.{stem}"
    with _LOCK:
        if modname in sys.modules:
            return sys.modules[modname]
        path = cache_dir() / f"{stem}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)  # atomic: concurrent processes never see half a file
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[modname]
            raise
        return module
