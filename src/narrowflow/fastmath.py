"""Branch-free elementary functions that Numba vectorizes across SIMD lanes.

Scalar libm calls (``math.tanh``, ``math.exp``) stop LLVM from vectorizing a
loop over lanes; these versions are written in plain arithmetic (Cody–Waite
range reduction, polynomials, a bit-cast power of two, selects instead of
branches), so a loop calling them compiles to packed instructions. Accuracy:
a few ulp over the whole double range (tests/test_fastmath.py measures it
against numpy). NaN in gives NaN out; ±inf and overflow behave like libm.

Every function here must be inlined into a caller compiled with
``error_model='numpy'`` (docs/performance.md §3: Numba's default division check blocks
vectorization). The caller's fastmath flags apply (they are taken from the
outermost function): FMA contraction ('contract') is allowed; 'reassoc' and
'afn' are not, since they let the vector and scalar paths differ.
"""
from __future__ import annotations

from numba import njit, types
from numba.extending import intrinsic

from narrowflow.jit import INLINE


_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so k*_LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer in the low bits
_SHIFTER_BITS = 0x4338000000000000


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as int64 (no conversion)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, i):
    """The float64 whose IEEE-754 bits are the int64 `i`."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@njit(**INLINE)
def _exp_core(x):
    """exp(x) for x already clamped to [-1000, 1000] (keeps both 2^k factors normal); NaN propagates."""
    shifted = x * _INV_LN2 + _SHIFTER
    kf = shifted - _SHIFTER  # round(x / ln2) as a float, without fptosi (undefined for NaN)
    k = _f64_bits(shifted) - _SHIFTER_BITS
    r = (x - kf * _LN2_HI) - kf * _LN2_LO  # |r| <= ln2/2
    # Taylor polynomial of exp on |r| <= 0.347, degree 13: truncation < 2e-18.
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2^k as two factors so that both stay normal numbers while the product
    # under- or overflows exactly as exp does.
    k1 = k >> 1
    k2 = k - k1
    return p * _bits_f64((k1 + 1023) << 52) * _bits_f64((k2 + 1023) << 52)


@njit(**INLINE)
def exp(x):
    """exp(x), float64, branch-free; overflow to inf and underflow to 0 as libm."""
    xc = -1000.0 if x < -1000.0 else x  # comparisons written so that NaN passes through
    xc = 1000.0 if xc > 1000.0 else xc
    return _exp_core(xc)


@njit(**INLINE)
def tanh(x):
    """tanh(x), float64, branch-free (both formulas computed, one selected)."""
    ax = -x if x < 0.0 else x
    # Small |x|: Cephes' odd rational approximation, relative error ~1e-17 on |x| < 0.625.
    z = x * x
    num = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z \
        - 1.61468768441708447952e3
    den = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z \
        + 4.84406305325125486048e3
    small = x + x * z * (num / den)
    # Large |x|: 1 - 2/(e^{2|x|} + 1); e^{2|x|} saturates harmlessly past |x| = 40.
    axc = 40.0 if ax > 40.0 else ax
    big = 1.0 - 2.0 / (_exp_core(2.0 * axc) + 1.0)
    big = -big if x < 0.0 else big
    return small if ax < 0.625 else big


@njit(**INLINE)
def log1p_unit(u):
    """log(1 + u) for 0 <= u <= 1 (what softplus needs), branch-free, relative ~1 ulp.

    Uses log1p(u) = 2 atanh(s), s = u / (2 + u) in [0, 1/3], summed as an odd series
    in s up to s^35, which keeps full relative accuracy for tiny u.
    """
    s = u / (2.0 + u)
    s2 = s * s
    p = 1.0 / 35.0
    p = p * s2 + 1.0 / 33.0
    p = p * s2 + 1.0 / 31.0
    p = p * s2 + 1.0 / 29.0
    p = p * s2 + 1.0 / 27.0
    p = p * s2 + 1.0 / 25.0
    p = p * s2 + 1.0 / 23.0
    p = p * s2 + 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return 2.0 * s * p


@njit(**INLINE)
def sigmoid(x):
    """1 / (1 + e^{-x}), stable for any real x (no overflow warning, exact limits)."""
    return 1.0 / (1.0 + exp(-x))


@njit(**INLINE)
def softplus(x):
    """log(1 + e^x) in the stable form max(x, 0) + log1p(e^{-|x|})."""
    ax = -x if x < 0.0 else x
    pos = 0.0 if x < 0.0 else x
    return pos + log1p_unit(exp(-ax))
