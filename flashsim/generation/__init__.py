"""Pythia 8 event generation in the conventions of CMS GEN NanoAOD.

:func:`iter_batches` yields :class:`GenBatch` objects (GEN NanoAOD plus the stable particles)
that the flash simulation and, through :mod:`flashsim.production` (``flashsim generate``), the
reference detector consume; :func:`minbias_pool` makes the reference detector's pileup.  Module
map: :mod:`.processes` (the process table and the CP5 tune), :mod:`.pythia` (running Pythia, flat
event records), :mod:`.genpart` (HepMC status, statusFlags, CMS pruning, mothers), :mod:`.genjets`
(anti-kT 0.4 GenJets with ghost flavours), :mod:`.pileup` (the pileup profile), :mod:`.run`
(chunks, seeds, batches).
"""

from __future__ import annotations

from flashsim.generation.processes import PROCESSES, Process
from flashsim.generation.run import GenBatch, iter_batches, minbias_pool

__all__ = ["PROCESSES", "GenBatch", "Process", "iter_batches", "minbias_pool"]
