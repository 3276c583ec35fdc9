"""Random streams derived from one user seed, keyed by what they are for.

``seed_sequence(seed, "minbias_pool", chunk)`` is a ``numpy.random.SeedSequence`` whose entropy
encodes the whole key: every element (the seed, purpose names, chunk and batch numbers) becomes
``[type tag, byte length, little-endian uint32 words]``, integers zig-zag mapped to non-negative
ones (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...). The encoding is injective, so two different keys
never share a stream: not ``(seed, chunk + 1)`` and ``(seed + 1, chunk)`` (as ``seed + chunk``
would), not ``s`` and ``-s`` (as ``abs(seed)`` would), and not a huge seed and a shorter key whose
uint32 words happen to line up (as a plain ``SeedSequence([seed, chunk])`` would, because
numpy splits a large integer into several words).
"""

from __future__ import annotations

import numpy as np

__all__ = ["seed_sequence", "seeded_rng"]

_INT, _STR = 0, 1


def _words(item: int | str) -> list[int]:
    """``[tag, n_bytes, *uint32 words]`` of one key element."""
    if isinstance(item, str):
        tag, data = _STR, item.encode()
    else:
        value = int(item)
        zigzag = 2 * value if value >= 0 else -2 * value - 1
        tag, data = _INT, zigzag.to_bytes(max(1, (zigzag.bit_length() + 7) // 8), "little")
    padded = data + b"\0" * (-len(data) % 4)
    return [tag, len(data), *np.frombuffer(padded, dtype="<u4").tolist()]


def seed_sequence(seed: int, *key: int | str) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``(seed, *key)``: any Python integer seed, then purpose names and
    indices (``"detector", chunk, batch``); different keys give independent streams."""
    return np.random.SeedSequence([word for item in (seed, *key) for word in _words(item)])


def seeded_rng(seed: int, *key: int | str) -> np.random.Generator:
    """``numpy.random.default_rng`` of :func:`seed_sequence` ``(seed, *key)``."""
    return np.random.default_rng(seed_sequence(seed, *key))
