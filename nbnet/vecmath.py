"""e^x, ln x, ln(1 + x) and tanh x, written so that LLVM turns a loop over them into SIMD
instructions, in the array's own dtype.

Why not math.exp / np.tanh: compiled, those are calls into the C library (libm), one element
at a time, and pip's llvmlite has no vector library (SVML) to replace them. A tanh layer spent
half its time in libm's tanh. Here each function is range reduction plus a polynomial (or a
ratio of two), on plain arithmetic, and LLVM vectorises the loop that calls it like any other.
The plain textbook loops (nbnet/loops.py) keep np.exp and np.tanh: they are for reading.

    exp    e^x = 2^n e^r,  n = round(x / ln 2),  r = x - n ln 2 (|r| <= ln2/2, ln 2 in two parts so
           r is exact), e^r by a polynomial (float32: Cephes' expf; float64: Taylor to r^13),
           2^n built in the exponent bits, in two factors so that subnormal results and the
           overflow to inf round once, as libm's do.
    log    ln x = k ln 2 + ln m,  x = m 2^k with m in [sqrt(1/2), sqrt(2)); ln m by a polynomial
           (float32: Cephes' logf) or by s = f / (2 + f), f = m - 1 (float64: FreeBSD's e_log.c).
    log1p  ln(1 + x) as ln(w) + (x - (w - 1)) / w, w = 1 + x: the second term is what the rounding
           of 1 + x lost.
    tanh   |x| < 0.625: x + x^3 P(x^2) (float32) or x + x^3 P(x^2) / Q(x^2) (float64), from Cephes;
           else sign(x) (1 - 2 / (e^(2|x|) + 1)), e^(2|x|) by exp's steps (no clamp below: 2|x| >= 0).

Special values as NumPy gives them: NaN in, NaN out; e^inf = inf, e^-inf = 0, ln 0 = -inf,
ln of a negative number = NaN; tanh(+-inf) = +-1; subnormal results and arguments exact to the
last bit they have. Measured against NumPy in higher precision (bench/vecmath.py: every float32,
and float64 samples of every exponent; bench/vecmath.txt), the largest errors are 1.02 ulp (exp),
0.84 (log), 1.44 (log1p) and 1.33 (tanh): glibc documents 1 ulp for its exp, log and log1p and 2 for
tanh. tests/test_vecmath.py checks them on a dense sample in CI.

Each function is inlined into the kernel that calls it. Two kinds of operation here must
happen exactly as written, and are immune to the fast-math flags of the kernel they land in
(nbnet.config): `fma` (a * b + c rounded once: LLVM's llvm.fma) and the `strict_*` operators
(an add, subtract or multiply that LLVM may not reassociate: with `reassoc`, (x + c) - c may
become x, and 2^a 2^b may become 2^(a+b), which underflows). Run as plain Python
(NUMBA_DISABLE_JIT=1), the same code runs on NumPy scalars.
"""

import math
from fractions import Fraction

import numpy as np
from numba import types
from numba.core import config as numba_config
from numba.extending import intrinsic, overload

from .config import helper

F32, F64 = np.float32, np.float64


def _bits(pattern, dtype):
    """The integer of `dtype` (int32, int64) whose bits are the unsigned `pattern`."""
    unsigned = {np.int32: np.uint32, np.int64: np.uint64}[dtype]
    return np.array(pattern, dtype=unsigned).view(dtype)[()]


# ----------------------------------------------------------------------------- exact operations
# Each is an LLVM instruction (a Numba intrinsic) when compiled, and its plain-Python version
# under NUMBA_DISABLE_JIT=1 (an intrinsic cannot run as Python).
def _fma_python(a, b, c):
    dtype = type(a)
    try:  # exactly, with fractions, then rounded to the dtype once
        return dtype(float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))))
    except (OverflowError, ValueError):  # an infinite or NaN argument, or an infinite result
        return dtype(a * b + c)


@intrinsic
def _fma_llvm(typingctx, a, b, c):
    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, a, a), codegen


def _binary_llvm(opname):
    """An intrinsic for one floating-point operation carrying the flag `nsz` only: Numba adds its
    fast-math flags only to operations that have none (numba/core/fastmathpass.py)."""
    @intrinsic
    def operation(typingctx, a, b):
        def codegen(context, builder, signature, args):
            return getattr(builder, opname)(*args, flags=("nsz",))
        return a(a, a), codegen
    return operation


