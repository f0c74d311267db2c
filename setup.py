"""Build the Cython kernels in ext/ as narrowflow._ext.<name>.

This file is the one place compiler flags live. OpenMP is used when a test
program compiles and links with it; otherwise the kernels build serially
(the `prange` loops then run on one thread). No CPU-specific flags
(-march=native, -mavx2) are set: the vectorized right-hand sides are compiled
for the host by Numba at run time, the kernels only drive them.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
BASE_COMPILE_ARGS = ["-O3"]
OPENMP_FLAG = "-fopenmp"


def _compiler_has_openmp() -> bool:
    """Try to compile and link a tiny OpenMP program with the configured C compiler."""
    if os.environ.get("NARROWFLOW_NO_OPENMP"):
        return False
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return False
    src = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        c_file = Path(tmp, "t.c")
        c_file.write_text(src)
        try:
            proc = subprocess.run([cc, OPENMP_FLAG, str(c_file), "-o", str(Path(tmp, "t"))],
                                  capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0


HAS_OPENMP = _compiler_has_openmp()
compile_args = BASE_COMPILE_ARGS + ([OPENMP_FLAG] if HAS_OPENMP else [])
link_args = [OPENMP_FLAG] if HAS_OPENMP else []
print(f"narrowflow build: OpenMP {'enabled' if HAS_OPENMP else 'NOT available, serial kernels'}",
      file=sys.stderr)

extensions = [
    Extension(
        f"narrowflow._ext.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[np.get_include(), "ext"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for pyx in sorted((HERE / "ext").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],

        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
