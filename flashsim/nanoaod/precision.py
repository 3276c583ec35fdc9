r"""Reduced float mantissas, as CMS NanoAOD stores them.

CMSSW's NanoAOD table producers keep, per float branch, only ``bits`` of the 23 mantissa bits
of an IEEE-754 float32 (the ``precision`` of each ``Var`` in
``PhysicsTools/NanoAOD/python/*_cff.py``; -1 there = all 23). The rounding is
``MiniFloatConverter::reduceMantissaToNbitsRounding`` (``DataFormats/Math/interface/
libminifloat.h``), which on the bit pattern ``i`` with ``shift = 23 - bits`` does::

    if i & (1 << (shift - 1)):                     # first dropped bit set: round up
        m = (i & 0x7FFFFF) >> shift
        if m < 2**bits - 2: m += 1                 # never carries into the exponent
        i = (i & 0xFF800000) | (m << shift)
    else:
        i &= ~((1 << shift) - 1)                   # round down: drop the low bits

i.e. round to nearest with ties away from zero, except at the top two mantissa values of a
binade, which are truncated.  :func:`reduce_mantissa` is that code, vectorised on the uint32
view of the array; rounding twice gives the same values as rounding once.

A stored value therefore stands for an interval of reals, its *rounding cell*. In units of the
last kept bit, :math:`u = 2^{e-127-\text{bits}}` for biased exponent :math:`e`, the cell of
mantissa :math:`r` is :math:`[r - \tfrac12, r + \tfrac12)`, except :math:`[r, r + \tfrac12)` at
:math:`r = 0` (nothing carries up from the binade below), :math:`[r - \tfrac12, r + 1)` at
:math:`r = 2^\text{bits} - 2` and :math:`[r, r + 1)` at :math:`r = 2^\text{bits} - 1` (the
truncated top). :func:`dequantize` draws uniformly from that cell: a density fitted to
rounded values by maximum likelihood would otherwise chase the grid (Uria et al. 2013,
arXiv:1306.0186; Theis et al. 2016, arXiv:1511.01844), and rounding the draw gives back the
stored value exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FULL_PRECISION", "dequantize", "mantissa_bits_used", "reduce_mantissa", "rounding_cell"]

FULL_PRECISION = 23
"""Mantissa bits of a float32: the precision of a branch CMSSW does not round."""

_LOW23 = np.uint32(0x007FFFFF)
_HIGH9 = np.uint32(0xFF800000)


def reduce_mantissa(values: np.ndarray, bits: int) -> np.ndarray:
    """A new float32 array: ``values`` rounded to ``bits`` mantissa bits as CMSSW rounds them."""
    values = np.asarray(values, dtype=np.float32)
    if not 1 <= bits <= FULL_PRECISION:
        raise ValueError(f"mantissa precision must be 1..{FULL_PRECISION} bits, got {bits}")
    if bits == FULL_PRECISION:
        return values.copy()
    shift = np.uint32(FULL_PRECISION - bits)
    raw = values.view(np.uint32)
    mantissa = (raw & _LOW23) >> shift
    round_up = ((raw >> np.uint32(shift - 1)) & np.uint32(1)).astype(bool)
    mantissa = mantissa + (round_up & (mantissa < np.uint32((1 << bits) - 2))).astype(np.uint32)
    return ((raw & _HIGH9) | (mantissa << shift)).view(np.float32)


def mantissa_bits_used(values: np.ndarray) -> int:
    """The fewest mantissa bits that represent every value of ``values`` exactly (0 if all are
    powers of two or zero): 23 minus the smallest count of trailing zero mantissa bits."""
    mantissa = np.asarray(values, dtype=np.float32).ravel().view(np.uint32) & _LOW23
    if not mantissa.any():
        return 0
    lowest_set = mantissa & (~mantissa + np.uint32(1))  # isolates the lowest set bit
    trailing_zeros = np.log2(lowest_set[mantissa != 0].astype(np.float64)).astype(int)
    return FULL_PRECISION - int(trailing_zeros.min())


def rounding_cell(values: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``(low, high)``: the reals that :func:`reduce_mantissa` at ``bits`` rounds to each
    of ``values`` lie in ``[low, high)`` (mirrored for negative values; module doc). Zeros,
    subnormals, infinities and NaN get the empty cell ``low == high == value``."""
    values = np.asarray(values, dtype=np.float32)
    if not 1 <= bits <= FULL_PRECISION:
        raise ValueError(f"mantissa precision must be 1..{FULL_PRECISION} bits, got {bits}")
    raw = values.view(np.uint32)
    exponent = ((raw >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int64)
    kept = ((raw & _LOW23) >> np.uint32(FULL_PRECISION - bits)).astype(np.int64)
    top = (1 << bits) - 2
    normal = (exponent > 0) & (exponent < 0xFF)
    unit = np.where(normal, np.ldexp(1.0, exponent - 127 - bits), 0.0)
    below = unit * np.where((kept == 0) | (kept > top), 0.0, 0.5)
    above = unit * np.where(kept >= top, 1.0, 0.5)
    if bits == FULL_PRECISION:
        below, above = unit * 0.5, unit * 0.5
    magnitude = np.abs(values.astype(np.float64))
    sign = np.where(np.signbit(values), -1.0, 1.0)
    low, high = sign * (magnitude - below), sign * (magnitude + above)
    return np.minimum(low, high), np.maximum(low, high)


def dequantize(values: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """A new float32 array: each value of ``values`` (stored at ``bits`` mantissa bits) replaced
    by a uniform draw from its :func:`rounding_cell`, so that
    ``reduce_mantissa(dequantize(x, bits, rng), bits) == x``. Zeros, subnormals, infinities and
    NaN are kept, as is everything at full precision."""
    values = np.asarray(values, dtype=np.float32)
    if bits == FULL_PRECISION:
        return values.copy()
    low, high = rounding_cell(values, bits)
    with np.errstate(invalid="ignore"):
        drawn = (low + rng.uniform(size=values.shape) * (high - low)).astype(np.float32)
    # float32 can land a draw on the cell's open end; such a value keeps its stored one
    return np.where((high > low) & (reduce_mantissa(drawn, bits) == values), drawn, values)