@intrinsic
def _select_llvm(typingctx, condition, a, b):
    def codegen(context, builder, signature, args):
        return builder.select(*args)
    return a(types.boolean, a, a), codegen


@intrinsic
def _bitcast_llvm(typingctx, x):
    to = {types.float32: types.int32, types.float64: types.int64, types.int32: types.float32,
          types.int64: types.float64}[x]

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(to))
    return to(x), codegen


_COMPILED = not numba_config.DISABLE_JIT


def _either(compiled, python):
    return compiled if _COMPILED else python


# fma(a, b, c): a * b + c rounded once (LLVM's llvm.fma)
fma = _either(_fma_llvm, _fma_python)
# strict_add(a, b), strict_sub(a, b), strict_mul(a, b): an operation never reassociated with those around it
strict_add = _either(_binary_llvm("fadd"), lambda a, b: a + b)
strict_sub = _either(_binary_llvm("fsub"), lambda a, b: a - b)
strict_mul = _either(_binary_llvm("fmul"), lambda a, b: a * b)
# select(condition, a, b): a where condition holds, else b; both are computed (branch-free, as SIMD code computes them)
select = _either(_select_llvm, lambda condition, a, b: a if condition else b)
# as_bits(x): the IEEE-754 bits of a float32 (an int32) or a float64 (an int64); from_bits(n): the float with bits n
as_bits = _either(_bitcast_llvm, lambda x: x.view(np.int32 if x.dtype == np.float32 else np.int64))
from_bits = _either(_bitcast_llvm, lambda n: n.view(np.float32 if n.dtype == np.int32 else np.float64))


@helper
def horner(c, x):
    """c[0] x^(n-1) + c[1] x^(n-2) + ... + c[n-1] by Horner's rule, one fma a step."""
    p = c[0]
    for i in range(1, len(c)):
        p = fma(p, x, c[i])
    return p


# ----------------------------------------------------------------------------- exp
EXP_RANGE_32 = F32(-104.0), F32(89.0)  # beyond: e^x rounds to 0 or to inf
EXP_RANGE_64 = F64(-746.0), F64(710.0)
LOG2_E_32, LOG2_E_64 = F32(1.4426950408889634), F64(1.4426950408889634)
LN2_32 = F32(0.693359375), F32(-2.12194440e-4)  # ln 2 = high + low; high * n is exact
LN2_64 = F64(0.6931471805599453), F64(2.3190468138462996e-17)  # ln 2 rounded, and what it misses
# Cephes' expf: e^r = 1 + r + r^2 P(r) on |r| <= ln2/2 (relative error below 2^-24)
EXP_POLY_32 = tuple(F32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                                     1.6666665459e-1, 5.0000001201e-1))
# Taylor: e^r = 1 + r + r^2 (1/2! + r/3! + ... + r^11/13!); the next term is below 2^-57
EXP_POLY_64 = tuple(F64(1 / math.factorial(k)) for k in range(13, 1, -1))
BIAS_32, BIAS_64 = np.int32(127), np.int64(1023)
SHIFT_32, SHIFT_64 = np.int32(23), np.int64(52)


@helper
def exp32(x):
    """e^x for a float32 x."""
    t = min(max(x, EXP_RANGE_32[0]), EXP_RANGE_32[1])
    n = np.rint(t * LOG2_E_32)
    r = fma(-n, LN2_32[1], fma(-n, LN2_32[0], t))  # x - n ln 2, in two steps
    p = horner(EXP_POLY_32, r)
    e_r = fma(p * r, r, r) + F32(1)
    k = np.int32(n)
    half = k >> np.int32(1)  # 2^n = 2^half 2^(n - half): both factors are normal numbers
    scale1, scale2 = from_bits(np.int32((half + BIAS_32) << SHIFT_32)), from_bits(np.int32((k - half + BIAS_32) << SHIFT_32))
    y = strict_mul(strict_mul(e_r, scale1), scale2)
    return select(x == x, y, x)  # NaN stays NaN


@helper
def exp64(x):
    """e^x for a float64 x."""
    t = min(max(x, EXP_RANGE_64[0]), EXP_RANGE_64[1])
    n = np.rint(t * LOG2_E_64)
    r = fma(-n, LN2_64[1], fma(-n, LN2_64[0], t))
    p = horner(EXP_POLY_64, r)
    e_r = F64(1) + fma(p * r, r, r)
    k = np.int64(n)
    half = k >> np.int64(1)
    scale1, scale2 = from_bits((half + BIAS_64) << SHIFT_64), from_bits((k - half + BIAS_64) << SHIFT_64)
    y = strict_mul(strict_mul(e_r, scale1), scale2)
    return select(x == x, y, x)


