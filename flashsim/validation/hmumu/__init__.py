"""The VBF H→μμ benchmark: one coffea analysis run on full and flash simulation.

- :mod:`~flashsim.validation.hmumu.selection` — the CMS-style selection as a coffea
  processor (``PackedSelection``, cut flow, ``Weights``), run over files;
- :mod:`~flashsim.validation.hmumu.statistics` — yields and errors per GEN event, shape
  comparisons, the classifier and its Asimov significance;
- :mod:`~flashsim.validation.hmumu.benchmark` — ``flashsim benchmark-hmumu``: held-out
  samples, flash simulation, analysis, report.
"""

from __future__ import annotations

from flashsim.validation.hmumu.benchmark import (
    BENCHMARK_PROCESSES,
    HELD_OUT_SEED_OFFSET,
    run_hmumu_benchmark,
)
from flashsim.validation.hmumu.selection import (
    CUTS,
    ELECTRON_VETO,
    OBSERVABLES,
    HmumuProcessor,
    event_scales,
    run_analysis,
    select_vbf_hmumu,
)
from flashsim.validation.hmumu.statistics import FEATURES, analyse, asimov_significance

__all__ = [
    "BENCHMARK_PROCESSES",
    "CUTS",
    "ELECTRON_VETO",
    "FEATURES",
    "HELD_OUT_SEED_OFFSET",
    "OBSERVABLES",
    "HmumuProcessor",
    "analyse",
    "asimov_significance",
    "event_scales",
    "run_analysis",
    "run_hmumu_benchmark",
    "select_vbf_hmumu",
]
