"""``flashsim benchmark-hmumu``: the VBF H→μμ benchmark from generation to report.

Held-out samples of :data:`BENCHMARK_PROCESSES` are generated with the reference detector
(seed :data:`HELD_OUT_SEED_OFFSET` + seed, never a training seed), the same GEN events are
flash-simulated, :func:`~flashsim.validation.hmumu.selection.run_analysis` selects both,
normalised with each process' cross section
(:attr:`flashsim.generation.processes.Process.cross_section_pb`), and
:func:`~flashsim.validation.hmumu.statistics.analyse` compares them.
"""

from __future__ import annotations

from pathlib import Path

from flashsim.errors import FlashSimError
from flashsim.validation.hmumu.selection import event_scales, run_analysis
from flashsim.validation.hmumu.statistics import analyse
from flashsim.validation.report import write_json

__all__ = ["BENCHMARK_PROCESSES", "DEFAULT_LUMI_FB", "HELD_OUT_SEED_OFFSET",
           "run_hmumu_benchmark"]

#: Held-out samples use seed HELD_OUT_SEED_OFFSET + seed, so they never repeat training seeds.
HELD_OUT_SEED_OFFSET = 1_000_000
#: The background is Drell-Yan inside the H→μμ fit window: only 0.5% of inclusive
#: (m > 50 GeV) DY events pass the dimuon selection within 110-150 GeV, which left a
#: 50k-event inclusive sample with 7 events after the VBF cuts (the window sample: 156).
BENCHMARK_PROCESSES = {"signal": "vbf_hmumu", "background": "dy_mumu_105_160"}
DEFAULT_LUMI_FB = 137.0  # CMS Run 2


def _cross_section(process: str) -> float:
    from flashsim.generation import PROCESSES

    sigma = PROCESSES[process].cross_section_pb
    if sigma is None:
        raise FlashSimError(f"process {process!r} has no reference cross section: add "
                            "cross_section_pb to its entry in flashsim/generation/processes.py")
    return sigma


def _is_sample(path: Path, process: str, n_events: int, seed: int) -> bool:
    """Whether ``path`` already holds this held-out sample (an earlier run's, e.g. with
    another ``--oversample``): same process, events and seed, with the reference detector.
    Generation is most of the benchmark's time, so it is not repeated."""
    from flashsim.nanoaod.reader import read_provenance

    if not path.is_file():
        return False
    made = read_provenance(path) or {}
    return (made.get("process"), made.get("events"), made.get("seed"), made.get("refsim")) == (
        process, n_events, seed, True)


def run_hmumu_benchmark(
    outdir: str | Path,
    *,
    n_events: int = 20_000,
    jobs: int = 1,
    oversample: int = 1,
    seed: int = 1,
    lumi_fb: float = DEFAULT_LUMI_FB,
    models: str | Path | None = None,
    validate: bool = True,
) -> dict:
    """``flashsim benchmark-hmumu``: generate held-out :data:`BENCHMARK_PROCESSES` events
    with the reference detector (seed :data:`HELD_OUT_SEED_OFFSET` + ``seed``), flash-simulate
    the same GEN events with the shipped (or ``models``) models, run the analysis on both,
    write ``summary.md``, ``metrics.json`` and PNGs to ``outdir``; return the metrics.
    With ``validate`` also write a ``flashsim validate`` report per process."""
    from flashsim.production import generate_file
    from flashsim.simulation import simulate
    from flashsim.validation.compare import run_validation
    from flashsim.validation.report import write_benchmark_report

    if n_events < 1 or jobs < 1 or oversample < 1:
        raise FlashSimError("-n, --jobs and --oversample must be positive integers")
    outdir = Path(outdir)
    sample_dir = outdir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    held_out_seed = HELD_OUT_SEED_OFFSET + seed
    fileset, cross_sections = {}, {}
    for process in BENCHMARK_PROCESSES.values():
        full = sample_dir / f"{process}_full.root"
        flash = sample_dir / f"{process}_flash.root"
        if not _is_sample(full, process, n_events, held_out_seed):
            generate_file(process, n_events, full, seed=held_out_seed, jobs=jobs, refsim=True)
        simulate([full], flash, models=models, seed=held_out_seed, oversample=oversample,
                 executor="futures" if jobs > 1 else "iterative", workers=jobs)
        fileset[f"{process}_full"], fileset[f"{process}_flash"] = [full], [flash]
        cross_sections[f"{process}_full"] = cross_sections[f"{process}_flash"] = \
            _cross_section(process)
        if validate:
            run_validation([full], [flash], outdir / f"validation_{process}", plots_mode="key",
                           seed=seed)
    results = run_analysis(fileset, event_scales(fileset, cross_sections, lumi_fb))
    bench = analyse(results, BENCHMARK_PROCESSES, outdir, seed=seed)
    bench["settings"] = {"n_events": n_events, "oversample": oversample, "seed": seed,
                         "held_out_seed": held_out_seed, "lumi_fb": lumi_fb,
                         "cross_sections_pb": cross_sections,
                         "samples": {k: [str(p) for p in v] for k, v in fileset.items()}}
    write_benchmark_report(bench, BENCHMARK_PROCESSES, outdir)
    write_json(bench, outdir / "metrics.json")
    return bench
