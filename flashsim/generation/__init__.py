"""Pythia 8 event generation in the conventions of CMS GEN NanoAOD.

``flashsim generate PROCESS -n N -o FILE`` runs :func:`generate_file`; the reference detector and
the flash simulation consume :class:`GenBatch` objects from :func:`iter_batches` and pileup from
:func:`minbias_pool`.  Module map: :mod:`.processes` (the process table and the CP5 tune),
:mod:`.pythia` (running Pythia, flat event records), :mod:`.genpart` (HepMC status, statusFlags,
CMS pruning, mothers), :mod:`.genjets` (anti-kT 0.4 GenJets with ghost flavours), :mod:`.pileup`
(the pileup profile), :mod:`.run` (chunks, seeds, workers, output).
"""

from __future__ import annotations

from flashsim.generation.processes import PROCESSES, Process
from flashsim.generation.run import GenBatch, generate_file, iter_batches, minbias_pool

__all__ = ["PROCESSES", "GenBatch", "Process", "generate_file", "iter_batches", "minbias_pool"]
