"""The coffea processor: GEN NanoEvents in, one flash NANOAOD file per chunk out.

:class:`FlashSimProcessor` only orchestrates. Per chunk it

1. takes every GEN collection and the event ids from the NanoEvents
   (:func:`gen_names`; the RECO collections of a NANOAODSIM input are not copied);
2. replicates every event ``oversample`` times (branch ``flashsimReplica``);
3. calls :func:`flashsim.objects.simulate_reco` — efficiency, flow and
   post-processing of every object, cross-references rebuilt;
4. writes GEN + flash RECO with the project's NanoAOD writer;
5. returns the bookkeeping as a coffea accumulator.

Randomness is derived per chunk from ``(seed, file UUID, entry range)``, so the
output does not depend on the executor or on the number of workers.

It runs under any coffea ``Runner``::

    from coffea import processor
    from flashsim.processor import FlashSimProcessor, QuietNanoAODSchema

    runner = processor.Runner(processor.IterativeExecutor(), chunksize=50_000,
                              schema=QuietNanoAODSchema)
    result = runner({"vbf": ["gen.root"]}, FlashSimProcessor(output_dir="flash/"),
                    treename="Events")
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from flashsim.nanoaod.reader import read_runs
from flashsim.nanoaod.schema import load_schema
from flashsim.nanoaod.writer import write_nanoaod

__all__ = [
    "FlashSimProcessor",
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
    """:class:`coffea.nanoevents.NanoAODSchema` without its warnings about the RECO
    collections and cross-references a GEN input (or our output) lacks."""

    def _build_collections(self, field_names, input_contents):
        with quiet_coffea():
            return super()._build_collections(field_names, input_contents)


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
    """:func:`flashsim.models.load_models`, once per process (coffea calls ``process``
    once per chunk, and a worker process serves many chunks)."""
    return _cached_models(None if directory is None else str(directory), backend)


@functools.lru_cache(maxsize=4)
def _cached_models(directory: str | None, backend: str):
    from flashsim.models import load_models

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


def simulate_chunk(gen: dict, models, rng: np.random.Generator, *, oversample: int = 1) -> dict:
    """GEN chunk in, GEN + flash RECO chunk out (in the writer's chunk format)."""
    from flashsim.objects import simulate_reco

    gen = replicate(gen, oversample)
    return {**gen, **simulate_reco(gen, models, rng)}


def gen_chunk_from_events(events) -> dict:
    """The GEN part of NanoEvents as a plain chunk: every GEN name of :func:`gen_names`
    the input has, schema fields only (no coffea-derived ones)."""
    schema = load_schema()
    chunk = {}
    for name in gen_names():
        if name not in events.fields:
            continue
        if name in schema.collections:
            fields = [f for f in schema.collections[name].branches if f in ak.fields(events[name])]
            chunk[name] = ak.zip(
                {f: ak.materialize(events[name][f]) for f in fields},
                depth_limit=None if schema.collections[name].jagged else 1,
                with_name=None,
            )
        else:
            chunk[name] = ak.to_numpy(ak.materialize(events[name]))
    return chunk


class FlashSimProcessor(processor.ProcessorABC):
    """Flash-simulate the GEN events of each chunk and write them as NanoAOD.

    Parameters
    ----------
    output_dir:
        Where the chunk files go (one file per chunk, named after the dataset,
        the input file UUID and the entry range).
    models:
        A model directory; ``None`` means the shipped defaults. Models are
        loaded once per worker process, not shipped with the processor.
    seed:
        The run's seed; each chunk derives its own from it.
    oversample:
        Simulate every GEN event this many times with independent noise.
    backend:
        ``"torch"`` or ``"onnx"``.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        models: str | Path | None = None,
        seed: int = 1,
        oversample: int = 1,
        backend: str = "torch",
    ) -> None:
        self.output_dir = str(output_dir)
        self.models = None if models is None else str(models)
        self.seed = seed
        self.oversample = oversample
        self.backend = backend

    def process(self, events) -> dict:
        with quiet_coffea(), one_torch_thread():
            return self._process(events)

    def _process(self, events) -> dict:
        started = time.perf_counter()
        meta = events.metadata
        file_key = str(meta.get("fileuuid") or meta["filename"])
        start, stop = int(meta["entrystart"]), int(meta["entrystop"])
        models = worker_models(self.models, self.backend)
        rng = chunk_rng(self.seed, file_key, start, stop)

        gen = gen_chunk_from_events(events)
        chunk = simulate_chunk(gen, models, rng, oversample=self.oversample)
        # Only the first chunk of a file carries that file's Runs rows, so that
        # the Runs trees of all chunk files add up to the input's totals.
        runs = scaled_runs(meta["filename"], self.oversample)
        if runs is not None and start > 0:
            runs = _no_runs()
        name = f"{meta.get('dataset', 'flash')}_{file_key[:12]}_{start}_{stop}.root"
        path = Path(self.output_dir) / name
        write_nanoaod(path, chunk, runs=runs)
        return {
            # a plain list: coffea's list_accumulator cannot be added to a list
            "chunks": [{"path": str(path), "dataset": meta.get("dataset"),
                        "file": meta["filename"], "entry_start": start, "entry_stop": stop}],
            "events_in": len(gen["event"]),
            "events_out": len(chunk["event"]),
            "seconds": time.perf_counter() - started,
        }

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator


def scaled_runs(path: str, oversample: int) -> dict | None:
    """The input's Runs tree with counts and sums of weights scaled by the oversampling."""
    runs = read_runs(path)
    if runs is None:
        return None
    scaled = dict(runs)
    scaled["genEventCount"] = np.asarray(runs["genEventCount"]) * oversample
    scaled["genEventSumw"] = np.asarray(runs["genEventSumw"]) * oversample
    scaled["genEventSumw2"] = np.asarray(runs["genEventSumw2"]) * oversample
    return scaled


def _no_runs() -> dict:
    return {
        "run": np.zeros(0, np.uint32),
        "genEventCount": np.zeros(0, np.int64),
        "genEventSumw": np.zeros(0, np.float64),
        "genEventSumw2": np.zeros(0, np.float64),
    }
