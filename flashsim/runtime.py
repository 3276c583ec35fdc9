"""Running the flash simulation of one chunk, whatever drives it.

Every driver — the coffea :class:`~flashsim.processor.FlashSimProcessor`,
``flashsim simulate --generate`` (Pythia straight into flashsim), ``flashsim benchmark``
and the VBF H→μμ benchmark — runs a chunk the same way, with these pieces:

- :func:`chunk_rng`: the chunk's random generator, a pure function of
  ``(seed, file key, entry range)``, so the output does not depend on the executor or
  the number of workers;
- :func:`worker_models`: the models, loaded once per process;
- :func:`one_torch_thread`: torch on one thread, so that float32 products round the same
  way in every worker;
- :func:`simulate_chunk`: GEN chunk in (events replicated :func:`replicate`-fold), GEN +
  flash RECO chunk out; :func:`gen_names` are the GEN names passed through;
- :func:`scaled_runs`: the input's ``Runs`` tree scaled by the oversampling;
- :func:`quiet_coffea`, :class:`QuietNanoAODSchema`: coffea without its warnings about
  collections and cross-references that GEN inputs and flash outputs do not have.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from coffea.nanoevents import NanoAODSchema

from flashsim.nanoaod.reader import read_runs
from flashsim.nanoaod.schema import load_schema

__all__ = [
    "QuietNanoAODSchema",
    "chunk_rng",
    "gen_names",
    "one_torch_thread",
    "quiet_coffea",
    "replicate",
    "scaled_runs",
    "simulate_chunk",
    "worker_models",
]

_GEN_SINGLES = ("Pileup", "Generator", "run", "luminosityBlock", "event")


def gen_names() -> tuple[str, ...]:
    """The schema names passed through from input to output: every GEN collection
    (``Gen*``, ``genWeight``, ``Pileup``, ``Generator``) and the event ids."""
    schema = load_schema()
    return tuple(n for n in [*schema.collections, *schema.scalars]
                 if n.lower().startswith("gen") or n in _GEN_SINGLES)


@contextlib.contextmanager
def quiet_coffea() -> Iterator[None]:
    """Silence coffea's warnings (collections a GEN or flash file does not have,
    4-vector fill-ins) for the calls inside the block only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"coffea(\.|$)")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"coffea(\.|$)")
        yield


class QuietNanoAODSchema(NanoAODSchema):
    """:class:`coffea.nanoevents.NanoAODSchema` without its warnings about the cross-references
    whose RECO collections a GEN input (or our output: no Electron, Photon, Tau, FatJet, …)
    lacks. coffea drops such cross-references either way; its public class switch
    ``warn_missing_crossrefs`` only stops the warning, in every worker process."""

    warn_missing_crossrefs = False


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    A float32 matrix product can round differently with another thread count, and
    a worker process does not inherit the parent's setting: one thread everywhere
    keeps the output bit-identical across executors. Parallelism comes from the
    executor's workers, one core each.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def worker_models(directory: str | Path | None, backend: str):
    """:func:`flashsim.objects.load_models`, once per process (coffea calls ``process``
    once per chunk, and a worker process serves many chunks)."""
    return _cached_models(None if directory is None else str(directory), backend)


@functools.lru_cache(maxsize=4)
def _cached_models(directory: str | None, backend: str):
    from flashsim.objects import load_models

    return load_models(directory, backend=backend)


def chunk_rng(seed: int, file_key: str, entry_start: int, entry_stop: int) -> np.random.Generator:
    """The random generator of one chunk, a pure function of the chunk's identity."""
    sequence = np.random.SeedSequence(
        [seed, zlib.crc32(file_key.encode()), int(entry_start), int(entry_stop)]
    )
    return np.random.default_rng(sequence)


def replicate(gen: dict, copies: int) -> dict:
    """Repeat every event ``copies`` times, adjacent, and number the copies.

    The copies keep the source ``run``/``luminosityBlock``/``event``; the branch
    ``flashsimReplica`` (0..copies-1) tells them apart.
    """
    n_events = len(gen["event"])
    index = np.repeat(np.arange(n_events), copies)
    out = {name: array[index] for name, array in gen.items()}
    out["flashsimReplica"] = np.tile(np.arange(copies, dtype=np.uint32), n_events)
    return out


def simulate_chunk(gen: dict, models, rng: np.random.Generator, *, oversample: int = 1,
                   timings: dict[str, float] | None = None) -> dict:
    """GEN chunk in, GEN + flash RECO chunk out (in the writer's chunk format).

    ``timings``, if given, accumulates the seconds per simulation stage
    (see :func:`flashsim.objects.simulate_reco`).
    """
    from flashsim.objects import simulate_reco

    gen = replicate(gen, oversample)
    return {**gen, **simulate_reco(gen, models, rng, timings)}


def scaled_runs(path: str | Path, oversample: int) -> dict | None:
    """The input's Runs tree with counts and sums of weights scaled by the oversampling."""
    runs = read_runs(path)
    if runs is None:
        return None
    scaled = dict(runs)
    scaled["genEventCount"] = np.asarray(runs["genEventCount"]) * oversample
    scaled["genEventSumw"] = np.asarray(runs["genEventSumw"]) * oversample
    scaled["genEventSumw2"] = np.asarray(runs["genEventSumw2"]) * oversample
    return scaled

