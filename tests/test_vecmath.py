"""nbnet.vecmath: e^x, ln x, ln(1 + x) and tanh x within their ulp bounds of the exact values in
float32 and float64, the special values as NumPy's, unharmed by the fast-math flags of the code
they are inlined into, run as plain Python too, and vectorised."""

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nbnet.config import FASTMATH, KERNEL_FASTMATH

from vecmath_cases import BOUNDS, FUNCTIONS, applier, measure, sample


@pytest.mark.parametrize("flags", [KERNEL_FASTMATH, FASTMATH], ids=["kernel-flags", "loop-nest-flags"])
def test_each_function_is_within_its_ulp_bound_and_exact_at_the_special_values(flags):
    """Under the kernels' flags and under the loop nests' (with reassoc and contract, which would
    undo the range reductions if the functions did not guard them)."""
    apply = applier(flags)
    for dtype in (np.float32, np.float64):
        for name, (error, wrong_specials) in measure(apply, sample(dtype, 200_000)).items():
            assert error <= BOUNDS[name], f"{name} {dtype.__name__}: {error:.3f} ulp"
            assert wrong_specials == 0, f"{name} {dtype.__name__}: {wrong_specials} wrong inf/NaN/0 results"


def test_subnormal_results_and_arguments():
    apply = applier(KERNEL_FASTMATH)
    x = np.array([-100.0, -103.0, 1e-40, 1.0e-44], dtype=np.float32)
    out = np.empty((4, 4), np.float32)
    apply(x, out)
    expected = np.exp(x.astype(np.float64)).astype(np.float32)
    assert out[0, 0] == expected[0] and 0 < out[0, 1] < np.finfo(np.float32).tiny  # e^-103: subnormal, not 0
    np.testing.assert_allclose(out[1, 2:], np.log(x[2:].astype(np.float64)), rtol=2 ** -23)  # ln of a subnormal
    x64 = np.array([-740.0, 4e-320])
    out64 = np.empty((4, 2))
    applier(KERNEL_FASTMATH)(x64, out64)
    assert 0 < out64[0, 0] < np.finfo(np.float64).tiny and out64[0, 0] == np.exp(-740.0)
    np.testing.assert_allclose(out64[1, 1], np.log(4e-320), rtol=1e-15)


def test_as_plain_python_the_same_code_is_close():
    """NUMBA_DISABLE_JIT=1: the functions' own arithmetic on NumPy scalars (fma rounded twice)."""
    code = ("import numpy as np; from vecmath_cases import applier, measure, sample\n"
            "for dtype in (np.float32, np.float64):\n"
            "    for name, (error, wrong) in measure(applier(set()), sample(dtype, 300)).items():\n"
            "        assert error <= 4 and wrong == 0, (name, dtype, error, wrong)\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True,
                            env=dict(os.environ, NUMBA_DISABLE_JIT="1"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads x86 assembly")
def test_a_loop_over_them_is_vectorised():
    """The point of the module: packed (SIMD) fused multiply-adds in the loop's machine code, where
    libm's functions would leave one call per element."""
    apply = applier(KERNEL_FASTMATH)
    for dtype, packed in ((np.float32, "ps"), (np.float64, "pd")):
        x = np.ones(3, dtype)
        apply(x, np.empty((len(FUNCTIONS), 3), dtype))
        assembly = apply.inspect_asm(apply.signatures[-1])
        simd_fma = [line for line in assembly.splitlines() if "vfmadd" in line and packed in line
                    and ("ymm" in line or "zmm" in line)]
        assert len(simd_fma) > 10, f"{dtype.__name__}: {len(simd_fma)} packed FMAs"
        assert not re.search(r"call\s.*\b(exp|log|log1p|tanh)f?\b", assembly), "a libm call is left"
