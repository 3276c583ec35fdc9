"""Running the flash simulation of one chunk, whatever drives it.

Every driver — the coffea :class:`~flashsim.processor.FlashSimProcessor`,
``flashsim simulate --generate`` (Pythia straight into flashsim), ``flashsim benchmark``
and the VBF H→μμ benchmark — runs a chunk the same way, with these pieces:

- :func:`chunk_seed`: the chunk's :class:`numpy.random.SeedSequence`, a pure function of
  ``(seed, file key, entry range)``, so the output does not depend on the executor or
  the number of workers; :func:`batch_rng` derives batch ``b``'s generator from it;
- :func:`worker_models`: the models, loaded once per process;
- :func:`one_torch_thread`: torch on one thread, so that float32 products round the same
  way in every worker;
- :func:`simulate_batches`: GEN chunk in, GEN + flash RECO out in batches of at most
  :data:`BATCH_EVENTS` output events (each batch replicated by :func:`replicate` on its own),
  so memory stays bounded whatever the chunk size and the oversampling; with
  ``model_draws`` K > 1 the chunk is simulated once per weight draw of the Bayesian models
  (:func:`check_model_draws`); :func:`gen_names` are the GEN names passed through;
- :func:`in_output_order`: a batch's names and fields in the order of the output file
  (:func:`output_names`, fields in schema order);
- :func:`scaled_runs`: the input's ``Runs`` tree scaled by the oversampling;
- :func:`quiet_coffea`, :class:`QuietNanoAODSchema`: coffea without its warnings about
  collections and cross-references that GEN inputs and flash outputs do not have.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from coffea.nanoevents import NanoAODSchema

from flashsim.errors import FlashSimError
from flashsim.nanoaod.reader import read_runs
from flashsim.nanoaod.schema import branch_dtype, load_schema
from flashsim.seeds import seed_sequence

__all__ = [
    "BATCH_EVENTS",
    "FLASH_COLLECTIONS",
    "GPU_BATCH_EVENTS",
    "QuietNanoAODSchema",
    "batch_rng",
    "check_model_draws",
    "chunk_seed",
    "gen_names",
    "in_output_order",
    "one_torch_thread",
    "output_names",
    "quiet_coffea",
    "replicate",
    "scaled_runs",
    "simulate_batches",
    "worker_models",
]

BATCH_EVENTS = 2_000
"""Output events (after oversampling) simulated at once. Peak memory grows with this number,
not with the chunk size or the oversampling; README's memory table shows the trade-off."""
GPU_BATCH_EVENTS = 20_000
"""The default with ``--device cuda``: larger network calls keep a GPU busy (a GPU node
has more host memory per process than a CPU grid slot)."""

FLASH_COLLECTIONS = ("Muon", "Electron", "Jet", "MET", "PV", "fixedGridRhoFastjetAll")
"""What the flash simulation adds to the GEN names."""

_GEN_SINGLES = ("Pileup", "Generator", "run", "luminosityBlock", "event")


def gen_names() -> tuple[str, ...]:
    """The schema names passed through from input to output: every GEN collection
    (``Gen*``, ``genWeight``, ``Pileup``, ``Generator``) and the event ids."""
    schema = load_schema()
    return tuple(n for n in [*schema.collections, *schema.scalars]
                 if n.lower().startswith("gen") or n in _GEN_SINGLES)


def output_names() -> tuple[str, ...]:
    """The names of a flash output file, in the file's order: GEN names (:func:`gen_names`),
    flash collections, then the replica and weight-draw numbers and the event weight."""
    return (*gen_names(), *FLASH_COLLECTIONS, "flashsimReplica", "flashsimModelDraw",
            "flashsimWeight")


def in_output_order(batch: dict) -> dict:
    """``batch`` with its names in :func:`output_names` order (any other name after them) and
    each collection's fields in schema order, which is how :func:`flashsim.nanoaod.reader.read_chunk`
    returns them: a file written from such batches reads back and rewrites unchanged."""
    schema = load_schema()
    rank = {name: i for i, name in enumerate(output_names())}
    ordered = {}
    for name in sorted(batch, key=lambda n: rank.get(n, len(rank))):
        value = batch[name]
        coll = schema.collections.get(name)
        if coll is not None:
            fields = [f for f in coll.branches if f in value.fields]
            fields += [f for f in value.fields if f not in coll.branches]  # the writer refuses them
            if fields != value.fields:
                value = value[fields]
        ordered[name] = value
    return ordered


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


def worker_models(directory: str | Path | None, backend: str, device: str = "cpu",
                  refine: bool = True, weights: bool = False):
    """:func:`flashsim.objects.load_models`, once per process (coffea calls ``process``
    once per chunk, and a worker process serves many chunks)."""
    return _cached_models(None if directory is None else str(directory), backend, device, refine,
                          weights)


@functools.lru_cache(maxsize=4)
def _cached_models(directory: str | None, backend: str, device: str, refine: bool,
                   weights: bool):
    from flashsim.objects import load_models

    return load_models(directory, backend=backend, device=device, refine=refine, weights=weights)


