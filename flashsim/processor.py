"""The coffea processor: GEN NanoEvents in, one flash NANOAOD file per chunk out.

:class:`FlashSimProcessor` only orchestrates. Per chunk it

1. takes every GEN collection and the event ids from the NanoEvents
   (:func:`gen_chunk_from_events`; the RECO collections of a NANOAODSIM input are
   not copied);
2. simulates the chunk in batches of output events with
   :func:`flashsim.runtime.simulate_batches`: every event replicated ``oversample`` times
   (branch ``flashsimReplica``) and, with ``model_draws`` K > 1, once per weight draw of the
   Bayesian models (branch ``flashsimModelDraw``), then efficiency, flow and post-processing
   of every object, cross-references rebuilt;
3. appends each batch, GEN + flash RECO, to the chunk's file with the project's NanoAOD
   writer, so that one batch, not the chunk, is in memory at a time; names and fields in
   the output's order (:func:`flashsim.runtime.in_output_order`), so that a run of one
   chunk can publish its chunk file as the output as it is;
4. returns the bookkeeping as a coffea accumulator.

Randomness is derived per chunk from ``(seed, file UUID, entry range)``
(:func:`flashsim.runtime.chunk_seed`), per batch from the batch's index
(:func:`flashsim.runtime.batch_rng`), and torch runs on one thread, so the output does
not depend on the executor or on the number of workers.

It runs under any coffea ``Runner``::

    from coffea import processor
    from flashsim.processor import FlashSimProcessor, QuietNanoAODSchema

    runner = processor.Runner(processor.IterativeExecutor(), chunksize=50_000,
                              schema=QuietNanoAODSchema)
    result = runner({"vbf": ["gen.root"]}, FlashSimProcessor(output_dir="flash/"),
                    treename="Events")
"""

from __future__ import annotations

import time
from pathlib import Path

import awkward as ak
import numpy as np
from coffea import processor
from tqdm import tqdm

from flashsim.nanoaod.schema import load_schema
from flashsim.nanoaod.writer import NanoAODWriter
from flashsim.runtime import (
    BATCH_EVENTS,
    QuietNanoAODSchema,
    chunk_seed,
    gen_names,
    in_output_order,
    one_torch_thread,
    quiet_coffea,
    scaled_runs,
    simulate_batches,
    worker_models,
)