# ----------------------------------------------------------------------------- log
INF_32, INF_64 = F32(np.inf), F64(np.inf)
SQRT_HALF_32, SQRT_HALF_64 = F32(0.70710678118654752), F64(0.70710678118654752)
SMALLEST_NORMAL_32, SMALLEST_NORMAL_64 = F32(np.finfo(np.float32).tiny), F64(np.finfo(np.float64).tiny)
SUBNORMAL_SCALE_32, SUBNORMAL_SCALE_64 = F32(2.0 ** 23), F64(2.0 ** 54)  # (and their exponents below)
MANTISSA_32 = _bits(0x807FFFFF, np.int32), _bits(0x3F000000, np.int32)  # keep sign and fraction; exponent of 0.5
MANTISSA_64 = _bits(0x800FFFFFFFFFFFFF, np.int64), _bits(0x3FE0000000000000, np.int64)
EXPONENT_32, EXPONENT_64 = np.int32(0xFF), np.int64(0x7FF)
# Cephes' logf: ln(1 + f) = f - f^2/2 + f^3 P(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1]
LOG_POLY_32 = tuple(F32(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                                     1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                                     3.3333331174e-1))
# FreeBSD's e_log.c: ln(1 + f) = 2s + s R(s^2), s = f / (2 + f); ln 2 = high + low, high has 32 zero bits
LOG_POLY_64 = tuple(F64(c) for c in (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
                                     2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
                                     1.479819860511658591e-01))
LN2_SPLIT_64 = F64(6.93147180369123816490e-01), F64(1.90821492927058770002e-10)


@helper
def log32(x):
    """ln x for a float32 x."""
    tiny = x < SMALLEST_NORMAL_32
    bits = as_bits(select(tiny, x * SUBNORMAL_SCALE_32, x))
    k = ((bits >> np.int32(23)) & EXPONENT_32) - np.int32(126)  # x = m 2^k, m in [1/2, 1)
    m = from_bits(np.int32((bits & MANTISSA_32[0]) | MANTISSA_32[1]))  # (Numba's int32 arithmetic gives int64)
    low = m < SQRT_HALF_32
    f = select(low, m + m - F32(1), m - F32(1))  # m in [sqrt(1/2), sqrt(2)), f = m - 1
    e = F32(k) - select(low, F32(1), F32(0)) - select(tiny, F32(23), F32(0))
    p = horner(LOG_POLY_32, f)
    z = f * f
    y = fma(e, LN2_32[1], p * f * z)
    y = fma(z, F32(-0.5), y)
    y = fma(e, LN2_32[0], strict_add(f, y))
    return _log_special(x, y, INF_32)


@helper
def log64(x):
    """ln x for a float64 x."""
    tiny = x < SMALLEST_NORMAL_64
    bits = as_bits(select(tiny, x * SUBNORMAL_SCALE_64, x))
    k = ((bits >> np.int64(52)) & EXPONENT_64) - np.int64(1022)
    m = from_bits((bits & MANTISSA_64[0]) | MANTISSA_64[1])
    low = m < SQRT_HALF_64
    f = select(low, m + m - F64(1), m - F64(1))
    e = F64(k) - select(low, F64(1), F64(0)) - select(tiny, F64(54), F64(0))
    half_f2 = F64(0.5) * f * f
    s = f / (F64(2) + f)
    z = s * s
    w = z * z
    c1, c2, c3, c4, c5, c6, c7 = LOG_POLY_64
    R = z * fma(w, fma(w, fma(w, c7, c5), c3), c1) + w * fma(w, fma(w, c6, c4), c2)
    # k ln2_high - ((f^2/2 - (s (f^2/2 + R) + k ln2_low)) - f), in this order (FreeBSD's)
    inner = strict_add(strict_mul(s, strict_add(half_f2, R)), strict_mul(e, LN2_SPLIT_64[1]))
    y = strict_sub(strict_mul(e, LN2_SPLIT_64[0]), strict_sub(strict_sub(half_f2, inner), f))
    return _log_special(x, y, INF_64)


@helper
def _log_special(x, y, inf):
    """ln x's value at the special points, else y: ln 0 = -inf, ln(-x) = NaN, ln inf = inf, NaN."""
    y = select(x == 0, -inf, y)
    y = select(x < 0, inf - inf, y)  # NaN
    return select((x == inf) | (x != x), x, y)