def chunk_seed(seed: int, file_key: str, entry_start: int,
               entry_stop: int) -> np.random.SeedSequence:
    """The seed sequence of one chunk, a pure function of the chunk's identity (any integer
    seed; see :mod:`flashsim.seeds`)."""
    return seed_sequence(seed, "flash", file_key, int(entry_start), int(entry_stop))


def batch_rng(chunk: np.random.SeedSequence, index: int) -> np.random.Generator:
    """The random generator of batch ``index`` of a chunk: the chunk's seed sequence with
    ``index`` appended to its spawn key (what ``SeedSequence.spawn`` gives its ``index``-th
    child, but without the parent's counter, so that it is a pure function of both)."""
    child = np.random.SeedSequence(chunk.entropy, spawn_key=(*chunk.spawn_key, int(index)),
                                   pool_size=chunk.pool_size)
    return np.random.default_rng(child)


def replicate(gen: dict, copies: int, start: int = 0, stop: int | None = None) -> dict:
    """Output events ``start`` to ``stop`` of the chunk with every event repeated ``copies``
    times, adjacent, and the copies numbered.

    Output event ``i`` is copy ``i % copies`` of GEN event ``i // copies``, so a slice of the
    replicated chunk is made without making the rest. The copies keep the source
    ``run``/``luminosityBlock``/``event``; the branch ``flashsimReplica`` (0..copies-1)
    tells them apart.
    """
    if stop is None:
        stop = len(gen["event"]) * copies
    output_index = np.arange(start, stop)
    index = output_index // copies
    out = {name: array[index] for name, array in gen.items()}
    out["flashsimReplica"] = (output_index % copies).astype(np.uint32)
    return out


def check_model_draws(models, model_draws: int) -> None:
    """Raise :class:`FlashSimError` unless ``models`` can be simulated with ``model_draws``
    weight draws: at least 1, and more than 1 only for Bayesian models on the torch backend."""
    if model_draws < 1:
        raise FlashSimError(f"--model-draws must be at least 1 (got {model_draws})")
    if model_draws == 1:
        return
    if not models.bayesian:
        raise FlashSimError(f"--model-draws {model_draws} needs Bayesian models, but the models "
                            f"in {models.directory} are deterministic: drop --model-draws, or "
                            "train Bayesian ones with `flashsim train OBJECT --bayesian`")
    if models.backend != "torch":
        raise FlashSimError(f"--model-draws {model_draws} draws weights with the torch backend; "
                            f"the {models.backend} backend runs the mean weights: drop --backend "
                            f"{models.backend}")


def simulate_batches(gen: dict, models, chunk: np.random.SeedSequence, *, oversample: int = 1,
                     model_draws: int = 1, batch_events: int = BATCH_EVENTS,
                     timings: dict[str, float] | None = None,
                     progress: Callable[[int], object] | None = None) -> Iterator[dict]:
    """GEN chunk in; GEN + flash RECO out, in the writer's chunk format, one batch at a time.

    The ``len(gen) * oversample`` output events are cut into consecutive batches of
    ``batch_events``; batch ``b`` is replicated (:func:`replicate`) and simulated on its own
    with :func:`batch_rng` ``(chunk, b)``. Only one batch is in memory at a time, so the peak
    does not grow with the chunk size or the oversampling. The output is a pure function of
    ``(chunk, oversample, model_draws, batch_events)``. An empty chunk gives one empty batch
    (a writer needs one to know the layout).

    ``model_draws`` K = 1 runs the models' mean weights. K > 1 simulates the chunk K times,
    once with each weight draw ``k`` of the Bayesian models
    (:meth:`flashsim.models.ModelSet.use_weight_draw`), numbered by the branch
    ``flashsimModelDraw``; draw ``k`` reuses the noise of the mean-weights run (the same
    :func:`batch_rng` ``(chunk, b)``), so the draws differ by their weights alone and their
    spread in a histogram bin is the model uncertainty, apart from the statistical one.

    ``timings``, if given, accumulates the seconds per simulation stage
    (see :func:`flashsim.objects.simulate_reco`); ``progress``, if given, is called with
    the number of output events of each finished batch.
    """
    from flashsim.objects import simulate_reco

    if batch_events < 1:
        raise ValueError(f"batch_events must be at least 1 (got {batch_events})")
    check_model_draws(models, model_draws)
    n_out = len(gen["event"]) * oversample
    draws = [None] if model_draws == 1 else range(model_draws)
    try:
        for draw in draws:
            if draw is not None:
                models.use_weight_draw(draw)
            for index, start in enumerate(range(0, max(n_out, 1), batch_events)):
                batch = replicate(gen, oversample, start, min(start + batch_events, n_out))
                if draw is not None:
                    batch["flashsimModelDraw"] = np.full(len(batch["event"]), draw,
                                                          branch_dtype("flashsimModelDraw"))
                yield {**batch, **simulate_reco(batch, models, batch_rng(chunk, index), timings)}
                if progress is not None:
                    progress(len(batch["event"]))
    finally:
        if model_draws > 1:
            models.use_weight_draw(None)  # the models are cached per process


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

