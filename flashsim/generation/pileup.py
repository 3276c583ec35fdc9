"""The pileup profile: how many extra pp interactions accompany each generated event.

CMS simulates pileup in two steps, and so do we:

* ``Pileup_nTrueInt`` — the Poisson mean of the bunch crossing, drawn per event from the run
  profile.  The 2018 profile is a broad, slightly right-skewed bump; we use a Gamma distribution
  with mean ``mu`` (``--pileup``, default 30) and standard deviation ``0.4 * mu`` (shape k = 6.25,
  about the width of the 2018 profile), rounded to integers because CMS MC draws it from an
  integer-binned histogram (the reference file has 22.0, 25.0, ...).
* ``Pileup_nPU`` ~ Poisson(nTrueInt): in-time interactions, the number the reference detector
  overlays from the minimum-bias pool.
* ``Pileup_sumEOOT`` / ``Pileup_sumLOOT`` — interactions in the 12 early / 3 late out-of-time
  bunch crossings that CMS simulates (-12..+3), Poisson(12 * nTrueInt) and Poisson(3 * nTrueInt).
* ``Pileup_pudensity`` and ``Pileup_gpudensity`` (vertex densities around the primary vertex) are
  not produced: they need vertex positions that only the detector simulation defines.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

__all__ = ["EARLY_CROSSINGS", "LATE_CROSSINGS", "RELATIVE_WIDTH", "pileup_table"]

RELATIVE_WIDTH = 0.4
EARLY_CROSSINGS = 12
LATE_CROSSINGS = 3


def pileup_table(n_events: int, mean: float, rng: np.random.Generator) -> ak.Array:
    """The ``Pileup`` singleton collection ``N * {nTrueInt, nPU, sumEOOT, sumLOOT}``."""
    if mean > 0:
        shape = 1.0 / RELATIVE_WIDTH**2
        true_int = np.rint(rng.gamma(shape, mean / shape, size=n_events))
    else:
        true_int = np.zeros(n_events)
    return ak.zip({
        "nTrueInt": true_int.astype(np.float32),
        "nPU": rng.poisson(true_int).astype(np.int32),
        "sumEOOT": rng.poisson(EARLY_CROSSINGS * true_int).astype(np.int32),
        "sumLOOT": rng.poisson(LATE_CROSSINGS * true_int).astype(np.int32),
    })
