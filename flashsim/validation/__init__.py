"""Validation of flash simulation against full simulation, and the VBF H→μμ benchmark.

- :mod:`~flashsim.validation.metrics` — distances, classifier two-sample test, tagging ROC;
- :mod:`~flashsim.validation.compare` — ``flashsim validate``: object-by-object and
  event-by-event comparison of the same GEN events;
- :mod:`~flashsim.validation.hmumu` — ``flashsim benchmark-hmumu``: the CMS VBF H→μμ
  selection as a coffea processor, run on full and flash samples;
- :mod:`~flashsim.validation.plots`, :mod:`~flashsim.validation.report` — figures and reports.
"""

from __future__ import annotations

from flashsim.validation.compare import run_validation
from flashsim.validation.hmumu import HmumuProcessor, run_analysis, run_hmumu_benchmark

__all__ = ["HmumuProcessor", "run_analysis", "run_hmumu_benchmark", "run_validation"]