@helper
def log1p32(x):
    """ln(1 + x) for a float32 x: ln w + (x - (w - 1)) / w, w = 1 + x."""
    w = x + F32(1)
    ln_w, lost = log32(w), strict_sub(x, strict_sub(w, F32(1))) / w  # lost: NaN where w is 0 or inf, and ln w is right
    return select(lost == lost, strict_add(ln_w, lost), ln_w)


@helper
def log1p64(x):
    """ln(1 + x) for a float64 x."""
    w = x + F64(1)
    ln_w, lost = log64(w), strict_sub(x, strict_sub(w, F64(1))) / w
    return select(lost == lost, strict_add(ln_w, lost), ln_w)


# ----------------------------------------------------------------------------- tanh
TANH_SMALL_32, TANH_SMALL_64 = F32(0.625), F64(0.625)
TANH_EXP_TOP_32, TANH_EXP_TOP_64 = F32(88.0), F64(708.0)  # e^88 and e^708: below the largest float
TANH_POLY_32 = tuple(F32(c) for c in (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                                      -3.33332819422e-1))
TANH_P_64 = tuple(F64(c) for c in (-9.64399179425052238628e-1, -9.92877231001918586564e1,
                                   -1.61468768441708447952e3))
TANH_Q_64 = tuple(F64(c) for c in (1.0, 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3))


@helper
def tanh32(x):
    """tanh x for a float32 x. e^(2|x|) by exp32's steps, for arguments up to 88 only (beyond, tanh
    rounds to 1 anyway): no clamping below, one scaling; the sign is copied last, which also
    keeps tanh(-0) = -0."""
    ax = abs(x)
    t = min(ax + ax, TANH_EXP_TOP_32)
    n = np.rint(t * LOG2_E_32)
    r = fma(-n, LN2_32[1], fma(-n, LN2_32[0], t))
    e_r = fma(horner(EXP_POLY_32, r) * r, r, r) + F32(1)
    far = F32(1) - F32(2) / (e_r * from_bits(np.int32((np.int32(n) + BIAS_32) << SHIFT_32)) + F32(1))
    z = x * x
    near = fma(horner(TANH_POLY_32, z) * z, ax, ax)
    return select(x == x, math.copysign(select(ax < TANH_SMALL_32, near, far), x), x)


@helper
def tanh64(x):
    """tanh x for a float64 x, as tanh32 (e^(2|x|) for arguments up to 708)."""
    ax = abs(x)
    t = min(ax + ax, TANH_EXP_TOP_64)
    n = np.rint(t * LOG2_E_64)
    r = fma(-n, LN2_64[1], fma(-n, LN2_64[0], t))
    e_r = F64(1) + fma(horner(EXP_POLY_64, r) * r, r, r)
    far = F64(1) - F64(2) / (e_r * from_bits((np.int64(n) + BIAS_64) << SHIFT_64) + F64(1))
    z = x * x
    near = fma(ax, z * horner(TANH_P_64, z) / horner(TANH_Q_64, z), ax)
    return select(x == x, math.copysign(select(ax < TANH_SMALL_64, near, far), x), x)


# ----------------------------------------------------------------------------- by dtype
def exp(x):
    """e^x in the dtype of x."""
    return exp32(x) if x.dtype == np.float32 else exp64(x)


def log(x):
    """ln x in the dtype of x."""
    return log32(x) if x.dtype == np.float32 else log64(x)


def log1p(x):
    """ln(1 + x) in the dtype of x, accurate for small x too."""
    return log1p32(x) if x.dtype == np.float32 else log1p64(x)


def tanh(x):
    """tanh x in the dtype of x."""
    return tanh32(x) if x.dtype == np.float32 else tanh64(x)


def _by_dtype(python, for_float32, for_float64):
    """Compiled, `python` calls for_float32 or for_float64 by the type of its argument (a small
    function of its own, which LLVM inlines into the loop that calls it, as it inlines those)."""
    @overload(python)
    def compiled(x):
        return (lambda x: for_float32(x)) if x == types.float32 else (lambda x: for_float64(x))
    return compiled


_by_dtype(exp, exp32, exp64)
_by_dtype(log, log32, log64)
_by_dtype(tanh, tanh32, tanh64)
_by_dtype(log1p, log1p32, log1p64)
