"""``flashsim simulate``: run :class:`~flashsim.processor.FlashSimProcessor` over files.

Two ways in:

- :func:`simulate` — GEN NanoAOD or NANOAODSIM files (ours or real CMS) through a
  coffea ``Runner`` with the iterative, futures or Dask executor;
- :func:`simulate_generated` — Pythia events straight into the flash simulation,
  no intermediate GEN file.

Two ways out: ``OUTPUT`` ending in ``.root`` is one file (chunks merged in input
order); anything else is a directory with one file per chunk and a
``manifest.json``. Either way nothing appears under the requested name until it
is complete. ``model_draws`` K > 1 simulates every GEN event once per weight draw of
Bayesian models (branch ``flashsimModelDraw``; :func:`flashsim.runtime.simulate_batches`). The manifest's ``notes`` say what the models leave out (a model directory
without electron models simulates no ``Electron`` collection).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from flashsim.errors import FlashSimError
from flashsim.nanoaod.reader import (
    GEN_COLLECTIONS,
    num_entries,
    open_tree,
    read_chunk,
    read_runs,
    stored_names,
)
from flashsim.nanoaod.writer import NanoAODWriter
from flashsim.output_path import check_output_directory, check_output_file
from flashsim.processor import FlashSimProcessor
from flashsim.runtime import (
    BATCH_EVENTS,
    QuietNanoAODSchema,
    check_model_draws,
    chunk_seed,
    gen_names,
    in_output_order,
    quiet_coffea,
    scaled_runs,
    simulate_batches,
    worker_models,
)

__all__ = ["EXECUTORS", "run_processor", "simulate", "simulate_generated"]

EXECUTORS = ("iterative", "futures", "dask")


def simulate(
    inputs: list[str | Path],
    output: str | Path,
    *,
    models: str | Path | None = None,
    oversample: int = 1,
    model_draws: int = 1,
    executor: str = "iterative",
    workers: int = 1,
    scheduler: str | None = None,
    chunksize: int = 100_000,
    seed: int = 1,
    backend: str = "torch",
    device: str = "cpu",
    batch_events: int = BATCH_EVENTS,
    progress: bool = False,
    refine: bool = True,
    weights: bool = False,
) -> dict:
    """Flash-simulate the GEN events of ``inputs`` into ``output``; return the manifest.

    ``device="cuda"`` runs the networks on a GPU (torch backend; a clear error without one).
    ``refine`` (default) samples the flows that have latent refiners through them (manifest
    key ``refined``); ``refine=False`` gives the flows alone, bit for bit. ``weights`` (only
    with ``refine=False``) adds the DCTR weights ``flashsimWeight`` per object and per event.

    Each chunk is simulated and written ``batch_events`` output events at a time, which
    bounds the memory of a worker (:func:`flashsim.runtime.simulate_batches`); the output
    is a pure function of the inputs, ``seed``, ``chunksize``, ``oversample`` and
    ``batch_events``. ``progress`` shows bars (chunks; events within a chunk with the
    iterative executor).

    Everything a user can get wrong (options, inputs, models, output location) is
    checked before any event is simulated. Chunk files are staged in a hidden
    directory next to ``output`` and moved into place only when the run succeeded.
    With ``scheduler``, the Dask workers must see the inputs and that directory
    (a shared file system).
    """
    started = time.perf_counter()
    _check_options(oversample, executor, workers, chunksize, backend, batch_events)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise FlashSimError("no input files given: pass one or more GEN NanoAOD files")
    entries = {}
    for path in inputs:
        read_chunk(path, GEN_COLLECTIONS, 0, 0)  # fails with one message if branches are missing
        entries[str(path)] = num_entries(path)
    loaded = worker_models(models, backend, device, refine, weights)  # fail here, not on a worker
    check_model_draws(loaded, model_draws)
    notes = loaded.notes
    output = Path(output)
    single_file = output.suffix == ".root"
    if single_file:
        check_output_file(output, create_folders=True)
    else:
        check_output_directory(output)
    _ensure_dir(output.parent)

    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        # a bar inside a chunk only where the processor runs in this process
        flash = FlashSimProcessor(staging, models=models, seed=seed, oversample=oversample,
                                  model_draws=model_draws, backend=backend, device=device, batch_events=batch_events,
                                  progress=progress and executor == "iterative", refine=refine,
                                  weights=weights)
        nonempty = [p for p in inputs if entries[str(p)] > 0]
        result = run_processor(flash, nonempty, executor=executor, workers=workers,
                               scheduler=scheduler, chunksize=chunksize,
                               progress=progress) if nonempty else {}
        order = {str(p): i for i, p in enumerate(inputs)}
        chunks = sorted(result.get("chunks", []),
                        key=lambda c: (order[str(Path(c["file"]))], c["entry_start"]))
        if not chunks:  # zero events in: a valid, empty NanoAOD out
            chunks = [_empty_chunk_file(inputs[0], staging, models, backend, oversample,
                                        model_draws, device, refine, weights)]
        manifest = {
            "inputs": [str(p) for p in inputs],
            "outputs": [str(output)] if single_file else
                       [str(output / Path(c["path"]).name) for c in chunks],
            "models": _model_provenance(models, backend),
            "device": device,
            "refined": loaded.refined,
            "weights": weights,
            "notes": notes,
            "seed": seed,
            "oversample": oversample,
            "model_draws": model_draws,
            "chunksize": chunksize,
            "batch_events": batch_events,
            "executor": executor,
            "workers": workers,
            "events_in": int(sum(entries.values())),
            "events_out": int(result.get("events_out", 0)),
            "chunks": [{"file": c["file"], "entry_start": c["entry_start"],
                        "entry_stop": c["entry_stop"], "output": Path(c["path"]).name}
                       for c in chunks],
        }
        if single_file:
            _merge(chunks, output, batch_events)
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        if not single_file:
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            _publish_directory(staging, output)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def simulate_generated(
    process: str,
    n_events: int,
    output: str | Path,
    *,
    models: str | Path | None = None,
    oversample: int = 1,
    model_draws: int = 1,
    seed: int = 1,
    backend: str = "torch",
    batch_size: int = 500,
    pileup_mean: float = 30.0,
    device: str = "cpu",
    batch_events: int = BATCH_EVENTS,
    progress: bool = False,
    refine: bool = True,
    weights: bool = False,
) -> dict:
    """Generate ``process`` with Pythia and flash-simulate it in memory into one ROOT file.

    Pythia makes ``batch_size`` events at a time; each is flash-simulated and written in
    batches of ``batch_events`` output events (:func:`flashsim.runtime.simulate_batches`)."""
    from tqdm import tqdm

    from flashsim import generation

    started = time.perf_counter()
    _check_options(oversample, "iterative", 1, batch_size, backend, batch_events)
    if n_events < 1:
        raise FlashSimError(f"-n must be at least 1 (got {n_events})")
    if process not in generation.PROCESSES:
        raise FlashSimError(
            f"unknown process {process!r}; choose one of {', '.join(generation.PROCESSES)}"
        )
    output = Path(output)
    if output.suffix != ".root":
        raise FlashSimError(f"with --generate, OUTPUT must be a .root file (got {output})")
    check_output_file(output, create_folders=True)
    loaded = worker_models(models, backend, device, refine, weights)
    check_model_draws(loaded, model_draws)
    _ensure_dir(output.parent)

    done = 0
    with NanoAODWriter(output) as writer, tqdm(total=n_events * oversample * model_draws,
                                                unit="ev",
                                                desc=process, disable=not progress,
                                                dynamic_ncols=True) as bar:
        for batch in generation.iter_batches(process, n_events, seed=seed,
                                             pileup_mean=pileup_mean, batch_size=batch_size):
            n = len(batch.nano["event"])
            sequence = chunk_seed(seed, f"generate:{process}", done, done + n)
            for flash in simulate_batches(batch.nano, loaded, sequence, oversample=oversample,
                                          model_draws=model_draws, batch_events=batch_events,
                                          progress=bar.update):
                writer.write(flash)
            done += n
    return {
        "process": process,
        "outputs": [str(output)],
        "models": _model_provenance(models, backend),
        "refined": loaded.refined,
        "weights": weights,
        "notes": loaded.notes,
        "seed": seed,
        "model_draws": model_draws,
        "events_in": done,
        "events_out": done * oversample * model_draws,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _check_options(oversample: int, executor: str, workers: int, chunksize: int,
                   backend: str, batch_events: int) -> None:
    if oversample < 1:
        raise FlashSimError(f"--oversample must be at least 1 (got {oversample})")
    if executor not in EXECUTORS:
        raise FlashSimError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise FlashSimError(f"--workers must be at least 1 (got {workers})")
    if chunksize < 1:
        raise FlashSimError(f"--chunksize must be at least 1 (got {chunksize})")
    if batch_events < 1:
        raise FlashSimError(f"--batch-events must be at least 1 (got {batch_events})")
    if backend not in ("torch", "onnx"):
        raise FlashSimError(f"unknown backend {backend!r}; choose torch or onnx")


def _ensure_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _executor(kind: str, workers: int, scheduler: str | None, progress: bool):
    from coffea import processor

    if kind == "iterative":
        # the processor's own bar counts events within each chunk; coffea's would fight it
        return processor.IterativeExecutor(status=False)
    if kind == "futures":
        return processor.FuturesExecutor(workers=workers, status=progress,
                                         desc="flash-simulating", unit="chunk")
    from dask.distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
    else:
        # the scheduler serves HTTP even without a dashboard, by default on port 8787; a free
        # local port lets several runs share a machine (a taken port is a warning, a leak)
        client = Client(LocalCluster(n_workers=workers, threads_per_worker=1,
                                     processes=True, dashboard_address="127.0.0.1:0"))
    return processor.DaskExecutor(client=client, status=progress, desc="flash-simulating",
                                  unit="chunk")


def run_processor(flash: FlashSimProcessor, inputs: list[Path], *, executor: str = "iterative",
                  workers: int = 1, scheduler: str | None = None,
                  chunksize: int = 100_000, progress: bool = False) -> dict:
    """Run ``flash`` over the ``Events`` trees of ``inputs`` (dataset ``flash``) with coffea's
    ``Runner`` and the ``executor`` asked for; return the processor's accumulator.
    ``progress`` shows coffea's bar of chunks for the futures and dask executors.

    A :class:`FlashSimError` raised in a worker reaches the caller as itself."""
    from coffea import processor
    from coffea.util import coffea_console

    pool = _executor(executor, workers, scheduler, progress)
    # coffea's rich bars ignore status=False; its console's quiet switch silences them. The
    # iterative executor's chunk bar stays off too: the processor's event bar replaces it.
    console_was_quiet = coffea_console.quiet
    coffea_console.quiet = not progress or executor == "iterative"
    try:
        runner = processor.Runner(executor=pool, chunksize=chunksize,
                                  schema=QuietNanoAODSchema)
        fileset = {"flash": {"files": {str(p): "Events" for p in inputs}}}
        with quiet_coffea():
            return runner(fileset, processor_instance=flash, treename="Events")
    except Exception as error:
        # coffea wraps a worker's exception in a bare Exception; give the user ours
        cause = error
        while cause is not None and not isinstance(cause, FlashSimError):
            cause = cause.__cause__
        if cause is not None:
            raise FlashSimError(str(cause)) from None
        raise
    finally:
        coffea_console.quiet = console_was_quiet
        client = getattr(pool, "client", None)
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None and not scheduler:
                cluster.close()


def _empty_chunk_file(source: Path, staging: Path, models, backend: str,
                      oversample: int, model_draws: int, device: str, refine: bool,
                      weights: bool) -> dict:
    gen = read_chunk(source, _present(source, gen_names()), 0, 0)
    path = staging / "empty.root"
    with NanoAODWriter(path, runs=scaled_runs(source, oversample)) as writer:
        for batch in simulate_batches(gen, worker_models(models, backend, device, refine, weights),
                                      chunk_seed(0, "", 0, 0), oversample=oversample,
                                      model_draws=model_draws):
            writer.write(in_output_order(batch))
    return {"path": str(path), "file": str(source), "entry_start": 0, "entry_stop": 0}


def _present(path: str | Path, names) -> list[str]:
    """The names (collections or scalar branches) that the ``Events`` tree of ``path`` has."""
    keys = set(open_tree(path).keys())
    return [n for n in names if n in keys or any(k.startswith(f"{n}_") for k in keys)]


def _merge(chunks: list[dict], output: Path, batch_events: int = BATCH_EVENTS) -> None:
    """Concatenate chunk files, in input order, into one NanoAOD file, ``batch_events``
    events in memory at a time.

    One chunk file is moved to ``output`` as it is: chunk files are written in the output's
    order (:func:`flashsim.runtime.in_output_order`), with the Runs tree the merge would
    write, so rewriting it would give the same content at the cost of reading and writing
    every event again."""
    if len(chunks) == 1:
        os.replace(chunks[0]["path"], output)
        return
    names = stored_names(chunks[0]["path"])
    runs_parts = [read_runs(c["path"]) for c in chunks]
    runs = None
    if all(r is not None for r in runs_parts):
        runs = {k: np.concatenate([r[k] for r in runs_parts]) for k in runs_parts[0]}
    with NanoAODWriter(output, runs=runs) as writer:
        for chunk in chunks:
            n_events = num_entries(chunk["path"])
            for start in range(0, max(n_events, 1), batch_events):
                writer.write(read_chunk(chunk["path"], names, start,
                                        min(start + batch_events, n_events)))


def _publish_directory(staging: Path, output: Path) -> None:
    """Move the staged chunk files and manifest to ``output`` (the manifest last)."""
    if not output.exists():
        staging.rename(output)
        return
    for path in sorted(staging.iterdir(), key=lambda p: p.name == "manifest.json"):
        path.replace(output / path.name)


def _model_provenance(models, backend: str) -> dict:
    from flashsim.models import model_provenance

    return {"backend": backend, **model_provenance(models)}
