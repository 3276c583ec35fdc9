"""FastJet clustering of many events at once, shared by GenJets and the reference detector.

Both :mod:`flashsim.generation.genjets` (anti-kT 0.4 GenJets) and :mod:`flashsim.refdet.jets`
(AK4 CHS jets) cluster with fastjet's multi-event awkward interface
(``fastjet._pyjet.AwkwardClusterSequence``); this module is the one place that talks to it.
"""

from __future__ import annotations

import functools
import os
import sys

import awkward as ak
import fastjet

__all__ = ["cluster_sequence"]


def cluster_sequence(particles: ak.Array,
                     definition: fastjet.JetDefinition) -> fastjet.ClusterSequence:
    """``fastjet.ClusterSequence(particles, definition)``, without FastJet's banner.

    ``particles``: ``N * var * {px, py, pz, E}``. FastJet's C++ prints its banner to the
    process's stdout on the first clustering; that would land in the middle of a command's
    output (or of a file it is piped to).
    """
    _swallow_banner()
    return fastjet.ClusterSequence(particles, definition)


@functools.cache
def _swallow_banner() -> None:
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        fastjet.ClusterSequence(ak.Array([[{"px": 1.0, "py": 0.0, "pz": 0.0, "E": 1.0}]]),
                                fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