# QuietNanoAODSchema is the schema to run the processor with; it is exported from here too,
# so that a coffea analysis imports everything it needs from one module.
__all__ = ["FlashSimProcessor", "QuietNanoAODSchema", "gen_chunk_from_events"]


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
        Where the chunk files go (an existing directory; one file per chunk, named
        after the dataset, the input file UUID and the entry range).
    models:
        A model directory; ``None`` means the shipped defaults. Models are
        loaded once per worker process, not shipped with the processor.
    seed:
        The run's seed; each chunk derives its own from it.
    oversample:
        Simulate every GEN event this many times with independent noise.
    model_draws:
        K > 1: simulate every GEN event once per weight draw 0..K-1 of the Bayesian models
        (:func:`flashsim.runtime.simulate_batches`); 1: their mean weights.
    backend:
        ``"torch"`` or ``"onnx"``.
    device:
        ``"cpu"`` or ``"cuda"``: where the networks run (torch backend).
    batch_events:
        Output events simulated at once (see :data:`flashsim.runtime.BATCH_EVENTS`); the
        peak memory of a worker grows with it, not with the chunk size.
    progress:
        Show a bar of the chunk's output events (for an in-process executor on a terminal).
    refine:
        Sample the flows that have a latent refiner (``flashsim refine``) through it; False:
        the flows alone, bit for bit as without refiners.
    weights:
        (with ``refine=False``) write the DCTR weights of the flows' samples: ``flashsimWeight``
        per object and per event (:mod:`flashsim.objects.event`).

    The accumulator holds the chunk files (``chunks``), ``events_in``, ``events_out``,
    ``seconds`` and ``stage_seconds``: the seconds per stage — ``read`` (GEN chunk from
    the NanoEvents, Runs rows of the input), ``muon``, ``jet``, ``fake_jet``, ``assembly``, ``met_pv``
    (:func:`flashsim.objects.simulate_reco`) and ``write`` — summed over chunks.

    Examples
    --------
    Twenty Pythia Drell-Yan events, two chunks of ten, every event simulated twice:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from coffea import processor
    >>> from flashsim.production import generate_file
    >>> from flashsim.processor import FlashSimProcessor, QuietNanoAODSchema
    >>> work = Path(tempfile.mkdtemp())
    >>> generate_file("dy_mumu", 20, work / "gen.root", seed=1)
    >>> (work / "flash").mkdir()
    >>> runner = processor.Runner(processor.IterativeExecutor(), chunksize=10,
    ...                           schema=QuietNanoAODSchema)
    >>> result = runner({"dy": [str(work / "gen.root")]},
    ...                 FlashSimProcessor(work / "flash", oversample=2), treename="Events")
    >>> result["events_in"], result["events_out"]
    (20, 40)
    >>> [(c["entry_start"], c["entry_stop"]) for c in result["chunks"]]
    [(0, 10), (10, 20)]
    >>> sorted(result["stage_seconds"])
    ['assembly', 'electron', 'fake_jet', 'jet', 'met_pv', 'muon', 'read', 'write']
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        models: str | Path | None = None,
        seed: int = 1,
        oversample: int = 1,
        model_draws: int = 1,
        backend: str = "torch",
        device: str = "cpu",
        batch_events: int = BATCH_EVENTS,
        progress: bool = False,
        refine: bool = True,
        weights: bool = False,
    ) -> None:
        self.output_dir = str(output_dir)
        self.models = None if models is None else str(models)
        self.seed = seed
        self.oversample = oversample
        self.model_draws = model_draws
        self.backend = backend
        self.device = device
        self.batch_events = batch_events
        self.progress = progress
        self.refine = refine
        self.weights = weights

    def process(self, events) -> dict:
        with quiet_coffea(), one_torch_thread():
            return self._process(events)

    def _process(self, events) -> dict:
        started = time.perf_counter()
        stages: dict[str, float] = {}
        meta = events.metadata
        file_key = str(meta.get("fileuuid") or meta["filename"])
        start, stop = int(meta["entrystart"]), int(meta["entrystop"])
        models = worker_models(self.models, self.backend, self.device, self.refine, self.weights)

        began = time.perf_counter()
        gen = gen_chunk_from_events(events)
        # Only the first chunk of a file carries that file's Runs rows, so that
        # the Runs trees of all chunk files add up to the input's totals.
        runs = scaled_runs(meta["filename"], self.oversample)
        if runs is not None and start > 0:
            runs = _no_runs()
        stages["read"] = time.perf_counter() - began
        name = f"{meta.get('dataset', 'flash')}_{file_key[:12]}_{start}_{stop}.root"
        path = Path(self.output_dir) / name
        n_out = len(gen["event"]) * self.oversample * self.model_draws
        batches = simulate_batches(gen, models, chunk_seed(self.seed, file_key, start, stop),
                                   oversample=self.oversample, model_draws=self.model_draws,
                                   batch_events=self.batch_events, timings=stages)
        with tqdm(total=n_out, unit="ev", desc=f"{Path(meta['filename']).name} [{start}:{stop}]",
                  disable=not self.progress, leave=False, dynamic_ncols=True) as bar, \
                NanoAODWriter(path, runs=runs) as writer:
            for batch in batches:
                began = time.perf_counter()
                writer.write(in_output_order(batch))
                stages["write"] = stages.get("write", 0.0) + time.perf_counter() - began
                bar.update(len(batch["event"]))
        return {
            # a plain list: coffea's list_accumulator cannot be added to a list
            "chunks": [{"path": str(path), "dataset": meta.get("dataset"),
                        "file": meta["filename"], "entry_start": start, "entry_stop": stop}],
            "events_in": len(gen["event"]),
            "events_out": n_out,
            "seconds": time.perf_counter() - started,
            "stage_seconds": stages,
        }

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator


def _no_runs() -> dict:
    return {
        "run": np.zeros(0, np.uint32),
        "genEventCount": np.zeros(0, np.int64),
        "genEventSumw": np.zeros(0, np.float64),
        "genEventSumw2": np.zeros(0, np.float64),
    }
