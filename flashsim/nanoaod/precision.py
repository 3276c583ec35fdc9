"""Reduced float mantissas, as CMS NanoAOD stores them.

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
"""

from __future__ import annotations

import numpy as np

__all__ = ["FULL_PRECISION", "mantissa_bits_used", "reduce_mantissa"]

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
