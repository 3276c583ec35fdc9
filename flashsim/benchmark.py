"""``flashsim benchmark``: how fast is the flash simulation, and what does it cost
compared with generating the events in the first place?

On one GEN NanoAOD file (by default ``n_events`` Pythia events of ``process``, made
once with :func:`flashsim.production.generate_file` and cached in the temporary
directory), the path of ``flashsim simulate`` is timed — the
:class:`~flashsim.processor.FlashSimProcessor` under coffea's ``Runner`` with the
iterative executor (:func:`flashsim.simulation.run_processor`), one chunk file per
chunk, the same per-chunk random streams and one torch thread — and split into its
stages, as the processor records them:

- ``muon``, ``jet``, ``fake_jet``, ``met_pv``, ``electron``: each object's models
  (efficiency -> flow -> post-processing), from :func:`flashsim.objects.simulate_reco`
  (``electron`` includes the electron-jet cross-references; 0 when the models have none);
- ``assembly``: jets merged, pT-ordered, muon-jet cross-references rebuilt;
- ``write``: the NanoAOD writer (GEN passed through + flash RECO), one file per chunk;
- ``read``: everything else of the run's wall time — coffea opening the file and
  building each chunk's NanoEvents, the GEN chunk taken from them, the input's Runs rows.

for every backend and chunk size asked for; ``total`` is the wall time of the run, models
already loaded. The same run times Pythia generation alone (GEN NanoAOD out) and
generation + the reference detector (NANOAODSIM out) on ``gen_events`` events, so that

.. math::  \\text{cost ratio} = \\frac{t_\\text{flash} / \\text{event}}{t_\\text{generation} / \\text{event}}

is one number. Every rate is events per second of wall time on one core.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flashsim.errors import FlashSimError

__all__ = ["STAGES", "cpu_ms", "format_report", "measure_flash", "measure_generation",
           "run_benchmark"]

STAGES = ("read", "muon", "jet", "fake_jet", "assembly", "met_pv", "electron", "write")
"""The stages of the flash path, in the order they run."""


def cpu_ms(repeat: int, call: Callable[..., object], *args: object) -> float:
    """Milliseconds of process CPU time per ``call(*args)``, over ``repeat`` calls after one
    warm-up call (CPU time, not wall time: a busy machine does not inflate it). Used by the
    scripts of ``benchmarks/`` and ``training/model_size_study.py``."""
    call(*args)
    started = time.process_time()
    for _ in range(repeat):
        call(*args)
    return 1e3 * (time.process_time() - started) / repeat


def _cached_gen_file(process: str, n_events: int, seed: int) -> Path:
    """A GEN NanoAOD file of ``process``, generated once and kept in the temp directory."""
    from flashsim.production import generate_file

    cache = Path(tempfile.gettempdir()) / "flashsim-benchmark"
    cache.mkdir(exist_ok=True)
    path = cache / f"{process}_{n_events}_seed{seed}.root"
    if not path.is_file():
        generate_file(process, n_events, path, seed=seed)
    return path


def measure_flash(path: Path, chunk_size: int, *, models: str | Path | None = None,
                  backend: str = "torch", seed: int = 1,
                  device: str = "cpu") -> dict[str, float]:
    """Seconds per stage (:data:`STAGES`) to flash-simulate ``path`` in chunks of
    ``chunk_size`` as ``flashsim simulate`` does (iterative executor), plus ``events``
    and ``total`` (the run's wall time).

    Load the models first (:func:`flashsim.runtime.worker_models`) to leave loading out.
    """
    from flashsim.processor import FlashSimProcessor
    from flashsim.simulation import run_processor

    with tempfile.TemporaryDirectory() as scratch:
        flash = FlashSimProcessor(scratch, models=models, seed=seed, backend=backend,
                                  device=device)
        began = time.perf_counter()
        result = run_processor(flash, [Path(path)], chunksize=chunk_size)
        wall = time.perf_counter() - began
    measured = result.get("stage_seconds", {})
    timings = {s: measured.get(s, 0.0) for s in STAGES}
    # the processor's own "read" is part of what the Runner spends around the other stages
    timings["read"] = max(wall - sum(timings[s] for s in STAGES if s != "read"), 0.0)
    timings["total"] = wall
    timings["events"] = result.get("events_in", 0)
    return timings


def measure_generation(process: str, n_events: int, *, seed: int = 1) -> dict[str, float]:
    """Seconds to generate ``n_events`` of ``process`` as GEN NanoAOD (``generation``)
    and as NANOAODSIM with the reference detector (``generation+refdet``)."""
    from flashsim.production import generate_file

    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, refsim in (("generation", False), ("generation+refdet", True)):
            began = time.perf_counter()
            generate_file(process, n_events, Path(scratch) / f"{label}.root", seed=seed,
                          refsim=refsim)
            seconds[label] = time.perf_counter() - began
    return seconds


def run_benchmark(
    *,
    input_path: str | Path | None = None,
    process: str = "vbf_hmumu",
    n_events: int = 1000,
    gen_events: int | None = None,
    models: str | Path | None = None,
    backends: tuple[str, ...] = ("torch", "onnx"),
    chunk_sizes: tuple[int, ...] = (100, 1000),
    seed: int = 1,
    device: str = "cpu",
) -> dict:
    """Time the flash path and generation; return ``{"flash": [...], "generation": {...}}``.

    ``device="cuda"`` runs the networks on a GPU (torch backend only).

    ``flash`` rows: backend, chunk size, events, seconds per stage and in total.
    ``generation``: events, seconds for generation alone and with the reference detector.
    """
    from flashsim.generation import PROCESSES
    from flashsim.nanoaod.reader import GEN_COLLECTIONS, read_chunk
    from flashsim.runtime import worker_models

    if process not in PROCESSES:
        raise FlashSimError(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    if n_events < 1 or (gen_events is not None and gen_events < 1):
        raise FlashSimError("-n and --gen-events must be at least 1")
    if not chunk_sizes or min(chunk_sizes) < 1:
        raise FlashSimError("give chunk sizes of at least 1 event (--chunksize N, repeatable)")
    for backend in backends:  # load (and check) the models before any timing
        worker_models(models, backend, device)
    path = Path(input_path) if input_path else _cached_gen_file(process, n_events, seed)
    read_chunk(path, GEN_COLLECTIONS, 0, 0)  # one clear error for a missing file or branch
    flash = []
    for backend in backends:
        for size in chunk_sizes:
            timings = measure_flash(path, size, models=models, backend=backend, seed=seed,
                                    device=device)
            flash.append({"backend": backend, "chunk_size": size, **timings})
    gen_events = gen_events or min(n_events, 200)
    generation = {"process": process, "events": gen_events,
                  # the events of the GEN file (same seed): both sides time the same events
                  **measure_generation(process, gen_events, seed=seed)}
    return {"input": str(path), "models": str(models or "shipped"), "flash": flash,
            "generation": generation}


def format_report(report: dict) -> str:
    """The benchmark as plain, aligned text: events/s per stage, then the cost ratio."""
    stages = [*STAGES, "total"]
    header = f"{'backend':8s} {'chunk':>6s} " + " ".join(f"{s:>9s}" for s in stages)
    lines = [f"flash simulation of {report['input']} (models: {report['models']}), events/s",
             header, "-" * len(header)]
    for row in report["flash"]:
        rates = [row["events"] / row[s] if row[s] > 0 else float("inf") for s in stages]
        lines.append(f"{row['backend']:8s} {row['chunk_size']:6d} "
                     + " ".join(f"{r:9.0f}" for r in rates))
    gen = report["generation"]
    n = gen["events"]
    lines += ["", f"generation of {n} {gen['process']} events, events/s",
              f"  {'Pythia generation (GEN NanoAOD)':46s} {n / gen['generation']:9.1f}",
              f"  {'generation + reference detector (NANOAODSIM)':46s} "
              f"{n / gen['generation+refdet']:9.1f}",
              "", "cost per event relative to generation (flash / generation) and to generation"
              " + reference detector (flash / full)"]
    per_gen = gen["generation"] / n
    per_full = gen["generation+refdet"] / n
    for row in report["flash"]:
        per_flash = row["total"] / row["events"]
        lines.append(f"  {row['backend']:5s} chunk {row['chunk_size']:6d}: "
                     f"flash / generation = {per_flash / per_gen:.3f}   "
                     f"flash / full = {per_flash / per_full:.4f}")
    return "\n".join(lines)
